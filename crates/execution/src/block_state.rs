//! The state a block executes on: committed state at the parent height, read through by revm.
//!
//! A block's transactions share one revm journal (see `BlockRunner`), which holds every account
//! and slot the block touched with its value now; revm asks this database for each one once,
//! the first time the block touches it. So this layer keeps no copy of the block's writes: it
//! only remembers what the block started from, as much as is needed to tell what changed when
//! the block ends ([`BlockState::into_changes`]):
//! - every account read (a block reads a few: the senders, the contract, the proposer);
//! - every storage page (see `state_db.rs`) read that held a non-zero slot. A slot of the
//!   journal whose page is absent here was zero when the block started. Most slots a block
//!   touches are fresh (a mint writes five, in one or two fresh pages), and for those the base
//!   read is answered by the key filter and nothing is recorded.

use std::sync::Arc;

use alloy_primitives::map::HashMap;
use alloy_primitives::{Address, Bytes, B256, KECCAK256_EMPTY, U256};
use parking_lot::RwLock;
use revm::database_interface::DBErrorMarker;
use revm::primitives::AddressMap;
use revm::state::{Account, AccountInfo, Bytecode};
use revm::Database;

use crate::changeset::{AccountState, ChangeSet};
use crate::commitment::StateLattice;
use crate::state_db::{
    changed_pages, index_in_page, lattice_delta, page_of, Page, PageWrite, StateReader,
};
use crate::ExecutionError;

impl DBErrorMarker for ExecutionError {}

/// Analysed code shared by every block (analysis of the PMR contract is not free).
pub(crate) type CodeCache = Arc<RwLock<HashMap<B256, Bytecode>>>;

/// Committed state (or nothing, for genesis) and what the block read of it.
pub(crate) struct BlockState {
    base: Option<StateReader>,
    code_cache: CodeCache,
    /// Every account read, as it was when the block started.
    base_accounts: HashMap<Address, Option<AccountState>>,
    /// Every page read that was not all zeros when the block started.
    nonzero_pages: HashMap<(Address, U256), Page>,
    /// The last page read that was all zeros: a struct's slots are read one after another, and
    /// this answers all but the first without asking the key filter again.
    last_empty_page: Option<(Address, U256)>,
}

impl BlockState {
    /// `base = None` starts from an empty state (genesis).
    pub(crate) fn new(base: Option<StateReader>, code_cache: CodeCache) -> Self {
        Self {
            base,
            code_cache,
            base_accounts: HashMap::default(),
            nonzero_pages: HashMap::default(),
            last_empty_page: None,
        }
    }

    /// An account as of the block's start.
    pub(crate) fn base_account(
        &mut self,
        address: Address,
    ) -> Result<Option<AccountState>, ExecutionError> {
        if let Some(account) = self.base_accounts.get(&address) {
            return Ok(*account);
        }
        let account = match &self.base {
            Some(base) => base.account(&address)?,
            None => None,
        };
        self.base_accounts.insert(address, account);
        Ok(account)
    }

    /// A storage slot as of the block's start.
    pub(crate) fn base_storage(
        &mut self,
        address: Address,
        slot: U256,
    ) -> Result<U256, ExecutionError> {
        let key = (address, page_of(&slot));
        if self.last_empty_page == Some(key) {
            return Ok(U256::ZERO);
        }
        if let Some(page) = self.nonzero_pages.get(&key) {
            return Ok(page.0[index_in_page(&slot)]);
        }
        let page = match &self.base {
            Some(base) => base.page(&key.0, &key.1)?,
            None => None,
        };
        Ok(match page {
            Some(page) => {
                self.nonzero_pages.insert(key, page);
                page.0[index_in_page(&slot)]
            }
            None => {
                self.last_empty_page = Some(key);
                U256::ZERO
            }
        })
    }

    /// The page starting at slot `page` as the block found it (`None`: all zeros). Every slot
    /// revm holds was read through [`BlockState::base_storage`] first, which recorded its page
    /// unless the page was all zeros.
    fn original_page(&self, address: &Address, page: &U256) -> Option<&Page> {
        self.nonzero_pages.get(&(*address, *page))
    }

    fn original_slot(&self, address: Address, slot: U256) -> U256 {
        self.original_page(&address, &page_of(&slot))
            .map_or(U256::ZERO, |p| p.0[index_in_page(&slot)])
    }

