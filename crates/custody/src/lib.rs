//! A PMR node as a custodian of record-key shares, and the replication that feeds it.
//!
//! The custodians of a chain are the genesis validators with an X25519 custody key and an
//! operator account (`Genesis::custodians`); a node is one of them when the custody key it was
//! started with matches a genesis entry.
//!
//! - [`replicate`]: when a record's mint or new version commits, every node fetches and pins
//!   the blobs its event names (record root and share envelope); a custodian then takes custody.
//! - [`Custody::take_custody`]: open this node's slot of the envelope, verify the share against
//!   the VSS commitments and the on-chain key commitment ([`assess`], pure), record the outcome.
//!   The share itself stays sealed to the custody key at rest.
//! - [`Custody::release`]: the checks of a grantee's signed release challenge, the grant at the
//!   latest height, and the operator's `logShareRelease` transaction, which must commit before
//!   the share leaves the node sealed to the grantee.
//!
//! Errors are one enum, [`CustodyError`]; `pmr-rpc` maps it to gRPC status codes.

mod custody;
mod error;
mod operator;
mod record;
pub mod replicate;
mod store;
pub mod uploads;

pub use custody::{
    Custody, CustodyParams, ReleaseLimits, Released, MAX_CLOCK_SKEW, MAX_REQUEST_AGE,
};
pub use error::CustodyError;
pub use operator::RELEASE_COMMIT_TIMEOUT;
pub use record::{assess, CustodyRecord, CustodyStatus};
pub use replicate::ReplicatePolicy;
pub use uploads::{UploadPolicy, Uploads};
