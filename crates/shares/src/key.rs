//! Record keys, their public commitment, and the two kinds of shares.

use std::fmt;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::ShareError;

/// Context string of the DEK derivation: `DEK = blake3::derive_key(DEK_CONTEXT, s)`.
pub const DEK_CONTEXT: &str = "pmr record dek v1";

/// Who holds (or supplied) a share: the patient or the custodian with this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// The patient's essential share.
    Patient,
    /// The custodian with this (non-zero) index.
    Custodian(u16),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Patient => write!(f, "the patient"),
            Slot::Custodian(i) => write!(f, "custodian {i}"),
        }
    }
}

/// Decodes 32 bytes as a canonical, non-zero scalar.
pub(crate) fn scalar_from_bytes(bytes: [u8; 32]) -> Option<Scalar> {
    let s: Option<Scalar> = Scalar::from_canonical_bytes(bytes).into();
    s.filter(|s| *s != Scalar::ZERO)
}

/// Decodes a compressed Edwards point that is canonical, not the identity and torsion-free.
pub(crate) fn point_from_bytes(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.is_identity() || !point.is_torsion_free() || point.compress().as_bytes() != bytes {
        return None;
    }
    Some(point)
}

/// A random non-zero scalar.
pub(crate) fn random_nonzero_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
    loop {
        let s = Scalar::random(rng);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

/// The record key `s`: an ed25519 scalar, never zero. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct RecordKey(Scalar);

impl RecordKey {
    /// A fresh random record key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        RecordKey(random_nonzero_scalar(rng))
    }

    /// Reads a key from its 32-byte little-endian canonical encoding.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ShareError> {
        scalar_from_bytes(*bytes)
            .map(RecordKey)
            .ok_or(ShareError::InvalidRecordKey)
    }

    /// The 32-byte canonical encoding (secret: keep it zeroized).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The data-encryption key: `blake3::derive_key("pmr record dek v1", s)`.
    pub fn dek(&self) -> Zeroizing<[u8; 32]> {
        let bytes = self.to_bytes();
        Zeroizing::new(blake3::derive_key(DEK_CONTEXT, bytes.as_ref()))
    }

    /// The public key commitment `S = s·B`.
    pub fn commitment(&self) -> KeyCommitment {
        KeyCommitment::from_point(&EdwardsPoint::mul_base(&self.0))
    }

    pub(crate) fn from_scalar(s: Scalar) -> Result<Self, ShareError> {
        if s == Scalar::ZERO {
            return Err(ShareError::InvalidRecordKey);
        }
        Ok(RecordKey(s))
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey(<redacted>)")
    }
}

/// The key commitment `S = s·B`: a compressed Edwards point, published on-chain at mint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCommitment([u8; 32]);

impl KeyCommitment {
    /// Reads a commitment, rejecting non-canonical encodings, the identity and points with a
    /// torsion component.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ShareError> {
        point_from_bytes(bytes)
            .map(|_| KeyCommitment(*bytes))
            .ok_or(ShareError::InvalidKeyCommitment)
    }

    /// The 32 compressed bytes (what goes on-chain as `bytes32`).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The 32 compressed bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks that `key·B` equals this commitment.
    pub fn verify_key(&self, key: &RecordKey) -> Result<(), ShareError> {
        if key.commitment() == *self {
            Ok(())
        } else {
            Err(ShareError::KeyCommitmentMismatch)
        }
    }

    pub(crate) fn from_point(point: &EdwardsPoint) -> Self {
        KeyCommitment(point.compress().to_bytes())
    }

    /// The decompressed point. Construction guarantees it decodes.
    pub(crate) fn point(&self) -> Option<EdwardsPoint> {
        CompressedEdwardsY(self.0).decompress()
    }
}

impl fmt::Debug for KeyCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCommitment(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The patient's essential share `s_p`. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct PatientShare(Scalar);

impl PatientShare {
    /// Reads the share from 32 canonical bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ShareError> {
        scalar_from_bytes(*bytes)
            .map(PatientShare)
            .ok_or(ShareError::MalformedShare {
                slot: Slot::Patient,
            })
    }

    /// The 32-byte encoding (secret).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub(crate) fn from_scalar(s: Scalar) -> Self {
        PatientShare(s)
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }
}

impl fmt::Debug for PatientShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientShare(<redacted>)")
    }
}

/// One custodian's share of `s_c = s - s_p`: the custodian's index (its FROST identifier) and
/// the value `f(index)` of the dealer's polynomial. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct CustodianShare {
    #[zeroize(skip)]
    index: u16,
    value: Scalar,
}

impl CustodianShare {
    /// Builds a share from its index and 32 value bytes, as received from `index`. A value that is
    /// not a canonical non-zero scalar is blamed on that custodian.
    pub fn from_bytes(index: u16, value: &[u8; 32]) -> Result<Self, ShareError> {
        if index == 0 {
            return Err(ShareError::ZeroCustodianIndex);
        }
        scalar_from_bytes(*value)
            .map(|value| CustodianShare { index, value })
            .ok_or(ShareError::MalformedShare {
                slot: Slot::Custodian(index),
            })
    }

    /// The custodian index this share belongs to.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The 32-byte value (secret).
    pub fn value_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.value.to_bytes())
    }
}

impl fmt::Debug for CustodianShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CustodianShare {{ index: {}, value: <redacted> }}",
            self.index
        )
    }
}
