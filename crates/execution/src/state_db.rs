//! Execution state in RocksDB, versioned by height so any committed height can be read.
//!
//! | column   | key                                       | value                               |
//! |----------|-------------------------------------------|-------------------------------------|
//! | Accounts | address ‖ be64(u64::MAX − height)          | [`AccountState`] (72 bytes) or empty when deleted |
//! | Storage  | address ‖ be256(page) ‖ be64(u64::MAX − height) | [`Page`]: the page's non-zero slots |
//! | Code     | code hash                                 | code bytes                          |
//! | Receipts | be64(height)                              | RLP list of receipts                |
//! | Meta     | `execution/head`                          | be64(height) ‖ state root           |
//! | Meta     | `execution/block/` ‖ be64(height)         | state root ‖ be64(timestamp ms)     |
//!
//! A version is written only at the heights where the value changed. Reading key `k` at height
//! `h` seeks to `k ‖ be64(u64::MAX − h)`: the first key found with the same prefix is the latest
//! version at or below `h` (inverted heights sort newest first).
//!
//! Storage is kept in pages of [`PAGE_SLOTS`] consecutive slots of one account (`page` is the
//! first slot's number, a multiple of 8), each version holding the whole page. Solidity lays a
//! struct, an array or a string out in consecutive slots, so what one transaction writes
//! together mostly shares a page: a PMR mint's six record words are one or two pages, one or
//! two RocksDB entries and key-filter keys instead of five. A slot alone in its page (a mapping
//! value of one word) costs what it did as its own key, plus one byte.

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

fn storage_key(address: &Address, page: &U256, height: u64) -> [u8; STORAGE_KEY_LEN] {
    let mut k = [0u8; STORAGE_KEY_LEN];
    k[..20].copy_from_slice(address.as_slice());
    k[20..52].copy_from_slice(&page.to_be_bytes::<32>());
    k[52..].copy_from_slice(&inverted(height));
    k
}

/// Slots per storage page.
pub(crate) const PAGE_SLOTS: usize = 8;

/// The page holding `slot`: its first slot.
pub(crate) fn page_of(slot: &U256) -> U256 {
    let mut limbs = *slot.as_limbs();
    limbs[0] &= !(PAGE_SLOTS as u64 - 1);
    U256::from_limbs(limbs)
}

/// Where `slot` is in its page.
pub(crate) fn index_in_page(slot: &U256) -> usize {
    (slot.as_limbs()[0] & (PAGE_SLOTS as u64 - 1)) as usize
}

/// The values of a storage page's slots (zero for a slot never written or cleared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Page(pub [U256; PAGE_SLOTS]);

impl Page {
    /// Largest encoding: the mask byte and every slot.
    const MAX_ENCODED_LEN: usize = 1 + 32 * PAGE_SLOTS;

    /// A mask byte (bit `i` set when slot `i` is not zero), then those slots' values, 32 bytes
    /// each, in slot order. A page of zeros is the one byte `0`: it is written when a block
    /// clears a page's last slot, so that reads at later heights see zeros.
    fn encode(&self, out: &mut [u8; Self::MAX_ENCODED_LEN]) -> usize {
        let mut mask = 0u8;
        let mut len = 1;
        for (i, value) in self.0.iter().enumerate() {
            if !value.is_zero() {
                mask |= 1 << i;
                out[len..len + 32].copy_from_slice(&value.to_be_bytes::<32>());
                len += 32;
            }
        }
        out[0] = mask;
        len
    }

    /// Length of [`Page::encode`]'s output.
    fn encoded_len(&self) -> usize {
        1 + 32 * self.0.iter().filter(|value| !value.is_zero()).count()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&mask, mut values) = bytes.split_first()?;
        if values.len() != 32 * mask.count_ones() as usize {
            return None;
        }
        let mut page = Self::default();
        for (i, slot) in page.0.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *slot = U256::from_be_slice(&values[..32]);
                values = &values[32..];
            }
        }
        Some(page)
    }
}

/// A storage page as a block leaves it: `(address, page, values)`.
pub(crate) type PageWrite = (Address, U256, Page);

