//! RocksDB storage shared by every part of a PMR node.
//!
//! One database per node, split into column families ([`Column`]). Each subsystem owns its
//! columns and encodes its own keys and values; this crate knows nothing of blocks, accounts or
//! blobs. Writes that must land together go through one [`Batch`], which RocksDB applies
//! atomically, and a [`Durability::Sync`] write is fsynced before it returns, so a block, its
//! state and its receipts are either all on disk after a crash or none of them are.

mod column;
mod db;
mod error;

pub use column::Column;
pub use db::{Batch, Durability, KeyValue, Store};
pub use error::StorageError;
