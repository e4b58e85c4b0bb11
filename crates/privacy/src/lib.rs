//! Patient privacy: pseudonymous identity and de-identification. Pure library: no I/O, no clock.
//!
//! # Pseudonyms
//! A patient is registered on-chain under a [`PseudonymCommitment`]: a keyed blake3 hash of
//! their normalized national health ID under a 32-byte [`PatientSecret`] only they hold. Nobody
//! else can compute it from the ID; the patient proves the link later by revealing the ID and
//! the secret ([`PseudonymCommitment::verify_link`], constant-time; [`LinkOpening`] for
//! transport).
//!
//! - [`NationalId::parse`]`(&str) -> Result<NationalId, IdError>` (ABHA number or address,
//!   by shape), [`NationalId::parse_as`]`(IdScheme, &str)`, [`NationalId::normalized`];
//! - [`PatientSecret::generate`]`(rng)`, [`PseudonymCommitment::compute`]`(&secret, &id)`,
//!   [`PseudonymCommitment::to_bytes`] (the on-chain `bytes32`),
//!   [`PseudonymCommitment::verify_link`]`(&id, &secret)`.
//!
//! # De-identification
//! [`deidentify`]`(&serde_json::Value, &DeidConfig) -> Result<Deidentified, DeidError>` applies
//! HIPAA Safe Harbor to a FHIR R4 resource or Bundle and reports every change by JSON Pointer;
//! see the [`deid`] module for the element-by-element rules.
//!
//! # One-time record owners
//! [`stealth`]: ERC-5564 stealth addresses on secp256k1. A patient publishes a
//! [`StealthMetaAddress`] ([`StealthKeys::derive`] from the account secret); a hospital mints
//! each record to a fresh one-time owner ([`stealth::generate`]); the patient finds its records
//! with the [`ViewingKey`] and signs for each with [`StealthKeys::one_time_secret`].

pub mod deid;
mod error;
mod national_id;
mod pseudonym;
pub mod stealth;

pub use deid::{
    deidentify, pseudonymous_id, Action, Category, DeidChange, DeidConfig, DeidReport,
    Deidentified, PseudonymKey,
};
pub use error::{DeidError, IdError, PseudonymError};
pub use national_id::{
    AbhaAddress, AbhaDomain, AbhaNumber, IdScheme, NationalId, ABHA_ADDRESS_MAX_LEN,
    ABHA_ADDRESS_MIN_LEN, ABHA_NUMBER_DIGITS,
};
pub use pseudonym::{LinkOpening, PatientSecret, PseudonymCommitment};
pub use stealth::{Announcement, StealthError, StealthKeys, StealthMetaAddress, ViewingKey};
