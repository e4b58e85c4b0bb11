//! Types every part of a PMR node agrees on: blocks, transactions, genesis, Merkle roots.
//!
//! Encodings here are consensus-critical: every validator must produce the same bytes, and so
//! the same hashes, for the same block. Blocks and headers are RLP; transactions are EIP-2718
//! envelopes exactly as their senders signed them.

mod audit_proof;
mod block;
mod cid;
mod genesis;
mod merkle;
pub mod session;
mod tx;

pub use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
pub use audit_proof::{AuditProof, ProofEntry, AUDIT_PROOF_VERSION};
pub use block::{Block, BlockError, Header, ValidatorAddress};
pub use cid::{join_blake3_cid, split_blake3_cid, CID_BYTES};
pub use genesis::{GasLimits, Genesis, GenesisCustodian, GenesisError, GenesisValidator};
pub use merkle::{merkle_proof, merkle_root, verify_merkle_proof, MerkleProof};
pub use tx::{SignedTx, TxError, TxLimits};

/// A block height. Height 0 is genesis; the first block is height 1.
pub type Height = u64;
