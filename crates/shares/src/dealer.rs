//! Splitting a record key into an envelope, opening slots, verifying shares, reconstructing.
//!
//! `s = s_p + s_c`: the patient's essential share `s_p` is random; `s_c` is split t-of-n among
//! the custodians with FROST's trusted-dealer split, whose Feldman VSS commitments `C_0..C_{t-1}`
//! go into the envelope (`C_0 = s_c·B`). Because `S = s·B` is published too, the patient's share
//! is checkable as `s_p·B = S − C_0`, and each custodian share as FROST's `vss_verify`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alloy_primitives::Address;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use frost_ed25519::keys::{
    IdentifierList, KeyPackage, SecretShare, SigningShare, VerifiableSecretSharingCommitment,
    VerifyingShare,
};
use frost_ed25519::{Identifier, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::envelope::{CustodianSlot, PatientSlot, ShareEnvelope, MAX_CUSTODIANS};
use crate::key::random_nonzero_scalar;
use crate::seal::{open_bytes, seal_bytes, SEALED_SHARE_LEN};
use crate::{CustodianShare, PatientShare, RecordKey, SealedShare, ShareError, Slot};

/// A custodian the dealer splits to: its index (FROST identifier), on-chain address and X25519
/// sealing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodianInfo {
    /// Non-zero, unique within the envelope.
    pub index: u16,
    /// The custodian's address (opaque to this crate; unique within the envelope).
    pub address: Address,
    /// The custodian's X25519 sealing key (unique within the envelope).
    pub public_key: PublicKey,
}

fn frost_err(e: frost_ed25519::Error) -> ShareError {
    ShareError::Frost(e.to_string())
}

fn identifier(index: u16) -> Result<Identifier, ShareError> {
    Identifier::try_from(index).map_err(|_| ShareError::ZeroCustodianIndex)
}

/// Splits `key` for the patient and `custodians` with threshold `threshold` and seals every share.
///
/// Custodians may be given in any order; the envelope lists them by ascending index.
pub fn split_record_key<R: RngCore + CryptoRng>(
    key: &RecordKey,
    threshold: usize,
    custodians: &[CustodianInfo],
    patient: &PublicKey,
    rng: &mut R,
) -> Result<ShareEnvelope, ShareError> {
    let n = custodians.len();
    if n > MAX_CUSTODIANS {
        return Err(ShareError::TooManyCustodians {
            custodians: n,
            max: MAX_CUSTODIANS,
        });
    }
    if threshold < 2 || threshold > n {
        return Err(ShareError::InvalidThreshold {
            threshold,
            custodians: n,
        });
    }
    let mut sorted = custodians.to_vec();
    sorted.sort_by_key(|c| c.index);
    validate_custodians(&sorted)?;

    // s_p random; s_c = s - s_p must be non-zero for FROST (fails with probability ~2^-252).
    let (s_p, s_c) = loop {
        let s_p = random_nonzero_scalar(rng);
        let s_c = key.scalar() - s_p;
        if s_c != Scalar::ZERO {
            break (s_p, s_c);
        }
    };
    let patient_share = PatientShare::from_scalar(s_p);
    let signing_key = SigningKey::from_scalar(s_c).map_err(frost_err)?;
    let identifiers = sorted
        .iter()
        .map(|c| identifier(c.index))
        .collect::<Result<Vec<_>, _>>()?;
    // n ≤ 255 and 2 ≤ t ≤ n were checked above, so these conversions cannot fail.
    let max_signers = u16::try_from(n).map_err(|_| ShareError::TooManyCustodians {
        custodians: n,
        max: MAX_CUSTODIANS,
    })?;
    let min_signers = u16::try_from(threshold).map_err(|_| ShareError::InvalidThreshold {
        threshold,
        custodians: n,
    })?;
    let (secret_shares, _public) = frost_ed25519::keys::split(
        &signing_key,
        max_signers,
        min_signers,
        IdentifierList::Custom(&identifiers),
        rng,
    )
    .map_err(frost_err)?;

    let vss = secret_shares
        .values()
        .next()
        .map(|s| s.commitment().clone())
        .ok_or_else(|| ShareError::Frost("split returned no shares".into()))?;
    let vss_bytes = vss_to_bytes(&vss)?;

    // Build the public part first: its digest is the aad of every sealed slot.
    let placeholder = SealedShare::from_array([0u8; SEALED_SHARE_LEN]);
    let mut envelope = ShareEnvelope {
        threshold: u8::try_from(threshold).map_err(|_| ShareError::InvalidThreshold {
            threshold,
            custodians: n,
        })?,
        key_commitment: key.commitment(),
        vss_bytes,
        vss,
        custodians: sorted
            .iter()
            .map(|c| CustodianSlot {
                index: c.index,
                address: c.address,
                public_key: c.public_key,
                sealed: placeholder.clone(),
            })
            .collect(),
        patient: PatientSlot {
            sealed: placeholder,
        },
    };
    let aad = envelope.public_digest();
    let mut sealed_slots = Vec::with_capacity(n);
    for (slot, id) in envelope.custodians.iter().zip(&identifiers) {
        let share = secret_shares
            .get(id)
            .ok_or_else(|| ShareError::Frost(format!("no share for index {}", slot.index)))?;
        let value = share_bytes(share.signing_share())?;
        let which = Slot::Custodian(slot.index);
        let info = envelope.slot_info(which);
        sealed_slots.push(seal_bytes(
            &slot.public_key,
            &info,
            &aad,
            &value,
            which,
            rng,
        )?);
    }
    for (slot, sealed) in envelope.custodians.iter_mut().zip(sealed_slots) {
        slot.sealed = sealed;
    }
    let info = envelope.slot_info(Slot::Patient);
    envelope.patient.sealed = seal_bytes(
        patient,
        &info,
        &aad,
        &patient_share.to_bytes(),
        Slot::Patient,
        rng,
    )?;
    Ok(envelope)
}

