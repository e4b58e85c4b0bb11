//! The state a block executes on: committed state at the parent height plus the block's own
//! writes. revm reads through it; the block's journal is applied to it once, when the block
//! ends (genesis commits its one transaction the same way); it then yields the block's
//! [`ChangeSet`] (only keys whose value differs from the parent state).

use std::sync::Arc;

use alloy_primitives::map::HashMap;
use alloy_primitives::{Address, Bytes, B256, KECCAK256_EMPTY, U256};
use parking_lot::RwLock;
use revm::database_interface::DBErrorMarker;
use revm::primitives::AddressMap;
use revm::state::{Account, AccountInfo, Bytecode};
use revm::{Database, DatabaseCommit};

use crate::changeset::{AccountState, ChangeSet};
use crate::state_db::StateReader;
use crate::ExecutionError;

impl DBErrorMarker for ExecutionError {}

/// Analysed code shared by every block (analysis of the PMR contract is not free).
pub(crate) type CodeCache = Arc<RwLock<HashMap<B256, Bytecode>>>;

#[derive(Clone, Copy, Debug)]
struct Versioned<T> {
    original: T,
    current: T,
}

/// Committed state (or nothing, for genesis) plus an overlay of this block's writes.
pub(crate) struct BlockState {
    base: Option<StateReader>,
    code_cache: CodeCache,
    accounts: HashMap<Address, Versioned<Option<AccountState>>>,
    storage: HashMap<(Address, U256), Versioned<U256>>,
    new_codes: Vec<(B256, Bytes)>,
    /// A read that failed while revm committed a transaction (commit cannot return errors).
    failed: Option<ExecutionError>,
}

impl BlockState {
    /// `base = None` starts from an empty state (genesis).
    pub fn new(base: Option<StateReader>, code_cache: CodeCache) -> Self {
        Self {
            base,
            code_cache,
            accounts: HashMap::default(),
            storage: HashMap::default(),
            new_codes: Vec::new(),
            failed: None,
        }
    }

    /// Makes room for `slots` storage slots in the overlay, so a large block does not rehash
    /// it as it grows.
    pub fn reserve_slots(&mut self, slots: usize) {
        self.storage.reserve(slots);
    }

    /// The error of the last commit, if a read during it failed (commits per transaction, as
    /// genesis makes, cannot return errors).
    pub fn take_failure(&mut self) -> Option<ExecutionError> {
        self.failed.take()
    }

