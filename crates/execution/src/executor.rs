//! The executor: genesis, block execution, commit, queries.

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, TxKind, B256, KECCAK256_EMPTY};
use parking_lot::RwLock;
use pmr_primitives::{GasLimits, Genesis, SignedTx};
use pmr_storage::{Batch, Durability, Store};
use revm::context::result::EVMError;
use revm::context::TxEnv;
use revm::ExecuteEvm;

use crate::block_state::{BlockState, CodeCache};
use crate::commitment::StateLattice;
use crate::genesis::genesis_changes;
use crate::key_filter::KeyFilter;
use crate::receipt::{encode_receipts, encode_receipts_with_root, Log};
use crate::runner::{
    admitted_as_owner, build_evm, revm_block_env, static_checks, BlockRunner, Rules,
};
use crate::state_db::{
    changed_pages, lattice_delta, load_key_filter, read_block_info, read_head, read_receipts,
    recompute_lattice, write_block, Head, StateCounts, StateReader,
};
use crate::types::{AccountView, BlockEnv, BuiltBlock, CallOutcome, ExecutedBlock};
use crate::{ExecutionError, Receipt, TxRejection};
use pmr_contract::{ContractLayout, PMR_ADDRESS};

const TARGET: &str = "pmr::execution";

/// Executes PMR blocks with revm on RocksDB state. Cheap to share: wrap it in an `Arc`; every
/// method takes `&self`.
pub struct Executor {
    store: Store,
    rules: Rules,
    genesis_root: B256,
    head: RwLock<Head>,
    code_cache: CodeCache,
    /// Every storage key ever committed (see `key_filter.rs`).
    filter: Arc<KeyFilter>,
    /// The first height whose state is here: 0, or the snapshot's height after state sync.
    base: u64,
}

/// Storage slots of the PMR contract a block's journal is sized for per transaction (a mint
/// touches 7).
const SLOTS_PER_TX: usize = 8;
/// Most journal slots reserved up front (~30 MB of address space, little of it touched); a
/// larger block grows the map as it goes.
const MAX_RESERVED_SLOTS: usize = 1 << 18;

/// The state genesis leaves: its changes, pages and lattice.
fn genesis_state(
    genesis: &Genesis,
    code_cache: CodeCache,
) -> Result<
    (
        crate::ChangeSet,
        Vec<crate::state_db::PageWrite>,
        StateLattice,
    ),
    ExecutionError,
> {
    let changes = genesis_changes(genesis, code_cache)?;
    let pages = changed_pages(&changes, |_, _| None);
    let lattice = lattice_delta(&changes, &pages, |_| None, |_, _| None);
    Ok((changes, pages, lattice))
}

/// The result of [`Executor::verify_stored_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateCheck {
    /// The executed head's height.
    pub height: u64,
    /// The state root the head records (the one its block's header carries).
    pub recorded_root: B256,
    /// The root recomputed from the stored entries.
    pub computed_root: B256,
    /// The entries read.
    pub counts: StateCounts,
}

impl StateCheck {
    /// Whether the stored state is the one the head commits to, and the check read entries.
    pub fn matches(&self) -> bool {
        self.recorded_root == self.computed_root && self.counts.total() > 0
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("chain_id", &self.rules.chain_id)
            .field("head", &*self.head.read())
            .finish()
    }
}

/// Gas of a read-only call (what the node's own views of the contract and `Call` get), whatever
/// the chain's transaction limit: a view of a large validator set (about 540,000 gas for 128
/// validators) must not run out, and a caller's view should not cost much more than a
/// transaction may.
const CALL_GAS: u64 = 30_000_000;

