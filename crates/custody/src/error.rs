//! Why custody or a release failed. Each variant says what the caller can do; `pmr-rpc` maps
//! them to gRPC codes (the comment on each names the code).

use alloy_primitives::{Address, B256, U256};
use pmr_blob::Cid;

/// Errors of share custody and release.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// FAILED_PRECONDITION: this node holds no custody key of the genesis.
    #[error(
        "this node is not a share custodian of the chain (no custody key, one the chain does \
         not name, or its CUSTODIAN role was revoked); ask a custodian node (GetCustodians lists \
         them)"
    )]
    NotCustodian,
    /// The node's keys do not match the genesis (at start).
    #[error("{0}")]
    Config(String),
    /// INVALID_ARGUMENT: the challenge bytes do not decode.
    #[error("{0}")]
    BadChallenge(String),
    /// FAILED_PRECONDITION: the challenge is for another chain.
    #[error("the challenge is for chain {got}; this is chain {chain}")]
    WrongChain {
        /// The challenge's chain.
        got: u64,
        /// This node's chain.
        chain: u64,
    },
    /// FAILED_PRECONDITION: the challenge names another custodian.
    #[error(
        "wrong custodian: the challenge names {named}, this node is custodian {me} ({name}, \
         index {index})"
    )]
    WrongCustodian {
        /// The custodian the challenge names.
        named: Address,
        /// This node's operator address.
        me: Address,
        /// This node's validator name.
        name: String,
        /// This node's custodian index.
        index: u16,
    },
    /// FAILED_PRECONDITION: the challenge is too old or dated in the future.
    #[error("{0}")]
    Stale(String),
    /// UNAUTHENTICATED: the signature is not the grantee's.
    #[error("{0}")]
    BadSignature(String),
    /// ALREADY_EXISTS: the challenge's nonce was used before.
    #[error("nonce {0} was already used: replay refused; sign a new request with a fresh nonce")]
    Replay(B256),
    /// NOT_FOUND: no record has this token id.
    #[error("unknown token {token}: no record has this id at height {height}")]
    UnknownToken {
        /// The token asked for.
        token: U256,
        /// The height checked.
        height: u64,
    },
    /// PERMISSION_DENIED: never granted.
    #[error("no grant: {grantee} has never been granted access to token {token}")]
    NoGrant {
        /// The grantee.
        grantee: Address,
        /// The token.
        token: U256,
    },
    /// PERMISSION_DENIED: the owner revoked the grant.
    #[error("grant revoked: the owner revoked {grantee}'s access to token {token}")]
    GrantRevoked {
        /// The grantee.
        grantee: Address,
        /// The token.
        token: U256,
    },
    /// PERMISSION_DENIED: the grant's expiry has passed.
    #[error(
        "grant expired: {grantee}'s access to token {token} ended at {expiry} (unix seconds; \
         now {now})"
    )]
    GrantExpired {
        /// The grantee.
        grantee: Address,
        /// The token.
        token: U256,
        /// When the grant ended (unix seconds).
        expiry: u64,
        /// Now (unix seconds).
        now: u64,
    },
    /// FAILED_PRECONDITION: the grantee published no encryption key to seal to.
    #[error("{0} has no encryption key on-chain: register one with setEncryptionKey first")]
    NoEncryptionKey(Address),
    /// FAILED_PRECONDITION: the on-chain version names a CID the store cannot serve.
    #[error("version {version} of token {token} names no usable envelope: {reason}")]
    BadEnvelopeCid {
        /// The token.
        token: U256,
        /// The version.
        version: u32,
        /// Why the CID is unusable.
        reason: String,
    },
    /// UNAVAILABLE: the envelope could not be fetched and checked yet.
    #[error("this node has not taken custody of token {token} version {version} yet: {reason}")]
    NotHeldYet {
        /// The token.
        token: U256,
        /// The version.
        version: u32,
        /// Why custody could not be taken now.
        reason: String,
    },
    /// FAILED_PRECONDITION: this node's share of the version is missing or invalid.
    #[error("this node holds no valid share of token {token} version {version}: {reason}")]
    InvalidShare {
        /// The token.
        token: U256,
        /// The version.
        version: u32,
        /// What the custody check found.
        reason: String,
    },
    /// FAILED_PRECONDITION: the share does not seal to the grantee's key.
    #[error("cannot seal to {grantee}'s encryption key: {reason}")]
    Seal {
        /// The grantee.
        grantee: Address,
        /// What sealing said.
        reason: String,
    },
    /// UNAVAILABLE: the operator's transaction was not admitted.
    #[error("cannot submit the share-release log: {0}; nothing was released")]
    Submit(String),
    /// PERMISSION_DENIED when the contract saw no live grant, else FAILED_PRECONDITION.
    #[error(
        "the ledger refused the share-release log at height {height} ({reason}); nothing was \
         released"
    )]
    LogRefused {
        /// Where the log reverted.
        height: u64,
        /// The contract's reason.
        reason: String,
        /// Whether the contract found no live grant.
        no_live_grant: bool,
    },
    /// UNAVAILABLE: the log did not commit within the release timeout.
    #[error(
        "the share-release log {tx} did not commit within {secs}s, so no share was returned \
         (the log may still commit later): retry with a new challenge"
    )]
    LogTimeout {
        /// The log transaction.
        tx: B256,
        /// The timeout.
        secs: u64,
    },
    /// ABORTED: a new version committed while releasing.
    #[error(
        "the record changed while releasing (the log names version {logged:?}, this share is of \
         version {version}); no share was returned: retry with a new challenge"
    )]
    RecordChanged {
        /// The version the log names.
        logged: Option<u32>,
        /// The version of the share.
        version: u32,
    },
    /// RESOURCE_EXHAUSTED: too many releases at once, or this grantee asks too often.
    #[error("{0}")]
    Busy(String),
    /// UNAVAILABLE: the node is stopping.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A blob could not be fetched.
    #[error("cannot fetch share envelope {cid}: {source}")]
    Fetch {
        /// The envelope.
        cid: Cid,
        /// The content store's error.
        #[source]
        source: Box<pmr_content::ContentError>,
    },
    /// INTERNAL: the database failed.
    #[error(transparent)]
    Storage(#[from] pmr_storage::StorageError),
    /// INTERNAL: anything else that is a bug or a broken disk.
    #[error("{0}")]
    Internal(String),
}

impl CustodyError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        CustodyError::Internal(e.to_string())
    }
}
