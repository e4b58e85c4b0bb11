//! An in-memory Bloom filter of every storage key that has ever held a value.
//!
//! Most storage reads of a mint are of fresh slots (the new token's owner, record and version
//! slots) that exist at no height. Without help each would be a RocksDB seek. The filter
//! answers "never written" from memory; a "maybe" goes to RocksDB, so a false positive only
//! costs the seek it would have cost anyway. It is rebuilt at startup by scanning the storage
//! column (one sequential pass) and extended when a block is committed, before the executed
//! head moves, so every reader's height is covered.

use alloy_primitives::map::DefaultHashBuilder;
use alloy_primitives::{Address, U256};
use parking_lot::RwLock;
use std::hash::BuildHasher;

/// Hash functions per key; with 16 bits per key this gives a false positive rate under 0.1%.
const HASHES: u64 = 7;
const BITS_PER_KEY: usize = 16;
const FIRST_CAPACITY: usize = 1 << 16;

struct Part {
    bits: Vec<u64>,
    mask: u64,
    capacity: usize,
    len: usize,
}

impl Part {
    fn with_capacity(capacity: usize) -> Self {
        let bits = (capacity * BITS_PER_KEY).next_power_of_two().max(64);
        Self {
            bits: vec![0; bits / 64],
            mask: bits as u64 - 1,
            capacity,
            len: 0,
        }
    }

    fn positions(&self, h1: u64, h2: u64) -> impl Iterator<Item = u64> + '_ {
        (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    fn insert(&mut self, h1: u64, h2: u64) {
        for p in (0..HASHES).map(|i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.len += 1;
    }

    fn contains(&self, h1: u64, h2: u64) -> bool {
        self.positions(h1, h2)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// A growable Bloom filter of `(address, slot)` keys: a list of filters, each twice the
/// capacity of the one before.
pub(crate) struct KeyFilter {
    hasher: DefaultHashBuilder,
    parts: RwLock<Vec<Part>>,
}

impl KeyFilter {
    pub fn new() -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            parts: RwLock::new(vec![Part::with_capacity(FIRST_CAPACITY)]),
        }
    }

    fn hashes(&self, address: &Address, slot: &U256) -> (u64, u64) {
        let h1 = self.hasher.hash_one((address, slot));
        // An odd second hash visits distinct positions (double hashing).
        let h2 = self.hasher.hash_one((slot, address)) | 1;
        (h1, h2)
    }

    /// `false` means the key was never written.
    pub fn may_contain(&self, address: &Address, slot: &U256) -> bool {
        let (h1, h2) = self.hashes(address, slot);
        self.parts.read().iter().any(|p| p.contains(h1, h2))
    }

    pub fn insert_many<'a>(&self, keys: impl Iterator<Item = (&'a Address, &'a U256)>) {
        let mut parts = self.parts.write();
        for (address, slot) in keys {
            let (h1, h2) = self.hashes(address, slot);
            if parts.iter().any(|p| p.contains(h1, h2)) {
                continue;
            }
            let needs_part = parts.last().is_none_or(|p| p.len >= p.capacity);
            if needs_part {
                let capacity = parts.last().map_or(FIRST_CAPACITY, |p| p.capacity * 2);
                parts.push(Part::with_capacity(capacity));
            }
            if let Some(last) = parts.last_mut() {
                last.insert(h1, h2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_across_growth_and_few_false_positives() {
        let f = KeyFilter::new();
        let a = Address::repeat_byte(1);
        let n = FIRST_CAPACITY * 3;
        let keys: Vec<U256> = (0..n as u64).map(U256::from).collect();
        f.insert_many(keys.iter().map(|s| (&a, s)));
        assert!(f.parts.read().len() >= 2, "the filter grew");
        assert!(keys.iter().all(|s| f.may_contain(&a, s)));
        let b = Address::repeat_byte(2);
        let false_positives = keys.iter().filter(|s| f.may_contain(&b, s)).count();
        assert!(
            false_positives < n / 100,
            "{false_positives} false positives of {n}"
        );
    }
}