    fn account_entry(
        &mut self,
        address: Address,
    ) -> Result<&mut Versioned<Option<AccountState>>, ExecutionError> {
        use alloy_primitives::map::Entry;
        match self.accounts.entry(address) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let original = match &self.base {
                    Some(base) => base.account(&address)?,
                    None => None,
                };
                Ok(e.insert(Versioned {
                    original,
                    current: original,
                }))
            }
        }
    }

    fn slot_entry(
        &mut self,
        address: Address,
        slot: U256,
    ) -> Result<&mut Versioned<U256>, ExecutionError> {
        use alloy_primitives::map::Entry;
        match self.storage.entry((address, slot)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let original = match &self.base {
                    Some(base) => base.storage(&address, &slot)?,
                    None => U256::ZERO,
                };
                Ok(e.insert(Versioned {
                    original,
                    current: original,
                }))
            }
        }
    }

    /// The account as of now in the block.
    pub fn account_now(
        &mut self,
        address: Address,
    ) -> Result<Option<AccountState>, ExecutionError> {
        Ok(self.account_entry(address)?.current)
    }

    /// A storage slot as of now in the block.
    pub fn storage_now(&mut self, address: Address, slot: U256) -> Result<U256, ExecutionError> {
        Ok(self.slot_entry(address, slot)?.current)
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

    /// Notes code that a transaction deployed, unless the base state already holds it.
    fn record_new_code(&mut self, hash: B256, code: &Bytecode) -> Result<(), ExecutionError> {
        if self.new_codes.iter().any(|(h, _)| *h == hash) {
            return Ok(());
        }
        let known = match &self.base {
            Some(base) => base.code(&hash)?.is_some(),
            None => false,
        };
        if !known {
            self.new_codes.push((hash, code.original_bytes()));
        }
        self.code_cache.write().insert(hash, code.clone());
        Ok(())
    }

    /// The block's changes: every account, slot and code whose value differs from the base.
    pub fn into_changes(self) -> ChangeSet {
        let accounts = self
            .accounts
            .into_iter()
            .filter(|(_, v)| v.original != v.current)
            .map(|(a, v)| (a, v.current))
            .collect();
        let storage = self
            .storage
            .into_iter()
            .filter(|(_, v)| v.original != v.current)
            .map(|((a, s), v)| (a, s, v.current))
            .collect();
        // Map keys are distinct, so the cheaper unstable sort gives the same change set.
        ChangeSet::from_distinct(accounts, storage, self.new_codes)
    }

    fn commit_account(&mut self, address: Address, account: Account) -> Result<(), ExecutionError> {
        if !account.is_touched() {
            return Ok(());
        }
        // With one journal per block, revm's self-destructed flag stays set for the rest of the
        // block: an account destroyed and then re-created at the same address (CREATE2) in a
        // later transaction of the block would be dropped here, where a commit per transaction
        // would keep it. Unreachable on PMR chains (transactions cannot create contracts, and
        // the PMR contract has no CREATE, CREATE2 or SELFDESTRUCT); if that ever changes, this
        // needs per-transaction tracking.
        if account.is_selfdestructed() {
            self.account_entry(address)?.current = None;
            // Since Cancun an account is only destroyed in the transaction that created it,
            // so all of its storage is in the overlay.
            for ((a, _), v) in self.storage.iter_mut() {
                if *a == address {
                    v.current = U256::ZERO;
                }
            }
            return Ok(());
        }
        let info = &account.info;
        let state = if info.is_empty() {
            // EIP-161: a touched empty account does not exist.
            None
        } else {
            Some(AccountState {
                nonce: info.nonce,
                balance: info.balance,
                code_hash: info.code_hash,
            })
        };
        let entry = self.account_entry(address)?;
        let old_code_hash = entry.current.map(|a| a.code_hash);
        entry.current = state;
        if let (Some(code), Some(new)) = (&info.code, state) {
            if Some(new.code_hash) != old_code_hash && new.code_hash != KECCAK256_EMPTY {
                self.record_new_code(new.code_hash, code)?;
            }
        }
        // Every slot's present value, not only those revm flags as changed: when a block's
        // transactions share one journal (see `BlockRunner`), revm re-baselines a slot's
        // original value in each transaction that touches it, so a slot written by one
        // transaction and read by a later one no longer looks changed. Unchanged slots are
        // already in the overlay with this value; `into_changes` compares with the base.
        for (slot, value) in account.storage {
            self.slot_entry(address, slot)?.current = value.present_value;
        }
        Ok(())
    }

    /// Applies the state a journal accumulated over a whole block, finalized once.
    pub fn apply_journal(&mut self, state: AddressMap<Account>) -> Result<(), ExecutionError> {
        for (address, account) in state {
            self.commit_account(address, account)?;
        }
        Ok(())
    }
}

impl Database for BlockState {
    type Error = ExecutionError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let Some(state) = self.account_entry(address)?.current else {
            return Ok(None);
        };
        let code = self.load_code(state.code_hash)?;
        let mut info = AccountInfo::default();
        info.nonce = state.nonce;
        info.balance = state.balance;
        info.code_hash = state.code_hash;
        info.code = Some(code);
        Ok(Some(info))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.load_code(code_hash)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage_now(address, index)
    }

    fn block_hash(&mut self, _number: u64) -> Result<B256, Self::Error> {
        // Block hashes belong to consensus, not to execution state; BLOCKHASH reads zero so
        // that every validator computes the same result.
        Ok(B256::ZERO)
    }
}

impl DatabaseCommit for BlockState {
    fn commit(&mut self, changes: AddressMap<Account>) {
        for (address, account) in changes {
            if let Err(e) = self.commit_account(address, account) {
                // Every key revm commits was loaded through this overlay first, so the base
                // reads above only happen for keys revm created fresh; record the failure so
                // the block is refused rather than silently diverging.
                self.failed = Some(e);
            }
        }
    }
}
