//! A binary Merkle tree over 32-byte leaves with domain-separated hashing.
//!
//! `leaf = blake3_keyed(LEAF_KEY, item)`, `node = blake3_keyed(NODE_KEY, left || right)`, where
//! the two keys are `blake3::derive_key` of [`LEAF_CONTEXT`] and [`NODE_CONTEXT`]; an odd node at
//! the end of a level is promoted unchanged. The root of no leaves is [`B256::ZERO`]. Used for the
//! transactions root and the receipts root of a block header, so a single transaction or receipt
//! can be proved against a header. BLAKE3 rather than keccak: a leaf or a node is one BLAKE3
//! compression (32 or 64 bytes under a key), several times cheaper than a keccak permutation,
//! and a block of thousands of receipts hashes one leaf and about one node per receipt.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// Key-derivation context of the leaf key.
pub(crate) const LEAF_CONTEXT: &str = "pmr merkle leaf v1";
/// Key-derivation context of the inner-node key.
pub(crate) const NODE_CONTEXT: &str = "pmr merkle node v1";

static LEAF_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(LEAF_CONTEXT, b""));
static NODE_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(NODE_CONTEXT, b""));

fn leaf(item: &B256) -> B256 {
    B256::from(*blake3::keyed_hash(&LEAF_KEY, item.as_slice()).as_bytes())
}

fn node(left: &B256, right: &B256) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left.as_slice());
    buf[32..].copy_from_slice(right.as_slice());
    B256::from(*blake3::keyed_hash(&NODE_KEY, &buf).as_bytes())
}

fn next_level(level: &[B256]) -> Vec<B256> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The Merkle root of `items` (each already a 32-byte hash).
pub fn merkle_root(items: &[B256]) -> B256 {
    if items.is_empty() {
        return B256::ZERO;
    }
    let mut level: Vec<B256> = items.iter().map(leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// A proof that one item is at `index` among `count` items under a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the item among them, from 0.
    pub index: u64,
    /// Number of items under the root.
    pub count: u64,
    /// Sibling hashes from the leaf level up; levels where the node had no sibling are skipped.
    pub siblings: Vec<B256>,
}

/// Builds the proof for `items[index]`; `None` when out of range.
pub fn merkle_proof(items: &[B256], index: usize) -> Option<MerkleProof> {
    if index >= items.len() {
        return None;
    }
    let mut level: Vec<B256> = items.iter().map(leaf).collect();
    let mut pos = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        let sib = pos ^ 1;
        if sib < level.len() {
            siblings.push(level[sib]);
        }
        level = next_level(&level);
        pos /= 2;
    }
    Some(MerkleProof {
        index: index as u64,
        count: items.len() as u64,
        siblings,
    })
}

/// Checks that `item` is at `proof.index` under `root`.
pub fn verify_merkle_proof(root: &B256, item: &B256, proof: &MerkleProof) -> bool {
    if proof.index >= proof.count {
        return false;
    }
    let mut acc = leaf(item);
    let mut pos = proof.index;
    let mut width = proof.count;
    let mut siblings = proof.siblings.iter();
    while width > 1 {
        let sib = pos ^ 1;
        if sib < width {
            let Some(s) = siblings.next() else {
                return false;
            };
            acc = if pos.is_multiple_of(2) {
                node(&acc, s)
            } else {
                node(s, &acc)
            };
        }
        pos /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && acc == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use alloy_primitives::keccak256;

    fn items(n: usize) -> Vec<B256> {
        (0..n)
            .map(|i| keccak256((i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(merkle_root(&[]), B256::ZERO);
        let one = items(1);
        assert_eq!(merkle_root(&one), leaf(&one[0]));
        assert_ne!(merkle_root(&one), one[0], "leaves are domain separated");
        // The definition in the module docs, computed independently.
        let leaf_key = blake3::derive_key(LEAF_CONTEXT, b"");
        let node_key = blake3::derive_key(NODE_CONTEXT, b"");
        assert_ne!(leaf_key, node_key);
        let two = items(2);
        let l0 = blake3::keyed_hash(&leaf_key, two[0].as_slice());
        let l1 = blake3::keyed_hash(&leaf_key, two[1].as_slice());
        let joined = [l0.as_bytes().as_slice(), l1.as_bytes().as_slice()].concat();
        let root = blake3::keyed_hash(&node_key, &joined);
        assert_eq!(merkle_root(&two).0, *root.as_bytes());
        // A node is not a leaf of the same bytes.
        assert_ne!(node(&two[0], &two[1]), leaf(&two[0]));
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_tampering_fails(n in 1usize..70, pick in 0usize..70, flip in 0usize..32) {
            let xs = items(n);
            let idx = pick % n;
            let root = merkle_root(&xs);
            let proof = merkle_proof(&xs, idx).unwrap();
            prop_assert!(verify_merkle_proof(&root, &xs[idx], &proof));
            let mut bad = xs[idx];
            bad.0[flip] ^= 1;
            prop_assert!(!verify_merkle_proof(&root, &bad, &proof));
            if n > 1 {
                let other = (idx + 1) % n;
                prop_assert!(!verify_merkle_proof(&root, &xs[other], &proof));
            }
        }
    }
}
