//! PMR execution: revm runs the PMR ERC-721 contract against RocksDB state, block by block,
//! identically on every validator.
//!
//! - [`Executor::open`] executes genesis once: the PMR contract (compiled from
//!   `evm-contracts/`, bytecode committed; bindings in `pmr-contract`) is deployed at
//!   `pmr_contract::PMR_ADDRESS` with the admin, hospitals, custodians (validator operators)
//!   and permitted accounts of the genesis.
//! - [`Executor::build_block`] (proposer) and [`Executor::execute_block`] (validator) run
//!   transactions on the executed head through one EVM per block (fork Prague, gas metered with
//!   per-transaction and per-block limits, priced at zero). Only permitted senders with the
//!   right nonce execute; the permission list is the contract's `isPermitted` mapping, read
//!   straight from storage.
//! - [`Executor::write_to_batch`] stages state changes, receipts and the head in the caller's
//!   RocksDB batch, so a block and its state are committed atomically.
//! - State is versioned by height, storage in pages of 8 slots (layout in `state_db.rs`), so
//!   [`Executor::call`] and [`Executor::account`] work at any committed height.
//! - The state root is a lattice hash of every stored account, storage page and code, updated
//!   by each block in work proportional to its changes; see [`StateLattice`] for its
//!   definition and limits, [`Executor::verify_stored_state`] to recompute it from disk.

mod block_state;
mod changeset;
mod commitment;
mod error;
mod executor;
mod genesis;
mod key_filter;
mod receipt;
mod runner;
mod snapshot;
mod state_db;
mod types;

pub use changeset::{AccountState, ChangeSet};
pub use commitment::StateLattice;
pub use error::{ExecutionError, TxRejection};
pub use executor::{Executor, StateCheck};
pub use genesis::constructor_args;
pub use receipt::{receipt_proof, receipts_root, verify_receipt, Log, Receipt};
pub use runner::{intrinsic_gas, SPEC};
pub use snapshot::{export_snapshot, verify_snapshot, SnapshotInfo, TrustedHead};
pub use state_db::StateCounts;
pub use types::{AccountView, BlockEnv, BuiltBlock, CallOutcome, ExecutedBlock};