/// The pages `changes` leaves behind: every page with a changed slot, whole, from its content
/// before the block (`before`; `None` for a page that held only zeros) and the changed slots.
/// `changes` is sorted by address and slot, so a page's slots are consecutive.
pub(crate) fn changed_pages(
    changes: &ChangeSet,
    mut before: impl FnMut(&Address, &U256) -> Option<Page>,
) -> Vec<PageWrite> {
    let mut pages: Vec<PageWrite> = Vec::new();
    for (address, slot, value) in &changes.storage {
        let page = page_of(slot);
        let same = matches!(pages.last(), Some((a, p, _)) if a == address && *p == page);
        if !same {
            let content = before(address, &page).unwrap_or_default();
            pages.push((*address, page, content));
        }
        if let Some((_, _, content)) = pages.last_mut() {
            content.0[index_in_page(slot)] = *value;
        }
    }
    pages
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
    pub(crate) fn new(store: Store, height: u64) -> Self {
        Self {
            store,
            height,
            filter: None,
        }
    }

    /// A reader that skips the database for storage keys `filter` knows were never written.
    /// `filter` must hold every storage key committed at or below `height`.
    pub(crate) fn with_filter(store: Store, height: u64, filter: Arc<KeyFilter>) -> Self {
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

    pub(crate) fn account(
        &self,
        address: &Address,
    ) -> Result<Option<AccountState>, ExecutionError> {
        let key = account_key(address, self.height);
        match self.seek(Column::Accounts, &key, 20)? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => AccountState::decode(&v).map(Some).ok_or_else(|| {
                ExecutionError::Corrupt(format!("account {address} has a {}-byte record", v.len()))
            }),
        }
    }

    /// The storage page starting at slot `page` (see [`page_of`]); `None` when all its slots are
    /// zero.
    pub(crate) fn page(
        &self,
        address: &Address,
        page: &U256,
    ) -> Result<Option<Page>, ExecutionError> {
        if let Some(filter) = &self.filter {
            if !filter.may_contain(address, page) {
                return Ok(None);
            }
        }
        let key = storage_key(address, page, self.height);
        match self.seek(Column::Storage, &key, 52)? {
            None => Ok(None),
            Some(v) => match Page::decode(&v) {
                Some(p) if p == Page::default() => Ok(None),
                Some(p) => Ok(Some(p)),
                None => Err(ExecutionError::Corrupt(format!(
                    "storage page {page} of {address} has a malformed {}-byte value",
                    v.len()
                ))),
            },
        }
    }

    pub(crate) fn storage(&self, address: &Address, slot: &U256) -> Result<U256, ExecutionError> {
        Ok(self
            .page(address, &page_of(slot))?
            .map_or(U256::ZERO, |p| p.0[index_in_page(slot)]))
    }

    pub(crate) fn code(&self, hash: &B256) -> Result<Option<Bytes>, ExecutionError> {
        Ok(self
            .store
            .get(Column::Code, hash.as_slice())?
            .map(Bytes::from))
    }
}

/// About how many bytes [`write_block`] adds to a write batch: each put costs its key, its
/// value and a few bytes of framing; the two meta records are under 256 bytes.
pub(crate) fn block_batch_bytes(
    changes: &ChangeSet,
    pages: &[PageWrite],
    receipts_len: usize,
) -> usize {
    const FRAMING: usize = 8;
    let accounts = changes.accounts.len() * (ACCOUNT_KEY_LEN + AccountState::ENCODED_LEN + FRAMING);
    let storage: usize = pages
        .iter()
        .map(|(_, _, page)| STORAGE_KEY_LEN + page.encoded_len() + FRAMING)
        .sum();
    let codes: usize = changes
        .codes
        .iter()
        .map(|(_, code)| 32 + code.len() + FRAMING)
        .sum();
    accounts + storage + codes + receipts_len + 256
}

