//! The encrypted, content-addressed form of a PMR record, usable anywhere: no RocksDB, no
//! networking, no I/O beyond the caller's own streams.
//!
//! - [`crypto`]: client-side record encryption (XChaCha20-Poly1305 in 64 KiB segments bound to
//!   their index, the record's salt and an end-of-record flag). Nodes never see plaintext.
//! - [`dag`] and [`manifest`]: a byte stream of any size becomes raw leaves (0x55, ≤ 256 KiB)
//!   under a tree of dag-cbor manifests (0x71); the root CID (CIDv1, blake3 0x1e) names it.
//! - [`ids`]: CIDs, their verification and parsing.
//!
//! The content store (`pmr-content`) stores and moves these blocks; the client SDK
//! (`pmr-client`) encrypts and decrypts with this crate alone.

pub mod crypto;
pub mod dag;
mod error;
pub mod ids;
pub mod manifest;

pub use cid::Cid;
pub use crypto::{
    ciphertext_len, decrypt_stream, decrypt_to_vec, encrypt_to_vec, CryptoError, DataKey,
    Decryptor, EncryptingReader, Encryptor,
};
pub use error::BlobError;
pub use ids::parse_cid;
