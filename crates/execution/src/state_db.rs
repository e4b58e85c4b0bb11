//! Execution state in RocksDB, versioned by height so any committed height can be read.
//!
//! | column   | key                                       | value                               |
//! |----------|-------------------------------------------|-------------------------------------|
//! | Accounts | address ‖ be64(u64::MAX − height)          | [`AccountState`] (72 bytes) or empty when deleted |
//! | Storage  | address ‖ be256(slot) ‖ be64(u64::MAX − height) | be256(value)                  |
//! | Code     | code hash                                 | code bytes                          |
//! | Receipts | be64(height)                              | RLP list of receipts                |
//! | Meta     | `execution/head`                          | be64(height) ‖ state root           |
//! | Meta     | `execution/block/` ‖ be64(height)         | state root ‖ be64(timestamp ms)     |
//!
//! A version is written only at the heights where the value changed. Reading key `k` at height
//! `h` seeks to `k ‖ be64(u64::MAX − h)`: the first key found with the same prefix is the latest
//! version at or below `h` (inverted heights sort newest first).

use alloy_primitives::{Address, Bytes, B256, U256};
use pmr_storage::{Batch, Column, Store};

use std::sync::Arc;

use crate::changeset::{AccountState, ChangeSet};
use crate::key_filter::KeyFilter;
use crate::receipt::{decode_receipts, Receipt};
use crate::ExecutionError;

const HEAD_KEY: &[u8] = b"execution/head";
const BLOCK_PREFIX: &[u8] = b"execution/block/";

fn inverted(height: u64) -> [u8; 8] {
    (u64::MAX - height).to_be_bytes()
}

const ACCOUNT_KEY_LEN: usize = 20 + 8;
const STORAGE_KEY_LEN: usize = 20 + 32 + 8;

fn account_key(address: &Address, height: u64) -> [u8; ACCOUNT_KEY_LEN] {
    let mut k = [0u8; ACCOUNT_KEY_LEN];
    k[..20].copy_from_slice(address.as_slice());
    k[20..].copy_from_slice(&inverted(height));
    k
}

fn storage_key(address: &Address, slot: &U256, height: u64) -> [u8; STORAGE_KEY_LEN] {
    let mut k = [0u8; STORAGE_KEY_LEN];
    k[..20].copy_from_slice(address.as_slice());
    k[20..52].copy_from_slice(&slot.to_be_bytes::<32>());
    k[52..].copy_from_slice(&inverted(height));
    k
}

fn block_key(height: u64) -> Vec<u8> {
    let mut k = BLOCK_PREFIX.to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

/// The executed head: the last height whose state is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub height: u64,
    pub state_root: B256,
}

/// Per-height facts kept for queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockInfo {
    pub state_root: B256,
    pub timestamp_ms: u64,
}

/// Read access to committed state as of one height.
#[derive(Clone)]
pub(crate) struct StateReader {
    store: Store,
    height: u64,
    filter: Option<Arc<KeyFilter>>,
}

impl StateReader {
    /// A reader without a key filter (the executor always passes one).
    #[cfg(test)]
    pub fn new(store: Store, height: u64) -> Self {
        Self {
            store,
            height,
            filter: None,
        }
    }

    /// A reader that skips the database for storage keys `filter` knows were never written.
    /// `filter` must hold every storage key committed at or below `height`.
    pub fn with_filter(store: Store, height: u64, filter: Arc<KeyFilter>) -> Self {
        Self {
            store,
            height,
            filter: Some(filter),
        }
    }

    /// The newest version of `prefix` at or below the reader's height.
    fn seek(
        &self,
        column: Column,
        seek_key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<Vec<u8>>, ExecutionError> {
        let mut found = None;
        self.store.for_each_from(column, seek_key, |k, v| {
            if k.len() == seek_key.len() && k[..prefix_len] == seek_key[..prefix_len] {
                found = Some(v.to_vec());
            }
            false
        })?;
        Ok(found)
    }

    pub fn account(&self, address: &Address) -> Result<Option<AccountState>, ExecutionError> {
        let key = account_key(address, self.height);
        match self.seek(Column::Accounts, &key, 20)? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => AccountState::decode(&v).map(Some).ok_or_else(|| {
                ExecutionError::Corrupt(format!("account {address} has a {}-byte record", v.len()))
            }),
        }
    }

    pub fn storage(&self, address: &Address, slot: &U256) -> Result<U256, ExecutionError> {
        if let Some(filter) = &self.filter {
            if !filter.may_contain(address, slot) {
                return Ok(U256::ZERO);
            }
        }
        let key = storage_key(address, slot, self.height);
        match self.seek(Column::Storage, &key, 52)? {
            None => Ok(U256::ZERO),
            Some(v) if v.len() == 32 => Ok(U256::from_be_slice(&v)),
            Some(v) => Err(ExecutionError::Corrupt(format!(
                "storage slot {slot} of {address} has a {}-byte value",
                v.len()
            ))),
        }
    }

    pub fn code(&self, hash: &B256) -> Result<Option<Bytes>, ExecutionError> {
        Ok(self
            .store
            .get(Column::Code, hash.as_slice())?
            .map(Bytes::from))
    }
}

/// About how many bytes [`write_block`] adds to a write batch: each put costs its key, its
/// value and a few bytes of framing; the two meta records are under 256 bytes.
pub(crate) fn block_batch_bytes(changes: &ChangeSet, receipts_len: usize) -> usize {
    const FRAMING: usize = 8;
    let accounts = changes.accounts.len() * (ACCOUNT_KEY_LEN + AccountState::ENCODED_LEN + FRAMING);
    let storage = changes.storage.len() * (STORAGE_KEY_LEN + 32 + FRAMING);
    let codes: usize = changes
        .codes
        .iter()
        .map(|(_, code)| 32 + code.len() + FRAMING)
        .sum();
    accounts + storage + codes + receipts_len + 256
}

