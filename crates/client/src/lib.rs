//! The Rust SDK of PMR Ledger: talks to a node over gRPC only.
//!
//! - [`PmrClient`]: the node's services (submit, blocks, transactions, status, receipts, calls).
//! - [`Wallet`] (from `pmr-contract`): an Ethereum (secp256k1) account that signs EIP-1559
//!   transactions for a chain.
//! - Blobs ([`PmrClient::put_blob`], [`PmrClient::get_blob`], [`PmrClient::blob_stat`],
//!   [`PmrClient::pin`], [`PmrClient::unpin`]): the node's content store, ciphertext only.
//! - [`Identity`]: a passphrase-encrypted keystore (account key + X25519 sealing key).
//! - [`Network`]: the record lifecycle (create, update, list, grant, revoke, open, audit, and
//!   the audit proof anyone can check offline).
//! - [`files`]: a file encrypted here and stored as ciphertext through a node, and back.
//! - [`secret_file`]: key files of mode 0600, refused when others can read them;
//!   [`dev_account`]: the plain account files of local testnets.

mod blob;
mod client;
pub mod dev_account;
pub mod files;
pub mod keystore;
pub mod records;
pub mod scan_cache;
pub mod secret_file;
mod session;

pub use alloy_primitives::{Address, Bytes, B256};
pub use blob::{BlobDownload, BlobStat, PutBlob, UPLOAD_CHUNK};
pub use client::{ClientError, PmrClient, Status as NodeStatus};
pub use keystore::{Identity, KeystoreError};
pub use pmr_contract::{Wallet, WalletError, PMR, PMR_ADDRESS};
pub use pmr_proto::v1 as proto;
pub use records::{AuditEvent, Network, RecordError, RecordSummary, RecordVersion, Scanned};
pub use session::{ConnectOptions, NodeChannel};