    fn load_code(&mut self, hash: B256) -> Result<Bytecode, ExecutionError> {
        if hash == KECCAK256_EMPTY || hash == B256::ZERO {
            return Ok(Bytecode::default());
        }
        if let Some(code) = self.code_cache.read().get(&hash) {
            return Ok(code.clone());
        }
        let raw = match &self.base {
            Some(base) => base.code(&hash)?,
            None => None,
        };
        let raw = raw.ok_or_else(|| ExecutionError::Corrupt(format!("code {hash} is missing")))?;
        let code = Bytecode::new_raw(raw);
        self.code_cache.write().insert(hash, code.clone());
        Ok(code)
    }

    /// Code a transaction deployed, unless the base state already holds it.
    fn new_code(
        &mut self,
        hash: B256,
        code: &Bytecode,
    ) -> Result<Option<(B256, Bytes)>, ExecutionError> {
        let known = match &self.base {
            Some(base) => base.code(&hash)?.is_some(),
            None => false,
        };
        self.code_cache.write().insert(hash, code.clone());
        Ok((!known).then(|| (hash, code.original_bytes())))
    }

    /// The block's changes from the state its journal accumulated (finalized once, when the
    /// block ends): every account, slot and code whose value differs from the block's start,
    /// the storage pages they leave, and what they change in the state lattice.
    pub(crate) fn into_changes(
        mut self,
        journal: AddressMap<Account>,
    ) -> Result<(ChangeSet, Vec<PageWrite>, StateLattice), ExecutionError> {
        let mut touched: Vec<(Address, Account)> = journal
            .into_iter()
            .filter(|(_, account)| account.is_touched())
            .collect();
        touched.sort_unstable_by_key(|(address, _)| *address);
        let mut accounts = Vec::with_capacity(touched.len());
        let mut storage = Vec::with_capacity(touched.iter().map(|(_, a)| a.storage.len()).sum());
        let mut codes = Vec::new();
        for (address, account) in touched {
            let original = self.base_account(address)?;
            let first_slot = storage.len();
            // With one journal per block, revm's self-destructed flag stays set for the rest of
            // the block: an account destroyed and then re-created at the same address (CREATE2)
            // in a later transaction of the block would be dropped here, where a commit per
            // transaction would keep it. Unreachable on PMR chains (transactions cannot create
            // contracts, and the PMR contract has no CREATE, CREATE2 or SELFDESTRUCT); if that
            // ever changes, this needs per-transaction tracking.
            let state = if account.is_selfdestructed() {
                // Since Cancun an account is only destroyed in the transaction that created it,
                // so every slot it ever had is in the journal.
                for slot in account.storage.keys() {
                    if !self.original_slot(address, *slot).is_zero() {
                        storage.push((address, *slot, U256::ZERO));
                    }
                }
                None
            } else {
                // Every slot's present value against the block's start, not revm's original
                // value: revm re-baselines a slot's original value in each transaction that
                // touches it, so a slot written by one transaction and read by a later one no
                // longer looks changed to revm.
                for (slot, value) in &account.storage {
                    if value.present_value != self.original_slot(address, *slot) {
                        storage.push((address, *slot, value.present_value));
                    }
                }
                let info = &account.info;
                // EIP-161: a touched empty account does not exist.
                (!info.is_empty()).then_some(AccountState {
                    nonce: info.nonce,
                    balance: info.balance,
                    code_hash: info.code_hash,
                })
            };
            storage[first_slot..].sort_unstable_by_key(|(_, slot, _)| *slot);
            if let (Some(code), Some(new)) = (&account.info.code, state) {
                let old_code_hash = original.map(|a| a.code_hash);
                if Some(new.code_hash) != old_code_hash && new.code_hash != KECCAK256_EMPTY {
                    codes.extend(self.new_code(new.code_hash, code)?);
                }
            }
            if state != original {
                accounts.push((address, state));
            }
        }
        let changes = ChangeSet::from_sorted(accounts, storage, codes);
        let pages = changed_pages(&changes, |address, page| {
            self.original_page(address, page).copied()
        });
        let delta = lattice_delta(
            &changes,
            &pages,
            |address| self.base_accounts.get(address).copied().flatten(),
            |address, page| self.original_page(address, page).copied(),
        );
        Ok((changes, pages, delta))
    }
}

impl Database for BlockState {
    type Error = ExecutionError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let Some(state) = self.base_account(address)? else {
            return Ok(None);
        };
        let code = self.load_code(state.code_hash)?;
        Ok(Some(AccountInfo {
            nonce: state.nonce,
            balance: state.balance,
            code_hash: state.code_hash,
            code: Some(code),
            ..AccountInfo::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.load_code(code_hash)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.base_storage(address, index)
    }

    fn block_hash(&mut self, _number: u64) -> Result<B256, Self::Error> {
        // Block hashes belong to consensus, not to execution state; BLOCKHASH reads zero so
        // that every validator computes the same result.
        Ok(B256::ZERO)
    }
}