/// Stages a block's changes, receipts and the new head into `batch`.
pub(crate) fn write_block(
    batch: &mut Batch<'_>,
    height: u64,
    timestamp_ms: u64,
    state_root: B256,
    changes: &ChangeSet,
    receipts: Option<&[u8]>,
) {
    for (address, account) in &changes.accounts {
        let key = account_key(address, height);
        match account {
            Some(a) => batch.put(Column::Accounts, &key, &a.encode()),
            None => batch.put(Column::Accounts, &key, &[]),
        }
    }
    for (address, slot, value) in &changes.storage {
        batch.put(
            Column::Storage,
            &storage_key(address, slot, height),
            &value.to_be_bytes::<32>(),
        );
    }
    for (hash, code) in &changes.codes {
        batch.put(Column::Code, hash.as_slice(), code);
    }
    if let Some(receipts) = receipts {
        batch.put(Column::Receipts, &height.to_be_bytes(), receipts);
    }
    let mut info = [0u8; 40];
    info[..32].copy_from_slice(state_root.as_slice());
    info[32..].copy_from_slice(&timestamp_ms.to_be_bytes());
    batch.put(Column::Meta, &block_key(height), &info);
    let mut head = [0u8; 40];
    head[..8].copy_from_slice(&height.to_be_bytes());
    head[8..].copy_from_slice(state_root.as_slice());
    batch.put(Column::Meta, HEAD_KEY, &head);
}

/// Every storage key in the database, for [`KeyFilter`] at startup.
pub(crate) fn load_key_filter(store: &Store) -> Result<KeyFilter, ExecutionError> {
    let filter = KeyFilter::new();
    store.for_each_from(Column::Storage, &[], |k, _| {
        if k.len() == 60 {
            let key = (
                Address::from_slice(&k[..20]),
                U256::from_be_slice(&k[20..52]),
            );
            filter.insert_many(std::iter::once((&key.0, &key.1)));
        }
        true
    })?;
    Ok(filter)
}

pub(crate) fn read_head(store: &Store) -> Result<Option<Head>, ExecutionError> {
    let Some(v) = store.get(Column::Meta, HEAD_KEY)? else {
        return Ok(None);
    };
    if v.len() != 40 {
        return Err(ExecutionError::Corrupt(format!(
            "execution head record is {} bytes",
            v.len()
        )));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&v[..8]);
    Ok(Some(Head {
        height: u64::from_be_bytes(h),
        state_root: B256::from_slice(&v[8..]),
    }))
}

pub(crate) fn read_block_info(
    store: &Store,
    height: u64,
) -> Result<Option<BlockInfo>, ExecutionError> {
    let Some(v) = store.get(Column::Meta, &block_key(height))? else {
        return Ok(None);
    };
    if v.len() != 40 {
        return Err(ExecutionError::Corrupt(format!(
            "block info of height {height} is {} bytes",
            v.len()
        )));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&v[32..]);
    Ok(Some(BlockInfo {
        state_root: B256::from_slice(&v[..32]),
        timestamp_ms: u64::from_be_bytes(t),
    }))
}

pub(crate) fn read_receipts(
    store: &Store,
    height: u64,
) -> Result<Option<Vec<Receipt>>, ExecutionError> {
    let Some(v) = store.get(Column::Receipts, &height.to_be_bytes())? else {
        return Ok(None);
    };
    decode_receipts(&v)
        .map(Some)
        .map_err(|e| ExecutionError::Corrupt(format!("receipts of height {height}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_storage::Durability;

    #[test]
    fn reads_see_the_newest_version_at_or_below_the_height() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        let slot = U256::from(7);
        let acct = |n| {
            Some(AccountState {
                nonce: n,
                balance: U256::ZERO,
                code_hash: B256::ZERO,
            })
        };
        for (h, changes) in [
            (
                1,
                ChangeSet::from_unsorted(
                    vec![(a, acct(1))],
                    vec![(a, slot, U256::from(10))],
                    vec![],
                ),
            ),
            (
                3,
                ChangeSet::from_unsorted(
                    vec![(a, acct(2)), (b, acct(9))],
                    vec![(a, slot, U256::from(30))],
                    vec![],
                ),
            ),
            (
                5,
                ChangeSet::from_unsorted(vec![(a, None)], vec![(a, slot, U256::ZERO)], vec![]),
            ),
        ] {
            let mut batch = store.batch();
            write_block(&mut batch, h, 0, B256::ZERO, &changes, None);
            batch.commit(Durability::Buffered).unwrap();
        }
        let at = |h| StateReader::new(store.clone(), h);
        assert_eq!(at(0).account(&a).unwrap(), None);
        assert_eq!(at(0).storage(&a, &slot).unwrap(), U256::ZERO);
        assert_eq!(at(1).account(&a).unwrap(), acct(1));
        assert_eq!(at(2).storage(&a, &slot).unwrap(), U256::from(10));
        assert_eq!(at(3).storage(&a, &slot).unwrap(), U256::from(30));
        assert_eq!(at(4).account(&a).unwrap(), acct(2));
        assert_eq!(at(5).account(&a).unwrap(), None);
        assert_eq!(at(9).storage(&a, &slot).unwrap(), U256::ZERO);
        // Another address's versions never leak into a read.
        assert_eq!(at(9).account(&b).unwrap(), acct(9));
        assert_eq!(at(2).account(&b).unwrap(), None);
        assert_eq!(at(9).storage(&b, &slot).unwrap(), U256::ZERO);
        assert_eq!(read_head(&store).unwrap().unwrap().height, 5);
    }
}
