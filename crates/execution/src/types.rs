//! What the executor takes and returns.

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, B256, U256};
use pmr_primitives::{SignedTx, ValidatorAddress};

use crate::changeset::ChangeSet;
use crate::commitment::StateLattice;
use crate::receipt::{Log, Receipt};
use crate::state_db::PageWrite;
use crate::TxRejection;

/// The block-level inputs of execution, as decided by consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    /// Height of the block; becomes `block.number`.
    pub height: u64,
    /// Block time in milliseconds; contracts see `block.timestamp = timestamp_ms / 1000`.
    pub timestamp_ms: u64,
    /// Becomes `block.coinbase`.
    pub proposer: ValidatorAddress,
}

/// The result of executing one block on top of the executed head. Several may exist for one
/// height (one per round); only the one passed to [`crate::Executor::write_to_batch`] and then
/// [`crate::Executor::mark_committed`] counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutedBlock {
    /// The height executed.
    pub height: u64,
    /// Block time in milliseconds, from the [`BlockEnv`].
    pub timestamp_ms: u64,
    /// State root of the head this block executed on.
    pub parent_state_root: B256,
    /// State root after this block (see [`crate::StateLattice`]).
    pub state_root: B256,
    /// Merkle root of the receipts (see [`crate::receipts_root`]).
    pub receipts_root: B256,
    /// Gas used by all of the block's transactions.
    pub gas_used: u64,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// `receipts` as stored (encoded once, with the root).
    pub(crate) receipts_encoded: Arc<Vec<u8>>,
    pub(crate) changes: Arc<ChangeSet>,
    /// The storage pages `changes` leaves, as stored.
    pub(crate) pages: Arc<Vec<PageWrite>>,
    /// The state lattice after this block; its root is `state_root`.
    pub(crate) lattice: Arc<StateLattice>,
}

impl ExecutedBlock {
    /// Number of accounts, storage slots and codes the block changed.
    pub fn changed_entries(&self) -> usize {
        self.changes.len()
    }

    /// About how many bytes [`crate::Executor::write_to_batch`] adds to a write batch (for
    /// [`pmr_storage::Store::batch_with_capacity`]).
    pub fn batch_bytes(&self) -> usize {
        crate::state_db::block_batch_bytes(&self.changes, &self.pages, self.receipts_encoded.len())
    }
}

/// A proposer's block: what was executed, which candidates made it, which did not and why.
#[derive(Clone, Debug)]
pub struct BuiltBlock {
    /// The executed block made of the included transactions.
    pub executed: ExecutedBlock,
    /// The included transactions, in execution order (one receipt each).
    pub included: Vec<SignedTx>,
    /// Candidates left out, by hash. [`TxRejection::is_retryable`] says whether to keep them.
    pub rejected: Vec<(B256, TxRejection)>,
}

/// The outcome of a read-only call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// Whether the call returned without reverting or halting.
    pub success: bool,
    /// Return data, or revert data when `success` is false.
    pub output: Bytes,
    /// Gas the call used, after refunds.
    pub gas_used: u64,
    /// Logs the call emitted; empty when it failed.
    pub logs: Vec<Log>,
    /// Decoded reason when the call failed.
    pub revert_reason: Option<String>,
}

/// An account as of some height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountView {
    /// The account's address.
    pub address: Address,
    /// Next transaction nonce; zero when the account does not exist.
    pub nonce: u64,
    /// Balance in wei (PMR moves no value, so it stays zero).
    pub balance: U256,
    /// `keccak256("")` for accounts without code.
    pub code_hash: B256,
}
