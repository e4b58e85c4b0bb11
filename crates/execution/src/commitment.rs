//! The state commitment: a lattice hash of every entry of the stored state.
//!
//! # What the root is
//!
//! ```text
//! element(e)    = BLAKE3-XOF_k(e)[0..2048] read as 1,024 little-endian u16 lanes
//! lattice(S)    = Σ element(e) over every entry e of the state S   (lane-wise, mod 2^16)
//! state_root(S) = BLAKE3_k'(lattice(S) as 2,048 little-endian bytes)
//! ```
//!
//! `k` and `k'` are fixed keys derived from this module's contexts. The entries of a state are
//! what the node stores (see `state_db.rs`), each as of the height it describes:
//! - every existing account: `0x01 ‖ address ‖ be64(nonce) ‖ be256(balance) ‖ code_hash`;
//! - every storage page that holds a non-zero slot: `0x02 ‖ address ‖ be256(first slot) ‖
//!   mask ‖ the non-zero slots` (the page's stored encoding);
//! - every contract code: `0x03 ‖ code_hash` (the code itself is checked against its
//!   keccak when the state is verified).
//!
//! This is the lattice hash ("LtHash") of Bellare and Micciancio as Solana uses it for its
//! accounts (SIMD-0215), not a Merkle tree. The lattice is a sum, so a block updates it in
//! work proportional to what it changes: subtract the element of each entry's value before
//! the block, add the element of its value after. The root commits to the state alone, not
//! to how it was reached: two validators holding the same entries have the same root
//! whatever their histories, and a node can recompute it from its disk (`pmr state verify`)
//! or from a snapshot, entry by entry, in any order.
//!
//! What it proves: that a whole set of entries is the state a header names (finding a
//! different set with the same lattice is as hard as the short-integer-solution problem for
//! these parameters: 1,024 lanes of 16 bits, the size Solana chose for 2^128 security). What
//! it cannot prove: one entry on its own. There is no path from an entry to the root; a light
//! client must fetch the whole state to check any of it. Keeping per-entry proofs would need
//! a Merkle tree (for example a Jellyfish Merkle tree) and its ~log(n) hashes and writes per
//! changed entry; none of PMR's readers needs them (clients read through their own node,
//! audits use receipt proofs).

use alloy_primitives::{Address, B256};

use crate::changeset::AccountState;

/// Lanes of the lattice.
pub(crate) const LANES: usize = 1024;
/// Bytes of a lattice (and of one element).
pub(crate) const LATTICE_BYTES: usize = LANES * 2;

const ELEMENT_CONTEXT: &str = "PMR Ledger 2026-12 state lattice element";
const ROOT_CONTEXT: &str = "PMR Ledger 2026-12 state lattice root";

fn element_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(ELEMENT_CONTEXT, &[]))
}

fn root_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(ROOT_CONTEXT, &[]))
}

/// The lattice hash of a set of state entries (see the module's documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct StateLattice(Box<[u16; LANES]>);

impl std::fmt::Debug for StateLattice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateLattice(root {})", self.root())
    }
}

impl Default for StateLattice {
    fn default() -> Self {
        Self::empty()
    }
}

impl StateLattice {
    /// The lattice of the empty state (every lane zero).
    pub fn empty() -> Self {
        Self(Box::new([0u16; LANES]))
    }

    /// Adds `entry` to the set.
    pub fn insert(&mut self, entry: &[u8]) {
        let element = element(entry);
        for (lane, e) in self.0.iter_mut().zip(element.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([e[0], e[1]]));
        }
    }

    /// Takes `entry` out of the set. Taking out an entry that was never added leaves a lattice
    /// no set of entries is known to give: that is how a corrupted stored value shows.
    pub fn remove(&mut self, entry: &[u8]) {
        let element = element(entry);
        for (lane, e) in self.0.iter_mut().zip(element.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([e[0], e[1]]));
        }
    }

    /// Adds every entry of `other` (the union of two disjoint sets).
    pub fn add(&mut self, other: &StateLattice) {
        for (lane, o) in self.0.iter_mut().zip(other.0.iter()) {
            *lane = lane.wrapping_add(*o);
        }
    }

    /// The state root: a 32-byte hash of the lattice.
    pub fn root(&self) -> B256 {
        B256::from(*blake3::keyed_hash(root_key(), &self.to_bytes()).as_bytes())
    }

    /// The lanes as 2,048 little-endian bytes.
    pub fn to_bytes(&self) -> [u8; LATTICE_BYTES] {
        let mut out = [0u8; LATTICE_BYTES];
        for (o, lane) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            o.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }

    /// Inverse of [`StateLattice::to_bytes`]; `None` unless `bytes` is 2,048 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LATTICE_BYTES {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, b) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
        Some(Self(lanes))
    }
}

