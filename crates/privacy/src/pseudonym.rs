//! The patient's pseudonym commitment: `blake3::keyed_hash(secret, "pmr pseudonym v1" ‖ 0x00 ‖
//! scheme ‖ 0x00 ‖ normalized id)`.
//!
//! Only the patient holds the 32-byte secret, so no one else can compute the commitment from an
//! ID (a plain hash of a 14-digit number would fall to enumeration). Revealing the ID and the
//! secret later proves the link; the comparison is constant-time.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{IdScheme, NationalId, PseudonymError};

const DOMAIN: &[u8] = b"pmr pseudonym v1\0";

/// The patient's 32-byte pseudonym secret. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PatientSecret([u8; 32]);

impl PatientSecret {
    /// A fresh random secret.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        PatientSecret(b)
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PatientSecret(bytes)
    }

    /// From 64 hex digits (optionally `0x`-prefixed).
    pub fn from_hex(s: &str) -> Result<Self, PseudonymError> {
        parse_hex32(s, "the pseudonym secret").map(PatientSecret)
    }

    /// The raw bytes (secret).
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex of the raw bytes (secret), for the patient's own keystore.
    pub fn expose_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PatientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientSecret(<redacted>)")
    }
}

/// A pseudonym commitment: what goes on-chain as the patient's `bytes32` pseudonym.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PseudonymCommitment([u8; 32]);

impl PseudonymCommitment {
    /// Computes the commitment of `id` under `secret`.
    pub fn compute(secret: &PatientSecret, id: &NationalId) -> Self {
        PseudonymCommitment(*keyed(secret, id).as_bytes())
    }

    /// From raw bytes (e.g. read from the chain).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PseudonymCommitment(bytes)
    }

    /// From 64 hex digits (optionally `0x`-prefixed).
    pub fn from_hex(s: &str) -> Result<Self, PseudonymError> {
        parse_hex32(s, "a pseudonym commitment").map(PseudonymCommitment)
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// `0x`-prefixed hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// Proof of link: recomputes the commitment from the revealed `id` and `secret` and compares
    /// in constant time.
    pub fn verify_link(
        &self,
        id: &NationalId,
        secret: &PatientSecret,
    ) -> Result<(), PseudonymError> {
        // blake3::Hash's equality is constant-time.
        if keyed(secret, id) == blake3::Hash::from(self.0) {
            Ok(())
        } else {
            Err(PseudonymError::LinkMismatch)
        }
    }
}

impl fmt::Debug for PseudonymCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymCommitment({})", self.to_hex())
    }
}

fn keyed(secret: &PatientSecret, id: &NationalId) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&secret.0);
    h.update(DOMAIN);
    h.update(&id.canonical_bytes());
    h.finalize()
}

fn parse_hex32(s: &str, what: &'static str) -> Result<[u8; 32], PseudonymError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| PseudonymError::BadHex { what })?;
    Ok(out)
}

/// What a patient reveals to prove that a pseudonym is theirs: the scheme, the ID as typed and
/// the secret in hex. Serializable for transport (e.g. `--output json`).
#[derive(Clone, Serialize, Deserialize)]
pub struct LinkOpening {
    /// Scheme name (`abha-number`, `abha-address`).
    pub scheme: String,
    /// The ID (any accepted spelling; it is normalized before hashing).
    pub id: String,
    /// The pseudonym secret, 64 hex digits.
    pub secret: String,
}

impl LinkOpening {
    /// Builds an opening from a validated ID and its secret.
    pub fn new(id: &NationalId, secret: &PatientSecret) -> Self {
        LinkOpening {
            scheme: id.scheme().as_str().to_string(),
            id: id.normalized(),
            secret: secret.expose_hex(),
        }
    }

    /// Checks the opening against `commitment`; returns the validated ID it proves.
    pub fn verify(&self, commitment: &PseudonymCommitment) -> Result<NationalId, PseudonymError> {
        let scheme: IdScheme = self.scheme.parse()?;
        let id = NationalId::parse_as(scheme, &self.id)?;
        let secret = PatientSecret::from_hex(&self.secret)?;
        commitment.verify_link(&id, &secret)?;
        Ok(id)
    }
}

impl fmt::Debug for LinkOpening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkOpening {{ scheme: {}, .. }}", self.scheme)
    }
}

impl Drop for LinkOpening {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.id.zeroize();
    }
}
