//! The share envelope and its canonical, versioned binary encoding.
//!
//! Version 2 layout (all integers big-endian):
//!
//! ```text
//! version        u8      = 2
//! threshold      u8      t, 2 ≤ t ≤ n
//! n              u8      number of custodians, t ≤ n ≤ 255
//! key_commitment [32]    S = s·B (compressed Edwards)
//! vss            t×[32]  Feldman VSS commitments of s_c's polynomial, constant term first
//! n × custodian slot, indices strictly ascending:
//!   index        u16     non-zero FROST identifier
//!   address      [20]    the custodian's on-chain address (opaque to this crate)
//!   x25519_pk    [32]    the custodian's sealing key
//!   sealed_len   u16     = 80
//!   sealed       [80]    HPKE(enc ‖ ct ‖ tag) of f(index)
//! patient slot:
//!   sealed_len   u16     = 80
//!   sealed       [80]    HPKE of s_p
//! ```
//!
//! The patient's key is not written (version 1 wrote it): it is published on-chain with the
//! patient's registration, so naming it would link every record's envelope to its patient,
//! whom the record's one-time owner hides. HPKE's encapsulated key is fresh per seal, so the
//! sealed bytes name no recipient; only the patient's secret opens them.
//!
//! Decoding is strict: any other version, truncation, trailing bytes, bad length prefix,
//! non-canonical point or X25519 key, t > n, zero/duplicate/unordered index, duplicate address
//! or key, or a zero patient share (S equal to the VSS constant term) is rejected, so every
//! accepted envelope has exactly one encoding.

use std::collections::{BTreeSet, HashMap};

use alloy_primitives::Address;
use frost_ed25519::keys::VerifiableSecretSharingCommitment;
use x25519_dalek::PublicKey;

use crate::error::EnvelopeError;
use crate::key::point_from_bytes;
use crate::seal::{slot_tag, SEALED_SHARE_LEN};
use crate::{KeyCommitment, SealedShare, ShareError, Slot};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 2;
/// Most custodians one envelope holds.
pub const MAX_CUSTODIANS: usize = 255;

const INFO_SLOT: &[u8] = b"pmr/shares/v1/envelope-slot";
const DIGEST_CONTEXT: &str = "pmr/shares/v1/envelope-public-digest";

/// One custodian's slot in an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianSlot {
    /// FROST identifier of the custodian (non-zero).
    pub index: u16,
    /// The custodian's on-chain address.
    pub address: Address,
    /// The custodian's X25519 sealing key.
    pub public_key: PublicKey,
    /// The custodian's share, sealed to `public_key`.
    pub sealed: SealedShare,
}

/// The patient's slot in an envelope: the essential share `s_p`, sealed to the patient's
/// X25519 key (which the envelope does not name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSlot {
    /// The sealed essential share.
    pub sealed: SealedShare,
}

/// Sealed shares + VSS commitments + key commitment + parameters of one record key.
///
/// Built only by [`crate::split_record_key`] or [`ShareEnvelope::decode`], so every value is
/// valid. Stored as a content-addressed blob; its bytes are [`ShareEnvelope::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareEnvelope {
    pub(crate) threshold: u8,
    pub(crate) key_commitment: KeyCommitment,
    pub(crate) vss_bytes: Vec<[u8; 32]>,
    pub(crate) vss: VerifiableSecretSharingCommitment,
    pub(crate) custodians: Vec<CustodianSlot>,
    pub(crate) patient: PatientSlot,
}

impl ShareEnvelope {
    /// Encoding version.
    pub fn version(&self) -> u8 {
        ENVELOPE_VERSION
    }

    /// Custodian shares needed to reconstruct (with the patient's share).
    pub fn threshold(&self) -> usize {
        usize::from(self.threshold)
    }

    /// Number of custodians.
    pub fn custodian_count(&self) -> usize {
        self.custodians.len()
    }

