//! The genesis file: the chain's identity, its validators and its first permissions.

use std::path::Path;

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

use crate::block::ValidatorAddress;

/// One validator of the genesis set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// A human name for logs and status output.
    pub name: String,
    /// ed25519 consensus public key, hex.
    pub consensus_key: String,
    /// X25519 custody public key (for sealed key shares), hex.
    #[serde(default)]
    pub custody_key: Option<String>,
    /// Ethereum address the validator's node uses to sign its own transactions (share-release
    /// logs); granted the CUSTODIAN role at genesis.
    #[serde(default)]
    pub operator: Option<Address>,
    /// Weight of the validator's votes in consensus; not 0.
    pub voting_power: u64,
}

impl GenesisValidator {
    /// The ed25519 public key bytes.
    pub fn consensus_key_bytes(&self) -> Result<[u8; 32], GenesisError> {
        parse_key32(&self.consensus_key).ok_or_else(|| GenesisError::BadKey(self.name.clone()))
    }

    /// The validator's address.
    pub fn address(&self) -> Result<ValidatorAddress, GenesisError> {
        Ok(ValidatorAddress::from_public_key(
            &self.consensus_key_bytes()?,
        ))
    }
}

fn parse_key32(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim_start_matches("0x")).ok()?;
    bytes.try_into().ok()
}

/// A custodian of record-key shares, as the genesis names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisCustodian {
    /// Its index in every share envelope (1-based, genesis order).
    pub index: u16,
    /// The validator's name.
    pub name: String,
    /// Operator address: holds the CUSTODIAN role and signs share-release logs.
    pub address: Address,
    /// X25519 custody public key.
    pub custody_key: [u8; 32],
}

/// Gas limits, priced at zero but metered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GasLimits {
    /// Most gas the transactions of one block may use together (default 200,000,000).
    pub block_gas_limit: u64,
    /// Most gas one transaction may reserve (default 10,000,000).
    pub tx_gas_limit: u64,
}

impl Default for GasLimits {
    fn default() -> Self {
        Self {
            block_gas_limit: 200_000_000,
            tx_gas_limit: 10_000_000,
        }
    }
}

/// The genesis of a PMR chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The EIP-155 chain id transactions must be signed for; not 0.
    pub chain_id: u64,
    /// Milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The initial validator set; at least one.
    pub validators: Vec<GenesisValidator>,
    /// The first member of the governance council (see [`Genesis::council_members`]).
    pub admin: Address,
    /// Further members of the governance council.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub council: Vec<Address>,
    /// Approvals of council members a governance proposal needs (1 to the council's size;
    /// 1 when absent: each member acts alone).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub council_threshold: u32,
    /// Accounts holding the HOSPITAL role from the start.
    #[serde(default)]
    pub hospitals: Vec<Address>,
    /// Further accounts on the permission list from the start (admin, hospitals and validator
    /// operators are always on it).
    #[serde(default)]
    pub permitted: Vec<Address>,
    /// Gas limits of blocks and transactions; the defaults when absent.
    #[serde(default)]
    pub gas: GasLimits,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Problems with a genesis file.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file cannot be read.
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of a [`Genesis`].
    #[error("genesis file {path} is not valid JSON for a PMR genesis: {source}")]
    Parse {
        /// The file's path.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The validator list is empty.
    #[error("genesis has no validators")]
    NoValidators,
    /// A validator's consensus key is not 32 bytes of hex; carries its name.
    #[error("validator `{0}` has a consensus key that is not 32 bytes of hex")]
    BadKey(String),
    /// The council threshold is 0 or more than the council's members.
    #[error("council threshold {threshold} is not between 1 and the council's {members} members")]
    BadCouncilThreshold {
        /// The threshold.
        threshold: u32,
        /// Council members.
        members: usize,
    },
    /// The gas limits cannot run the chain: a transaction limit below 1,000,000 (governance
    /// and custody transactions need it) or above the block limit.
    #[error("gas limits {block_gas_limit} per block, {tx_gas_limit} per transaction: the transaction limit must be at least 1,000,000 and at most the block limit")]
    BadGasLimits {
        /// Block gas limit.
        block_gas_limit: u64,
        /// Transaction gas limit.
        tx_gas_limit: u64,
    },
    /// A council member is the zero address.
    #[error("a council member is the zero address")]
    ZeroCouncilMember,
    /// A validator has zero voting power; carries its name.
    #[error("validator `{0}` has zero voting power")]
    ZeroPower(String),
    /// Two validators share a consensus key; carries the name of the later one.
    #[error("validator key of `{0}` appears twice")]
    DuplicateValidator(String),
    /// The chain id is 0.
    #[error("chain id must not be 0")]
    ZeroChainId,
    /// A validator's custody key is not 32 bytes of hex; carries its name.
    #[error("validator `{0}` has a custody key that is not 32 bytes of hex")]
    BadCustodyKey(String),
    /// A validator has a custody key but no operator address; carries its name.
    #[error("validator `{0}` has a custody key but no operator address (a custodian needs both)")]
    CustodianWithoutOperator(String),
    /// A validator reuses another's custody key or operator address, or its operator is the
    /// zero address; carries its name.
    #[error("validator `{0}` repeats another validator's custody key or operator address (or its operator is the zero address)")]
    DuplicateCustodian(String),
}

