//! The committed artifact (ABI, bytecode, compiler settings, storage layout) and the storage
//! slots the executor reads straight from state, without running the EVM.

use std::sync::OnceLock;

use alloy_primitives::{keccak256, Address, U256};
use alloy_sol_types::SolCall;

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
    /// Slot of `mapping(address => bool) _removed` (accounts the admin took off the list).
    pub removed_slot: U256,
    /// The first slot of the records region (`RECORDS`, ERC-7201 `pmr.storage.records`).
    pub records_base: U256,
    /// Slot of `uint256 _gasLimits` (`block << 64 | transaction`).
    pub gas_limits_slot: U256,
}

/// Words of one record in the records region (`RECORD_WORDS`).
pub const RECORD_WORDS: u64 = 6;

/// Token ids admission looks up as a record owner's (a record exists only below this; larger
/// ids are refused without reading state).
const MAX_ADMITTED_TOKEN: u64 = 1 << 62;

/// Where ERC-7201 places namespace `id`: `keccak256(abi.encode(uint256(keccak256(id)) - 1))`
/// with its low byte cleared.
pub fn erc7201(id: &str) -> U256 {
    let inner = U256::from_be_bytes(keccak256(id).0) - U256::from(1);
    U256::from_be_bytes(keccak256(inner.to_be_bytes::<32>()).0) & !U256::from(0xff)
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

    /// The storage key holding whether the admin removed `account` (`_removed[account]`): a
    /// removed one-time owner is refused even about its own record.
    pub fn removed_key(&self, account: Address) -> U256 {
        mapping_key(account, self.removed_slot)
    }

    /// The storage key of token `token`'s first record word, whose low 160 bits are its
    /// one-time owner.
    pub fn record_owner_key(&self, token: u64) -> U256 {
        self.records_base + U256::from(token) * U256::from(RECORD_WORDS)
    }
}

/// The record a PMR call is about when only the record's owner may make it (`grantAccess`,
/// `revokeAccess`, `appendVersion`): admission lets a one-time owner, which is on no permission
/// list, send exactly these about its own record. `None` for any other call.
pub fn owner_call_token(input: &[u8]) -> Option<u64> {
    let selector: [u8; 4] = input.get(..4)?.try_into().ok()?;
    if ![
        crate::PMR::grantAccessCall::SELECTOR,
        crate::PMR::revokeAccessCall::SELECTOR,
        crate::PMR::appendVersionCall::SELECTOR,
    ]
    .contains(&selector)
    {
        return None;
    }
    let token = U256::from_be_slice(input.get(4..36)?);
    let token = u64::try_from(token).ok()?;
    (1..MAX_ADMITTED_TOKEN).contains(&token).then_some(token)
}

/// Whether the record word `head` (see [`ContractLayout::record_owner_key`]) names `account` as
/// its owner.
pub fn owns_record(head: U256, account: Address) -> bool {
    account != Address::ZERO && head.to_be_bytes::<32>()[12..] == account.0 .0[..]
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
    let slot_of = |label: &str| -> Result<U256, String> {
        let entry = artifact
            .storage_layout
            .iter()
            .find(|e| e.label == label && e.contract.ends_with(":PMR"))
            .ok_or(format!(
                "the artifact's storage layout has no `{label}` mapping: rebuild it with \
                 `node evm-contracts/compile.js`"
            ))?;
        entry
            .slot
            .parse::<U256>()
            .map_err(|e| format!("bad slot `{}` for `{label}`: {e}", entry.slot))
    };
    Ok(ContractLayout {
        permitted_slot: slot_of("_permitted")?,
        removed_slot: slot_of("_removed")?,
        gas_limits_slot: slot_of("_gasLimits")?,
        records_base: erc7201("pmr.storage.records"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    #[test]
    fn only_owner_calls_about_a_real_token_id_are_looked_up() {
        let grant = crate::PMR::grantAccessCall {
            tokenId: U256::from(7),
            grantee: Address::repeat_byte(1),
            expiry: 1,
            sealedPatientShare: Default::default(),
        }
        .abi_encode();
        assert_eq!(owner_call_token(&grant), Some(7));
        let revoke = crate::PMR::revokeAccessCall {
            tokenId: U256::from(9),
            grantee: Address::repeat_byte(1),
        }
        .abi_encode();
        assert_eq!(owner_call_token(&revoke), Some(9));
        let mint_to_self = crate::PMR::setPermittedCall {
            account: Address::repeat_byte(1),
            permitted: true,
        }
        .abi_encode();
        assert_eq!(owner_call_token(&mint_to_self), None);
        assert_eq!(owner_call_token(&grant[..20]), None);
        let mut huge = revoke.clone();
        huge[4] = 1;
        assert_eq!(owner_call_token(&huge), None, "a token id past 2^62");
        let mut zero = revoke;
        zero[4..36].fill(0);
        assert_eq!(owner_call_token(&zero), None);
    }

    #[test]
    fn the_owner_is_the_low_160_bits_of_the_record_head() {
        let owner = Address::repeat_byte(0xab);
        let mut word = [0u8; 32];
        word[..12].fill(0x77);
        word[12..].copy_from_slice(owner.as_slice());
        let head = U256::from_be_bytes(B256::from(word).0);
        assert!(owns_record(head, owner));
        assert!(!owns_record(head, Address::repeat_byte(0xac)));
        assert!(!owns_record(U256::ZERO, Address::ZERO));
        let layout = ContractLayout::get().unwrap();
        assert_eq!(
            layout.record_owner_key(2) - layout.record_owner_key(1),
            U256::from(RECORD_WORDS)
        );
    }
}