/// The 2,048-byte element of one entry.
fn element(entry: &[u8]) -> [u8; LATTICE_BYTES] {
    let mut out = [0u8; LATTICE_BYTES];
    blake3::Hasher::new_keyed(element_key())
        .update(entry)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// `0x01 ‖ address ‖ account`.
pub(crate) const ACCOUNT_ENTRY_LEN: usize = 1 + 20 + AccountState::ENCODED_LEN;

/// The entry of an existing account.
pub(crate) fn account_entry(address: &Address, account: &AccountState) -> [u8; ACCOUNT_ENTRY_LEN] {
    let mut out = [0u8; ACCOUNT_ENTRY_LEN];
    out[0] = 1;
    out[1..21].copy_from_slice(address.as_slice());
    out[21..].copy_from_slice(&account.encode());
    out
}

/// `0x02 ‖ address ‖ be256(page)`, followed by the page's encoding.
pub(crate) const PAGE_ENTRY_PREFIX_LEN: usize = 1 + 20 + 32;

/// The entry of a storage page from its stored key prefix (`address ‖ be256(page)`) and
/// encoding, written to `out`; returns its length.
pub(crate) fn page_entry(key_prefix: &[u8; 52], encoded: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    out.push(2);
    out.extend_from_slice(key_prefix);
    out.extend_from_slice(encoded);
    out.len()
}

/// The entry of a contract code, by its hash.
pub(crate) fn code_entry(code_hash: &B256) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = 3;
    out[1..].copy_from_slice(code_hash.as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The lattice of a set does not depend on the order its entries were added in, and
        /// removing an entry undoes adding it.
        #[test]
        fn order_free_and_removable(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..20), seed in any::<u64>()) {
            let mut forward = StateLattice::empty();
            for e in &entries {
                forward.insert(e);
            }
            let mut shuffled = entries.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut backward = StateLattice::empty();
            for e in &shuffled {
                backward.insert(e);
            }
            prop_assert_eq!(&forward, &backward);
            prop_assert_eq!(forward.root(), backward.root());
            // Take the first entry out: the lattice is that of the rest.
            let mut rest = StateLattice::empty();
            for e in &entries[1..] {
                rest.insert(e);
            }
            let mut removed = forward.clone();
            removed.remove(&entries[0]);
            prop_assert_eq!(&removed, &rest);
            // Union by addition.
            let mut first = StateLattice::empty();
            first.insert(&entries[0]);
            let mut sum = rest.clone();
            sum.add(&first);
            prop_assert_eq!(&sum, &forward);
        }

        /// One changed byte in one entry changes the root.
        #[test]
        fn one_byte_changes_the_root(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..80), 1..20), pick in any::<usize>(), flip in 1u8..) {
            let mut a = StateLattice::empty();
            let mut b = StateLattice::empty();
            let i = pick % entries.len();
            for (n, e) in entries.iter().enumerate() {
                a.insert(e);
                let mut e = e.clone();
                if n == i {
                    let j = pick % e.len();
                    e[j] ^= flip;
                }
                b.insert(&e);
            }
            prop_assert_ne!(a.root(), b.root());
        }
    }

    #[test]
    fn bytes_round_trip_and_wrong_lengths_are_refused() {
        let mut l = StateLattice::empty();
        l.insert(b"one");
        l.insert(b"two");
        assert_eq!(StateLattice::from_bytes(&l.to_bytes()), Some(l.clone()));
        assert_eq!(StateLattice::from_bytes(&l.to_bytes()[1..]), None);
        assert_ne!(l.root(), StateLattice::empty().root());
        // The element fills every lane (a truncated XOF would leave zeros at the end).
        let e = element(b"x");
        assert!(e[LATTICE_BYTES - 64..].iter().any(|b| *b != 0));
    }
}
