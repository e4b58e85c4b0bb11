//! An in-memory Bloom filter of every storage page (see `state_db.rs`) that has ever been
//! written.
//!
//! Most storage reads of a mint are of fresh slots (the new token's record) in pages that
//! exist at no height. Without help each would be a RocksDB seek. The filter answers "never
//! written" from memory; a "maybe" goes to RocksDB, so a false positive only costs the seek it
//! would have cost anyway. It is rebuilt at startup by scanning the storage
//! column (one sequential pass) and extended when a block is committed, before the executed
//! head moves, so every reader's height is covered.

use alloy_primitives::{Address, U256};
use parking_lot::RwLock;

/// Bits set per key, all in one 64-bit word (a blocked Bloom filter: one memory access per
/// part and lookup). With 16 bits per key this gives a false positive rate of about 0.3%.
const HASHES: u32 = 6;
/// Filter bits per key a part is sized for.
const BITS_PER_KEY: usize = 16;
/// Keys the first part holds (8 MiB of filter); each further part holds [`GROWTH`] times as
/// many as the one before. A lookup of a fresh key (most lookups) probes every part, one cache
/// miss each, so the first part is large enough for a chain's first ~800,000 records.
const FIRST_CAPACITY: usize = 1 << 22;
/// Growing by 4 keeps the parts few (3 parts hold 84 million keys).
const GROWTH: usize = 4;

/// The filter's 64-bit hash of a storage key: each 64-bit word of the address and slot folded
/// in with a 128-bit multiply (as foldhash and wyhash do), then a final avalanche. Mapping
/// slots are keccak outputs already; this has to spread small sequential slots too. Not keyed:
/// a key chosen to collide costs only the RocksDB seek the filter would have saved.
fn key_hash(address: &Address, slot: &U256) -> u64 {
    const K: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9];
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a) * u128::from(b);
        (p as u64) ^ ((p >> 64) as u64)
    }
    let a = address.as_slice();
    let word = |i: usize| u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default());
    let tail = u64::from(u32::from_le_bytes(a[16..20].try_into().unwrap_or_default()));
    let l = slot.as_limbs();
    let mut h = fold(word(0) ^ K[0], word(8) ^ K[1]);
    h = fold(h ^ tail ^ l[0], K[0] ^ l[1]);
    h = fold(h ^ l[2], K[1] ^ l[3]);
    // murmur3's fmix64: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One fixed-size filter; when full, a larger one is added (keys are never removed).
struct Part {
    words: Vec<u64>,
    /// `words.len() - 1` (a power of two minus one).
    mask: u64,
    capacity: usize,
    len: usize,
}

/// The word index and the bits within it of a key whose 64-bit hash is `h`.
fn block(h: u64, mask: u64) -> (usize, u64) {
    // The low bits pick the word; the high 36 bits give six 6-bit bit positions.
    let word = (h & mask) as usize;
    let mut bits = 0u64;
    for i in 0..HASHES {
        bits |= 1 << ((h >> (28 + 6 * i)) & 63);
    }
    (word, bits)
}

impl Part {
    fn with_capacity(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_KEY / 64).next_power_of_two().max(1);
        Self {
            words: vec![0; words],
            mask: words as u64 - 1,
            capacity,
            len: 0,
        }
    }

    fn insert(&mut self, h: u64) {
        let (word, bits) = block(h, self.mask);
        self.words[word] |= bits;
        self.len += 1;
    }

    fn contains(&self, h: u64) -> bool {
        let (word, bits) = block(h, self.mask);
        self.words[word] & bits == bits
    }
}

/// Every storage page key `(address, first slot)` ever committed, as a growing sequence of
/// Bloom filters.
pub(crate) struct KeyFilter {
    parts: RwLock<Vec<Part>>,
}

impl KeyFilter {
    pub(crate) fn new() -> Self {
        Self::with_first_capacity(FIRST_CAPACITY)
    }

    fn with_first_capacity(capacity: usize) -> Self {
        Self {
            parts: RwLock::new(vec![Part::with_capacity(capacity)]),
        }
    }

    /// `false` means `(address, slot)` was never inserted.
    pub(crate) fn may_contain(&self, address: &Address, slot: &U256) -> bool {
        let h = key_hash(address, slot);
        // The newest part is the largest and the likeliest to hold a recent key.
        self.parts.read().iter().rev().any(|p| p.contains(h))
    }

    /// Adds keys (those already present are skipped, so parts fill with distinct keys).
    pub(crate) fn insert_many<'a>(&self, keys: impl Iterator<Item = (&'a Address, &'a U256)>) {
        let hashes: Vec<u64> = keys.map(|(a, s)| key_hash(a, s)).collect();
        let mut parts = self.parts.write();
        for h in hashes {
            if parts.iter().rev().any(|p| p.contains(h)) {
                continue;
            }
            let needs_part = parts.last().is_none_or(|p| p.len >= p.capacity);
            if needs_part {
                let capacity = parts.last().map_or(FIRST_CAPACITY, |p| p.capacity * GROWTH);
                parts.push(Part::with_capacity(capacity));
            }
            if let Some(last) = parts.last_mut() {
                last.insert(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_across_growth_and_few_false_positives() {
        let first = 1 << 16;
        let f = KeyFilter::with_first_capacity(first);
        let a = Address::repeat_byte(1);
        let n = first * 3;
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
