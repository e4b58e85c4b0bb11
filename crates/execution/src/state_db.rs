//! Execution state in RocksDB, versioned by height so any committed height can be read.
//!
//! | column   | key                                       | value                               |
//! |----------|-------------------------------------------|-------------------------------------|
//! | Accounts | address ‖ be64(u64::MAX − height)          | [`AccountState`] (72 bytes) or empty when deleted |
//! | Storage  | address ‖ be256(page) ‖ be64(u64::MAX − height) | [`Page`]: the page's non-zero slots |
//! | Code     | code hash                                 | code bytes                          |
//! | Receipts | be64(height)                              | RLP list of receipts                |
//! | Meta     | `execution/head`                          | be64(height) ‖ state root           |
//! | Meta     | `execution/lattice`                       | the head's [`StateLattice`] (2,048 bytes) |
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
use crate::commitment::{account_entry, code_entry, page_entry, StateLattice};
use crate::key_filter::KeyFilter;
use crate::receipt::{decode_receipts, Receipt};
use crate::ExecutionError;

const HEAD_KEY: &[u8] = b"execution/head";
const LATTICE_KEY: &[u8] = b"execution/lattice";
/// The first height whose state this store holds, when it was started from a snapshot (state
/// sync); absent for a store that executed every block from genesis.
const BASE_KEY: &[u8] = b"execution/base";
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
    pub(crate) const MAX_ENCODED_LEN: usize = 1 + 32 * PAGE_SLOTS;

    /// A mask byte (bit `i` set when slot `i` is not zero), then those slots' values, 32 bytes
    /// each, in slot order. A page of zeros is the one byte `0`: it is written when a block
    /// clears a page's last slot, so that reads at later heights see zeros.
    pub(crate) fn encode(&self, out: &mut [u8; Self::MAX_ENCODED_LEN]) -> usize {
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

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (&mask, mut values) = bytes.split_first()?;
        if values.len() != 32 * mask.count_ones() as usize {
            return None;
        }
        let mut page = Self::default();
        for (i, slot) in page.0.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *slot = U256::from_be_slice(&values[..32]);
                values = &values[32..];
                // Only the canonical encoding: a zero slot is never listed.
                if slot.is_zero() {
                    return None;
                }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub height: u64,
    pub state_root: B256,
    /// The lattice whose root is `state_root`, which the next block updates.
    pub lattice: Arc<StateLattice>,
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
    accounts + storage + codes + receipts_len + 256 + crate::commitment::LATTICE_BYTES + 32
}

