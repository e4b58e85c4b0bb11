//! The state changes of one block: every account, storage slot and code whose value after
//! the block differs from before, each list sorted by key. The executor stores them (as
//! storage pages, see `state_db.rs`) and updates the state commitment from them (see
//! `commitment.rs`).

use alloy_primitives::{Address, Bytes, B256, U256};

/// An account as stored: nonce, balance and code hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// Next transaction nonce (for a contract, 1 plus the contracts it created).
    pub nonce: u64,
    /// Balance in wei (PMR moves no value, so it stays zero).
    pub balance: U256,
    /// `keccak256` of the account's code; `keccak256("")` when it has none.
    pub code_hash: B256,
}

impl AccountState {
    pub(crate) const ENCODED_LEN: usize = 72;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.nonce.to_be_bytes());
        out[8..40].copy_from_slice(&self.balance.to_be_bytes::<32>());
        out[40..].copy_from_slice(self.code_hash.as_slice());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[..8]);
        Some(Self {
            nonce: u64::from_be_bytes(nonce),
            balance: U256::from_be_slice(&bytes[8..40]),
            code_hash: B256::from_slice(&bytes[40..]),
        })
    }
}

/// The state changes of one block, each list sorted by key with no key twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// `None`: the account was deleted.
    pub(crate) accounts: Vec<(Address, Option<AccountState>)>,
    pub(crate) storage: Vec<(Address, U256, U256)>,
    pub(crate) codes: Vec<(B256, Bytes)>,
}

impl ChangeSet {
    /// Builds a change set from entries in any order. When a key appears more than once the
    /// last entry wins, as if the entries were applied in order.
    pub fn from_unsorted(
        accounts: Vec<(Address, Option<AccountState>)>,
        storage: Vec<(Address, U256, U256)>,
        codes: Vec<(B256, Bytes)>,
    ) -> Self {
        Self {
            accounts: sort_last_wins(accounts, |e| e.0),
            storage: sort_last_wins(storage, |e| (e.0, e.1)),
            codes: sort_last_wins(codes, |e| e.0),
        }
    }

    /// Builds a change set from accounts and slots already sorted by key with no key twice
    /// (codes in any order).
    pub(crate) fn from_sorted(
        accounts: Vec<(Address, Option<AccountState>)>,
        storage: Vec<(Address, U256, U256)>,
        codes: Vec<(B256, Bytes)>,
    ) -> Self {
        debug_assert!(accounts.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(storage
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        Self {
            accounts,
            storage,
            codes: sort_last_wins(codes, |e| e.0),
        }
    }

    /// Number of changed accounts, slots and codes.
    pub fn len(&self) -> usize {
        self.accounts.len() + self.storage.len() + self.codes.len()
    }

    /// Whether the block changed nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sort_last_wins<T, K: Ord>(mut entries: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    // A stable sort keeps equal keys in input order; keep the last of each run.
    entries.sort_by_key(|e| key(e));
    let mut out: Vec<T> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(prev) if key(prev) == key(&e) => *prev = e,
            _ => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn slot_entries() -> impl Strategy<Value = Vec<(u8, u64, u64)>> {
        proptest::collection::vec((0u8..4, 0u64..50, any::<u64>()), 1..60)
    }

    /// Storage entries `(address byte, slot, value)` and account entries `(address byte, v)`;
    /// an account is deleted when `v % 3 == 0`, otherwise its nonce is `v`.
    fn build_from(storage: &[(u8, u64, u64)], accounts: &[(u8, u64)]) -> ChangeSet {
        let storage = storage
            .iter()
            .map(|(a, s, v)| (Address::repeat_byte(*a), U256::from(*s), U256::from(*v)))
            .collect();
        let accounts = accounts
            .iter()
            .map(|(a, v)| {
                let state = (v % 3 != 0).then_some(AccountState {
                    nonce: *v,
                    balance: U256::ZERO,
                    code_hash: B256::repeat_byte(*a),
                });
                (Address::repeat_byte(*a), state)
            })
            .collect();
        ChangeSet::from_unsorted(accounts, storage, vec![])
    }

    /// A deterministic shuffle from `seed` (xorshift64).
    fn shuffle<T>(items: &mut [T], seed: u64) {
        let mut x = seed | 1;
        for i in (1..items.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            items.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }

    proptest! {
        /// The root does not depend on the order in which changes were collected (as from a
        /// hash map's iteration), only on the final value of each key.
        #[test]
        fn root_is_independent_of_collection_order(entries in slot_entries(), seed in any::<u64>()) {
            // Deduplicate first so "last wins" cannot depend on order: slots by (address,
            // slot), accounts by address (an account is keyed by its address alone).
            let slots: HashMap<(u8, u64), u64> =
                entries.iter().map(|(a, s, v)| ((*a, *s), *v)).collect();
            let accounts: HashMap<u8, u64> = entries.iter().map(|(a, _, v)| (*a, *v)).collect();
            let forward_slots: Vec<_> = slots.iter().map(|((a, s), v)| (*a, *s, *v)).collect();
            let forward_accounts: Vec<_> = accounts.iter().map(|(a, v)| (*a, *v)).collect();
            let mut shuffled_slots = forward_slots.clone();
            let mut shuffled_accounts = forward_accounts.clone();
            shuffle(&mut shuffled_slots, seed);
            shuffle(&mut shuffled_accounts, seed.rotate_left(32));
            let a = build_from(&forward_slots, &forward_accounts);
            let b = build_from(&shuffled_slots, &shuffled_accounts);
            prop_assert_eq!(&a, &b);
            // Lists already in key order (as the executor collects them) give the same set.
            let sorted = ChangeSet::from_sorted(b.accounts.clone(), b.storage.clone(), vec![]);
            prop_assert_eq!(&sorted, &a);
        }
    }

    #[test]
    fn last_entry_wins_and_deletion_differs_from_zeroed_account() {
        let a = Address::repeat_byte(1);
        let c = ChangeSet::from_unsorted(
            vec![],
            vec![
                (a, U256::from(1), U256::from(5)),
                (a, U256::from(1), U256::from(6)),
            ],
            vec![],
        );
        assert_eq!(c.storage, vec![(a, U256::from(1), U256::from(6))]);
        let deleted = ChangeSet::from_unsorted(vec![(a, None)], vec![], vec![]);
        let zeroed = ChangeSet::from_unsorted(
            vec![(
                a,
                Some(AccountState {
                    nonce: 0,
                    balance: U256::ZERO,
                    code_hash: B256::ZERO,
                }),
            )],
            vec![],
            vec![],
        );
        assert_ne!(deleted, zeroed);
        let s = AccountState {
            nonce: 3,
            balance: U256::from(9),
            code_hash: B256::repeat_byte(4),
        };
        assert_eq!(AccountState::decode(&s.encode()), Some(s));
        assert_eq!(AccountState::decode(&[0u8; 3]), None);
    }
}