impl Executor {
    /// On an empty store, executes genesis (deploys PMR at [`PMR_ADDRESS`] with the
    /// genesis roles and permissions) and commits it; otherwise loads the executed head and
    /// checks that the store was made from this genesis. Idempotent.
    pub fn open(store: Store, genesis: &Genesis) -> Result<Self, ExecutionError> {
        let layout = *ContractLayout::get()?;
        let code_cache = CodeCache::default();
        let (changes, pages, genesis_lattice) = genesis_state(genesis, code_cache.clone())?;
        let genesis_root = genesis_lattice.root();
        let head = match read_head(&store)? {
            Some(head) => {
                let info = read_block_info(&store, 0)?.ok_or_else(|| {
                    ExecutionError::Corrupt("the genesis record is missing".into())
                })?;
                if info.state_root != genesis_root {
                    return Err(ExecutionError::GenesisMismatch {
                        stored: info.state_root,
                        computed: genesis_root,
                    });
                }
                tracing::info!(target: TARGET, height = head.height, root = %head.state_root, "loaded execution head");
                head
            }
            None => {
                if !crate::state_db::holds_no_state(&store)? {
                    return Err(ExecutionError::Corrupt(
                        "the database holds state but no executed head (an import that failed \
                         part-way?): start from an empty data directory"
                            .into(),
                    ));
                }
                let mut batch = store.batch();
                write_block(
                    &mut batch,
                    0,
                    genesis.genesis_time_ms,
                    genesis_root,
                    &genesis_lattice,
                    &changes,
                    &pages,
                    Some(&encode_receipts(&[])),
                );
                batch.commit(Durability::Sync)?;
                tracing::info!(target: TARGET, root = %genesis_root, contract = %PMR_ADDRESS, "executed genesis");
                Head {
                    height: 0,
                    state_root: genesis_root,
                    lattice: Arc::new(genesis_lattice),
                }
            }
        };
        let filter = Arc::new(load_key_filter(&store)?);
        let base = crate::state_db::read_base(&store)?;
        Ok(Self {
            base,
            filter,
            store,
            rules: Rules {
                chain_id: genesis.chain_id,
                gas: genesis.gas,
                layout,
            },
            genesis_root,
            head: RwLock::new(head),
            code_cache,
        })
    }

    /// The state root of height 0.
    pub fn genesis_state_root(&self) -> B256 {
        self.genesis_root
    }

    /// The executed and committed head: `(height, state root)`.
    pub fn head(&self) -> (u64, B256) {
        let head = self.head.read();
        (head.height, head.state_root)
    }

    /// The chain id of the genesis, which transactions must be signed for.
    pub fn chain_id(&self) -> u64 {
        self.rules.chain_id
    }

    /// The block and per-transaction gas limits the next block is executed with: the
    /// contract's (the genesis's, or the council's since).
    pub fn gas_limits(&self) -> GasLimits {
        self.gas_limits_at(self.head_height())
            .unwrap_or(self.rules.gas)
    }

    /// The gas limits the state after `height` holds (a block at `height + 1` runs with them).
    fn gas_limits_at(&self, height: u64) -> Result<GasLimits, ExecutionError> {
        let word = self
            .reader(height)
            .storage(&PMR_ADDRESS, &self.rules.layout.gas_limits_slot)?;
        let limbs = word.as_limbs();
        Ok(if word.is_zero() {
            self.rules.gas
        } else {
            GasLimits {
                block_gas_limit: limbs[1],
                tx_gas_limit: limbs[0],
            }
        })
    }

    /// The rules of a block on top of `height`.
    fn rules_at(&self, height: u64) -> Result<Rules, ExecutionError> {
        Ok(Rules {
            gas: self.gas_limits_at(height)?,
            ..self.rules
        })
    }

    fn head_height(&self) -> u64 {
        self.head.read().height
    }

    /// The first height whose state this node holds: 0, or the height of the snapshot it
    /// joined from (state sync).
    pub fn base_height(&self) -> u64 {
        self.base
    }

    /// Whether `store` holds any execution state (an interrupted import leaves state without
    /// a head): a state sync needs one that holds none.
    pub fn store_holds_state(store: &Store) -> Result<bool, ExecutionError> {
        Ok(!crate::state_db::holds_no_state(store)?)
    }

    fn resolve(&self, at: Option<u64>) -> Result<u64, ExecutionError> {
        let head = self.head_height();
        match at {
            None => Ok(head),
            Some(requested) if requested < self.base => Err(ExecutionError::BeforeBase {
                requested,
                base: self.base,
            }),
            Some(h) if h <= head => Ok(h),
            Some(requested) => Err(ExecutionError::HeightNotAvailable { requested, head }),
        }
    }

    fn reader(&self, height: u64) -> StateReader {
        StateReader::with_filter(self.store.clone(), height, self.filter.clone())
    }

