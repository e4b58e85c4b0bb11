//! The validator set of every height, derived from the chain.
//!
//! The PMR contract keeps the history of validator sets, each with the height from which it
//! decides (genesis's from height 1; a change the council approves in block `h` from
//! `h + VALIDATOR_CHANGE_DELAY`). The history is contract state, so it is committed in the same
//! atomic write as the block that changes it, and every node reads the same history: after a
//! restart, after a state sync, or after committing a block that emitted `ValidatorSetChanged`.
//! Because the delay is at least one block, the set of height `h + 1` is known once `h` is
//! committed, which is when the engine asks for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use alloy_sol_types::{SolCall, SolEvent};
use malachitebft_signing_ed25519::PublicKey;
use pmr_contract::{PMR, PMR_ADDRESS};
use pmr_execution::{verify_receipt, Executor, Receipt};
use pmr_primitives::{Genesis, Header, MerkleProof, ProofEntry};
use tracing::{error, info, warn};

use crate::context::{Address, Validator, ValidatorSet};
use crate::error::ConsensusError;
use crate::verify::{decode_proof_entry, verify_certificate, Certificate, VerifyError};

/// A validator-set change as a peer proves it: the header of the block that made it, that
/// block's commit certificate, and the receipt (RLP, with its Merkle proof against the header's
/// receipts root) of the transaction whose `ValidatorSetChanged` event is the change. The
/// contract allows one change per block, so that event is the block's whole change.
#[derive(Clone, Debug)]
pub struct SetChangeProof {
    /// The block that made the change.
    pub header: Header,
    /// Its commit certificate.
    pub certificate: Certificate,
    /// The receipt of the transaction that made the change, RLP-encoded.
    pub receipt: Vec<u8>,
    /// The receipt's Merkle proof against `header.receipts_root`.
    pub proof: MerkleProof,
}

/// The validator sets of a chain by the height from which each decides.
pub struct ValidatorSchedule {
    /// Names of genesis validators by consensus key, for logs and status.
    names: HashMap<[u8; 32], String>,
    /// `(effective height, set)`, by increasing height; the first from height 1.
    entries: RwLock<Vec<(u64, ValidatorSet)>>,
    /// How many of the contract's entries `entries` holds (0: only the genesis set, not yet
    /// read from the chain).
    from_chain: AtomicU64,
    /// Held by a reload: two never append the same entries.
    reloading: std::sync::Mutex<()>,
}