fn validate_custodians(sorted: &[CustodianInfo]) -> Result<(), ShareError> {
    let mut addresses = BTreeSet::new();
    let mut keys: HashMap<[u8; 32], u16> = HashMap::new();
    for (i, c) in sorted.iter().enumerate() {
        if c.index == 0 {
            return Err(ShareError::ZeroCustodianIndex);
        }
        if i > 0 && sorted[i - 1].index == c.index {
            return Err(ShareError::DuplicateCustodianIndex { index: c.index });
        }
        if !addresses.insert(c.address) {
            return Err(ShareError::DuplicateCustodianAddress { address: c.address });
        }
        if let Some(first) = keys.insert(c.public_key.to_bytes(), c.index) {
            return Err(ShareError::DuplicateCustodianKey {
                first,
                second: c.index,
            });
        }
    }
    Ok(())
}

fn vss_to_bytes(vss: &VerifiableSecretSharingCommitment) -> Result<Vec<[u8; 32]>, ShareError> {
    vss.serialize()
        .map_err(frost_err)?
        .into_iter()
        .map(|c| {
            <[u8; 32]>::try_from(c.as_slice())
                .map_err(|_| ShareError::Frost("VSS commitment is not 32 bytes".into()))
        })
        .collect()
}

fn share_bytes(share: &SigningShare) -> Result<zeroize::Zeroizing<[u8; 32]>, ShareError> {
    let v = zeroize::Zeroizing::new(share.serialize());
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    if v.len() != 32 {
        return Err(ShareError::Frost("signing share is not 32 bytes".into()));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

fn check_recipient(
    expected: &PublicKey,
    secret: &StaticSecret,
    slot: Slot,
) -> Result<(), ShareError> {
    if PublicKey::from(secret) != *expected {
        return Err(ShareError::WrongRecipientKey { slot });
    }
    Ok(())
}

/// Custodian side: opens custodian `index`'s slot with its X25519 secret and verifies the share
/// against the envelope's VSS commitments.
pub fn open_custodian_share(
    envelope: &ShareEnvelope,
    index: u16,
    secret: &StaticSecret,
) -> Result<CustodianShare, ShareError> {
    let slot = envelope
        .custodian(index)
        .ok_or(ShareError::UnknownCustodian { index })?;
    let which = Slot::Custodian(index);
    check_recipient(&slot.public_key, secret, which)?;
    let info = envelope.slot_info(which);
    let bytes = open_bytes(
        &slot.sealed,
        secret,
        &info,
        &envelope.public_digest(),
        which,
    )?;
    let share = CustodianShare::from_bytes(index, &bytes)?;
    verify_custodian_share(envelope, &share)?;
    Ok(share)
}

/// Patient side: opens the essential share `s_p` with the patient's X25519 secret and checks it
/// against the commitments (`s_p·B = S − C_0`). The envelope does not name the patient's key:
/// another key fails to open the slot (`SealOpenFailed`).
pub fn open_patient_share(
    envelope: &ShareEnvelope,
    secret: &StaticSecret,
) -> Result<PatientShare, ShareError> {
    let info = envelope.slot_info(Slot::Patient);
    let bytes = open_bytes(
        &envelope.patient.sealed,
        secret,
        &info,
        &envelope.public_digest(),
        Slot::Patient,
    )?;
    let share = PatientShare::from_bytes(&bytes)?;
    verify_patient_share(envelope, &share)?;
    Ok(share)
}

/// FROST `vss_verify` of one custodian share against the envelope; returns FROST's verified
/// material for reconstruction. Failure names the custodian.
fn verify_share_frost(
    envelope: &ShareEnvelope,
    share: &CustodianShare,
) -> Result<(Identifier, SigningShare, VerifyingShare, VerifyingKey), ShareError> {
    let index = share.index();
    if envelope.custodian(index).is_none() {
        return Err(ShareError::UnknownCustodian { index });
    }
    let id = identifier(index)?;
    let signing_share = SigningShare::deserialize(share.value_bytes().as_ref()).map_err(|_| {
        ShareError::MalformedShare {
            slot: Slot::Custodian(index),
        }
    })?;
    let secret_share = SecretShare::new(id, signing_share, envelope.vss.clone());
    let (verifying_share, verifying_key) = secret_share
        .verify()
        .map_err(|_| ShareError::ForgedShare { custodian: index })?;
    Ok((id, signing_share, verifying_share, verifying_key))
}

/// Checks a custodian share against the envelope's VSS commitments (FROST `vss_verify`).
pub fn verify_custodian_share(
    envelope: &ShareEnvelope,
    share: &CustodianShare,
) -> Result<(), ShareError> {
    verify_share_frost(envelope, share).map(|_| ())
}

/// Checks the patient's share against the envelope: `s_p·B = S − C_0`.
pub fn verify_patient_share(
    envelope: &ShareEnvelope,
    share: &PatientShare,
) -> Result<(), ShareError> {
    let s = envelope
        .key_commitment
        .point()
        .ok_or(ShareError::InvalidKeyCommitment)?;
    let c0 = envelope
        .vss_bytes
        .first()
        .and_then(crate::key::point_from_bytes)
        .ok_or_else(|| ShareError::Frost("VSS commitment has no constant term".into()))?;
    if EdwardsPoint::mul_base(share.scalar()) == s - c0 {
        Ok(())
    } else {
        Err(ShareError::PatientShareMismatch)
    }
}

/// Grantee side: reconstructs the record key from the patient's share and at least `t` custodian
/// shares (any `t` of the `n`).
///
/// Every custodian share is checked against the VSS commitments first (a bad one is named in
/// [`ShareError::ForgedShare`]); then the patient's share; then `s_c` is Lagrange-interpolated by
/// FROST, `s = s_c + s_p`, and `s·B` must equal the key commitment.
pub fn reconstruct_record_key(
    envelope: &ShareEnvelope,
    patient: &PatientShare,
    shares: &[CustodianShare],
) -> Result<RecordKey, ShareError> {
    let need = envelope.threshold();
    let mut verified = BTreeMap::new();
    for share in shares {
        if verified.contains_key(&share.index()) {
            return Err(ShareError::DuplicateShare {
                custodian: share.index(),
            });
        }
        verified.insert(share.index(), verify_share_frost(envelope, share)?);
    }
    if verified.len() < need {
        return Err(ShareError::NotEnoughShares {
            have: verified.len(),
            need,
        });
    }
    verify_patient_share(envelope, patient)?;
    // Any t verified shares determine the same polynomial; use the t lowest indices.
    let min_signers = u16::try_from(need).map_err(|_| ShareError::Frost("threshold".into()))?;
    let packages: Vec<KeyPackage> = verified
        .into_values()
        .take(need)
        .map(|(id, share, vshare, vkey)| KeyPackage::new(id, share, vshare, vkey, min_signers))
        .collect();
    let s_c = frost_ed25519::keys::reconstruct(&packages)
        .map_err(frost_err)?
        .to_scalar();
    let key = RecordKey::from_scalar(s_c + patient.scalar())?;
    envelope.key_commitment.verify_key(&key)?;
    Ok(key)
}
/// The custodian threshold a record key is split with: `f + 1` of `3f + 1` custodians (so `f`
/// colluding custodians learn nothing and `f` unavailable ones stop no release), and at least 2.
pub fn default_threshold(custodians: usize) -> usize {
    (custodians.saturating_sub(1) / 3 + 1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_threshold_is_f_plus_one_and_at_least_two() {
        assert_eq!(default_threshold(1), 2);
        assert_eq!(default_threshold(4), 2);
        assert_eq!(default_threshold(7), 3);
        assert_eq!(default_threshold(10), 4);
    }
}
