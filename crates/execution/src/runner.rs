//! Runs transactions of one block through one reused EVM, checking each against the state it
//! executes on.

use alloy_consensus::Transaction as _;
use alloy_primitives::map::HashMap;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use pmr_primitives::{GasLimits, SignedTx};
use revm::context::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::context::{BlockEnv as RevmBlockEnv, TxEnv};
use revm::handler::{MainnetContext, MainnetEvm};
use revm::interpreter::gas::calculate_initial_tx_gas;
use revm::primitives::hardfork::SpecId;
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

use crate::block_state::BlockState;
use crate::changeset::ChangeSet;
use crate::commitment::StateLattice;
use crate::receipt::{Log, Receipt};
use crate::state_db::PageWrite;
use crate::{BlockEnv, ExecutionError, TxRejection};
use pmr_contract::{owner_call_token, owns_record, ContractLayout, PMR_ADDRESS};

/// The fork PMR executes under, fixed for the life of the chain.
pub const SPEC: SpecId = SpecId::PRAGUE;

pub(crate) type Evm = MainnetEvm<MainnetContext<BlockState>>;

/// Chain-wide execution rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    pub chain_id: u64,
    pub gas: GasLimits,
    pub layout: ContractLayout,
}

pub(crate) fn revm_block_env(env: &BlockEnv, gas_limit: u64) -> RevmBlockEnv {
    RevmBlockEnv {
        number: U256::from(env.height),
        beneficiary: env.proposer.0,
        // Solidity's block.timestamp is in seconds.
        timestamp: U256::from(env.timestamp_ms / 1000),
        gas_limit,
        basefee: 0,
        ..RevmBlockEnv::default()
    }
}

pub(crate) fn build_evm(state: BlockState, chain_id: u64, block: RevmBlockEnv) -> Evm {
    Context::mainnet()
        .with_db(state)
        .modify_cfg_chained(|cfg| {
            cfg.set_spec_and_mainnet_gas_params(SPEC);
            cfg.chain_id = chain_id;
        })
        .with_block(block)
        .build_mainnet()
}

/// Gas a transaction costs before it runs (EIP-2028 calldata, EIP-2930 access list, EIP-7623
/// floor).
pub fn intrinsic_gas(tx: &SignedTx) -> u64 {
    let (accounts, slots) = tx
        .envelope()
        .access_list()
        .map(|list| {
            let slots: usize = list.0.iter().map(|item| item.storage_keys.len()).sum();
            (list.0.len() as u64, slots as u64)
        })
        .unwrap_or((0, 0));
    let gas = calculate_initial_tx_gas(
        SPEC,
        tx.input(),
        tx.to().is_none(),
        accounts,
        slots,
        0,
        None,
    );
    gas.initial_total_gas().max(gas.floor_gas)
}

/// Whether `tx`'s sender, not on the permission list, is admitted as a record's one-time
/// owner: an owner-only call to the PMR contract (see [`owner_call_token`]) about a record it
/// owns, from an account the admin has not removed. `slot` reads a PMR storage slot in the state
/// admission judges against (the committed head for the mempool, the block so far in a block).
pub(crate) fn admitted_as_owner<E>(
    tx: &SignedTx,
    layout: &ContractLayout,
    mut slot: impl FnMut(U256) -> Result<U256, E>,
) -> Result<bool, E> {
    if tx.to() != Some(PMR_ADDRESS) {
        return Ok(false);
    }
    let Some(token) = owner_call_token(tx.input()) else {
        return Ok(false);
    };
    let sender = tx.sender();
    Ok(owns_record(slot(layout.record_owner_key(token))?, sender)
        && slot(layout.removed_key(sender))?.is_zero())
}

/// Checks that need no state: contract creation, value, gas limits, intrinsic gas.
pub(crate) fn static_checks(tx: &SignedTx, gas: &GasLimits) -> Result<(), TxRejection> {
    shape_checks(tx, gas)?;
    let intrinsic = intrinsic_gas(tx);
    if tx.gas_limit() < intrinsic {
        return Err(TxRejection::IntrinsicGasTooLow {
            limit: tx.gas_limit(),
            intrinsic,
        });
    }
    Ok(())
}