/// Stages a block's changes (its storage as the `pages` it leaves, from [`changed_pages`]),
/// receipts and the new head into `batch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_block(
    batch: &mut Batch<'_>,
    height: u64,
    timestamp_ms: u64,
    state_root: B256,
    lattice: &StateLattice,
    changes: &ChangeSet,
    pages: &[PageWrite],
    receipts: Option<&[u8]>,
) {
    for (address, account) in &changes.accounts {
        match account {
            Some(a) => put_account(batch, address, height, a),
            None => batch.put(Column::Accounts, &account_key(address, height), &[]),
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
    put_head(batch, height, timestamp_ms, state_root, lattice);
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
    let height = u64::from_be_bytes(h);
    let state_root = B256::from_slice(&v[8..]);
    let lattice = store
        .get(Column::Meta, LATTICE_KEY)?
        .and_then(|l| StateLattice::from_bytes(&l))
        .ok_or_else(|| {
            ExecutionError::Corrupt(
                "the execution head has no state lattice (written by a version before the \
                 state commitment: re-create this node's data directory)"
                    .into(),
            )
        })?;
    if lattice.root() != state_root {
        return Err(ExecutionError::Corrupt(format!(
            "the stored state lattice gives root {} but the execution head at height {height} \
             records {state_root}",
            lattice.root()
        )));
    }
    Ok(Some(Head {
        height,
        state_root,
        lattice: Arc::new(lattice),
    }))
}

/// What the block changes in the state lattice: for every changed account and page, the
/// element of its value before the block (`before_account`, `before_page`; `None` when it did
/// not exist or held only zeros) taken out and that of its value after put in; every new code
/// put in. Adding the result to the parent's lattice gives the block's.
pub(crate) fn lattice_delta(
    changes: &ChangeSet,
    pages: &[PageWrite],
    mut before_account: impl FnMut(&Address) -> Option<AccountState>,
    mut before_page: impl FnMut(&Address, &U256) -> Option<Page>,
) -> StateLattice {
    let mut delta = StateLattice::empty();
    for (address, after) in &changes.accounts {
        if let Some(before) = before_account(address) {
            delta.remove(&account_entry(address, &before));
        }
        if let Some(after) = after {
            delta.insert(&account_entry(address, after));
        }
    }
    let mut entry =
        Vec::with_capacity(crate::commitment::PAGE_ENTRY_PREFIX_LEN + Page::MAX_ENCODED_LEN);
    let mut encoded = [0u8; Page::MAX_ENCODED_LEN];
    for (address, page, after) in pages {
        let prefix = page_prefix(address, page);
        if let Some(before) = before_page(address, page) {
            let len = before.encode(&mut encoded);
            page_entry(&prefix, &encoded[..len], &mut entry);
            delta.remove(&entry);
        }
        if *after != Page::default() {
            let len = after.encode(&mut encoded);
            page_entry(&prefix, &encoded[..len], &mut entry);
            delta.insert(&entry);
        }
    }
    for (hash, _) in &changes.codes {
        delta.insert(&code_entry(hash));
    }
    delta
}

/// `address ‖ be256(page)`: a storage key without its height.
fn page_prefix(address: &Address, page: &U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(address.as_slice());
    k[20..].copy_from_slice(&page.to_be_bytes::<32>());
    k
}

/// What [`recompute_lattice`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateCounts {
    /// Accounts that exist at the height.
    pub accounts: u64,
    /// Storage pages holding a non-zero slot at the height.
    pub pages: u64,
    /// Contract codes (each checked against its hash).
    pub codes: u64,
}

impl StateCounts {
    /// Entries judged in all.
    pub fn total(&self) -> u64 {
        self.accounts + self.pages + self.codes
    }
}

/// Calls `each(kind, key, value)` for every entry of the state stored at `height`, in key
/// order within each kind: 1, every existing account (`address`, its 72-byte record); 2,
/// every storage page holding a non-zero slot (`address ‖ be256(page)`, its stored
/// encoding); 3, every code (its hash, the code, checked against the hash). For accounts and
/// pages the version in force is the newest at or below `height`. Codes are not versioned
/// (stored once, never deleted): below the head, a code first stored after `height` is
/// listed too, so the lattice of an earlier height is right only if no code came since (PMR
/// chains deploy code at genesis alone). Stops when `each` returns
/// false. Fails on a malformed key or value.
pub(crate) fn for_each_entry(
    store: &Store,
    height: u64,
    mut each: impl FnMut(u8, &[u8], &[u8]) -> bool,
) -> Result<StateCounts, ExecutionError> {
    let mut counts = StateCounts::default();
    let mut error = None;
    let mut go_on = true;
    let mut in_force = VersionInForce::at(height);
    store.for_each_from(Column::Accounts, &[], |k, v| {
        if k.len() != ACCOUNT_KEY_LEN {
            error = Some(format!("an account key of {} bytes", k.len()));
            return false;
        }
        if !in_force.admits(k, 20) {
            return true;
        }
        if v.is_empty() {
            return true;
        }
        if AccountState::decode(v).is_none() {
            let address = Address::from_slice(&k[..20]);
            error = Some(format!("account {address} has a {}-byte record", v.len()));
            return false;
        }
        counts.accounts += 1;
        go_on = each(1, &k[..20], v);
        go_on
    })?;
    let mut in_force = VersionInForce::at(height);
    if error.is_none() && go_on {
        store.for_each_from(Column::Storage, &[], |k, v| {
            if k.len() != STORAGE_KEY_LEN {
                error = Some(format!("a storage key of {} bytes", k.len()));
                return false;
            }
            if !in_force.admits(k, 52) {
                return true;
            }
            match Page::decode(v) {
                Some(p) if p == Page::default() => true,
                Some(_) => {
                    counts.pages += 1;
                    go_on = each(2, &k[..52], v);
                    go_on
                }
                None => {
                    error = Some(format!(
                        "storage page {} of {} has a malformed {}-byte value",
                        U256::from_be_slice(&k[20..52]),
                        Address::from_slice(&k[..20]),
                        v.len()
                    ));
                    false
                }
            }
        })?;
    }
    if error.is_none() && go_on {
        store.for_each_from(Column::Code, &[], |k, v| {
            let hash = alloy_primitives::keccak256(v);
            if k != hash.as_slice() {
                error = Some(format!(
                    "code stored under {} hashes to {hash}",
                    alloy_primitives::hex::encode(k)
                ));
                return false;
            }
            counts.codes += 1;
            each(3, k, v)
        })?;
    }
    match error {
        Some(e) => Err(ExecutionError::Corrupt(e)),
        None => Ok(counts),
    }
}

/// Picks, from versioned keys (`prefix ‖ be64(u64::MAX − height)`) visited in key order, the
/// version in force at one height of each prefix. The versions of a prefix are consecutive,
/// newest first: the first at or below the height is in force; the rest are skipped until the
/// prefix changes.
struct VersionInForce {
    wanted: [u8; 8],
    last: Vec<u8>,
}

impl VersionInForce {
    fn at(height: u64) -> Self {
        Self {
            wanted: inverted(height),
            last: Vec::new(),
        }
    }

    /// Whether `key`, whose prefix is its first `prefix_len` bytes, is the version in force.
    fn admits(&mut self, key: &[u8], prefix_len: usize) -> bool {
        let (prefix, version) = key.split_at(prefix_len);
        if version < &self.wanted[..] || self.last.as_slice() == prefix {
            return false;
        }
        self.last.clear();
        self.last.extend_from_slice(prefix);
        true
    }
}

/// The lattice of the state stored at `height`, recomputed from every entry on disk (see
/// [`for_each_entry`]): a pass over the whole state.
pub(crate) fn recompute_lattice(
    store: &Store,
    height: u64,
) -> Result<(StateLattice, StateCounts), ExecutionError> {
    let mut lattice = StateLattice::empty();
    let mut scratch = Vec::new();
    let counts = for_each_entry(store, height, |kind, key, value| {
        insert_entry(&mut lattice, kind, key, value, &mut scratch);
        true
    })?;
    Ok((lattice, counts))
}

/// Adds an entry as [`for_each_entry`] gives it (already checked) to `lattice`; `scratch`
/// is reused between calls.
pub(crate) fn insert_entry(
    lattice: &mut StateLattice,
    kind: u8,
    key: &[u8],
    value: &[u8],
    scratch: &mut Vec<u8>,
) {
    match kind {
        1 => {
            if let Some(a) = AccountState::decode(value) {
                lattice.insert(&account_entry(&Address::from_slice(key), &a));
            }
        }
        2 => {
            let mut prefix = [0u8; 52];
            prefix.copy_from_slice(key);
            page_entry(&prefix, value, scratch);
            lattice.insert(scratch);
        }
        _ => lattice.insert(&code_entry(&B256::from_slice(key))),
    }
}

/// Whether `store` holds no account, storage page or code at all.
pub(crate) fn holds_no_state(store: &Store) -> Result<bool, ExecutionError> {
    for column in [Column::Accounts, Column::Storage, Column::Code] {
        if store.last(column)?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stages `account` as the version of `address` at `height`.
pub(crate) fn put_account(
    batch: &mut Batch<'_>,
    address: &Address,
    height: u64,
    account: &AccountState,
) {
    batch.put(
        Column::Accounts,
        &account_key(address, height),
        &account.encode(),
    );
}

/// Stages a page's stored encoding as its version at `height`; `prefix` is `address ‖
/// be256(page)`.
pub(crate) fn put_page(batch: &mut Batch<'_>, prefix: &[u8; 52], height: u64, encoded: &[u8]) {
    let mut key = [0u8; STORAGE_KEY_LEN];
    key[..52].copy_from_slice(prefix);
    key[52..].copy_from_slice(&inverted(height));
    batch.put(Column::Storage, &key, encoded);
}

/// Stages the record of `height`: its state root and time.
pub(crate) fn put_block_info(
    batch: &mut Batch<'_>,
    height: u64,
    state_root: B256,
    timestamp_ms: u64,
) {
    let mut info = [0u8; 40];
    info[..32].copy_from_slice(state_root.as_slice());
    info[32..].copy_from_slice(&timestamp_ms.to_be_bytes());
    batch.put(Column::Meta, &block_key(height), &info);
}

/// Stages the first height whose state the store holds (a snapshot's).
pub(crate) fn put_base(batch: &mut Batch<'_>, height: u64) {
    batch.put(Column::Meta, BASE_KEY, &height.to_be_bytes());
}

/// The first height whose state the store holds: 0 unless it was started from a snapshot.
pub(crate) fn read_base(store: &Store) -> Result<u64, ExecutionError> {
    match store.get(Column::Meta, BASE_KEY)? {
        None => Ok(0),
        Some(v) => v
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| ExecutionError::Corrupt("the state's base height is not 8 bytes".into())),
    }
}

/// Stages the executed head, its lattice and its block record (state root, time).
pub(crate) fn put_head(
    batch: &mut Batch<'_>,
    height: u64,
    timestamp_ms: u64,
    state_root: B256,
    lattice: &StateLattice,
) {
    put_block_info(batch, height, state_root, timestamp_ms);
    let mut head = [0u8; 40];
    head[..8].copy_from_slice(&height.to_be_bytes());
    head[8..].copy_from_slice(state_root.as_slice());
    batch.put(Column::Meta, HEAD_KEY, &head);
    batch.put(Column::Meta, LATTICE_KEY, &lattice.to_bytes());
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
    /// Commits `changes` at `height`, updating the parent's lattice (recomputed from disk) by
    /// the block's delta, and checks that the result is what a recomputation from disk gives
    /// at the new height: the incremental commitment and the stored state agree.
    fn commit(store: &Store, height: u64, changes: &ChangeSet) {
        let before = StateReader::new(store.clone(), height - 1);
        let pages = changed_pages(changes, |a, p| before.page(a, p).unwrap());
        let (mut lattice, _) = recompute_lattice(store, height - 1).unwrap();
        lattice.add(&lattice_delta(
            changes,
            &pages,
            |a| before.account(a).unwrap(),
            |a, p| before.page(a, p).unwrap(),
        ));
        let mut batch = store.batch();
        let root = lattice.root();
        write_block(&mut batch, height, 0, root, &lattice, changes, &pages, None);
        batch.commit(Durability::Buffered).unwrap();
        let (recomputed, counts) = recompute_lattice(store, height).unwrap();
        assert_eq!(recomputed, lattice, "height {height}");
        assert_eq!(read_head(store).unwrap().unwrap().state_root, root);
        // The earlier height is still readable as it was.
        let (earlier, _) = recompute_lattice(store, height - 1).unwrap();
        assert_ne!(
            earlier.root(),
            root,
            "height {height} changed nothing ({counts:?})"
        );
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
        // A zero slot listed in the mask is not the canonical encoding.
        let mut zero_listed = vec![0b1];
        zero_listed.extend_from_slice(&[0u8; 32]);
        assert_eq!(Page::decode(&zero_listed), None);
    }
}
