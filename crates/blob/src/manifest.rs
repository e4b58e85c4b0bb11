//! Manifest blocks: the dag-cbor (0x71) nodes that list a record's chunks.
//!
//! A manifest is the canonical dag-cbor encoding of
//! `{"v": 1, "size": <bytes under this node>, "links": [[<CID>, <bytes under link>], ...]}`.
//! Links point to raw leaves (0x55) or to child manifests (0x71). Keys are in dag-cbor order
//! (shorter first), integers use their shortest form and CIDs are tag 42 over `0x00 ++ cid`.
//! Decoding re-encodes and compares, so only the canonical form is accepted and a manifest's
//! CID is a function of its content.

use cid::Cid;

use crate::error::BlobError;
use crate::ids::{DAG_CBOR, MAX_BLOCK_SIZE, RAW};

/// Most links in one manifest. 4096 links encode to at most ~210 KB, under the 256 KiB limit.
pub const MAX_LINKS: usize = 4096;

/// One child of a manifest: its CID and the number of record bytes beneath it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// A raw leaf or a child manifest.
    pub cid: Cid,
    /// Record bytes under this link (the leaf's length for a raw leaf).
    pub size: u64,
}

/// A decoded manifest block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Record bytes under this manifest: the sum of its links' sizes.
    pub size: u64,
    /// Children in record order.
    pub links: Vec<Link>,
}