impl ValidatorSchedule {
    /// The schedule of a chain whose state holds no history yet: the genesis set from height 1.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, ConsensusError> {
        let set = crate::engine::validator_set(genesis)?;
        Ok(Self {
            names: names(genesis),
            entries: RwLock::new(vec![(1, set)]),
            from_chain: AtomicU64::new(0),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The schedule the committed state of `executor` holds.
    pub fn load(genesis: &Genesis, executor: &Executor) -> Result<Self, ConsensusError> {
        let schedule = Self::from_genesis(genesis)?;
        schedule.reload(executor)?;
        Ok(schedule)
    }

    /// The schedule `changes` prove, from the genesis set on: each change's block must be
    /// certified by the set of its own height (the genesis's, or one an earlier change made),
    /// its receipt must be in that block, and its event must name the height the chain derives
    /// (the block's plus `VALIDATOR_CHANGE_DELAY`). Changes come in chain order.
    pub fn from_proofs(genesis: &Genesis, changes: &[SetChangeProof]) -> Result<Self, VerifyError> {
        let bad =
            |height: u64, why: &str| VerifyError::BadSetChange(format!("block {height}: {why}"));
        let schedule =
            Self::from_genesis(genesis).map_err(|e| VerifyError::BadGenesis(e.to_string()))?;
        let mut last = 0;
        for change in changes {
            let height = change.header.height;
            if height <= last {
                return Err(bad(height, "changes are not in chain order"));
            }
            last = height;
            let hash = change.header.hash();
            verify_certificate(
                genesis.chain_id,
                &schedule.at(height),
                &change.certificate,
                height,
                hash,
            )?;
            let mut bytes = change.receipt.as_slice();
            let receipt = <Receipt as alloy_rlp::Decodable>::decode(&mut bytes)
                .map_err(|e| VerifyError::MalformedReceipt(e.to_string()))?;
            if !bytes.is_empty() {
                return Err(VerifyError::MalformedReceipt("trailing bytes".into()));
            }
            if !verify_receipt(&change.header.receipts_root, &receipt, &change.proof) {
                return Err(VerifyError::BadReceiptProof);
            }
            let event = receipt
                .logs
                .iter()
                .filter(|l| l.address == PMR_ADDRESS)
                .find_map(|l| {
                    PMR::ValidatorSetChanged::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
                })
                .ok_or_else(|| bad(height, "the receipt holds no ValidatorSetChanged event"))?;
            let effective: u64 = event
                .effectiveHeight
                .try_into()
                .map_err(|_| bad(height, "effective height out of range"))?;
            if effective != height + pmr_contract::VALIDATOR_CHANGE_DELAY {
                return Err(bad(
                    height,
                    "the change names another effective height than the chain derives",
                ));
            }
            if event.keys.len() != event.powers.len() {
                return Err(bad(height, "keys and powers differ in number"));
            }
            let validators: Vec<PMR::Validator> = event
                .keys
                .iter()
                .zip(&event.powers)
                .map(|(key, power)| PMR::Validator {
                    key: *key,
                    power: *power,
                })
                .collect();
            let mut set = schedule.set_of(&validators);
            if set.validators().is_empty() {
                // As the nodes do (`reload`): the set before it stays.
                set = schedule.at(effective - 1);
            }
            schedule
                .entries
                .write()
                .expect("schedule lock")
                .push((effective, set));
        }
        Ok(schedule)
    }

    /// [`ValidatorSchedule::from_proofs`] of changes in the audit-proof entry form (what
    /// `LedgerService.GetValidatorSetChanges` answers, and audit proof files carry).
    pub fn from_entries(genesis: &Genesis, entries: &[ProofEntry]) -> Result<Self, VerifyError> {
        let mut changes = Vec::with_capacity(entries.len());
        for e in entries {
            let (block, certificate, proof, receipt) =
                decode_proof_entry(e).map_err(VerifyError::BadSetChange)?;
            changes.push(SetChangeProof {
                header: block.header,
                certificate,
                receipt,
                proof,
            });
        }
        Self::from_proofs(genesis, &changes)
    }

    /// The set that decides `height`.
    pub fn at(&self, height: u64) -> ValidatorSet {
        let entries = self.entries.read().expect("schedule lock");
        entries
            .iter()
            .rev()
            .find(|(from, _)| *from <= height)
            .unwrap_or(&entries[0])
            .1
            .clone()
    }

    /// Every `(effective height, set)` known, oldest first.
    pub fn entries(&self) -> Vec<(u64, ValidatorSet)> {
        self.entries.read().expect("schedule lock").clone()
    }

    /// Whether a block with these receipts changed the validator set.
    pub fn changed_by(receipts: &[Receipt]) -> bool {
        receipts.iter().any(|r| {
            r.logs.iter().any(|l| {
                l.address == PMR_ADDRESS
                    && l.topics.first() == Some(&PMR::ValidatorSetChanged::SIGNATURE_HASH)
            })
        })
    }

    /// Reads the entries the committed state holds beyond those already read (entries are
    /// only ever appended), one per call.
    pub fn reload(&self, executor: &Executor) -> Result<(), ConsensusError> {
        let count: u64 = view(executor, &PMR::validatorSetCountCall {})?
            .try_into()
            .map_err(|_| ConsensusError::Engine("validator set count out of range".into()))?;
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let known = self.from_chain.load(Ordering::Acquire);
        if count == 0 {
            return Err(ConsensusError::Engine(
                "the chain's state holds no validator set".into(),
            ));
        }
        if count <= known {
            return Ok(());
        }
        let mut previous = if known == 0 {
            None
        } else {
            self.entries
                .read()
                .expect("schedule lock")
                .last()
                .map(|(_, s)| s.clone())
        };
        let mut read = Vec::new();
        for index in known..count {
            let entry = view(
                executor,
                &PMR::validatorSetAtCall {
                    index: pmr_primitives::U256::from(index),
                },
            )?;
            let mut set = self.set_of(&entry.validators);
            if set.validators().is_empty() {
                // No key of it can sign: every node keeps the set before it, alike.
                error!(target: "pmr::consensus", from_height = entry.effectiveHeight, "a validator set with no usable key: the previous set stays");
                match &previous {
                    Some(p) => set = p.clone(),
                    None => {
                        return Err(ConsensusError::Engine(
                            "the genesis validator set has no usable key".into(),
                        ))
                    }
                }
            }
            info!(target: "pmr::consensus", from_height = entry.effectiveHeight, validators = set.validators().len(), power = set.validators().iter().map(|v| v.voting_power).sum::<u64>(), "validator set");
            previous = Some(set.clone());
            read.push((entry.effectiveHeight, set));
        }
        let mut current = self.entries.write().expect("schedule lock");
        if known == 0 {
            current.clear();
        }
        current.extend(read);
        self.from_chain.store(count, Ordering::Release);
        Ok(())
    }

    /// The consensus set of a contract entry. A key that is not an ed25519 point cannot sign and
    /// is left out, alike on every node.
    fn set_of(&self, validators: &[PMR::Validator]) -> ValidatorSet {
        let mut set = Vec::with_capacity(validators.len());
        for v in validators {
            let key: [u8; 32] = v.key.0;
            let Ok(public_key) = PublicKey::from_bytes(key) else {
                warn!(target: "pmr::consensus", key = %hex::encode(key), "a validator key that is not an ed25519 public key: left out of the set");
                continue;
            };
            let name = self
                .names
                .get(&key)
                .cloned()
                .unwrap_or_else(|| format!("v-{}", &hex::encode(key)[..8]));
            set.push(Validator {
                address: Address::from_public_key(&public_key),
                public_key,
                voting_power: v.power,
                name,
            });
        }
        ValidatorSet::new(set)
    }
}

/// A view of the PMR contract at the committed head, for reading the validator sets.
fn view<C: SolCall>(executor: &Executor, call: &C) -> Result<C::Return, ConsensusError> {
    let failed = |e: String| ConsensusError::Engine(format!("reading the validator sets: {e}"));
    executor
        .view(None, call)
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
}

fn names(genesis: &Genesis) -> HashMap<[u8; 32], String> {
    genesis
        .validators
        .iter()
        .filter_map(|v| Some((v.consensus_key_bytes().ok()?, v.name.clone())))
        .collect()
}
