//! Consensus for PMR Ledger: Tendermint BFT through the malachite engine.
//!
//! - [`context`]: the concrete types malachite runs over (a value is a block hash).
//! - [`app`]: answers the engine: builds proposals from the [`mempool`], executes received
//!   ones before voting, commits decided blocks atomically with their state.
//! - [`chain`]: the committed chain in RocksDB; [`codec`]: wire and WAL encoding;
//!   [`streaming`]: proposal parts; [`gossip`]: transaction gossip between members.
//! - [`ledger::Ledger`]: what the rest of the node (gRPC) uses.
//! - [`schedule`]: the validator set of each height, from the governance history on chain.
//! - [`flood`]: a hostile member for fault scenarios (floods proposal parts).
//!
//! The consensus algorithm itself is malachite's; nothing here re-implements it.

mod app;
pub mod chain;
pub mod codec;
pub mod config;
pub mod context;
pub mod engine;
mod error;
pub mod evidence;
pub mod flood;
pub mod gossip;
pub mod ledger;
pub mod mempool;
pub mod metrics;
pub mod schedule;
pub mod signing;
pub mod streaming;
pub mod verify;

pub use chain::{BaseError, ChainError, ChainStore, TxLocation};
pub use config::{ConsensusConfig, PeerConfig, TimeoutConfig};
pub use engine::{network_keypair, peer_id_of, start, validator_set, ConsensusNode, StartParams};
pub use error::ConsensusError;
pub use evidence::{Equivocation, EquivocationKind};
pub use ledger::{Admitted, CommittedBlock, Ledger, PeerView, SubmitError, Tip};
pub use mempool::{Mempool, MempoolConfig, PoolError};
pub use metrics::ConsensusMetrics;
pub use schedule::{SetChangeProof, ValidatorSchedule};
pub use verify::{
    decode_proof_entry, verify_audit_proof, verify_certificate, verify_receipt_in_certified_block,
    verify_receipt_inclusion, AuditProofError, Certificate, CommitSignature, VerifyError,
};

/// ed25519 keys used for consensus and p2p identity.
pub use malachitebft_signing_ed25519::{PrivateKey, PublicKey};

/// A fresh random peer id for unit tests.
#[cfg(test)]
pub(crate) fn test_peer_id() -> malachitebft_sync::PeerId {
    let peer = libp2p::PeerId::random();
    malachitebft_sync::PeerId::from_bytes(&peer.to_bytes()).expect("libp2p peer id converts")
}
