//! Errors of the content store.

use cid::Cid;
use pmr_blob::BlobError;

/// Errors of the content store, its network and its DAG codec.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A CID, block or manifest is malformed (see [`BlobError`]).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The DAG under a root does not have the shape this store writes.
    #[error("record {root} is malformed: {reason}")]
    BadDag {
        /// The record's root CID.
        root: Cid,
        /// What is wrong with the DAG.
        reason: String,
    },
    /// Blocks could not be found on any peer before the deadline.
    #[error(
        "{} block(s) not found locally or on any of {peers} connected peer(s) within {waited_ms} \
         ms: {}{}; check that a node holding the record is running and listed in \
         `allowed_peers`",
        cids.len(),
        cids.iter().take(8).map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        if cids.len() > 8 { ", ..." } else { "" }
    )]
    NotFound {
        /// The blocks still missing.
        cids: Vec<Cid>,
        /// How many peers were connected.
        peers: usize,
        /// How long the store waited, in milliseconds.
        waited_ms: u64,
    },
    /// A block needed locally is missing.
    #[error("block {cid} of record {root} is not stored on this node; use fetch_and_pin to fetch it from peers")]
    NotLocal {
        /// The record's root CID.
        root: Cid,
        /// The missing block.
        cid: Cid,
    },
    /// Reading the upload stream failed.
    #[error("reading the record stream failed: {0}")]
    Read(#[source] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] pmr_storage::StorageError),
    /// The content node has shut down.
    #[error("the content node has shut down; restart the node")]
    Shutdown,
    /// The network could not be set up.
    #[error("content network setup failed: {0}")]
    Network(String),
    /// The configuration is invalid.
    #[error("invalid content config: {0}")]
    Config(String),
}
