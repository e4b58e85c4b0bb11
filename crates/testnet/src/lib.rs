//! pmr-testnet
