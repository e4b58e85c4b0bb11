//! A hospital asking its own custodian node to split a record key (`ShareService.IssueShares`).
//!
//! The hospital seals the record key to the node's X25519 custody key with HPKE (the `info`
//! binds the whole request but the sealed key itself: chain, node, hospital, nonce, time,
//! threshold, patient key) and signs the canonical request bytes with its account key as an
//! EIP-191 message. The node learns who asks (and checks the HOSPITAL role on-chain), nobody on
//! the wire learns the key, and a captured request cannot be replayed to another node, chain or
//! patient: it does not open there, and the node refuses a nonce it has seen.

use alloy_primitives::{eip191_hash_message, keccak256, Address, B256};
use k256::ecdsa::SigningKey;
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::challenge::{check_fresh, recover_signer, sign_digest};
use crate::seal::{open_bytes, seal_bytes};
use crate::{RecordKey, SealedShare, ShareError, Slot, SEALED_SHARE_LEN};

/// Domain prefix hashed in front of the request bytes.
pub const ISSUE_DOMAIN: &[u8] = b"PMR issue shares request";
/// Encoding version of [`IssueRequest::to_bytes`].
pub const ISSUE_VERSION: u8 = 1;
/// Bytes of the request before the sealed key.
const HEADER_LEN: usize = 1 + 8 + 20 + 20 + 32 + 8 + 2 + 32;
/// Length of [`IssueRequest::to_bytes`].
pub const ISSUE_LEN: usize = HEADER_LEN + SEALED_SHARE_LEN;

const INFO_ISSUE: &[u8] = b"pmr/shares/v1/issue-record-key";

/// A hospital's request that custodian `custodian` split a record key for patient `patient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// Chain id of the network.
    pub chain_id: u64,
    /// Operator address of the custodian node asked.
    pub custodian: Address,
    /// The hospital's account (the expected signer; must hold the HOSPITAL role).
    pub hospital: Address,
    /// Fresh random nonce (the node rejects a nonce it has seen).
    pub nonce: B256,
    /// When the request was made, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// Custodian shares needed to reconstruct (with the patient's share).
    pub threshold: u16,
    /// The patient's X25519 key, to which the essential share is sealed.
    pub patient: PublicKey,
    /// The record key sealed to the custodian node's custody key.
    pub sealed_key: SealedShare,
}

