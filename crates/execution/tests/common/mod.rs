//! Shared test fixtures: keys, a genesis, signed transactions and a chain on a RocksDB tempdir.
#![allow(dead_code)]

#[path = "../../benches/fixtures/bare.rs"]
pub(crate) mod bare;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolEvent};
use pmr_contract::{PatientKeys, PMR, PMR_ADDRESS};
use pmr_execution::{BlockEnv, CallOutcome, ExecutedBlock, Executor, Receipt};
use pmr_primitives::{GasLimits, Genesis, GenesisValidator, SignedTx, TxLimits, ValidatorAddress};
use pmr_storage::{Durability, Store};

pub(crate) const CHAIN_ID: u64 = 4242;
pub(crate) const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
pub(crate) const BLOCK_MS: u64 = 1_000;
pub(crate) const GAS: u64 = 1_000_000;

/// `signer` as a [`pmr_contract::Wallet`], which the stealth helpers take.
pub(crate) fn wallet(signer: &PrivateKeySigner) -> pmr_contract::Wallet {
    pmr_contract::Wallet::from_bytes(&signer.to_bytes()).expect("valid key")
}

/// The 66-byte stealth meta-address `patient`'s key derives, as its registration publishes it.
pub(crate) fn meta_address(patient: &PrivateKeySigner) -> [u8; 66] {
    pmr_contract::stealth::meta_address_of(&wallet(patient))
        .expect("meta-address")
        .to_bytes()
}

/// A record's one-time owner (what `mintRecord` takes) with the key that signs as it.
pub(crate) struct OneTime {
    /// The owner and its ERC-5564 announcement.
    pub to: PMR::OneTimeOwner,
    /// The one-time owner's key: what signs the record's grants, revocations and versions.
    pub key: PrivateKeySigner,
}

impl OneTime {
    /// The one-time owner's address (the token's `ownerOf`).
    pub(crate) fn address(&self) -> Address {
        self.to.owner
    }
}

/// A fresh one-time owner of a record of `record_type` for `patient`, and its key as the
/// patient derives it.
pub(crate) fn one_time(patient: &PrivateKeySigner, record_type: u32) -> OneTime {
    let patient = wallet(patient);
    let to = pmr_contract::stealth::mint_to_account(&patient, record_type).expect("one-time owner");
    let owner = pmr_contract::stealth::one_time_wallet(&patient, &to).expect("the patient's");
    let key = PrivateKeySigner::from_bytes(&owner.secret()).expect("valid key");
    assert_eq!(
        key.address(),
        to.owner,
        "the one-time key signs as the owner"
    );
    OneTime { to, key }
}

/// A `registerPatient` call for `patient`, with its own signature over its key, commitment and
/// stealth meta-address (for the contract at `contract`).
pub(crate) fn register_call_at(
    contract: Address,
    patient: &PrivateKeySigner,
    commitment: B256,
    key: B256,
) -> PMR::registerPatientCall {
    let meta = meta_address(patient);
    PMR::registerPatientCall {
        patient: patient.address(),
        pseudonymCommitment: commitment,
        encryptionKey: key,
        stealthMetaAddress: Bytes::copy_from_slice(&meta),
        signature: pmr_contract::keys::sign_encryption_key_with(
            patient,
            patient.address(),
            contract,
            CHAIN_ID,
            key,
            PatientKeys {
                pseudonym_commitment: commitment,
                meta_address: &meta,
            },
        )
        .expect("sign"),
    }
}

/// [`register_call_at`] the PMR contract's address.
pub(crate) fn register_call(
    patient: &PrivateKeySigner,
    commitment: B256,
    key: B256,
) -> PMR::registerPatientCall {
    register_call_at(PMR_ADDRESS, patient, commitment, key)
}

/// A `setEncryptionKey` call with `signer`'s own signature (not a patient: no patient fields).
pub(crate) fn key_call(signer: &PrivateKeySigner, key: B256) -> PMR::setEncryptionKeyCall {
    PMR::setEncryptionKeyCall {
        encryptionKey: key,
        signature: pmr_contract::keys::sign_encryption_key_with(
            signer,
            signer.address(),
            PMR_ADDRESS,
            CHAIN_ID,
            key,
            PatientKeys::default(),
        )
        .expect("sign"),
    }
}

pub(crate) fn key(byte: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(byte)).expect("valid key")
}

pub(crate) struct Keys {
    pub admin: PrivateKeySigner,
    pub hospital: PrivateKeySigner,
    pub hospital2: PrivateKeySigner,
    pub custodian: PrivateKeySigner,
    pub patient: PrivateKeySigner,
    pub doctor: PrivateKeySigner,
    pub outsider: PrivateKeySigner,
}

pub(crate) fn keys() -> Keys {
    Keys {
        admin: key(0x01),
        hospital: key(0x02),
        hospital2: key(0x03),
        custodian: key(0x04),
        patient: key(0x05),
        doctor: key(0x06),
        outsider: key(0x07),
    }
}

pub(crate) fn genesis_with(gas: GasLimits) -> Genesis {
    let k = keys();
    Genesis {
        chain_id: CHAIN_ID,
        genesis_time_ms: GENESIS_TIME_MS,
        validators: vec![GenesisValidator {
            name: "v0".into(),
            consensus_key: hex::encode([9u8; 32]),
            custody_key: None,
            operator: Some(k.custodian.address()),
            voting_power: 1,
        }],
        admin: k.admin.address(),
        council: Vec::new(),
        council_threshold: 1,
        hospitals: vec![k.hospital.address()],
        // The doctor is on the permission list from the start; the outsider is not.
        permitted: vec![k.doctor.address()],
        gas,
    }
}

pub(crate) fn genesis() -> Genesis {
    genesis_with(GasLimits::default())
}

