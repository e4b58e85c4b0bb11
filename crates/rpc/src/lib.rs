//! The node's gRPC API: `pmr.v1.LedgerService` (and the services of other parts as they are
//! added), with gRPC health checking and server reflection.

mod convert;
mod ledger;
mod server;

pub use ledger::LedgerApi;
pub use server::{serve, RpcError, ServerHandle};