fn put_head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        out.push(m | v as u8);
    } else if v <= u8::MAX as u64 {
        out.push(m | 24);
        out.push(v as u8);
    } else if v <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl Manifest {
    /// Builds a manifest over `links`, summing their sizes.
    pub fn new(links: Vec<Link>) -> Self {
        let size = links.iter().map(|l| l.size).sum();
        Self { size, links }
    }

    /// The canonical dag-cbor encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.links.len() * 52);
        put_head(&mut out, 5, 3);
        put_text(&mut out, "v");
        put_head(&mut out, 0, 1);
        put_text(&mut out, "size");
        put_head(&mut out, 0, self.size);
        put_text(&mut out, "links");
        put_head(&mut out, 4, self.links.len() as u64);
        for link in &self.links {
            put_head(&mut out, 4, 2);
            put_head(&mut out, 6, 42);
            let cid = link.cid.to_bytes();
            put_head(&mut out, 2, cid.len() as u64 + 1);
            out.push(0);
            out.extend_from_slice(&cid);
            put_head(&mut out, 0, link.size);
        }
        out
    }

    /// Decodes and validates a manifest block whose CID is `cid`.
    pub fn decode(cid: &Cid, data: &[u8]) -> Result<Self, BlobError> {
        let bad = |reason: &str| BlobError::BadManifest {
            cid: *cid,
            reason: reason.to_string(),
        };
        if cid.codec() != DAG_CBOR {
            return Err(bad("a manifest CID must use the dag-cbor codec (0x71)"));
        }
        if data.len() > MAX_BLOCK_SIZE {
            return Err(bad("larger than 256 KiB"));
        }
        let mut r = Reader { data, pos: 0 };
        let m = (|| {
            r.expect_head(5, 3)?;
            r.expect_text("v")?;
            if r.head(0)? != 1 {
                return Err("unknown manifest version");
            }
            r.expect_text("size")?;
            let size = r.head(0)?;
            r.expect_text("links")?;
            let n = r.head(4)?;
            if n > MAX_LINKS as u64 {
                return Err("too many links");
            }
            let mut links = Vec::with_capacity(n as usize);
            for _ in 0..n {
                r.expect_head(4, 2)?;
                r.expect_head(6, 42)?;
                let len = r.head(2)? as usize;
                let bytes = r.take(len)?;
                let (&zero, cid_bytes) = bytes.split_first().ok_or("empty CID link")?;
                if zero != 0 {
                    return Err("CID link without the 0x00 multibase prefix");
                }
                let link_cid = Cid::try_from(cid_bytes).map_err(|_| "invalid CID in link")?;
                if link_cid.codec() != RAW && link_cid.codec() != DAG_CBOR {
                    return Err("link codec must be raw (0x55) or dag-cbor (0x71)");
                }
                let lsize = r.head(0)?;
                links.push(Link {
                    cid: link_cid,
                    size: lsize,
                });
            }
            if r.pos != data.len() {
                return Err("trailing bytes");
            }
            let total = links
                .iter()
                .try_fold(0u64, |acc, l| acc.checked_add(l.size))
                .ok_or("link sizes overflow")?;
            if total != size {
                return Err("size is not the sum of the link sizes");
            }
            Ok(Manifest { size, links })
        })()
        .map_err(bad)?;
        if m.encode() != data {
            return Err(bad("not in canonical dag-cbor form"));
        }
        Ok(m)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.data.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }

    fn head(&mut self, major: u8) -> Result<u64, &'static str> {
        let b = *self.take(1)?.first().ok_or("truncated")?;
        if b >> 5 != major {
            return Err("unexpected CBOR type");
        }
        let info = b & 0x1f;
        let v = match info {
            0..=23 => info as u64,
            24 => self.take(1)?[0] as u64,
            25 => u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| "truncated")?) as u64,
            26 => u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| "truncated")?) as u64,
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| "truncated")?),
            _ => return Err("indefinite or reserved CBOR length"),
        };
        Ok(v)
    }

    fn expect_head(&mut self, major: u8, v: u64) -> Result<(), &'static str> {
        if self.head(major)? != v {
            return Err("unexpected CBOR structure");
        }
        Ok(())
    }

    fn expect_text(&mut self, s: &str) -> Result<(), &'static str> {
        let n = self.head(3)? as usize;
        if self.take(n)? != s.as_bytes() {
            return Err("unexpected map key");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::block_cid;
    use proptest::prelude::*;

    fn sample(n: usize) -> Manifest {
        Manifest::new(
            (0..n)
                .map(|i| Link {
                    cid: block_cid(RAW, &i.to_le_bytes()),
                    size: (i as u64 * 7919) % (MAX_BLOCK_SIZE as u64 + 1),
                })
                .collect(),
        )
    }

    #[test]
    fn full_manifest_fits_a_block() {
        let m = Manifest::new(
            (0..MAX_LINKS)
                .map(|i| Link {
                    cid: block_cid(DAG_CBOR, &i.to_le_bytes()),
                    size: u64::MAX / 8192,
                })
                .collect(),
        );
        let enc = m.encode();
        assert!(enc.len() <= MAX_BLOCK_SIZE, "{}", enc.len());
        let cid = block_cid(DAG_CBOR, &enc);
        assert_eq!(Manifest::decode(&cid, &enc).expect("decode"), m);
    }

    #[test]
    fn rejects_wrong_sum_trailing_and_noncanonical() {
        let m = sample(3);
        let cid = block_cid(DAG_CBOR, b"x");
        let mut enc = m.encode();
        enc.push(0);
        assert!(Manifest::decode(&cid, &enc).is_err());
        let wrong = Manifest {
            size: m.size + 1,
            links: m.links.clone(),
        };
        let err = Manifest::decode(&cid, &wrong.encode()).expect_err("sum");
        assert!(err.to_string().contains("sum"), "{err}");
        // Non-minimal integer for the version: 0x18 0x01 instead of 0x01.
        let enc = m.encode();
        let mut nm = enc[..3].to_vec();
        nm.extend_from_slice(&[0x18, 0x01]);
        nm.extend_from_slice(&enc[4..]);
        let err = Manifest::decode(&cid, &nm).expect_err("canonical");
        assert!(err.to_string().contains("canonical"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trip(n in 0usize..64) {
            let m = sample(n);
            let enc = m.encode();
            let cid = block_cid(DAG_CBOR, &enc);
            prop_assert_eq!(Manifest::decode(&cid, &enc).expect("decode"), m);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let cid = block_cid(DAG_CBOR, &data);
            let _ = Manifest::decode(&cid, &data);
        }
    }
}
