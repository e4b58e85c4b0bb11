//! Genesis: the PMR contract deployed at its fixed address, with the roles and permissions
//! the genesis file names.

use alloy_primitives::{Address, TxKind};
use alloy_sol_types::SolConstructor;
use pmr_primitives::Genesis;
use revm::context::{BlockEnv as RevmBlockEnv, TxEnv};
use revm::ExecuteEvm;

use crate::block_state::{BlockState, CodeCache};
use crate::changeset::ChangeSet;
use crate::runner::build_evm;
use crate::ExecutionError;
use pmr_contract::{creation_code, describe_revert, PMR, PMR_ADDRESS};

/// Sender of the genesis deployment. It is not part of the genesis state.
const GENESIS_DEPLOYER: Address = Address::ZERO;
const GENESIS_GAS: u64 = 1_000_000_000;

/// The constructor arguments genesis passes to PMR.
pub fn constructor_args(genesis: &Genesis) -> PMR::constructorCall {
    let keys = genesis
        .validators
        .iter()
        .map(|v| {
            v.consensus_key_bytes()
                .map(alloy_primitives::FixedBytes::from)
                .unwrap_or_default()
        })
        .collect();
    PMR::constructorCall {
        council: genesis.council_members(),
        threshold: alloy_primitives::U256::from(genesis.council_threshold),
        validatorKeys: keys,
        validatorPowers: genesis.validators.iter().map(|v| v.voting_power).collect(),
        hospitals: genesis.hospitals.clone(),
        custodians: genesis
            .validators
            .iter()
            .filter_map(|v| v.operator)
            .collect(),
        // Zero for an operator without a custody key: the role only. The others are the
        // genesis's custodians, in their index order (`Genesis::custodians`).
        custodyKeys: genesis
            .validators
            .iter()
            .filter(|v| v.operator.is_some())
            .map(|v| {
                v.custody_key
                    .as_deref()
                    .and_then(|k| alloy_primitives::hex::decode(k.trim_start_matches("0x")).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(alloy_primitives::FixedBytes::from)
                    .unwrap_or_default()
            })
            .collect(),
        permitted: genesis.permitted.clone(),
        blockGasLimit: genesis.gas.block_gas_limit,
        txGasLimit: genesis.gas.tx_gas_limit,
    }
}

/// Runs the PMR constructor on an empty state and moves the resulting account to
/// [`PMR_ADDRESS`]. The constructor stores nothing that depends on its own address,
/// so the relocated state is what a deployment at that address would hold. Events of the
/// constructor are not kept (genesis has no receipts).
pub(crate) fn genesis_changes(
    genesis: &Genesis,
    code_cache: CodeCache,
) -> Result<ChangeSet, ExecutionError> {
    let mut initcode = creation_code().to_vec();
    initcode.extend_from_slice(&constructor_args(genesis).abi_encode());
    let block = RevmBlockEnv {
        timestamp: alloy_primitives::U256::from(genesis.genesis_time_ms / 1000),
        ..RevmBlockEnv::default()
    };
    let mut evm = build_evm(BlockState::new(None, code_cache), genesis.chain_id, block);
    let tx = TxEnv {
        caller: GENESIS_DEPLOYER,
        kind: TxKind::Create,
        data: initcode.into(),
        gas_limit: GENESIS_GAS,
        gas_price: 0,
        nonce: 0,
        chain_id: Some(genesis.chain_id),
        ..TxEnv::default()
    };
    let result = match evm.transact_one(tx) {
        Ok(result) => result,
        Err(revm::context::result::EVMError::Database(e)) => return Err(e),
        Err(e) => return Err(ExecutionError::Genesis(format!("deploying PMR: {e}"))),
    };
    let created = match (&result, result.created_address()) {
        (r, Some(a)) if r.is_success() => a,
        (r, _) => {
            let why = r
                .output()
                .map(|o| describe_revert(o))
                .unwrap_or_else(|| format!("{r:?}"));
            return Err(ExecutionError::Genesis(format!(
                "the PMR constructor failed ({why}): check admin, hospitals, validator operators \
                 and permitted accounts in the genesis file (no zero addresses)"
            )));
        }
    };
    let journal = evm.finalize();
    // Genesis starts from nothing: its pages follow from its changes alone (see `Executor::open`).
    let (changes, _, _) = evm.ctx.journaled_state.database.into_changes(journal)?;
    let accounts = changes
        .accounts
        .into_iter()
        .filter(|(a, _)| *a == created)
        .map(|(_, s)| (PMR_ADDRESS, s))
        .collect();
    let storage = changes
        .storage
        .into_iter()
        .filter(|(a, _, _)| *a == created)
        .map(|(_, slot, v)| (PMR_ADDRESS, slot, v))
        .collect();
    Ok(ChangeSet::from_unsorted(accounts, storage, changes.codes))
}
