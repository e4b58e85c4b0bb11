//! pmr-rpc
