//! The mint is the hot path of a PMR network: every validator runs thousands per block. This
//! pins down what one `mintRecord` does in the EVM (opcodes counted by revm's `CountInspector`
//! on the compiled contract), so a change that adds a storage key, an access or an event to it
//! fails here instead of only showing in the benchmarks.

mod common;

use alloy_primitives::{Address, TxKind, B256};
use alloy_sol_types::{SolCall, SolConstructor};
use common::{genesis, keys, CHAIN_ID};
use pmr_execution::{constructor_args, PMR, SPEC};
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::inspector::CountInspector;
use revm::{Context, ExecuteCommitEvm, InspectCommitEvm, MainBuilder, MainContext};

fn tx(caller: Address, nonce: u64, kind: TxKind, data: Vec<u8>) -> TxEnv {
    TxEnv {
        caller,
        kind,
        data: data.into(),
        gas_limit: 30_000_000,
        gas_price: 0,
        nonce,
        chain_id: Some(CHAIN_ID),
        ..TxEnv::default()
    }
}

fn mint(n: u8) -> Vec<u8> {
    let cid = |tag: u8| PMR::Cid {
        codec: 0x55,
        digest: B256::repeat_byte(n ^ tag),
    };
    PMR::mintRecordCall {
        patient: keys().patient.address(),
        root: cid(1),
        envelope: cid(2),
        keyCommitment: B256::repeat_byte(7),
        recordType: 3,
    }
    .abi_encode()
}

#[test]
fn a_mint_computes_three_storage_keys_and_writes_each_slot_once() {
    let mut initcode = PMR::BYTECODE.to_vec();
    initcode.extend_from_slice(&constructor_args(&genesis()).abi_encode());
    let mut evm = Context::mainnet()
        .with_db(CacheDB::new(EmptyDB::default()))
        .modify_cfg_chained(|cfg| {
            cfg.set_spec_and_mainnet_gas_params(SPEC);
            cfg.chain_id = CHAIN_ID;
        })
        .build_mainnet_with_inspector(CountInspector::new());
    let deployed = evm
        .transact_commit(tx(Address::repeat_byte(0xde), 0, TxKind::Create, initcode))
        .unwrap();
    let pmr = deployed.created_address().unwrap();
    let k = keys();
    let h = k.hospital.address();
    let register = PMR::registerPatientCall {
        patient: k.patient.address(),
        pseudonymCommitment: B256::repeat_byte(0x11),
        encryptionKey: B256::repeat_byte(0x22),
    };
    assert!(evm
        .transact_commit(tx(h, 0, TxKind::Call(pmr), register.abi_encode()))
        .unwrap()
        .is_success());
    // The second mint of a patient, as most are: its balance word is no longer fresh.
    assert!(evm
        .transact_commit(tx(h, 1, TxKind::Call(pmr), mint(1)))
        .unwrap()
        .is_success());
    evm.inspector.clear();
    let r = evm
        .inspect_tx_commit(tx(h, 2, TxKind::Call(pmr), mint(2)))
        .unwrap();
    assert!(r.is_success());
    let c = &evm.inspector;
    let count = |op: u8| c.get_count(op);
    // Storage keys: the hospital's account word, the patient's, the record.
    assert_eq!(count(0x20), 3, "KECCAK256");
    // Token id counter, hospital flag, patient flag and balance (read twice), and nothing of
    // the fresh record.
    assert!(count(0x54) <= 4, "SLOAD: {}", count(0x54));
    // The counter, the balance, the record's five words: each written once.
    assert_eq!(count(0x55), 7, "SSTORE");
    // Transfer (4 topics), Locked (1), RecordMinted (4).
    assert_eq!((count(0xa1), count(0xa4)), (1, 2), "LOG1, LOG4");
    assert!(
        c.total_opcodes() <= 520,
        "{} opcodes per mint (491 when this test was written)",
        c.total_opcodes()
    );
    // Calldata stays static: selector and seven words.
    assert_eq!(mint(3).len(), 4 + 7 * 32);
}