/// [`static_checks`] but the intrinsic gas, which revm computes again for every transaction
/// it runs: a block's runner leaves that check to revm (see [`rejection`]).
fn shape_checks(tx: &SignedTx, gas: &GasLimits) -> Result<(), TxRejection> {
    if tx.to().is_none() {
        return Err(TxRejection::ContractCreation(PMR_ADDRESS));
    }
    if !tx.value().is_zero() {
        return Err(TxRejection::NonZeroValue(tx.value()));
    }
    let max = gas.tx_gas_limit.min(gas.block_gas_limit);
    if tx.gas_limit() > max {
        return Err(TxRejection::GasLimitTooHigh {
            limit: tx.gas_limit(),
            max,
        });
    }
    Ok(())
}

/// Why revm refused `tx` before running it. Intrinsic gas (calldata, access list, EIP-7623
/// floor) reads as [`TxRejection::IntrinsicGasTooLow`], as mempool admission reports it.
fn rejection(tx: &SignedTx, e: InvalidTransaction) -> TxRejection {
    match e {
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => TxRejection::IntrinsicGasTooLow {
            limit: tx.gas_limit(),
            intrinsic: intrinsic_gas(tx),
        },
        other => TxRejection::Invalid(other.to_string()),
    }
}

/// The EVM view of a transaction. Fees are ignored: gas is metered but priced at zero.
pub(crate) fn tx_env(tx: &SignedTx, chain_id: u64) -> TxEnv {
    let access_list = tx.envelope().access_list().cloned().unwrap_or_default();
    let is_1559 = tx.envelope().is_eip1559();
    TxEnv {
        tx_type: if is_1559 { 2 } else { 0 },
        caller: tx.sender(),
        gas_limit: tx.gas_limit(),
        gas_price: 0,
        kind: TxKind::Call(tx.to().unwrap_or(PMR_ADDRESS)),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: Some(chain_id),
        access_list,
        gas_priority_fee: is_1559.then_some(0),
        ..TxEnv::default()
    }
}

/// What a block's execution leaves.
pub(crate) struct Finished {
    pub changes: ChangeSet,
    pub pages: Vec<PageWrite>,
    /// What the block changes in the state lattice (see `commitment.rs`).
    pub delta: StateLattice,
    pub receipts: Vec<Receipt>,
    pub gas_used: u64,
}

/// One block in execution.
pub(crate) struct BlockRunner {
    evm: Evm,
    rules: Rules,
    receipts: Vec<Receipt>,
    gas_used: u64,
    /// The permission-list slot of each sender seen in this block.
    permitted_keys: HashMap<Address, U256>,
    /// Slots of the PMR contract the block is expected to touch, reserved in the journal once
    /// the contract is loaded into it (after the first transaction), so that the map does not
    /// rehash as it grows; zero once done.
    reserve_slots: usize,
}

impl BlockRunner {
    /// A runner for a block of transactions expected to touch about `slots` storage slots.
    pub(crate) fn new(state: BlockState, rules: Rules, env: &BlockEnv, slots: usize) -> Self {
        let block = revm_block_env(env, rules.gas.block_gas_limit);
        Self {
            evm: build_evm(state, rules.chain_id, block),
            rules,
            receipts: Vec::new(),
            gas_used: 0,
            permitted_keys: HashMap::default(),
            reserve_slots: slots,
        }
    }