    /// The record's key commitment `S`.
    pub fn key_commitment(&self) -> KeyCommitment {
        self.key_commitment
    }

    /// The Feldman VSS commitments (compressed points, constant term first).
    pub fn vss_commitments(&self) -> &[[u8; 32]] {
        &self.vss_bytes
    }

    /// Custodian slots in ascending index order.
    pub fn custodians(&self) -> &[CustodianSlot] {
        &self.custodians
    }

    /// The patient's slot.
    pub fn patient(&self) -> &PatientSlot {
        &self.patient
    }

    /// The slot of custodian `index`.
    pub fn custodian(&self, index: u16) -> Option<&CustodianSlot> {
        self.custodians
            .binary_search_by_key(&index, |c| c.index)
            .ok()
            .and_then(|pos| self.custodians.get(pos))
    }

    /// The slot sealed to this X25519 key.
    pub fn custodian_by_key(&self, key: &PublicKey) -> Option<&CustodianSlot> {
        self.custodians.iter().find(|c| c.public_key == *key)
    }

    /// The slot of this custodian address.
    pub fn custodian_by_address(&self, address: &Address) -> Option<&CustodianSlot> {
        self.custodians.iter().find(|c| c.address == *address)
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.custodians.len();
        let mut out = Vec::with_capacity(
            3 + 32 + 32 * self.vss_bytes.len() + n * (2 + 20 + 32 + 2 + SEALED_SHARE_LEN) + 82,
        );
        write_public(&mut out, self, true);
        out
    }

    /// Decodes and validates canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ShareError> {
        decode(bytes).map_err(ShareError::BadEnvelope)
    }

    /// Digest of the public part (everything but the sealed shares). Bound as HPKE `aad` into
    /// every sealed slot, so a slot cannot be moved into an envelope with other parameters.
    pub fn public_digest(&self) -> [u8; 32] {
        let mut public = Vec::new();
        write_public(&mut public, self, false);
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        hasher.update(&public);
        *hasher.finalize().as_bytes()
    }

    /// HPKE `info` of a slot: label, version, key commitment, slot.
    pub(crate) fn slot_info(&self, slot: Slot) -> Vec<u8> {
        let mut info = Vec::with_capacity(INFO_SLOT.len() + 1 + 32 + 3);
        info.extend_from_slice(INFO_SLOT);
        info.push(ENVELOPE_VERSION);
        info.extend_from_slice(self.key_commitment.as_bytes());
        info.extend_from_slice(&slot_tag(slot));
        info
    }
}

