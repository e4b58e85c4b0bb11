//! Essential secret sharing of PMR record keys. Pure library: no I/O, no clock, no storage.
//!
//! A record key `s` (an ed25519 scalar) encrypts a record through its DEK
//! (`blake3::derive_key("pmr record dek v1", s)`). The key is split so that the patient's
//! *essential* share `s_p` is always needed: `s_c = s − s_p` is split t-of-n among custodians
//! with FROST's trusted-dealer split (Feldman VSS), and `S = s·B` is published. Without `s_p`
//! custodians learn `s_c` at most; without t custodians the patient learns nothing. Each share is
//! sealed with HPKE (RFC 9180: X25519-HKDF-SHA256, HKDF-SHA256, ChaCha20-Poly1305, base mode)
//! to its holder; sealed shares + VSS commitments + `S` form the [`ShareEnvelope`], whose
//! canonical bytes are stored as a content-addressed blob.
//!
//! # API by role
//!
//! **Hospital (dealer)**, at record creation:
//! - [`RecordKey::generate`], [`RecordKey::dek`], [`RecordKey::commitment`] → `S` for the mint;
//! - [`split_record_key`]`(&key, t, &[CustodianInfo], &patient_x25519_pk, rng) ->
//!   ShareEnvelope`; [`ShareEnvelope::encode`] gives the blob bytes.
//!
//! **Custodian node**, at replication and release:
//! - [`ShareEnvelope::decode`] (strict); [`ShareEnvelope::custodian_by_key`] /
//!   [`ShareEnvelope::custodian_by_address`] to find its slot;
//! - [`open_custodian_share`]`(&env, index, &x25519_secret) -> CustodianShare` (verified against
//!   the VSS commitments); the envelope slot itself is the share sealed at rest;
//! - [`ReleaseChallenge::verify`]`(&sig65) -> grantee address`, [`ReleaseChallenge::check_fresh`];
//! - [`seal_share_to`]`(&share, &grantee_x25519_pk, &GrantContext, rng) -> SealedShare`.
//!
//! **Patient**, at grant:
//! - [`open_patient_share`]`(&env, &x25519_secret) -> PatientShare` (checked against `S`);
//! - [`seal_patient_share_to`]`(&share, &grantee_x25519_pk, &GrantContext, rng) -> SealedShare`
//!   for the grant transaction.
//!
//! **Grantee**, at open:
//! - [`ReleaseChallenge::new`], [`ReleaseChallenge::signing_hash`] (personal-sign it) or
//!   [`ReleaseChallenge::sign`];
//! - [`open_sealed_share`]`(&sealed, custodian_index, &x25519_secret, &GrantContext)`,
//!   [`open_granted_patient_share`]`(&sealed, &x25519_secret, &GrantContext)`;
//! - [`reconstruct_record_key`]`(&env, &patient_share, &[CustodianShare]) -> RecordKey`: verifies
//!   every share (naming a forger), interpolates, checks `s·B = S`; then [`RecordKey::dek`].
//!
//! Errors are one enum, [`ShareError`]; [`ShareError::culprit`] names the custodian (or the
//! patient) whose share was bad.

mod challenge;
mod dealer;
mod envelope;
mod error;
mod key;
mod seal;

pub use challenge::{ReleaseChallenge, CHALLENGE_DOMAIN, CHALLENGE_LEN, CHALLENGE_VERSION};
pub use dealer::{
    default_threshold, open_custodian_share, open_patient_share, reconstruct_record_key,
    split_record_key, verify_custodian_share, verify_patient_share, CustodianInfo,
};
pub use envelope::{CustodianSlot, PatientSlot, ShareEnvelope, ENVELOPE_VERSION, MAX_CUSTODIANS};
pub use error::{EnvelopeError, ShareError};
pub use key::{CustodianShare, KeyCommitment, PatientShare, RecordKey, Slot, DEK_CONTEXT};
pub use seal::{
    open_granted_patient_share, open_sealed_share, seal_patient_share_to, seal_share_to,
    GrantContext, SealedShare, SEALED_SHARE_LEN,
};

/// Re-exported so callers name the same key types this crate takes.
pub use x25519_dalek::{PublicKey as X25519PublicKey, StaticSecret as X25519Secret};
