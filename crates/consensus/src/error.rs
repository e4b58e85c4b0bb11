use pmr_execution::ExecutionError;
use pmr_primitives::B256;
use pmr_storage::StorageError;

use crate::chain::ChainError;
use crate::gossip::GossipError;

/// Errors of the consensus part of a node.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// This node computed something other than what the network decided. It halts instead of
    /// forking.
    #[error(
        "STATE DIVERGENCE at height {height}: {detail}. This node disagrees with the block the \
         network committed and stops rather than fork. Check that every validator runs the same \
         pmr version and genesis, then resync this node from an empty data directory."
    )]
    Divergence { height: u64, detail: String },
    #[error("consensus decided block {hash} at height {height}, but this node never received it")]
    MissingDecidedBlock { height: u64, hash: B256 },
    #[error("asked to propose, but this node has no validator key")]
    NotAValidator,
    #[error("the consensus engine stopped")]
    EngineStopped,
    #[error("cannot start the consensus engine: {0}")]
    Engine(String),
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

impl ConsensusError {
    /// Whether the node must stop: its state can no longer be trusted to match the network's.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConsensusError::Divergence { .. })
    }
}