pub(crate) const LIMITS: TxLimits = TxLimits {
    chain_id: CHAIN_ID,
    max_tx_bytes: 128 * 1024,
};

/// An EIP-1559 transaction from `signer` to `to`, decoded as the node would.
pub(crate) fn sign_to(
    signer: &PrivateKeySigner,
    nonce: u64,
    to: Address,
    input: Vec<u8>,
    gas_limit: u64,
) -> SignedTx {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit,
        max_fee_per_gas: 0,
        max_priority_fee_per_gas: 0,
        to: TxKind::Call(to),
        input: input.into(),
        ..Default::default()
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    let raw: Bytes = TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into();
    SignedTx::decode(raw, &LIMITS).expect("valid transaction")
}

pub(crate) fn sign<C: SolCall>(signer: &PrivateKeySigner, nonce: u64, call: &C) -> SignedTx {
    sign_to(signer, nonce, PMR_ADDRESS, call.abi_encode(), GAS)
}

pub(crate) fn env(height: u64) -> BlockEnv {
    BlockEnv {
        height,
        timestamp_ms: GENESIS_TIME_MS + height * BLOCK_MS,
        proposer: ValidatorAddress(Address::repeat_byte(0xaa)),
    }
}

/// Commits an executed block the way consensus does: one batch, synced.
/// `totalMinted()` of the PMR contract at `exec`'s head.
pub(crate) fn total_minted(exec: &Executor) -> alloy_primitives::U256 {
    let out = exec
        .call(
            None,
            Address::ZERO,
            PMR_ADDRESS,
            PMR::totalMintedCall {}.abi_encode().into(),
        )
        .expect("totalMinted");
    PMR::totalMintedCall::abi_decode_returns(&out.output).expect("a uint256")
}

pub(crate) fn commit(store: &Store, exec: &Executor, executed: &ExecutedBlock) {
    let mut batch = store.batch();
    exec.write_to_batch(executed, &mut batch);
    batch.commit(Durability::Sync).expect("commit");
    exec.mark_committed(executed);
}

/// A single-node chain on a tempdir with its own clock.
pub(crate) struct Chain {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub exec: Executor,
    pub genesis: Genesis,
    /// Milliseconds added to every later block's timestamp (to move time forward).
    pub time_offset_ms: u64,
}

impl Chain {
    pub(crate) fn new() -> Self {
        Self::with_genesis(genesis())
    }

    pub(crate) fn with_genesis(genesis: Genesis) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let exec = Executor::open(store.clone(), &genesis).expect("genesis");
        Self {
            dir,
            store,
            exec,
            genesis,
            time_offset_ms: 0,
        }
    }

    pub(crate) fn next_env(&self) -> BlockEnv {
        let mut e = env(self.exec.head().0 + 1);
        e.timestamp_ms += self.time_offset_ms;
        e
    }

    /// The timestamp (seconds) the next block will have.
    pub(crate) fn next_block_time(&self) -> u64 {
        self.next_env().timestamp_ms / 1000
    }

    pub(crate) fn nonce(&self, signer: &PrivateKeySigner) -> u64 {
        self.exec.nonce(signer.address()).expect("nonce")
    }

    /// Executes and commits a block of `txs` (all must be valid).
    pub(crate) fn block(&mut self, txs: &[SignedTx]) -> ExecutedBlock {
        let executed = self
            .exec
            .execute_block(&self.next_env(), txs)
            .expect("valid block");
        commit(&self.store, &self.exec, &executed);
        executed
    }

    /// Sends one call from `signer` in its own block and returns its receipt.
    pub(crate) fn send<C: SolCall>(&mut self, signer: &PrivateKeySigner, call: C) -> Receipt {
        let tx = sign(signer, self.nonce(signer), &call);
        let mut executed = self.block(&[tx]);
        executed.receipts.remove(0)
    }

    /// Like [`Chain::send`], asserting success.
    pub(crate) fn ok<C: SolCall>(&mut self, signer: &PrivateKeySigner, call: C) -> Receipt {
        let r = self.send(signer, call);
        assert!(r.success, "transaction failed: {:?}", r.revert_reason());
        r
    }

    /// Like [`Chain::send`], asserting a revert whose decoded reason contains `reason`.
    pub(crate) fn reverts<C: SolCall>(&mut self, signer: &PrivateKeySigner, call: C, reason: &str) {
        let r = self.send(signer, call);
        assert!(!r.success, "expected a revert with {reason}");
        let why = r.revert_reason().expect("failed receipt has a reason");
        assert!(why.contains(reason), "expected {reason}, got {why}");
        assert!(r.logs.is_empty(), "a reverted transaction leaves no logs");
    }

    pub(crate) fn try_view<C: SolCall>(&self, call: C) -> CallOutcome {
        self.try_call_from(Address::ZERO, call)
    }

    /// Simulates `call` from `from` on the latest committed state (nothing is written; the
    /// executor's permission check on senders does not apply, only the contract's rules).
    pub(crate) fn try_call_from<C: SolCall>(&self, from: Address, call: C) -> CallOutcome {
        self.exec
            .call(None, from, PMR_ADDRESS, call.abi_encode().into())
            .expect("call")
    }

    pub(crate) fn view<C: SolCall>(&self, call: C) -> C::Return {
        let out = self.try_view(call);
        assert!(out.success, "view failed: {:?}", out.revert_reason);
        C::abi_decode_returns(&out.output).expect("decode return")
    }
}

/// The first log of `receipt` that decodes as event `E`.
pub(crate) fn event<E: SolEvent>(receipt: &Receipt) -> Option<E> {
    receipt
        .logs
        .iter()
        .find_map(|l| E::decode_raw_log(l.topics.iter().copied(), &l.data).ok())
}
