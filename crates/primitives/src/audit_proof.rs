//! The audit proof file (`pmr audit --proof`): for each transaction of a record's history, its
//! receipt, the receipt's Merkle proof to the block's receipts root, the block, and the block's
//! commit certificate. Anyone holding the genesis can check it offline
//! (`pmr_consensus::verify_audit_proof`).

use alloy_primitives::{B256, U256};
use serde::{Deserialize, Serialize};

/// The format this build writes and reads. Version 2 (since a40bb21, 2026-12-01): receipts are
/// proven with the keyed-BLAKE3 Merkle tree of the block header's receipts root; version 1
/// files used keccak and cannot be checked by this version.
pub const AUDIT_PROOF_VERSION: u32 = 2;

/// An audit proof of one token's events.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditProof {
    /// [`AUDIT_PROOF_VERSION`] when written by this build.
    pub version: u32,
    /// The chain.
    pub chain_id: u64,
    /// The genesis the certificates are checked against.
    pub genesis_hash: B256,
    /// The token whose events the file proves.
    pub token_id: U256,
    /// One entry per transaction, in chain order.
    pub entries: Vec<ProofEntry>,
    /// Every change of the validator set up to the entries' last block, in chain order, each
    /// as the receipt of the governance transaction that made it: the certificates of later
    /// blocks are checked against the set these changes lead to from the genesis. Empty while
    /// the genesis set is the chain's only one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validator_changes: Vec<ProofEntry>,
}

/// One proven transaction of an audit proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProofEntry {
    /// The transaction.
    pub tx_hash: B256,
    /// Canonical receipt bytes (hex).
    pub receipt: String,
    /// The receipt's index in its block.
    pub proof_index: u64,
    /// Receipts in the block.
    pub proof_count: u64,
    /// The Merkle path to the receipts root.
    pub proof_siblings: Vec<B256>,
    /// Canonical block bytes (hex).
    pub block: String,
    /// The certificate's height.
    pub cert_height: u64,
    /// The certificate's round.
    pub cert_round: u32,
    /// The block hash the certificate decides.
    pub cert_block_hash: B256,
    /// (validator address hex, signature hex)
    pub cert_signatures: Vec<(String, String)>,
}
