//! Errors of the executor and reasons a transaction is refused.

use alloy_primitives::{Address, B256, U256};
use pmr_storage::StorageError;

/// Why a transaction cannot be executed against the state it would run on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    /// The sender is not on the PMR contract's permission list; carries the sender.
    #[error(
        "sender {0} is not on the PMR permission list: ask the network admin to call \
         setPermitted, or a hospital to register you as a patient"
    )]
    NotPermitted(Address),
    /// The nonce is below the sender's next nonce: a transaction with it was already executed.
    #[error(
        "nonce {got} of {sender} was already used: re-sign the transaction with nonce {expected}"
    )]
    NonceTooLow {
        /// The signer of the transaction.
        sender: Address,
        /// The sender's next nonce.
        expected: u64,
        /// The nonce the transaction carries.
        got: u64,
    },
    /// The nonce is above the sender's next nonce; retryable once the missing nonces execute.
    #[error(
        "nonce {got} of {sender} is ahead of its next nonce {expected}: send the missing \
         transactions first"
    )]
    NonceGap {
        /// The signer of the transaction.
        sender: Address,
        /// The sender's next nonce.
        expected: u64,
        /// The nonce the transaction carries.
        got: u64,
    },
    /// The gas limit is above the per-transaction gas limit (capped at the block gas limit).
    #[error("gas limit {limit} exceeds the per-transaction limit {max}: lower the gas limit")]
    GasLimitTooHigh {
        /// The transaction's gas limit.
        limit: u64,
        /// The smaller of the per-transaction and block gas limits.
        max: u64,
    },
    /// The gas limit does not cover the intrinsic gas (base cost, calldata, access list and
    /// the EIP-7623 floor).
    #[error(
        "gas limit {limit} is below the {intrinsic} gas this transaction costs before it runs: \
         raise the gas limit"
    )]
    IntrinsicGasTooLow {
        /// The transaction's gas limit.
        limit: u64,
        /// The intrinsic gas of the transaction.
        intrinsic: u64,
    },
    /// The gas limit is above the gas left in the block being built; retryable in a later block.
    #[error(
        "the block has {remaining} gas left and the transaction reserves {limit}: it waits for \
         the next block"
    )]
    BlockFull {
        /// The transaction's gas limit, reserved in full.
        limit: u64,
        /// Gas left in the block before this transaction.
        remaining: u64,
    },
    /// The transaction has no recipient (a contract creation); carries the PMR contract address.
    #[error(
        "contract creation is not allowed: the PMR contract is deployed at genesis at {0}; send \
         calls to it"
    )]
    ContractCreation(Address),
    /// The transaction carries a non-zero value; carries the amount in wei.
    #[error("the transaction transfers {0} wei but PMR has no currency: send value 0")]
    NonZeroValue(U256),
    /// revm refused the transaction before running it for another reason; carries revm's
    /// description.
    #[error("the EVM refused the transaction: {0}")]
    Invalid(String),
    /// Mempool admission could not read the committed state; retryable. Carries the
    /// [`ExecutionError`] as text.
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
    /// Reading or writing the database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The block's height is not the one right after the executed head.
    #[error(
        "cannot execute height {got}: the next height is {expected} (blocks execute in order, one \
         height at a time)"
    )]
    WrongHeight {
        /// The next height: the executed head plus one.
        expected: u64,
        /// The height of the block given.
        got: u64,
    },
    /// A transaction of a block under validation is invalid, so the whole block is rejected.
    #[error("transaction {index} ({hash}) of the block is invalid: {reason}")]
    InvalidBlock {
        /// Position of the transaction in the block.
        index: usize,
        /// Hash of the transaction.
        hash: B256,
        /// Why the transaction is invalid.
        reason: TxRejection,
    },
    /// A query asked for a height above the executed head.
    #[error("height {requested} is not available: the executed head is {head}")]
    HeightNotAvailable {
        /// The height asked for.
        requested: u64,
        /// The height of the executed head.
        head: u64,
    },
    /// A query asked for a height below the first this node holds (it joined by state sync).
    #[error(
        "height {requested} is not on this node: it holds state from height {base} on (it \
         joined from a snapshot); ask a node that keeps every height"
    )]
    BeforeBase {
        /// The height asked for.
        requested: u64,
        /// The first height whose state this node holds.
        base: u64,
    },
    /// The database was made from another genesis: its height-0 state root differs.
    #[error(
        "the database holds execution state of another genesis (state root {stored}, this genesis \
         gives {computed}): point the node at the right genesis file or an empty home directory; \
         a chain made by a pmr with another PMR contract build must be started anew (`pmr dev \
         --fresh` for the dev testnet)"
    )]
    GenesisMismatch {
        /// The state root of height 0 in the database.
        stored: B256,
        /// The state root the given genesis produces.
        computed: B256,
    },
    /// Deploying the PMR contract at genesis failed (e.g. its constructor reverted on the
    /// genesis file's accounts).
    #[error("genesis execution failed: {0}")]
    Genesis(String),
    /// The embedded PMR artifact lacks what the executor needs (e.g. its storage layout).
    #[error("the PMR contract artifact is unusable: {0}")]
    Artifact(#[from] pmr_contract::ContractError),
    /// A record the executor expects in the database is missing or malformed; says which.
    #[error(
        "execution state in the database is corrupt: {0}; restore this node's home directory from \
         a healthy validator"
    )]
    Corrupt(String),
    /// A state snapshot was refused: malformed, or not the state the trusted root names.
    #[error("state snapshot refused: {0}")]
    Snapshot(String),
    /// revm failed with an error that is neither a transaction nor a database error.
    #[error("the EVM failed: {0}")]
    Evm(String),
}