/// Writes the envelope; `with_sealed = false` gives the public part hashed by `public_digest`.
fn write_public(out: &mut Vec<u8>, env: &ShareEnvelope, with_sealed: bool) {
    out.push(ENVELOPE_VERSION);
    out.push(env.threshold);
    // n ≤ MAX_CUSTODIANS = 255 is an invariant of every constructed envelope.
    out.push(u8::try_from(env.custodians.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(env.key_commitment.as_bytes());
    for c in &env.vss_bytes {
        out.extend_from_slice(c);
    }
    for slot in &env.custodians {
        out.extend_from_slice(&slot.index.to_be_bytes());
        out.extend_from_slice(slot.address.as_slice());
        out.extend_from_slice(slot.public_key.as_bytes());
        if with_sealed {
            write_sealed(out, &slot.sealed);
        }
    }
    if with_sealed {
        write_sealed(out, &env.patient.sealed);
    }
}

fn write_sealed(out: &mut Vec<u8>, sealed: &SealedShare) {
    // SEALED_SHARE_LEN = 80 fits a u16.
    out.extend_from_slice(&(SEALED_SHARE_LEN as u16).to_be_bytes());
    out.extend_from_slice(sealed.as_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < n {
            return Err(EnvelopeError::Truncated {
                field,
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array::<2>(field)?))
    }

    fn x25519(&mut self, slot: Slot) -> Result<PublicKey, EnvelopeError> {
        let bytes = self.array::<32>("X25519 public key")?;
        if bytes[31] & 0x80 != 0 {
            return Err(EnvelopeError::NonCanonicalX25519Key { slot });
        }
        Ok(PublicKey::from(bytes))
    }

    fn sealed(&mut self, slot: Slot) -> Result<SealedShare, EnvelopeError> {
        let len = usize::from(self.u16("sealed share length")?);
        if len != SEALED_SHARE_LEN {
            return Err(EnvelopeError::BadSealedLength {
                slot,
                len,
                expected: SEALED_SHARE_LEN,
            });
        }
        Ok(SealedShare::from_array(self.array("sealed share")?))
    }
}

fn decode(bytes: &[u8]) -> Result<ShareEnvelope, EnvelopeError> {
    let mut r = Reader { rest: bytes };
    let version = r.u8("version")?;
    if version != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnknownVersion {
            found: version,
            supported: ENVELOPE_VERSION,
        });
    }
    let threshold = r.u8("threshold")?;
    let n = r.u8("custodian count")?;
    if threshold < 2 {
        return Err(EnvelopeError::ThresholdTooLow { threshold });
    }
    if threshold > n {
        return Err(EnvelopeError::ThresholdExceedsCustodians {
            threshold,
            custodians: n,
        });
    }
    let s_bytes = r.array::<32>("key commitment")?;
    let s_point = point_from_bytes(&s_bytes).ok_or(EnvelopeError::InvalidPoint {
        field: "key commitment",
    })?;
    let key_commitment = KeyCommitment::from_point(&s_point);

    let mut vss_bytes = Vec::with_capacity(usize::from(threshold));
    for _ in 0..threshold {
        let c = r.array::<32>("VSS commitment")?;
        point_from_bytes(&c).ok_or(EnvelopeError::InvalidPoint {
            field: "VSS commitment",
        })?;
        vss_bytes.push(c);
    }
    let vss = VerifiableSecretSharingCommitment::deserialize(vss_bytes.iter()).map_err(|_| {
        EnvelopeError::InvalidPoint {
            field: "VSS commitment",
        }
    })?;

    let mut custodians: Vec<CustodianSlot> = Vec::with_capacity(usize::from(n));
    let mut seen_index = BTreeSet::new();
    let mut seen_address = BTreeSet::new();
    let mut seen_key: HashMap<[u8; 32], u16> = HashMap::new();
    for position in 0..usize::from(n) {
        let index = r.u16("custodian index")?;
        if index == 0 {
            return Err(EnvelopeError::ZeroIndex { position });
        }
        if !seen_index.insert(index) {
            return Err(EnvelopeError::DuplicateIndex { index });
        }
        if custodians.last().is_some_and(|prev| prev.index > index) {
            return Err(EnvelopeError::UnorderedIndices { position });
        }
        let address = Address::from(r.array::<20>("custodian address")?);
        if !seen_address.insert(address) {
            return Err(EnvelopeError::DuplicateAddress { address });
        }
        let slot = Slot::Custodian(index);
        let public_key = r.x25519(slot)?;
        if let Some(first) = seen_key.insert(public_key.to_bytes(), index) {
            return Err(EnvelopeError::DuplicateKey {
                first,
                second: index,
            });
        }
        let sealed = r.sealed(slot)?;
        custodians.push(CustodianSlot {
            index,
            address,
            public_key,
            sealed,
        });
    }
    let sealed = r.sealed(Slot::Patient)?;
    if !r.rest.is_empty() {
        return Err(EnvelopeError::TrailingBytes {
            count: r.rest.len(),
        });
    }
    if vss_bytes.first() == Some(&s_bytes) {
        return Err(EnvelopeError::ZeroPatientShare);
    }
    Ok(ShareEnvelope {
        threshold,
        key_commitment,
        vss_bytes,
        vss,
        custodians,
        patient: PatientSlot { sealed },
    })
}
