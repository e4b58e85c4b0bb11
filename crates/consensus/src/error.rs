use pmr_execution::ExecutionError;
use pmr_primitives::B256;
use pmr_storage::StorageError;

use crate::chain::ChainError;
use crate::gossip::GossipError;

/// Errors of the consensus part of a node.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The chain store failed: a database error or a corrupt record.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Executing a block, or committing its state, failed.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// Transaction gossip could not start.
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// This node computed something other than what the network decided. It halts instead of
    /// forking.
    #[error(
        "STATE DIVERGENCE at height {height}: {detail}. This node disagrees with the block the \
         network committed and stops rather than fork. Check that every validator runs the same \
         pmr version and genesis, then resync this node from an empty data directory."
    )]
    Divergence {
        /// The decided height.
        height: u64,
        /// What differs: a root, the parent hash, or why the block does not execute here.
        detail: String,
    },
    /// The network decided a block this node has neither built, received nor synced, so it cannot
    /// commit it.
    #[error("consensus decided block {hash} at height {height}, but this node never received it")]
    MissingDecidedBlock {
        /// The decided height.
        height: u64,
        /// The decided block's hash.
        hash: B256,
    },
    /// The engine made this node proposer, but it runs without a validator key.
    #[error("asked to propose, but this node has no validator key")]
    NotAValidator,
    /// The engine closed its channel to the application: no more decisions will arrive.
    #[error("the consensus engine stopped")]
    EngineStopped,
    /// The engine could not start: an invalid peer id in the configuration, a torn WAL that cannot
    /// be removed, or a failed engine build.
    #[error("cannot start the consensus engine: {0}")]
    Engine(String),
    /// No validator set can be built from the genesis: a validator's consensus key is malformed.
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

impl ConsensusError {
    /// Whether the node must stop: its state can no longer be trusted to match the network's.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConsensusError::Divergence { .. })
    }
}
