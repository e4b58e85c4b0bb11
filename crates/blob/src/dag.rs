//! Streaming chunker: turns a byte stream into raw leaves and a tree of manifests.
//!
//! Bytes are cut into 256 KiB raw blocks. Leaf links collect into a level-0 manifest; a full
//! manifest ([`MAX_LINKS`] links) is written out and linked from the level above, so a record of
//! any size has one root and no block exceeds 256 KiB. Only one chunk and one manifest per level
//! are held in memory. The root is always a manifest, even for an empty record.

use bytes::Bytes;
use cid::Cid;

use crate::error::BlobError;
use crate::ids::{block_cid, DAG_CBOR, MAX_BLOCK_SIZE, RAW};
use crate::manifest::{Link, Manifest, MAX_LINKS};

/// A block: its CID and bytes.
pub type Block = (Cid, Bytes);

/// Builds a record DAG from bytes pushed in any pieces.
#[derive(Debug)]
pub struct DagBuilder {
    chunk: Vec<u8>,
    levels: Vec<Vec<Link>>,
    total: u64,
    limit: u64,
}

impl DagBuilder {
    /// A builder refusing records larger than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            chunk: Vec::with_capacity(MAX_BLOCK_SIZE),
            levels: vec![Vec::new()],
            total: 0,
            limit,
        }
    }

    /// Record bytes pushed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Appends bytes; completed blocks are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Block>) -> Result<(), BlobError> {
        let seen = self.total.saturating_add(data.len() as u64);
        if seen > self.limit {
            return Err(BlobError::TooLarge {
                limit: self.limit,
                seen,
            });
        }
        self.total = seen;
        while !data.is_empty() {
            let room = MAX_BLOCK_SIZE - self.chunk.len();
            let (head, rest) = data.split_at(room.min(data.len()));
            self.chunk.extend_from_slice(head);
            data = rest;
            if self.chunk.len() == MAX_BLOCK_SIZE {
                self.emit_leaf(out);
            }
        }
        Ok(())
    }

    /// Emits the last chunk and the manifests above it; returns the root CID and record size.
    pub fn finish(mut self, out: &mut Vec<Block>) -> (Cid, u64) {
        if !self.chunk.is_empty() {
            self.emit_leaf(out);
        }
        let mut i = 0;
        loop {
            let higher = self.levels.iter().skip(i + 1).any(|l| !l.is_empty());
            if !higher {
                let level = std::mem::take(&mut self.levels[i]);
                if i > 0 && level.len() == 1 {
                    return (level[0].cid, self.total);
                }
                let link = emit_manifest(level, out);
                return (link.cid, self.total);
            }
            if !self.levels[i].is_empty() {
                let level = std::mem::take(&mut self.levels[i]);
                let link = emit_manifest(level, out);
                self.push_link(i + 1, link, out);
            }
            i += 1;
        }
    }

    fn emit_leaf(&mut self, out: &mut Vec<Block>) {
        let data = Bytes::from(std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(MAX_BLOCK_SIZE),
        ));
        let cid = block_cid(RAW, &data);
        let link = Link {
            cid,
            size: data.len() as u64,
        };
        out.push((cid, data));
        self.push_link(0, link, out);
    }

    fn push_link(&mut self, level: usize, link: Link, out: &mut Vec<Block>) {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            let up = emit_manifest(full, out);
            self.push_link(level + 1, up, out);
        }
        self.levels[level].push(link);
    }
}

fn emit_manifest(links: Vec<Link>, out: &mut Vec<Block>) -> Link {
    let m = Manifest::new(links);
    let data = Bytes::from(m.encode());
    let cid = block_cid(DAG_CBOR, &data);
    out.push((cid, data));
    Link { cid, size: m.size }
}

/// Splits a whole in-memory record into blocks (for tests and small records).
pub fn build_dag(data: &[u8], limit: u64) -> Result<(Cid, u64, Vec<Block>), BlobError> {
    let mut b = DagBuilder::new(limit);
    let mut out = Vec::new();
    b.push(data, &mut out)?;
    let (root, size) = b.finish(&mut out);
    Ok((root, size, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reassemble(root: Cid, blocks: &[Block]) -> Vec<u8> {
        let map: HashMap<Cid, Bytes> = blocks.iter().cloned().collect();
        let mut out = Vec::new();
        fn walk(cid: Cid, map: &HashMap<Cid, Bytes>, out: &mut Vec<u8>) {
            let data = &map[&cid];
            if cid.codec() == RAW {
                out.extend_from_slice(data);
            } else {
                let m = Manifest::decode(&cid, data).expect("manifest");
                for l in m.links {
                    walk(l.cid, map, out);
                }
            }
        }
        walk(root, &map, &mut out);
        out
    }

    #[test]
    fn sizes_and_shapes() {
        for len in [
            0usize,
            1,
            MAX_BLOCK_SIZE,
            MAX_BLOCK_SIZE + 1,
            3 * MAX_BLOCK_SIZE + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (root, size, blocks) = build_dag(&data, u64::MAX).expect("build");
            assert_eq!(size, len as u64);
            assert_eq!(root.codec(), DAG_CBOR);
            assert!(blocks.iter().all(|(_, d)| d.len() <= MAX_BLOCK_SIZE));
            assert_eq!(reassemble(root, &blocks), data, "len {len}");
        }
    }

    #[test]
    fn many_leaves_build_a_tree_and_pieces_do_not_matter() {
        // Small fake leaves would need 1 GiB; instead exercise the level logic by pushing
        // MAX_LINKS + 3 one-byte chunks through push_link directly.
        let mut b = DagBuilder::new(u64::MAX);
        let mut out = Vec::new();
        for i in 0..(MAX_LINKS + 3) {
            let cid = block_cid(RAW, &(i as u64).to_le_bytes());
            b.total += 1;
            b.push_link(0, Link { cid, size: 1 }, &mut out);
        }
        let (root, size) = b.finish(&mut out);
        assert_eq!(size, (MAX_LINKS + 3) as u64);
        let map: HashMap<Cid, Bytes> = out.iter().cloned().collect();
        let top = Manifest::decode(&root, &map[&root]).expect("root");
        assert_eq!(top.links.len(), 2);
        assert_eq!(top.size, size);
        assert!(top.links.iter().all(|l| l.cid.codec() == DAG_CBOR));

        let data: Vec<u8> = (0..MAX_BLOCK_SIZE * 2 + 77).map(|i| i as u8).collect();
        let (whole, _, _) = build_dag(&data, u64::MAX).expect("whole");
        let mut b = DagBuilder::new(u64::MAX);
        let mut out = Vec::new();
        for piece in data.chunks(1000) {
            b.push(piece, &mut out).expect("push");
        }
        assert_eq!(b.finish(&mut out).0, whole);
    }

    #[test]
    fn limit_is_enforced() {
        let err = build_dag(&[0u8; 11], 10).expect_err("too large");
        assert!(matches!(
            err,
            BlobError::TooLarge {
                limit: 10,
                seen: 11
            }
        ));
    }
}
