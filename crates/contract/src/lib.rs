//! The PMR contract (`evm-contracts/PMR.sol`) as the rest of the workspace sees it, defined
//! once: the executor deploys and reads it, custodians and clients call it.
//!
//! - [`PMR`]: typed bindings generated from the committed artifact
//!   (`evm-contracts/artifacts/PMR.json`), deployed at [`PMR_ADDRESS`] on every PMR network.
//! - [`layout`]: the artifact itself, the creation code, and the storage slots the executor
//!   reads without running the EVM.
//! - [`cid`]: the contract's form of a CID (codec + BLAKE3 digest) and the CIDs events name.
//! - [`describe`]: reverts and events in words a user can act on.
//! - [`keys`]: the signature with which an account publishes its encryption key.
//! - [`stealth`]: ERC-5564 announcements as the contract takes and returns them.
//! - [`Wallet`]: an Ethereum (secp256k1) account that signs calls to it.

mod bindings;
pub mod cid;
pub mod describe;
mod error;
pub mod keys;
pub mod layout;
pub mod stealth;
mod wallet;

pub use bindings::{PMR, PMR_ADDRESS, VALIDATOR_CHANGE_DELAY};
pub use cid::event_cid;
pub use describe::{describe_event, describe_revert, describe_token_event};
pub use error::ContractError;
pub use keys::{
    encryption_key_digest, register_patient_call, register_patient_call_with,
    set_encryption_key_call, sign_encryption_key, verify_encryption_key, PatientKeys,
};
pub use layout::{
    creation_code, erc7201, mapping_key, owner_call_token, owns_record, ContractLayout,
    PMR_ARTIFACT_JSON, RECORD_WORDS,
};
pub use wallet::{Wallet, WalletError};
