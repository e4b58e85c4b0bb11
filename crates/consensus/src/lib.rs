//! pmr-consensus