/// Stages a block's changes (its storage as the `pages` it leaves, from [`changed_pages`]),
/// receipts and the new head into `batch`.
pub(crate) fn write_block(
    batch: &mut Batch<'_>,
    height: u64,
    timestamp_ms: u64,
    state_root: B256,
    changes: &ChangeSet,
    pages: &[PageWrite],
    receipts: Option<&[u8]>,
) {
    for (address, account) in &changes.accounts {
        let key = account_key(address, height);
        match account {
            Some(a) => batch.put(Column::Accounts, &key, &a.encode()),
            None => batch.put(Column::Accounts, &key, &[]),
        }
    }
    let mut value = [0u8; Page::MAX_ENCODED_LEN];
    for (address, page, content) in pages {
        let len = content.encode(&mut value);
        batch.put(
            Column::Storage,
            &storage_key(address, page, height),
            &value[..len],
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

/// Every storage page in the database, for [`KeyFilter`] at startup.
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
            commit(&store, h, &changes);
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

    /// Writes `changes` at `height`, pages built on the state at `height - 1` as the executor
    /// does.
    fn commit(store: &Store, height: u64, changes: &ChangeSet) {
        let before = StateReader::new(store.clone(), height - 1);
        let pages = changed_pages(changes, |a, p| before.page(a, p).unwrap());
        let mut batch = store.batch();
        write_block(&mut batch, height, 0, B256::ZERO, changes, &pages, None);
        batch.commit(Durability::Buffered).unwrap();
    }

    #[test]
    fn slots_of_a_page_keep_their_own_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Address::repeat_byte(1);
        // A page of 8 slots from a keccak-like base, and a slot of the next page.
        let base = U256::from_be_bytes([0xab; 32]) & !U256::from(7);
        let slot = |i: u64| base + U256::from(i);
        let v = U256::from;
        let writes: [&[(u64, u64)]; 4] = [
            &[(0, 1), (4, 2), (8, 3)], // height 1: two slots of one page, one of the next
            &[(4, 5)],                 // height 2: one slot of the page changes
            &[(0, 0)],                 // height 3: one is cleared, the other stays
            &[(4, 0)],                 // height 4: the page's last slot is cleared
        ];
        for (h, w) in writes.iter().enumerate() {
            let changes = ChangeSet::from_unsorted(
                vec![],
                w.iter().map(|(i, x)| (a, slot(*i), v(*x))).collect(),
                vec![],
            );
            commit(&store, h as u64 + 1, &changes);
        }
        let read = |h: u64, i: u64| {
            StateReader::new(store.clone(), h)
                .storage(&a, &slot(i))
                .unwrap()
        };
        let table: [(u64, [u64; 4]); 5] = [
            // height: slots 0, 4, 7 (never written, same page), 8
            (0, [0, 0, 0, 0]),
            (1, [1, 2, 0, 3]),
            (2, [1, 5, 0, 3]),
            (3, [0, 5, 0, 3]),
            (4, [0, 0, 0, 3]),
        ];
        for (h, expect) in table {
            let got = [read(h, 0), read(h, 4), read(h, 7), read(h, 8)];
            assert_eq!(got, expect.map(v), "height {h}");
        }
        let at4 = StateReader::new(store.clone(), 4);
        assert_eq!(
            at4.page(&a, &base).unwrap(),
            None,
            "a page of zeros reads as absent"
        );
        assert_eq!(page_of(&slot(5)), base);
        assert_eq!(index_in_page(&slot(5)), 5);
    }

    #[test]
    fn pages_round_trip_and_malformed_ones_are_refused() {
        let mut page = Page::default();
        let mut buf = [0u8; Page::MAX_ENCODED_LEN];
        assert_eq!(page.encode(&mut buf), 1);
        assert_eq!(Page::decode(&buf[..1]), Some(page));
        page.0[1] = U256::from(9);
        page.0[7] = U256::MAX;
        let len = page.encode(&mut buf);
        assert_eq!((len, buf[0]), (65, 0b1000_0010));
        assert_eq!(page.encoded_len(), len);
        assert_eq!(Page::decode(&buf[..len]), Some(page));
        assert_eq!(Page::decode(&buf[..len - 1]), None);
        assert_eq!(Page::decode(&[]), None);
        assert_eq!(Page::decode(&[0b1, 0]), None);
    }
}