impl IssueRequest {
    /// Seals `key` to `node_key` (the custodian's X25519 custody key) and builds the request.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: RngCore + CryptoRng>(
        key: &RecordKey,
        node_key: &PublicKey,
        chain_id: u64,
        custodian: Address,
        hospital: Address,
        threshold: u16,
        patient: PublicKey,
        issued_at_ms: u64,
        rng: &mut R,
    ) -> Result<Self, ShareError> {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let mut req = IssueRequest {
            chain_id,
            custodian,
            hospital,
            nonce: B256::from(nonce),
            issued_at_ms,
            threshold,
            patient,
            sealed_key: SealedShare::from_bytes(&[0u8; SEALED_SHARE_LEN])?,
        };
        req.sealed_key = seal_bytes(
            node_key,
            &req.info(),
            &[],
            &key.to_bytes(),
            Slot::Patient,
            rng,
        )?;
        Ok(req)
    }

    /// `version (1) ‖ chain_id (8 BE) ‖ custodian (20) ‖ hospital (20) ‖ nonce (32) ‖
    /// issued_at_ms (8 BE) ‖ threshold (2 BE) ‖ patient key (32)`.
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = ISSUE_VERSION;
        out[1..9].copy_from_slice(&self.chain_id.to_be_bytes());
        out[9..29].copy_from_slice(self.custodian.as_slice());
        out[29..49].copy_from_slice(self.hospital.as_slice());
        out[49..81].copy_from_slice(self.nonce.as_slice());
        out[81..89].copy_from_slice(&self.issued_at_ms.to_be_bytes());
        out[89..91].copy_from_slice(&self.threshold.to_be_bytes());
        out[91..].copy_from_slice(self.patient.as_bytes());
        out
    }

    fn info(&self) -> Vec<u8> {
        [INFO_ISSUE, &self.header()[..]].concat()
    }

    /// Canonical bytes: the header fields in order, then the sealed key (80 bytes).
    pub fn to_bytes(&self) -> [u8; ISSUE_LEN] {
        let mut out = [0u8; ISSUE_LEN];
        out[..HEADER_LEN].copy_from_slice(&self.header());
        out[HEADER_LEN..].copy_from_slice(self.sealed_key.as_bytes());
        out
    }

    /// Parses [`Self::to_bytes`]: exactly [`ISSUE_LEN`] bytes of a known version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShareError> {
        let b: &[u8; ISSUE_LEN] = bytes.try_into().map_err(|_| {
            ShareError::BadIssueRequest(format!(
                "{} bytes; a version {ISSUE_VERSION} request is {ISSUE_LEN} bytes",
                bytes.len()
            ))
        })?;
        if b[0] != ISSUE_VERSION {
            return Err(ShareError::BadIssueRequest(format!(
                "unknown version {}; this build reads version {ISSUE_VERSION}",
                b[0]
            )));
        }
        let mut u64b = [0u8; 8];
        u64b.copy_from_slice(&b[1..9]);
        let chain_id = u64::from_be_bytes(u64b);
        u64b.copy_from_slice(&b[81..89]);
        let issued_at_ms = u64::from_be_bytes(u64b);
        let mut patient = [0u8; 32];
        patient.copy_from_slice(&b[91..HEADER_LEN]);
        Ok(IssueRequest {
            chain_id,
            custodian: Address::from_slice(&b[9..29]),
            hospital: Address::from_slice(&b[29..49]),
            nonce: B256::from_slice(&b[49..81]),
            issued_at_ms,
            threshold: u16::from_be_bytes([b[89], b[90]]),
            patient: PublicKey::from(patient),
            sealed_key: SealedShare::from_bytes(&b[HEADER_LEN..])?,
        })
    }

    /// `keccak256(ISSUE_DOMAIN ‖ to_bytes())`: the 32 bytes the hospital personal-signs.
    pub fn signing_hash(&self) -> B256 {
        keccak256([ISSUE_DOMAIN, &self.to_bytes()[..]].concat())
    }

    /// Signs as the hospital (EIP-191 over [`Self::signing_hash`]).
    pub fn sign(&self, key: &SigningKey) -> Result<[u8; 65], ShareError> {
        sign_digest(key, &eip191_hash_message(self.signing_hash()))
    }

    /// Recovers the signer and checks it is [`Self::hospital`].
    pub fn verify(&self, signature: &[u8]) -> Result<Address, ShareError> {
        let recovered = recover_signer(signature, &eip191_hash_message(self.signing_hash()))?;
        if recovered != self.hospital {
            return Err(ShareError::IssuerMismatch {
                expected: self.hospital,
                recovered,
            });
        }
        Ok(recovered)
    }

    /// Checks `issued_at_ms` against `now_ms` (see [`crate::ReleaseChallenge::check_fresh`]).
    pub fn check_fresh(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_future_skew_ms: u64,
    ) -> Result<(), ShareError> {
        check_fresh(self.issued_at_ms, now_ms, max_age_ms, max_future_skew_ms)
            .map_err(|e| ShareError::BadIssueRequest(e.to_string()))
    }

    /// The node side: opens the record key with the node's custody secret.
    pub fn open_key(&self, node_secret: &StaticSecret) -> Result<RecordKey, ShareError> {
        let bytes = open_bytes(
            &self.sealed_key,
            node_secret,
            &self.info(),
            &[],
            Slot::Patient,
        )
        .map_err(|_| ShareError::SealedKeyOpenFailed)?;
        RecordKey::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn request() -> (IssueRequest, RecordKey, StaticSecret, SigningKey) {
        let node = StaticSecret::random_from_rng(OsRng);
        let hospital = SigningKey::random(&mut OsRng);
        let hospital_addr = Address::from_private_key(&hospital);
        let key = RecordKey::generate(&mut OsRng);
        let patient = PublicKey::from(&StaticSecret::random_from_rng(OsRng));
        let req = IssueRequest::new(
            &key,
            &PublicKey::from(&node),
            7,
            Address::repeat_byte(3),
            hospital_addr,
            3,
            patient,
            1_000,
            &mut OsRng,
        )
        .unwrap();
        (req, key, node, hospital)
    }

    #[test]
    fn round_trip_sign_verify_open() {
        let (req, key, node, hospital) = request();
        let parsed = IssueRequest::from_bytes(&req.to_bytes()).unwrap();
        assert_eq!(parsed, req);
        let sig = req.sign(&hospital).unwrap();
        assert_eq!(parsed.verify(&sig).unwrap(), req.hospital);
        assert_eq!(*parsed.open_key(&node).unwrap().to_bytes(), *key.to_bytes());
    }

    #[test]
    fn altered_fields_fail_to_verify_or_open() {
        let (req, _key, node, hospital) = request();
        let sig = req.sign(&hospital).unwrap();
        // Another node cannot open it.
        let other = StaticSecret::random_from_rng(OsRng);
        assert!(matches!(
            req.open_key(&other),
            Err(ShareError::SealedKeyOpenFailed)
        ));
        // Any header field changed: the signature no longer matches and the key no longer opens.
        for at in [1usize, 10, 30, 50, 85, 90, 100] {
            let mut b = req.to_bytes();
            b[at] ^= 1;
            let altered = IssueRequest::from_bytes(&b).unwrap();
            assert!(altered.verify(&sig).is_err(), "byte {at}");
            assert!(
                matches!(
                    altered.open_key(&node),
                    Err(ShareError::SealedKeyOpenFailed)
                ),
                "byte {at}"
            );
        }
        // Signed by someone else.
        let stranger = SigningKey::random(&mut OsRng);
        assert!(matches!(
            req.verify(&req.sign(&stranger).unwrap()),
            Err(ShareError::IssuerMismatch { .. })
        ));
        // Wrong length and version.
        assert!(IssueRequest::from_bytes(&req.to_bytes()[1..]).is_err());
        let mut b = req.to_bytes();
        b[0] = 9;
        assert!(matches!(
            IssueRequest::from_bytes(&b),
            Err(ShareError::BadIssueRequest(m)) if m.contains("version 9")
        ));
        // Stale.
        assert!(req.check_fresh(1_000 + 301_000, 300_000, 30_000).is_err());
        assert!(req.check_fresh(1_500, 300_000, 30_000).is_ok());
    }
}
