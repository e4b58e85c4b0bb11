//! pmr-client
