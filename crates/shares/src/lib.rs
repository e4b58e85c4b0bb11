//! pmr-shares