impl Genesis {
    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let genesis: Genesis =
            serde_json::from_str(&text).map_err(|source| GenesisError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Checks internal consistency.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id == 0 {
            return Err(GenesisError::ZeroChainId);
        }
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if self.gas.tx_gas_limit < 1_000_000 || self.gas.tx_gas_limit > self.gas.block_gas_limit {
            return Err(GenesisError::BadGasLimits {
                block_gas_limit: self.gas.block_gas_limit,
                tx_gas_limit: self.gas.tx_gas_limit,
            });
        }
        let council = self.council_members();
        if self.council.iter().any(|a| a.is_zero()) {
            return Err(GenesisError::ZeroCouncilMember);
        }
        if self.council_threshold == 0 || self.council_threshold as usize > council.len() {
            return Err(GenesisError::BadCouncilThreshold {
                threshold: self.council_threshold,
                members: council.len(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        let mut custody_keys = std::collections::HashSet::new();
        let mut operators = std::collections::HashSet::new();
        for v in &self.validators {
            let key = v.consensus_key_bytes()?;
            if v.voting_power == 0 {
                return Err(GenesisError::ZeroPower(v.name.clone()));
            }
            if !seen.insert(key) {
                return Err(GenesisError::DuplicateValidator(v.name.clone()));
            }
            if let Some(k) = &v.custody_key {
                if parse_key32(k).is_none() {
                    return Err(GenesisError::BadCustodyKey(v.name.clone()));
                }
                if v.operator.is_none() {
                    return Err(GenesisError::CustodianWithoutOperator(v.name.clone()));
                }
                if !custody_keys.insert(parse_key32(k)) {
                    return Err(GenesisError::DuplicateCustodian(v.name.clone()));
                }
            }
            if let Some(op) = v.operator {
                if op.is_zero() || !operators.insert(op) {
                    return Err(GenesisError::DuplicateCustodian(v.name.clone()));
                }
            }
        }
        Ok(())
    }

    /// The custodians of record-key shares: validators with a custody key (and, as `validate`
    /// requires, an operator), numbered 1.. in genesis order. Dealers split to exactly these,
    /// with these indices.
    pub fn custodians(&self) -> Vec<GenesisCustodian> {
        self.validators
            .iter()
            .filter_map(|v| Some((v, parse_key32(v.custody_key.as_deref()?)?, v.operator?)))
            .enumerate()
            .map(|(i, (v, custody_key, address))| GenesisCustodian {
                index: i as u16 + 1,
                name: v.name.clone(),
                address,
                custody_key,
            })
            .collect()
    }

    /// Canonical JSON bytes (field order as declared), the input of [`Genesis::hash`].
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("genesis serializes")
    }

    /// The genesis hash: the parent hash of block 1.
    pub fn hash(&self) -> B256 {
        keccak256(self.canonical_bytes())
    }

    /// The governance council: `admin` and then `council`, without repeats.
    pub fn council_members(&self) -> Vec<Address> {
        let mut all = vec![self.admin];
        for a in &self.council {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }

    /// Every account on the permission list at genesis.
    pub fn initial_permitted(&self) -> Vec<Address> {
        let mut all = self.council_members();
        all.extend(self.hospitals.iter().copied());
        all.extend(self.validators.iter().filter_map(|v| v.operator));
        all.extend(self.permitted.iter().copied());
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(i: u8, custody: Option<String>, operator: Option<Address>) -> GenesisValidator {
        GenesisValidator {
            name: format!("v{i}"),
            consensus_key: hex::encode([i; 32]),
            custody_key: custody,
            operator,
            voting_power: 1,
        }
    }

    fn genesis(validators: Vec<GenesisValidator>) -> Genesis {
        Genesis {
            chain_id: 7,
            genesis_time_ms: 0,
            validators,
            admin: Address::repeat_byte(0xad),
            council: Vec::new(),
            council_threshold: 1,
            hospitals: vec![],
            permitted: vec![],
            gas: GasLimits::default(),
        }
    }

    #[test]
    fn gas_limits_and_the_council_threshold_must_let_the_chain_be_governed() {
        let mut g = genesis(vec![validator(1, None, None)]);
        g.validate().unwrap();
        g.gas.tx_gas_limit = 999_999;
        assert!(matches!(
            g.validate(),
            Err(GenesisError::BadGasLimits { .. })
        ));
        g.gas = GasLimits {
            block_gas_limit: 1_000_000,
            tx_gas_limit: 2_000_000,
        };
        assert!(matches!(
            g.validate(),
            Err(GenesisError::BadGasLimits { .. })
        ));
        g.gas = GasLimits::default();
        g.council_threshold = 2;
        assert!(matches!(
            g.validate(),
            Err(GenesisError::BadCouncilThreshold {
                threshold: 2,
                members: 1
            })
        ));
        g.council.push(Address::repeat_byte(0xc1));
        g.validate().unwrap();
        g.council_threshold = 0;
        assert!(g.validate().is_err());
    }

    #[test]
    fn custodians_are_the_validators_with_custody_keys_numbered_from_one() {
        let g = genesis(vec![
            validator(
                1,
                Some(hex::encode([0x11; 32])),
                Some(Address::repeat_byte(1)),
            ),
            validator(2, None, Some(Address::repeat_byte(2))),
            validator(
                3,
                Some(hex::encode([0x33; 32])),
                Some(Address::repeat_byte(3)),
            ),
        ]);
        g.validate().unwrap();
        let c = g.custodians();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (
                c[0].index,
                c[0].name.as_str(),
                c[0].address,
                c[0].custody_key
            ),
            (1, "v1", Address::repeat_byte(1), [0x11; 32])
        );
        assert_eq!(
            (
                c[1].index,
                c[1].name.as_str(),
                c[1].address,
                c[1].custody_key
            ),
            (2, "v3", Address::repeat_byte(3), [0x33; 32])
        );
    }

    #[test]
    fn custody_keys_must_be_32_bytes_and_come_with_an_operator() {
        let bad = genesis(vec![validator(1, Some("abcd".into()), Some(Address::ZERO))]);
        assert!(matches!(bad.validate(), Err(GenesisError::BadCustodyKey(n)) if n == "v1"));
        let twice = genesis(vec![
            validator(1, Some(hex::encode([1; 32])), Some(Address::repeat_byte(1))),
            validator(2, Some(hex::encode([1; 32])), Some(Address::repeat_byte(2))),
        ]);
        assert!(matches!(twice.validate(), Err(GenesisError::DuplicateCustodian(n)) if n == "v2"));
        let same_operator = genesis(vec![
            validator(1, None, Some(Address::repeat_byte(1))),
            validator(2, None, Some(Address::repeat_byte(1))),
        ]);
        assert!(matches!(
            same_operator.validate(),
            Err(GenesisError::DuplicateCustodian(n)) if n == "v2"
        ));
        let lone = genesis(vec![validator(1, Some(hex::encode([1; 32])), None)]);
        assert!(matches!(
            lone.validate(),
            Err(GenesisError::CustodianWithoutOperator(n)) if n == "v1"
        ));
    }
}
