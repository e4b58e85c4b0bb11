//! Keys an account signs as its own. `registerPatient` and `setEncryptionKey` take the
//! account's EIP-191 signature over [`encryption_key_digest`] (its X25519 encryption key and,
//! for a patient, its pseudonym commitment and stealth meta-address), and the contract keeps it
//! (`encryptionKeyAttestation`): a client that seals a share to an account's key, or derives a
//! one-time owner from a patient's meta-address, checks the signature itself
//! ([`verify_encryption_key`]), so no node, and no one on the path to one, can make it seal to
//! a key, or mint to an address, the account did not publish.

use alloy_primitives::{keccak256, Address, Bytes, Signature, B256, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::SolValue;

use crate::bindings::{PMR, PMR_ADDRESS};
use crate::wallet::{Wallet, WalletError};

/// The contract's `KEY_DOMAIN`.
fn key_domain() -> B256 {
    keccak256("PMR encryption key v2")
}

/// The patient-only fields an account signs with its encryption key: its pseudonym commitment
/// and stealth meta-address (both empty for an account that is not a patient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatientKeys<'a> {
    /// The pseudonym commitment (zero when not a patient).
    pub pseudonym_commitment: B256,
    /// The 66-byte stealth meta-address (empty when not a patient).
    pub meta_address: &'a [u8],
}

impl PatientKeys<'_> {
    /// The contract's `_metaAddressHash`: zero for no meta-address.
    pub fn meta_address_hash(&self) -> B256 {
        if self.meta_address.is_empty() {
            B256::ZERO
        } else {
            keccak256(self.meta_address)
        }
    }
}

/// What `account` signs (as an EIP-191 message of these 32 bytes) to publish `encryption_key`
/// on the chain `chain_id`, with its pseudonym commitment and meta-address when it is or becomes
/// a patient; the contract's `encryptionKeyDigest`.
pub fn encryption_key_digest(
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    patient: PatientKeys<'_>,
) -> B256 {
    encryption_key_digest_at(PMR_ADDRESS, chain_id, account, encryption_key, patient)
}

/// [`encryption_key_digest`] for a PMR contract deployed at `contract` (tests that deploy
/// their own).
pub fn encryption_key_digest_at(
    contract: Address,
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    patient: PatientKeys<'_>,
) -> B256 {
    keccak256(
        (
            key_domain(),
            U256::from(chain_id),
            contract,
            account,
            encryption_key,
            patient.pseudonym_commitment,
            patient.meta_address_hash(),
        )
            .abi_encode(),
    )
}

/// `wallet`'s signature publishing `encryption_key` (with its patient fields, if any).
pub fn sign_encryption_key(
    wallet: &Wallet,
    chain_id: u64,
    encryption_key: B256,
    patient: PatientKeys<'_>,
) -> Result<Bytes, WalletError> {
    let digest = encryption_key_digest(chain_id, wallet.address(), encryption_key, patient);
    Ok(Bytes::from(
        wallet.sign_message(digest.as_slice())?.to_vec(),
    ))
}

/// [`sign_encryption_key`] with any secp256k1 signer of `account`, for a contract at `contract`.
pub fn sign_encryption_key_with(
    signer: &impl SignerSync,
    account: Address,
    contract: Address,
    chain_id: u64,
    encryption_key: B256,
    patient: PatientKeys<'_>,
) -> Result<Bytes, WalletError> {
    let digest = encryption_key_digest_at(contract, chain_id, account, encryption_key, patient);
    let sig = signer
        .sign_message_sync(digest.as_slice())
        .map_err(|e| WalletError::Sign(e.to_string()))?;
    Ok(Bytes::from(sig.as_bytes().to_vec()))
}

/// A `registerPatient` call for `patient` with its own signature, publishing the stealth
/// meta-address its account key derives ([`pmr_privacy::StealthKeys::derive`]).
pub fn register_patient_call(
    patient: &Wallet,
    chain_id: u64,
    pseudonym_commitment: B256,
    encryption_key: B256,
) -> Result<PMR::registerPatientCall, WalletError> {
    let meta = crate::stealth::meta_address_of(patient)?.to_bytes();
    register_patient_call_with(
        patient,
        chain_id,
        pseudonym_commitment,
        encryption_key,
        &meta,
    )
}

/// [`register_patient_call`] with a given meta-address (tests of refused ones).
pub fn register_patient_call_with(
    patient: &Wallet,
    chain_id: u64,
    pseudonym_commitment: B256,
    encryption_key: B256,
    meta_address: &[u8],
) -> Result<PMR::registerPatientCall, WalletError> {
    let fields = PatientKeys {
        pseudonym_commitment,
        meta_address,
    };
    Ok(PMR::registerPatientCall {
        patient: patient.address(),
        pseudonymCommitment: pseudonym_commitment,
        encryptionKey: encryption_key,
        stealthMetaAddress: Bytes::copy_from_slice(meta_address),
        signature: sign_encryption_key(patient, chain_id, encryption_key, fields)?,
    })
}

/// A `setEncryptionKey` call for `account` (not a patient: no patient fields) with its own
/// signature.
pub fn set_encryption_key_call(
    account: &Wallet,
    chain_id: u64,
    encryption_key: B256,
) -> Result<PMR::setEncryptionKeyCall, WalletError> {
    Ok(PMR::setEncryptionKeyCall {
        encryptionKey: encryption_key,
        signature: sign_encryption_key(account, chain_id, encryption_key, PatientKeys::default())?,
    })
}

/// Whether `signature` is `account`'s over `encryption_key` and its patient fields.
pub fn verify_encryption_key(
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    patient: PatientKeys<'_>,
    signature: &[u8],
) -> bool {
    let digest = encryption_key_digest(chain_id, account, encryption_key, patient);
    Signature::try_from(signature)
        .ok()
        .and_then(|s| s.recover_address_from_msg(digest.as_slice()).ok())
        == Some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_account_signs_its_keys() {
        let (patient, other) = (Wallet::random(), Wallet::random());
        let meta = [2u8; 66];
        let fields = PatientKeys {
            pseudonym_commitment: B256::repeat_byte(9),
            meta_address: &meta,
        };
        let key = B256::repeat_byte(7);
        let sig = sign_encryption_key(&patient, 5, key, fields).unwrap();
        let verify = |chain, account, key, fields, sig: &[u8]| {
            verify_encryption_key(chain, account, key, fields, sig)
        };
        assert!(verify(5, patient.address(), key, fields, &sig));
        let swapped = B256::repeat_byte(8);
        assert!(!verify(5, patient.address(), swapped, fields, &sig));
        let no_commitment = PatientKeys {
            pseudonym_commitment: B256::ZERO,
            ..fields
        };
        assert!(!verify(5, patient.address(), key, no_commitment, &sig));
        let other_meta = [3u8; 66];
        let swapped_meta = PatientKeys {
            meta_address: &other_meta,
            ..fields
        };
        assert!(!verify(5, patient.address(), key, swapped_meta, &sig));
        assert!(!verify(
            5,
            patient.address(),
            key,
            PatientKeys::default(),
            &sig
        ));
        assert!(
            !verify(6, patient.address(), key, fields, &sig),
            "other chain"
        );
        assert!(!verify(5, other.address(), key, fields, &sig));
        let forged = sign_encryption_key(&other, 5, swapped, fields).unwrap();
        assert!(!verify(5, patient.address(), swapped, fields, &forged));
        assert!(!verify(5, patient.address(), key, fields, &sig[..64]));
    }
}
