//! Errors of CIDs, blocks and record DAGs.

use cid::Cid;

/// A CID, block or manifest that is not what it must be.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The string is not a CID.
    #[error("`{input}` is not a valid CID ({reason}); pass the root CID returned by PutBlob")]
    InvalidCid {
        /// The first 120 characters of what was given.
        input: String,
        /// What the CID parser said.
        reason: String,
    },
    /// The CID uses a hash or codec this store does not handle.
    #[error("CID {cid} is not supported: {reason}")]
    UnsupportedCid {
        /// The CID.
        cid: Cid,
        /// Which part is unsupported.
        reason: &'static str,
    },
    /// A block's bytes do not hash to its CID.
    #[error("block {cid} does not match its CID (corrupted on disk or by a peer)")]
    CorruptBlock {
        /// The CID the bytes were expected to hash to.
        cid: Cid,
    },
    /// A record exceeds the configured size limit.
    #[error(
        "record is larger than the limit of {limit} bytes (at least {seen} bytes); raise \
         `max_record_size` in the content config or split the record"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
        /// Bytes seen so far.
        seen: u64,
    },
    /// A manifest block is malformed.
    #[error("manifest block {cid} is malformed: {reason}")]
    BadManifest {
        /// The manifest's CID.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
}
