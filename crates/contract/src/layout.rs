//! The committed artifact (ABI, bytecode, compiler settings, storage layout) and the storage
//! slots the executor reads straight from state, without running the EVM.

use std::sync::OnceLock;

use alloy_primitives::{keccak256, Address, U256};

use crate::{ContractError, PMR};

/// The committed artifact (ABI, bytecode, compiler settings, storage layout).
pub const PMR_ARTIFACT_JSON: &str = include_str!("../../../evm-contracts/artifacts/PMR.json");

/// The creation code of the PMR contract (constructor arguments not yet appended).
pub fn creation_code() -> &'static [u8] {
    &PMR::BYTECODE
}

/// Storage slots of the contract's own mappings, from the artifact's storage layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractLayout {
    /// Slot of `mapping(address => bool) _permitted`.
    pub permitted_slot: U256,
}

impl ContractLayout {
    /// The layout of the committed artifact (parsed once).
    pub fn get() -> Result<&'static ContractLayout, ContractError> {
        static LAYOUT: OnceLock<Result<ContractLayout, String>> = OnceLock::new();
        LAYOUT
            .get_or_init(parse_layout)
            .as_ref()
            .map_err(|e| ContractError::Artifact(e.clone()))
    }

    /// The storage key holding `isPermitted(account)`.
    pub fn permitted_key(&self, account: Address) -> U256 {
        mapping_key(account, self.permitted_slot)
    }
}

/// `keccak256(abi.encode(key, slot))`: where Solidity keeps `mapping[key]`.
pub fn mapping_key(key: Address, slot: U256) -> U256 {
    let mut buf = [0u8; 64];
    buf[12..32].copy_from_slice(key.as_slice());
    buf[32..].copy_from_slice(&slot.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(buf).0)
}

#[derive(serde::Deserialize)]
struct Artifact {
    #[serde(rename = "storageLayout")]
    storage_layout: Vec<LayoutEntry>,
}

#[derive(serde::Deserialize)]
struct LayoutEntry {
    label: String,
    slot: String,
    contract: String,
}

fn parse_layout() -> Result<ContractLayout, String> {
    let artifact: Artifact = serde_json::from_str(PMR_ARTIFACT_JSON)
        .map_err(|e| format!("evm-contracts/artifacts/PMR.json is not a PMR artifact: {e}"))?;
    let entry = artifact
        .storage_layout
        .iter()
        .find(|e| e.label == "_permitted" && e.contract.ends_with(":PMR"))
        .ok_or(
            "the artifact's storage layout has no `_permitted` mapping: rebuild it with \
                `node evm-contracts/compile.js`",
        )?;
    let permitted_slot = entry
        .slot
        .parse::<U256>()
        .map_err(|e| format!("bad slot `{}` for `_permitted`: {e}", entry.slot))?;
    Ok(ContractLayout { permitted_slot })
}
