//! CIDs on-chain: the contract keeps a CID as its one-byte codec and 32-byte BLAKE3 digest.

use pmr_blob::ids::{DAG_CBOR, RAW};
use pmr_blob::Cid;
use pmr_primitives::{join_blake3_cid, split_blake3_cid, CID_BYTES};

use crate::PMR;

impl PMR::Cid {
    /// The contract's form of a CID given as bytes: `None` unless it is a CIDv1 with a one-byte
    /// codec and a 32-byte BLAKE3 digest.
    pub fn from_cid_bytes(bytes: &[u8]) -> Option<Self> {
        split_blake3_cid(bytes).map(|(codec, digest)| Self { codec, digest })
    }

    /// The CID's 36 bytes.
    pub fn to_cid_bytes(&self) -> [u8; CID_BYTES] {
        join_blake3_cid(self.codec, &self.digest)
    }
}

/// The CID a PMR event (or view) names, when it is one the content store serves (raw or
/// dag-cbor); otherwise why not.
pub fn event_cid(on_chain: &PMR::Cid) -> Result<Cid, String> {
    let cid = Cid::try_from(&on_chain.to_cid_bytes()[..]).map_err(|e| {
        format!(
            "codec {:#x} and digest do not form a CID: {e}",
            on_chain.codec
        )
    })?;
    if cid.codec() != RAW && cid.codec() != DAG_CBOR {
        return Err(format!(
            "CID {cid} has codec {:#x}, neither raw nor dag-cbor",
            cid.codec()
        ));
    }
    Ok(cid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_blob::ids::block_cid;

    #[test]
    fn cids_round_trip_and_only_raw_or_dag_cbor_are_served() {
        for codec in [RAW, DAG_CBOR] {
            let cid = block_cid(codec, b"x");
            let on_chain = PMR::Cid::from_cid_bytes(&cid.to_bytes()).expect("a blake3 CIDv1");
            assert_eq!(on_chain.to_cid_bytes().to_vec(), cid.to_bytes());
            assert_eq!(event_cid(&on_chain), Ok(cid));
        }
        let dag_pb = PMR::Cid::from_cid_bytes(&block_cid(0x70, b"x").to_bytes()).unwrap();
        assert!(event_cid(&dag_pb)
            .unwrap_err()
            .contains("neither raw nor dag-cbor"));
        assert!(PMR::Cid::from_cid_bytes(b"not a cid").is_none());
    }
}
