//! Errors of the executor and reasons a transaction is refused.

use alloy_primitives::{Address, B256, U256};
use pmr_storage::StorageError;

/// Why a transaction cannot be executed against the state it would run on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    #[error(
        "sender {0} is not on the PMR permission list: ask the network admin to call \
         setPermitted, or a hospital to register you as a patient"
    )]
    NotPermitted(Address),
    #[error(
        "nonce {got} of {sender} was already used: re-sign the transaction with nonce {expected}"
    )]
    NonceTooLow {
        sender: Address,
        expected: u64,
        got: u64,
    },
    #[error(
        "nonce {got} of {sender} is ahead of its next nonce {expected}: send the missing \
         transactions first"
    )]
    NonceGap {
        sender: Address,
        expected: u64,
        got: u64,
    },
    #[error("gas limit {limit} exceeds the per-transaction limit {max}: lower the gas limit")]
    GasLimitTooHigh { limit: u64, max: u64 },
    #[error(
        "gas limit {limit} is below the {intrinsic} gas this transaction costs before it runs: \
         raise the gas limit"
    )]
    IntrinsicGasTooLow { limit: u64, intrinsic: u64 },
    #[error(
        "the block has {remaining} gas left and the transaction reserves {limit}: it waits for \
         the next block"
    )]
    BlockFull { limit: u64, remaining: u64 },
    #[error(
        "contract creation is not allowed: the PMR contract is deployed at genesis at {0}; send \
         calls to it"
    )]
    ContractCreation(Address),
    #[error("the transaction transfers {0} wei but PMR has no currency: send value 0")]
    NonZeroValue(U256),
    #[error("the EVM refused the transaction: {0}")]
    Invalid(String),
    #[error("cannot read the state to check the transaction ({0}): retry later")]
    StateUnavailable(String),
}

impl TxRejection {
    /// Whether the transaction may become valid later (keep it in the mempool) rather than being
    /// invalid for good (evict it).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TxRejection::NonceGap { .. }
                | TxRejection::BlockFull { .. }
                | TxRejection::StateUnavailable(_)
        )
    }
}

/// Errors of the executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "cannot execute height {got}: the next height is {expected} (blocks execute in order, one \
         height at a time)"
    )]
    WrongHeight { expected: u64, got: u64 },
    #[error("transaction {index} ({hash}) of the block is invalid: {reason}")]
    InvalidBlock {
        index: usize,
        hash: B256,
        reason: TxRejection,
    },
    #[error("height {requested} is not available: the executed head is {head}")]
    HeightNotAvailable { requested: u64, head: u64 },
    #[error(
        "the database holds execution state of another genesis (state root {stored}, this genesis \
         gives {computed}): point the node at the right genesis file or an empty home directory; \
         a chain made by a pmr with another PMR contract build must be started anew (`pmr dev \
         --fresh` for the dev testnet)"
    )]
    GenesisMismatch { stored: B256, computed: B256 },
    #[error("genesis execution failed: {0}")]
    Genesis(String),
    #[error("the PMR contract artifact is unusable: {0}")]
    Artifact(#[from] pmr_contract::ContractError),
    #[error(
        "execution state in the database is corrupt: {0}; restore this node's home directory from \
         a healthy validator"
    )]
    Corrupt(String),
    #[error("the EVM failed: {0}")]
    Evm(String),
}
