//! Content store of a PMR node: encrypted record blobs, content-addressed with blake3 and
//! replicated between the nodes of the network over bitswap 1.2.0.
//!
//! What a record's blocks are (encrypted segments, raw leaves under dag-cbor manifests, blake3
//! CIDs) is `pmr-blob`'s; this crate stores and moves them:
//!
//! - [`store`]: the RocksDB blockstore (`Column::Blobs`, `Column::Pins`), verified on every
//!   read, with pins and garbage collection; it implements `blockstore::Blockstore`.
//! - [`bitswap`]: the protocol over libp2p, between allow-listed peers only.
//! - [`ContentNode`]: the handle the node and the gRPC service use: put, get, fetch and pin,
//!   replicate, stat, unpin, gc.
//!
//! The gRPC `ContentService` over a [`ContentNode`] is `pmr-rpc`'s.

pub mod bitswap;
mod error;
mod node;
pub mod store;

pub use bitswap::{Limits, NetStats};
pub use error::ContentError;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{
    BlobStream, ContentConfig, ContentNode, PeerSpec, PutResult, Stat, DEFAULT_MAX_RECORD_SIZE,
};
pub use pmr_blob::{parse_cid, BlobError, Cid};
pub use store::{BlockStore, GcReport};
