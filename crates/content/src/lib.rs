//! Content store of a PMR node: encrypted record blobs, content-addressed with blake3 and
//! replicated between the nodes of the network over bitswap 1.2.0.
//!
//! - [`crypto`]: client-side record encryption (XChaCha20-Poly1305 in 64 KiB segments bound to
//!   their index, the record's salt and an end-of-record flag). Nodes never see plaintext.
//! - [`dag`] and [`manifest`]: a byte stream of any size becomes raw leaves (0x55, ≤ 256 KiB)
//!   under a tree of dag-cbor manifests (0x71); the root CID (CIDv1, blake3 0x1e) names it.
//! - [`store`]: the RocksDB blockstore (`Column::Blobs`, `Column::Pins`), verified on every
//!   read, with pins and garbage collection; it implements `blockstore::Blockstore`.
//! - [`bitswap`]: the protocol over libp2p, between allow-listed peers only.
//! - [`ContentNode`]: the handle the node and the gRPC service use: put, get, fetch and pin,
//!   replicate, stat, unpin, gc.
//! - [`grpc`]: the `pmr.v1.ContentService` over a [`ContentNode`].

pub mod bitswap;
pub mod crypto;
pub mod dag;
mod error;
pub mod grpc;
pub mod ids;
pub mod manifest;
mod node;
pub mod store;

pub use bitswap::{Limits, NetStats};
pub use cid::Cid;
pub use crypto::{
    decrypt_stream, decrypt_to_vec, encrypt_to_vec, CryptoError, DataKey, Decryptor,
    EncryptingReader, Encryptor,
};
pub use error::ContentError;
pub use ids::parse_cid;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{
    BlobStream, ContentConfig, ContentNode, PeerSpec, PutResult, Stat, DEFAULT_MAX_RECORD_SIZE,
};
pub use store::{BlockStore, GcReport};