    /// Mempool admission against the latest committed state: no contract creation, zero value,
    /// gas limit within the per-transaction limit and above the intrinsic gas, sender on the
    /// permission list, nonce not already used. A nonce ahead of the account's is accepted here
    /// (it may become executable); proposals skip it until then.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxRejection> {
        let unavailable = |e: ExecutionError| TxRejection::StateUnavailable(e.to_string());
        static_checks(
            tx,
            &self
                .gas_limits_at(self.head_height())
                .map_err(unavailable)?,
        )?;
        let reader = self.reader(self.head_height());
        let sender = tx.sender();
        let permitted = reader
            .storage(&PMR_ADDRESS, &self.rules.layout.permitted_key(sender))
            .map_err(unavailable)?;
        // A record's one-time owner is on no list: it may send the calls only an owner may
        // make, about its own record.
        if permitted.is_zero()
            && !admitted_as_owner(tx, &self.rules.layout, |slot| {
                reader.storage(&PMR_ADDRESS, &slot).map_err(unavailable)
            })?
        {
            return Err(TxRejection::NotPermitted(sender));
        }
        let expected = reader
            .account(&sender)
            .map_err(unavailable)?
            .map_or(0, |a| a.nonce);
        if tx.nonce() < expected {
            return Err(TxRejection::NonceTooLow {
                sender,
                expected,
                got: tx.nonce(),
            });
        }
        Ok(())
    }

    /// The next nonce of `address` in the latest committed state.
    pub fn nonce(&self, address: Address) -> Result<u64, ExecutionError> {
        Ok(self
            .reader(self.head_height())
            .account(&address)?
            .map_or(0, |a| a.nonce))
    }

    /// Whether `address` is on the permission list in the latest committed state.
    pub fn is_permitted(&self, address: Address) -> Result<bool, ExecutionError> {
        let key = self.rules.layout.permitted_key(address);
        Ok(!self
            .reader(self.head_height())
            .storage(&PMR_ADDRESS, &key)?
            .is_zero())
    }

    /// A runner on the executed head for a block of about `txs` transactions.
    fn start(&self, env: &BlockEnv, txs: usize) -> Result<(BlockRunner, Head), ExecutionError> {
        let head = self.head.read().clone();
        if env.height != head.height + 1 {
            return Err(ExecutionError::WrongHeight {
                expected: head.height + 1,
                got: env.height,
            });
        }
        let state = BlockState::new(Some(self.reader(head.height)), self.code_cache.clone());
        let rules = self.rules_at(head.height)?;
        // A proposer may be handed more candidates than a block can hold (21,000 gas each).
        let fit = (rules.gas.block_gas_limit / 21_000).max(1) as usize;
        let slots = (txs.min(fit) * SLOTS_PER_TX).min(MAX_RESERVED_SLOTS);
        Ok((BlockRunner::new(state, rules, env, slots), head))
    }

    fn finish(
        runner: BlockRunner,
        env: &BlockEnv,
        parent: Head,
    ) -> Result<ExecutedBlock, ExecutionError> {
        let crate::runner::Finished {
            changes,
            pages,
            delta,
            receipts,
            gas_used,
        } = runner.finish()?;
        let mut lattice = StateLattice::clone(&parent.lattice);
        lattice.add(&delta);
        let (receipts_encoded, receipts_root) = encode_receipts_with_root(&receipts);
        Ok(ExecutedBlock {
            height: env.height,
            timestamp_ms: env.timestamp_ms,
            parent_state_root: parent.state_root,
            state_root: lattice.root(),
            lattice: Arc::new(lattice),
            receipts_root,
            gas_used,
            receipts,
            receipts_encoded: Arc::new(receipts_encoded),
            changes: Arc::new(changes),
            pages: Arc::new(pages),
        })
    }

    /// Proposer: executes `candidates` in order on the executed head (`env.height` must be the
    /// next height), skipping each invalid one with its reason. Stops at the first candidate
    /// that does not fit in the block's remaining gas; it and every later candidate are
    /// returned as [`TxRejection::BlockFull`]. Reverted transactions are included with a failed
    /// receipt, as in Ethereum.
    pub fn build_block(
        &self,
        env: &BlockEnv,
        candidates: Vec<SignedTx>,
    ) -> Result<BuiltBlock, ExecutionError> {
        let (mut runner, parent) = self.start(env, candidates.len())?;
        let mut included = Vec::with_capacity(candidates.len());
        let mut rejected = Vec::new();
        let mut full = None;
        for tx in candidates {
            if let Some(remaining) = full {
                rejected.push((
                    tx.hash(),
                    TxRejection::BlockFull {
                        limit: tx.gas_limit(),
                        remaining,
                    },
                ));
                continue;
            }
            match runner.apply(&tx)? {
                Ok(()) => included.push(tx),
                Err(reason) => {
                    if let TxRejection::BlockFull { remaining, .. } = reason {
                        full = Some(remaining);
                    }
                    tracing::debug!(target: TARGET, hash = %tx.hash(), %reason, "candidate left out");
                    rejected.push((tx.hash(), reason));
                }
            }
        }
        let executed = Self::finish(runner, env, parent)?;
        Ok(BuiltBlock {
            executed,
            included,
            rejected,
        })
    }

    /// Validator: executes exactly `txs`; any invalid one fails the whole block with
    /// [`ExecutionError::InvalidBlock`]. Deterministic: the same head and inputs give the same
    /// [`ExecutedBlock`] on every node.
    pub fn execute_block(
        &self,
        env: &BlockEnv,
        txs: &[SignedTx],
    ) -> Result<ExecutedBlock, ExecutionError> {
        let (mut runner, parent) = self.start(env, txs.len())?;
        for (index, tx) in txs.iter().enumerate() {
            if let Err(reason) = runner.apply(tx)? {
                return Err(ExecutionError::InvalidBlock {
                    index,
                    hash: tx.hash(),
                    reason,
                });
            }
        }
        Self::finish(runner, env, parent)
    }

    /// Stages the block's state changes, receipts and the new executed head into `batch`.
    /// The caller adds the block itself and commits the batch (with [`Durability::Sync`]), then
    /// calls [`Executor::mark_committed`]. `executed` must have been executed on the current
    /// head.
    pub fn write_to_batch(&self, executed: &ExecutedBlock, batch: &mut Batch<'_>) {
        let head = self.head.read();
        if executed.height != head.height + 1 || executed.parent_state_root != head.state_root {
            tracing::error!(
                target: TARGET,
                height = executed.height,
                head = head.height,
                "staging a block that was not executed on the current head"
            );
        }
        write_block(
            batch,
            executed.height,
            executed.timestamp_ms,
            executed.state_root,
            &executed.lattice,
            &executed.changes,
            &executed.pages,
            Some(&executed.receipts_encoded),
        );
    }

    /// After the batch holding `executed` is committed: advances the in-memory head. The head
    /// is re-read from the database, which is the authority.
    pub fn mark_committed(&self, executed: &ExecutedBlock) {
        let mut head = self.head.write();
        // Readers at the new height must find the block's pages: extend the filter first.
        self.filter
            .insert_many(executed.pages.iter().map(|(a, page, _)| (a, page)));
        match read_head(&self.store) {
            Ok(Some(stored)) => {
                if stored.height != executed.height || stored.state_root != executed.state_root {
                    tracing::error!(
                        target: TARGET,
                        stored_height = stored.height,
                        executed_height = executed.height,
                        "mark_committed for a block that is not the committed execution head; \
                         keeping the database's head"
                    );
                }
                *head = stored;
            }
            other => {
                tracing::error!(target: TARGET, ?other, "cannot re-read the execution head; trusting the executed block");
                *head = Head {
                    height: executed.height,
                    state_root: executed.state_root,
                    lattice: executed.lattice.clone(),
                };
            }
        }
    }

    /// Writes the state snapshot at `path` (see [`crate::export_snapshot`]) into `store`,
    /// which must be empty, after checking it against `trusted` (the height, state root and
    /// time of a header the network signed) and this genesis: an executor opened on `store` then starts
    /// at the snapshot's height. A snapshot whose entries do not give `trusted_root` is
    /// refused and nothing is written.
    pub fn import_snapshot(
        store: &Store,
        genesis: &Genesis,
        path: &std::path::Path,
        trusted: crate::TrustedHead,
    ) -> Result<crate::SnapshotInfo, ExecutionError> {
        let genesis_root = genesis_state(genesis, CodeCache::default())?.2.root();
        crate::snapshot::import_snapshot(
            store,
            path,
            trusted,
            (genesis_root, genesis.genesis_time_ms),
        )
    }

    /// Recomputes the state commitment from every entry of the state stored at the executed
    /// head (a pass over the whole state) and compares it with the head's root. Opens no
    /// executor: run it on a store no node is writing to.
    pub fn verify_stored_state(store: &Store) -> Result<StateCheck, ExecutionError> {
        let head = read_head(store)?
            .ok_or_else(|| ExecutionError::Corrupt("the store holds no executed state".into()))?;
        let (lattice, counts) = recompute_lattice(store, head.height)?;
        Ok(StateCheck {
            height: head.height,
            recorded_root: head.state_root,
            computed_root: lattice.root(),
            counts,
        })
    }

    /// The receipts of a committed height (`Some(vec![])` for genesis and empty blocks).
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, ExecutionError> {
        read_receipts(&self.store, height)
    }

    /// The state root after a committed height.
    pub fn state_root_at(&self, height: u64) -> Result<Option<B256>, ExecutionError> {
        Ok(read_block_info(&self.store, height)?.map(|i| i.state_root))
    }

    /// A read-only call at the latest or a given committed height, seeing that block's number
    /// and timestamp. Nothing is written.
    pub fn call(
        &self,
        at: Option<u64>,
        from: Address,
        to: Address,
        data: Bytes,
    ) -> Result<CallOutcome, ExecutionError> {
        let height = self.resolve(at)?;
        let info = read_block_info(&self.store, height)?.ok_or_else(|| {
            ExecutionError::Corrupt(format!(
                "block info of committed height {height} is missing"
            ))
        })?;
        let env = BlockEnv {
            height,
            timestamp_ms: info.timestamp_ms,
            proposer: Default::default(),
        };
        let state = BlockState::new(Some(self.reader(height)), self.code_cache.clone());
        let mut evm = build_evm(
            state,
            self.rules.chain_id,
            revm_block_env(&env, CALL_GAS.max(self.rules.gas.block_gas_limit)),
        );
        evm.ctx.cfg.disable_nonce_check = true;
        let tx = TxEnv {
            caller: from,
            kind: TxKind::Call(to),
            data,
            gas_limit: CALL_GAS,
            gas_price: 0,
            chain_id: Some(self.rules.chain_id),
            ..TxEnv::default()
        };
        let result = match evm.transact(tx) {
            Ok(r) => r.result,
            Err(EVMError::Database(e)) => return Err(e),
            Err(e) => return Err(ExecutionError::Evm(e.to_string())),
        };
        let success = result.is_success();
        let output = result.output().cloned().unwrap_or_default();
        Ok(CallOutcome {
            success,
            revert_reason: (!success).then(|| pmr_contract::describe_revert(&output)),
            gas_used: result.tx_gas_used(),
            logs: result.logs().iter().map(Log::from).collect(),
            output,
        })
    }

    /// A read-only call of the PMR contract (as [`Executor::call`], from the zero address),
    /// decoded: `Ok(Err(reason))` when it reverts.
    pub fn view<C: alloy_sol_types::SolCall>(
        &self,
        at: Option<u64>,
        call: &C,
    ) -> Result<Result<C::Return, String>, ExecutionError> {
        let out = self.call(at, Address::ZERO, PMR_ADDRESS, call.abi_encode().into())?;
        if !out.success {
            return Ok(Err(out.revert_reason.unwrap_or_else(|| "reverted".into())));
        }
        C::abi_decode_returns(&out.output).map(Ok).map_err(|e| {
            ExecutionError::Evm(format!("cannot decode the PMR contract's answer: {e}"))
        })
    }

    /// An account at the latest or a given committed height (zero nonce and balance and the
    /// empty code hash when it does not exist).
    pub fn account(
        &self,
        at: Option<u64>,
        address: Address,
    ) -> Result<AccountView, ExecutionError> {
        let height = self.resolve(at)?;
        let state = self.reader(height).account(&address)?;
        Ok(AccountView {
            address,
            nonce: state.map_or(0, |s| s.nonce),
            balance: state.map_or(Default::default(), |s| s.balance),
            code_hash: state.map_or(KECCAK256_EMPTY, |s| s.code_hash),
        })
    }
}
