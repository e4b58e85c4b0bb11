//! The mint is the hot path of a PMR network: every validator runs thousands per block. This
//! pins down what one `mintRecord` does in the EVM (opcodes counted by revm's `CountInspector`
//! on the compiled contract), so a change that adds a storage key, an access or an event to it
//! fails here instead of only showing in the benchmarks.

mod common;

use std::collections::BTreeSet;

use alloy_primitives::{keccak256, Address, TxKind, B256, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use common::bare::{self, tx};
use common::{genesis, keys, one_time};
use pmr_contract::PMR;
use pmr_execution::constructor_args;
use revm::inspector::CountInspector;
use revm::{ExecuteCommitEvm, InspectEvm, MainBuilder};

/// A mint of record `n` (below 16) to `to`: raw-codec CIDs with digests `[(n << 4) | 1; 32]`
/// (root) and `[(n << 4) | 2; 32]` (envelope), never zero.
fn mint(to: &PMR::OneTimeOwner, n: u8) -> PMR::mintRecordCall {
    let cid = |tag: u8| PMR::Cid {
        codec: 0x55,
        digest: B256::repeat_byte((n << 4) | tag),
    };
    PMR::mintRecordCall {
        to: to.clone(),
        root: cid(1),
        envelope: cid(2),
        keyCommitment: B256::repeat_byte(7),
    }
}

/// The slot of the contract's `_lastTokenId`, from the artifact's storage layout.
fn last_token_id_slot() -> U256 {
    let artifact: serde_json::Value =
        serde_json::from_str(pmr_contract::PMR_ARTIFACT_JSON).expect("artifact");
    let entry = artifact["storageLayout"]
        .as_array()
        .expect("storage layout")
        .iter()
        .find(|e| e["label"] == "_lastTokenId")
        .expect("_lastTokenId in the layout");
    entry["slot"]
        .as_str()
        .expect("slot")
        .parse()
        .expect("a slot number")
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
    // The second mint on the chain, as almost all are: the token counter is no longer fresh.
    // The owner's account word always is (a one-time owner holds one record), and nothing of
    // the patient is read or written: a mint does not name it.
    // Fixed announcements (the counts depend on the calldata's bytes and on which ephemeral
    // prefix is checked): real one-time owners are random, the figures pinned here must not be.
    // Prefix 3 takes the longer path of its check.
    let first = one_time(&k.patient, 3);
    assert!(evm
        .transact_commit(tx(h, 0, TxKind::Call(pmr), mint(&first.to, 1).abi_encode()))
        .unwrap()
        .is_success());
    evm.inspector.clear();
    let to = PMR::OneTimeOwner {
        owner: Address::from(
            keccak256(b"one-time owner").0[12..]
                .try_into()
                .unwrap_or([1; 20]),
        ),
        ephemeralX: keccak256(b"ephemeral key"),
        ephemeralPrefix: 3,
        viewTag: 0xa7,
        sealedType: 0x9c41_0e2b,
    };
    let out = evm
        .inspect_tx(tx(h, 1, TxKind::Call(pmr), mint(&to, 2).abi_encode()))
        .unwrap();
    assert!(out.result.is_success());
    // 154,003 before records held a one-time owner's announcement (and the owner's account
    // word was the patient's, warm after its first mint); 194,750 before the governance
    // and custodian functions lengthened the selector dispatch (+66).
    let gas = out.result.tx_gas_used();
    assert!(gas <= 194_816, "{gas} gas per mint (194,816 pinned)");
    let c = &evm.inspector;
    let count = |op: u8| c.get_count(op);
    // No storage key is computed: records and account words are found by addition.
    assert_eq!(count(0x20), 0, "KECCAK256");
    // The token id counter, the hospital's account word, the owner's; nothing of the fresh
    // record.
    assert_eq!(count(0x54), 3, "SLOAD");
    // The counter, the owner's word (its balance), the record's six words: each once.
    assert_eq!(count(0x55), 8, "SSTORE");
    // Transfer (4 topics), Locked (1), RecordMinted (3).
    assert_eq!(
        (count(0xa1), count(0xa3), count(0xa4)),
        (1, 1, 1),
        "LOG1, LOG3, LOG4"
    );
    assert!(
        c.total_opcodes() <= 589,
        "{} opcodes per mint (589 with the longer selector dispatch of the governance and \
         custodian functions; 574 with the one-time owner's announcement and freshness check; \
         476 before)",
        c.total_opcodes()
    );
    // Calldata stays static: selector and ten words (the owner's five, two per CID, the key
    // commitment).
    assert_eq!(mint(&to, 3).abi_encode().len(), 4 + 10 * 32);

    // Exactly those slots change: token 2's six record words, the owner's account word and
    // the counter.
    let records = erc7201("pmr.storage.records");
    let accounts = erc7201("pmr.storage.accounts");
    let words = U256::from(pmr_contract::RECORD_WORDS);
    let record = records + U256::from(2) * words;
    let owner_word = accounts + U256::from_be_slice(to.owner.as_slice());
    let storage = &out.state.get(&pmr).expect("the contract's state").storage;
    let changed: BTreeSet<U256> = storage
        .iter()
        .filter(|(_, slot)| slot.is_changed())
        .map(|(key, _)| *key)
        .collect();
    let mut expected: BTreeSet<U256> = (0..6u64).map(|i| record + U256::from(i)).collect();
    expected.insert(owner_word);
    expected.insert(last_token_id_slot());
    assert_eq!(changed, expected);
    let value = |key: U256| storage[&key].present_value;
    // The head word packs owner | versionCount << 160 | rootCodec << 192 | envelopeCodec << 200
    // | viewTag << 208 | ephemeralPrefix << 216 | sealedType << 224.
    let head = U256::from_be_slice(to.owner.as_slice())
        | (U256::from(1) << 160)
        | (U256::from(0x55) << 192)
        | (U256::from(0x55) << 200)
        | (U256::from(to.viewTag) << 208)
        | (U256::from(to.ephemeralPrefix) << 216)
        | (U256::from(to.sealedType) << 224);
    assert_eq!(value(record), head);
    assert_eq!(
        value(record + U256::from(1)),
        U256::from_be_slice(h.as_slice())
    );
    for (i, word) in [
        B256::repeat_byte(0x21),
        B256::repeat_byte(0x22),
        B256::repeat_byte(7),
        to.ephemeralX,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            value(record + U256::from(i + 2)),
            U256::from_be_bytes(word.0),
            "record word {}",
            i + 2
        );
    }
    // The owner's account word: a balance of one (the uint64 after the two flags).
    assert_eq!(value(owner_word), U256::from(1) << 16);
    assert_eq!(value(last_token_id_slot()), U256::from(2));
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
    assert!(source.contains(&format!(
        "uint256 private constant RECORD_WORDS = {};",
        pmr_contract::RECORD_WORDS
    )));
    // The node's admission finds a record's owner where the contract puts it.
    let layout = pmr_contract::ContractLayout::get().expect("layout");
    assert_eq!(layout.records_base, records);
    assert_eq!(
        layout.record_owner_key(3),
        records + U256::from(3 * pmr_contract::RECORD_WORDS)
    );
    // Neither region wraps around: an address added to ACCOUNTS, or RECORD_WORDS words per
    // token id below 2^64 added to RECORDS, stays below 2^256.
    assert!(accounts.checked_add(U256::from(1) << 160).is_some());
    assert!(records
        .checked_add(U256::from(pmr_contract::RECORD_WORDS) << 64)
        .is_some());
}