    /// Executes `tx` if it is valid here; an invalid one changes nothing and says why.
    pub(crate) fn apply(
        &mut self,
        tx: &SignedTx,
    ) -> Result<Result<(), TxRejection>, ExecutionError> {
        if let Err(r) = shape_checks(tx, &self.rules.gas) {
            return Ok(Err(r));
        }
        let remaining = self.rules.gas.block_gas_limit.saturating_sub(self.gas_used);
        if tx.gas_limit() > remaining {
            return Ok(Err(TxRejection::BlockFull {
                limit: tx.gas_limit(),
                remaining,
            }));
        }
        let sender = tx.sender();
        let layout = self.rules.layout;
        // The slot is a keccak of the sender: compute it once per sender and block.
        let key = *self
            .permitted_keys
            .entry(sender)
            .or_insert_with(|| layout.permitted_key(sender));
        if self.storage_now(PMR_ADDRESS, key)?.is_zero()
            && !admitted_as_owner(tx, &layout, |slot| self.storage_now(PMR_ADDRESS, slot))?
        {
            return Ok(Err(TxRejection::NotPermitted(sender)));
        }
        let expected = self.nonce_now(sender)?;
        if tx.nonce() < expected {
            return Ok(Err(TxRejection::NonceTooLow {
                sender,
                expected,
                got: tx.nonce(),
            }));
        }
        if tx.nonce() > expected {
            return Ok(Err(TxRejection::NonceGap {
                sender,
                expected,
                got: tx.nonce(),
            }));
        }
        // The journal is finalized once per block (`finish`), not after each transaction: the
        // accounts and slots the block's transactions share stay loaded in it. revm keeps warm
        // and cold access and the EIP-2200 original values per transaction, and a transaction
        // that fails here is rolled back alone.
        let result = match self.evm.transact_one(tx_env(tx, self.rules.chain_id)) {
            Ok(result) => result,
            Err(EVMError::Transaction(e)) => return Ok(Err(rejection(tx, e))),
            Err(EVMError::Database(e)) => return Err(e),
            Err(other) => return Err(ExecutionError::Evm(other.to_string())),
        };
        if self.reserve_slots > 0 {
            if let Some(pmr) = self
                .evm
                .ctx
                .journaled_state
                .inner
                .state
                .get_mut(&PMR_ADDRESS)
            {
                pmr.storage.reserve(self.reserve_slots);
                self.reserve_slots = 0;
            }
        }
        let gas_used = result.tx_gas_used();
        self.gas_used += gas_used;
        let success = result.is_success();
        let contract_address = result.created_address();
        // The result is consumed: its logs and output move into the receipt without copies.
        let (logs, output) = match result {
            ExecutionResult::Success { logs, output, .. } => (
                logs.into_iter().map(Log::from).collect(),
                output.into_data(),
            ),
            // As in Ethereum, a failed transaction leaves no logs.
            ExecutionResult::Revert { output, .. } => (Vec::new(), output),
            ExecutionResult::Halt { .. } => (Vec::new(), Bytes::new()),
        };
        self.receipts.push(Receipt {
            tx_hash: tx.hash(),
            index: self.receipts.len() as u64,
            success,
            gas_used,
            cumulative_gas_used: self.gas_used,
            logs,
            output,
            contract_address,
        });
        Ok(Ok(()))
    }

    /// A storage slot as of now in the block: the journal holds what earlier transactions
    /// read or wrote; a slot it has not loaded is as the block found it.
    fn storage_now(&mut self, address: Address, slot: U256) -> Result<U256, ExecutionError> {
        let journal = &mut self.evm.ctx.journaled_state;
        match journal
            .inner
            .state
            .get(&address)
            .and_then(|a| a.storage.get(&slot))
        {
            Some(s) => Ok(s.present_value),
            None => journal.database.base_storage(address, slot),
        }
    }

    /// An account's nonce as of now in the block (see [`BlockRunner::storage_now`]).
    fn nonce_now(&mut self, address: Address) -> Result<u64, ExecutionError> {
        let journal = &mut self.evm.ctx.journaled_state;
        match journal.inner.state.get(&address) {
            Some(a) => Ok(a.info.nonce),
            None => Ok(journal
                .database
                .base_account(address)?
                .map_or(0, |a| a.nonce)),
        }
    }

    /// The block's changes (and the storage pages they leave), receipts and gas used.
    pub(crate) fn finish(mut self) -> Result<Finished, ExecutionError> {
        let journal = self.evm.finalize();
        let (changes, pages, delta) = self
            .evm
            .ctx
            .journaled_state
            .database
            .into_changes(journal)?;
        Ok(Finished {
            changes,
            pages,
            delta,
            receipts: self.receipts,
            gas_used: self.gas_used,
        })
    }
}
