//! The mint is the hot path of a PMR network: every validator runs thousands per block. This
//! pins down what one `mintRecord` does in the EVM (opcodes counted by revm's `CountInspector`
//! on the compiled contract), so a change that adds a storage key, an access or an event to it
//! fails here instead of only showing in the benchmarks.

mod common;

use alloy_primitives::{keccak256, Address, TxKind, B256, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use common::bare::{self, tx};
use common::{genesis, keys, register_call_at};
use pmr_contract::PMR;
use pmr_execution::constructor_args;
use revm::inspector::CountInspector;
use revm::{ExecuteCommitEvm, InspectCommitEvm, MainBuilder};

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
fn a_mint_computes_no_storage_key_and_writes_each_slot_once() {
    let mut initcode = PMR::BYTECODE.to_vec();
    initcode.extend_from_slice(&constructor_args(&genesis()).abi_encode());
    let mut evm = bare::context().build_mainnet_with_inspector(CountInspector::new());
    let deployed = evm
        .transact_commit(tx(Address::repeat_byte(0xde), 0, TxKind::Create, initcode))
        .unwrap();
    let pmr = deployed.created_address().unwrap();
    let k = keys();
    let h = k.hospital.address();
    let register = register_call_at(
        pmr,
        &k.patient,
        B256::repeat_byte(0x11),
        B256::repeat_byte(0x22),
    );
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
    // No storage key is computed: records and account words are found by addition.
    assert_eq!(count(0x20), 0, "KECCAK256");
    // The token id counter, the hospital's account word, the patient's; nothing of the fresh
    // record.
    assert_eq!(count(0x54), 3, "SLOAD");
    // The counter, the patient's word (its balance), the record's five words: each once.
    assert_eq!(count(0x55), 7, "SSTORE");
    // Transfer (4 topics), Locked (1), RecordMinted (4).
    assert_eq!((count(0xa1), count(0xa4)), (1, 2), "LOG1, LOG4");
    assert!(
        c.total_opcodes() <= 500,
        "{} opcodes per mint (476 when this test was written)",
        c.total_opcodes()
    );
    // Calldata stays static: selector and seven words.
    assert_eq!(mint(3).len(), 4 + 7 * 32);
}

/// keccak256(abi.encode(uint256(keccak256(id)) - 1)) & ~0xff, as ERC-7201 places a namespace.
fn erc7201(id: &str) -> U256 {
    let inner = U256::from_be_bytes(keccak256(id.as_bytes()).0) - U256::from(1);
    U256::from_be_bytes(keccak256(inner.to_be_bytes::<32>()).0) & !U256::from(0xff)
}

#[test]
fn the_contracts_storage_regions_are_where_its_comments_say() {
    let source = include_str!("../../../evm-contracts/PMR.sol");
    let constant = |name: &str| {
        let line = source
            .lines()
            .find(|l| l.contains(&format!("uint256 private constant {name} = 0x")))
            .unwrap_or_else(|| panic!("PMR.sol declares {name}"));
        let hex = line.split("= 0x").nth(1).unwrap().trim_end_matches(';');
        U256::from_str_radix(hex, 16).unwrap()
    };
    let records = constant("RECORDS");
    let accounts = constant("ACCOUNTS");
    assert_eq!(records, erc7201("pmr.storage.records"));
    assert_eq!(accounts, erc7201("pmr.storage.accounts"));
    // Neither region wraps around: an address added to ACCOUNTS, or five words per token id
    // below 2^64 added to RECORDS, stays below 2^256.
    assert!(accounts.checked_add(U256::from(1) << 160).is_some());
    assert!(records.checked_add(U256::from(5) << 64).is_some());
}
