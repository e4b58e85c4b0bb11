//! The Rust SDK of PMR Ledger: talks to a node over gRPC only.
//!
//! - [`PmrClient`]: the node's services (submit, blocks, transactions, status, receipts, calls).
//! - [`Wallet`]: an Ethereum (secp256k1) account that signs EIP-1559 transactions for a chain.

mod client;
mod wallet;

pub use client::{ClientError, PmrClient, Status as NodeStatus};
pub use pmr_proto::v1 as proto;
pub use wallet::{Wallet, WalletError};
