//! The form in which the PMR contract takes and stores a CID.
//!
//! The network's content store names every blob with a CIDv1 with a one-byte codec and a
//! 32-byte BLAKE3 multihash, 36 bytes: `0x01 codec 0x1e 0x20 digest`. Only the codec and the
//! digest vary, so the contract takes and keeps only those two (its `Cid` struct).

use alloy_primitives::B256;

/// Length of every CID the contract names.
pub const CID_BYTES: usize = 36;

/// The codec and digest of `bytes`; `None` unless it is a CIDv1 with a one-byte codec (below
/// 0x80) and a 32-byte BLAKE3 digest.
pub fn split_blake3_cid(bytes: &[u8]) -> Option<(u8, B256)> {
    match bytes {
        [0x01, codec, 0x1e, 0x20, digest @ ..] if *codec < 0x80 && digest.len() == 32 => {
            Some((*codec, B256::from_slice(digest)))
        }
        _ => None,
    }
}

/// The 36 bytes of the CID with `codec` and `digest`.
pub fn join_blake3_cid(codec: u8, digest: &B256) -> [u8; CID_BYTES] {
    let mut out = [0u8; CID_BYTES];
    out[..4].copy_from_slice(&[0x01, codec, 0x1e, 0x20]);
    out[4..].copy_from_slice(digest.as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_what_it_joins_and_nothing_else() {
        let digest = B256::repeat_byte(7);
        let bytes = join_blake3_cid(0x71, &digest);
        assert_eq!(bytes[..4], [0x01, 0x71, 0x1e, 0x20]);
        assert_eq!(split_blake3_cid(&bytes), Some((0x71, digest)));
        let sha256 = [&[0x01, 0x55, 0x12, 0x20][..], &[7u8; 32]].concat();
        let cid_v0 = [&[0x12, 0x20][..], &[7u8; 32]].concat();
        let two_byte_codec = [&[0x01, 0x80, 0x01, 0x1e, 0x20][..], &[7u8; 31]].concat();
        for bad in [
            vec![],
            sha256,
            cid_v0,
            two_byte_codec,
            bytes[..35].to_vec(),
            [&bytes[..], &[0u8][..]].concat(),
        ] {
            assert_eq!(split_blake3_cid(&bad), None, "{bad:02x?}");
        }
    }
}
