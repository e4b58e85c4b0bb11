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
//! - [`Wallet`]: an Ethereum (secp256k1) account that signs calls to it.

mod bindings;
pub mod cid;
pub mod describe;
mod error;
pub mod keys;
pub mod layout;
mod wallet;

pub use bindings::{PMR, PMR_ADDRESS};
pub use cid::event_cid;
pub use describe::{describe_event, describe_revert, describe_token_event};
pub use error::ContractError;
pub use keys::{
    encryption_key_digest, register_patient_call, set_encryption_key_call, sign_encryption_key,
    verify_encryption_key,
};
pub use layout::{creation_code, mapping_key, ContractLayout, PMR_ARTIFACT_JSON};
pub use wallet::{Wallet, WalletError};
