//! Content identifiers: CIDv1 with a blake3 multihash, raw leaves and dag-cbor manifests.

use cid::Cid;
use multihash::Multihash;

use crate::error::BlobError;

/// Multicodec of a raw leaf block (a slice of record ciphertext).
pub const RAW: u64 = 0x55;
/// Multicodec of a manifest block (dag-cbor).
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of blake3 with a 32-byte digest.
pub const BLAKE3: u64 = 0x1e;
/// Largest block this crate creates or accepts into a record DAG: 256 KiB.
pub const MAX_BLOCK_SIZE: usize = 256 * 1024;

/// The CIDv1 of `data` under `codec`, hashed with blake3.
pub fn block_cid(codec: u64, data: &[u8]) -> Cid {
    let digest = blake3::hash(data);
    // A 32-byte digest always fits the 64-byte multihash of `Cid`.
    let mh = Multihash::<64>::wrap(BLAKE3, digest.as_bytes()).expect("32-byte digest fits");
    Cid::new_v1(codec, mh)
}

/// Checks that `data` hashes to `cid`. Only blake3 CIDs are accepted.
pub fn verify_block(cid: &Cid, data: &[u8]) -> Result<(), BlobError> {
    if cid.hash().code() != BLAKE3 || cid.hash().size() != 32 {
        return Err(BlobError::UnsupportedCid {
            cid: *cid,
            reason: "only blake3 (0x1e) multihashes with 32-byte digests are supported",
        });
    }
    let digest = blake3::hash(data);
    if digest.as_bytes() != cid.hash().digest() {
        return Err(BlobError::CorruptBlock { cid: *cid });
    }
    Ok(())
}

/// Parses a CID from its string form (`bafk...` / `bafy...`) with a clear error.
pub fn parse_cid(s: &str) -> Result<Cid, BlobError> {
    Cid::try_from(s.trim()).map_err(|e| BlobError::InvalidCid {
        input: s.chars().take(120).collect(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_round_trips_and_verifies() {
        let cid = block_cid(RAW, b"hello");
        assert_eq!(cid.codec(), RAW);
        assert_eq!(cid.hash().code(), BLAKE3);
        verify_block(&cid, b"hello").expect("verifies");
        assert!(matches!(
            verify_block(&cid, b"hellp"),
            Err(BlobError::CorruptBlock { .. })
        ));
        assert_eq!(parse_cid(&cid.to_string()).expect("parse"), cid);
        assert!(parse_cid("not-a-cid").is_err());
    }
}
