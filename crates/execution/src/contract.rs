//! The PMR contract as committed in `evm-contracts/artifacts/PMR.json`: typed bindings, its
//! fixed address, and the storage slots the executor reads without running the EVM.

use std::sync::OnceLock;

use alloy_primitives::{address, keccak256, Address, U256};
use alloy_sol_types::{Panic, Revert, SolInterface};

use crate::ExecutionError;

alloy_sol_types::sol!(
    #[sol(all_derives)]
    PMR,
    "../../evm-contracts/artifacts/PMR.json"
);

/// The committed artifact (ABI, bytecode, compiler settings, storage layout).
pub const PMR_ARTIFACT_JSON: &str = include_str!("../../../evm-contracts/artifacts/PMR.json");

/// Where genesis deploys the PMR contract: the ASCII bytes of "PMR" at the low end.
pub const PMR_CONTRACT_ADDRESS: Address = address!("0x0000000000000000000000000000000000504d52");

/// Storage slots of the contract's own mappings, from the artifact's storage layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractLayout {
    /// Slot of `mapping(address => bool) _permitted`.
    pub permitted_slot: U256,
}

impl ContractLayout {
    /// The layout of the committed artifact (parsed once).
    pub fn get() -> Result<&'static ContractLayout, ExecutionError> {
        static LAYOUT: OnceLock<Result<ContractLayout, String>> = OnceLock::new();
        LAYOUT
            .get_or_init(parse_layout)
            .as_ref()
            .map_err(|e| ExecutionError::Artifact(e.clone()))
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

/// The creation code of the PMR contract (constructor not yet appended).
pub fn creation_code() -> &'static [u8] {
    &PMR::BYTECODE
}

/// Human-readable reason of a failed call's output: a PMR custom error with its arguments, a
/// `require` message, a panic code, or the raw bytes when none of these decode.
pub fn describe_revert(output: &[u8]) -> String {
    if output.is_empty() {
        return "reverted without data (out of gas or invalid opcode?)".into();
    }
    if let Ok(err) = PMR::PMRErrors::abi_decode(output) {
        return format!("{err:?}");
    }
    if let Ok(revert) = <Revert as alloy_sol_types::SolError>::abi_decode(output) {
        return format!("reverted: {}", revert.reason);
    }
    if let Ok(panic) = <Panic as alloy_sol_types::SolError>::abi_decode(output) {
        return format!("panic code {:#x}", panic.code);
    }
    format!(
        "reverted with unknown data 0x{}",
        alloy_primitives::hex::encode(output)
    )
}
