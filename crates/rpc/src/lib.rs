//! The node's gRPC API: `pmr.v1.LedgerService`, `pmr.v1.ContentService` and
//! `pmr.v1.ShareService`, with gRPC health checking and server reflection, on one port.
//!
//! Each part returns its own error type; [`status`] maps them to gRPC codes in one place.

mod access;
pub mod auth;
mod content;
mod convert;
mod disk;
mod ledger;
mod server;
mod shares;
mod status;

pub use access::{need, AccessLayer, AuthApi, Caller, Need, Roles};
pub use content::{ContentApi, MAX_UPLOAD_CHUNK};
pub use disk::DiskFloor;
pub use ledger::{LedgerApi, LedgerLimits};
pub use server::{serve, RpcError, ServerHandle, ServerLimits, ServerTls, Services};
pub use shares::ShareApi;
