//! Encryption keys an account signs as its own. `registerPatient` and `setEncryptionKey` take
//! the account's EIP-191 signature over [`encryption_key_digest`], and the contract keeps it
//! (`encryptionKeyAttestation`): a client that seals a share to an account's key checks the
//! signature itself ([`verify_encryption_key`]), so no node, and no one on the path to one,
//! can make it seal to a key the account did not publish.

use alloy_primitives::{keccak256, Address, Bytes, Signature, B256, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::SolValue;

use crate::bindings::{PMR, PMR_ADDRESS};
use crate::wallet::{Wallet, WalletError};

/// The contract's `KEY_DOMAIN`.
fn key_domain() -> B256 {
    keccak256("PMR encryption key v1")
}

/// What `account` signs (as an EIP-191 message of these 32 bytes) to publish `encryption_key`
/// on the chain `chain_id`, with its pseudonym commitment when it is or becomes a patient
/// (zero otherwise); the contract's `encryptionKeyDigest`.
pub fn encryption_key_digest(
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    pseudonym_commitment: B256,
) -> B256 {
    encryption_key_digest_at(
        PMR_ADDRESS,
        chain_id,
        account,
        encryption_key,
        pseudonym_commitment,
    )
}

/// [`encryption_key_digest`] for a PMR contract deployed at `contract` (tests that deploy
/// their own).
pub fn encryption_key_digest_at(
    contract: Address,
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    pseudonym_commitment: B256,
) -> B256 {
    keccak256(
        (
            key_domain(),
            U256::from(chain_id),
            contract,
            account,
            encryption_key,
            pseudonym_commitment,
        )
            .abi_encode(),
    )
}

/// `wallet`'s signature publishing `encryption_key` (with `pseudonym_commitment`, or zero).
pub fn sign_encryption_key(
    wallet: &Wallet,
    chain_id: u64,
    encryption_key: B256,
    pseudonym_commitment: B256,
) -> Result<Bytes, WalletError> {
    let digest = encryption_key_digest(
        chain_id,
        wallet.address(),
        encryption_key,
        pseudonym_commitment,
    );
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
    pseudonym_commitment: B256,
) -> Result<Bytes, WalletError> {
    let digest = encryption_key_digest_at(
        contract,
        chain_id,
        account,
        encryption_key,
        pseudonym_commitment,
    );
    let sig = signer
        .sign_message_sync(digest.as_slice())
        .map_err(|e| WalletError::Sign(e.to_string()))?;
    Ok(Bytes::from(sig.as_bytes().to_vec()))
}

/// A `registerPatient` call for `patient` with its own signature (tests, the load generator).
pub fn register_patient_call(
    patient: &Wallet,
    chain_id: u64,
    pseudonym_commitment: B256,
    encryption_key: B256,
) -> Result<PMR::registerPatientCall, WalletError> {
    Ok(PMR::registerPatientCall {
        patient: patient.address(),
        pseudonymCommitment: pseudonym_commitment,
        encryptionKey: encryption_key,
        signature: sign_encryption_key(patient, chain_id, encryption_key, pseudonym_commitment)?,
    })
}

/// A `setEncryptionKey` call for `account` (not a patient: no pseudonym commitment) with its
/// own signature.
pub fn set_encryption_key_call(
    account: &Wallet,
    chain_id: u64,
    encryption_key: B256,
) -> Result<PMR::setEncryptionKeyCall, WalletError> {
    Ok(PMR::setEncryptionKeyCall {
        encryptionKey: encryption_key,
        signature: sign_encryption_key(account, chain_id, encryption_key, B256::ZERO)?,
    })
}

/// Whether `signature` is `account`'s over `encryption_key` and `pseudonym_commitment`.
pub fn verify_encryption_key(
    chain_id: u64,
    account: Address,
    encryption_key: B256,
    pseudonym_commitment: B256,
    signature: &[u8],
) -> bool {
    let digest = encryption_key_digest(chain_id, account, encryption_key, pseudonym_commitment);
    Signature::try_from(signature)
        .ok()
        .and_then(|s| s.recover_address_from_msg(digest.as_slice()).ok())
        == Some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_account_signs_its_key() {
        let (patient, other) = (Wallet::random(), Wallet::random());
        let (key, commitment) = (B256::repeat_byte(7), B256::repeat_byte(9));
        let sig = sign_encryption_key(&patient, 5, key, commitment).unwrap();
        assert!(verify_encryption_key(
            5,
            patient.address(),
            key,
            commitment,
            &sig
        ));
        let swapped = B256::repeat_byte(8);
        assert!(!verify_encryption_key(
            5,
            patient.address(),
            swapped,
            commitment,
            &sig
        ));
        assert!(!verify_encryption_key(
            5,
            patient.address(),
            key,
            B256::ZERO,
            &sig
        ));
        assert!(
            !verify_encryption_key(6, patient.address(), key, commitment, &sig),
            "other chain"
        );
        assert!(!verify_encryption_key(
            5,
            other.address(),
            key,
            commitment,
            &sig
        ));
        let forged = sign_encryption_key(&other, 5, swapped, commitment).unwrap();
        assert!(!verify_encryption_key(
            5,
            patient.address(),
            swapped,
            commitment,
            &forged
        ));
        assert!(!verify_encryption_key(
            5,
            patient.address(),
            key,
            commitment,
            &sig[..64]
        ));
    }
}
