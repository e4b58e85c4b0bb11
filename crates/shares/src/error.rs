//! Errors of the share library. Every variant names what was wrong and, where a share is at
//! fault, which custodian (or the patient) supplied it.

use alloy_primitives::Address;

use crate::Slot;

/// Everything that can go wrong when splitting, sealing, opening, verifying or reconstructing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The threshold is outside `2..=n`.
    #[error(
        "threshold {threshold} is invalid for {custodians} custodians: it must be at least 2 and \
         at most the number of custodians"
    )]
    InvalidThreshold {
        /// Requested threshold.
        threshold: usize,
        /// Number of custodians.
        custodians: usize,
    },
    /// More custodians than an envelope can hold.
    #[error("{custodians} custodians requested; an envelope holds at most {max}")]
    TooManyCustodians {
        /// Number requested.
        custodians: usize,
        /// Upper bound ([`crate::MAX_CUSTODIANS`]).
        max: usize,
    },
    /// Custodian index 0 is reserved (a FROST identifier is never zero).
    #[error("custodian index 0 is reserved; number custodians from 1")]
    ZeroCustodianIndex,
    /// Two custodians were given the same index.
    #[error("custodian index {index} is used twice; every custodian needs its own index")]
    DuplicateCustodianIndex {
        /// The repeated index.
        index: u16,
    },
    /// Two custodian slots carry the same address.
    #[error("custodian address {address} appears twice; one custodian may hold one slot only")]
    DuplicateCustodianAddress {
        /// The repeated address.
        address: Address,
    },
    /// Two custodian slots carry the same X25519 key.
    #[error("custodian X25519 key is used by indices {first} and {second}; keys must be distinct")]
    DuplicateCustodianKey {
        /// First index holding the key.
        first: u16,
        /// Second index holding the key.
        second: u16,
    },
    /// The envelope has no slot with this index.
    #[error("this envelope has no custodian with index {index}")]
    UnknownCustodian {
        /// The index asked for.
        index: u16,
    },
    /// The secret key given does not belong to the slot.
    #[error(
        "the X25519 secret given does not match the public key of {slot}; use the key this \
         envelope was sealed to"
    )]
    WrongRecipientKey {
        /// Slot whose public key did not match.
        slot: Slot,
    },
    /// HPKE refused to seal (e.g. the recipient public key is a low-order point).
    #[error("sealing the share for {slot} failed ({reason}); check the recipient's X25519 key")]
    SealFailed {
        /// Slot being sealed.
        slot: Slot,
        /// HPKE's reason.
        reason: String,
    },
    /// HPKE refused to open: wrong key, wrong context, or the ciphertext was altered.
    #[error(
        "the sealed share of {slot} does not open: it was altered, sealed for another key, or \
         sealed for another record/slot/grant"
    )]
    SealOpenFailed {
        /// Slot whose sealed share failed to open.
        slot: Slot,
    },
    /// A sealed share has the wrong length.
    #[error("a sealed share is {len} bytes; version 1 sealed shares are exactly {expected} bytes")]
    BadSealedShareLength {
        /// Length found.
        len: usize,
        /// Length expected.
        expected: usize,
    },
    /// A share's bytes are not a canonical non-zero scalar.
    #[error("the share of {slot} is not a canonical ed25519 scalar")]
    MalformedShare {
        /// Who supplied it.
        slot: Slot,
    },
    /// A custodian share does not match the envelope's VSS commitments.
    #[error(
        "custodian {custodian} supplied a share that does not match the VSS commitments: it is \
         forged or corrupted; ask another custodian"
    )]
    ForgedShare {
        /// Index of the culprit custodian.
        custodian: u16,
    },
    /// The same custodian's share was supplied twice.
    #[error("custodian {custodian}'s share was supplied twice")]
    DuplicateShare {
        /// The repeated custodian index.
        custodian: u16,
    },
    /// Too few valid custodian shares.
    #[error("{have} valid custodian shares, {need} needed; collect shares from more custodians")]
    NotEnoughShares {
        /// Valid distinct shares supplied.
        have: usize,
        /// Threshold of the envelope.
        need: usize,
    },
    /// The patient's share is inconsistent with the key commitment and VSS commitments.
    #[error("the patient's essential share does not belong to this record's key")]
    PatientShareMismatch,
    /// The reconstructed key does not match the published key commitment.
    #[error("the reconstructed key does not match the record's key commitment S")]
    KeyCommitmentMismatch,
    /// A record key must be a canonical, non-zero scalar.
    #[error("a record key must be a canonical non-zero ed25519 scalar")]
    InvalidRecordKey,
    /// A key commitment must be a canonical prime-order, non-identity Edwards point.
    #[error("the key commitment is not a canonical prime-order ed25519 point")]
    InvalidKeyCommitment,
    /// The envelope bytes are malformed.
    #[error("bad share envelope: {0}")]
    BadEnvelope(#[from] EnvelopeError),
    /// The release challenge bytes are malformed.
    #[error("bad release challenge encoding: {0}")]
    BadChallenge(String),
    /// The signature over a release challenge is malformed or does not recover.
    #[error("bad release challenge signature: {0}")]
    BadSignature(String),
    /// The signature recovers to someone other than the named grantee.
    #[error("release challenge signed by {recovered}, not by the grantee {expected}")]
    SignerMismatch {
        /// Grantee named in the challenge.
        expected: Address,
        /// Address the signature recovers to.
        recovered: Address,
    },
    /// The challenge is older than the accepted window.
    #[error(
        "release challenge is {age_ms} ms old; at most {max_age_ms} ms accepted: request a new one"
    )]
    ChallengeExpired {
        /// Age of the challenge.
        age_ms: u64,
        /// Accepted window.
        max_age_ms: u64,
    },
    /// The challenge claims to be issued in the future beyond the allowed clock skew.
    #[error("release challenge is dated {ahead_ms} ms in the future (allowed skew {max_skew_ms} ms): check the clocks")]
    ChallengeFromFuture {
        /// How far ahead.
        ahead_ms: u64,
        /// Allowed skew.
        max_skew_ms: u64,
    },
    /// FROST reported an error this library did not expect (a bug, not bad input).
    #[error("internal FROST error: {0}")]
    Frost(String),
}

impl ShareError {
    /// The slot at fault, if this error blames a specific custodian or the patient.
    pub fn culprit(&self) -> Option<Slot> {
        match self {
            ShareError::ForgedShare { custodian } => Some(Slot::Custodian(*custodian)),
            ShareError::DuplicateShare { custodian } => Some(Slot::Custodian(*custodian)),
            ShareError::SealOpenFailed { slot } | ShareError::MalformedShare { slot } => {
                Some(*slot)
            }
            ShareError::PatientShareMismatch => Some(Slot::Patient),
            _ => None,
        }
    }
}

/// Why an envelope's bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The input ended early.
    #[error("truncated while reading {field}: {needed} bytes needed, {remaining} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes remain after a complete envelope.
    #[error("{count} trailing bytes after the envelope")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// The version byte is not one this library reads.
    #[error("unknown envelope version {found}; this build reads version {supported}")]
    UnknownVersion {
        /// Version found.
        found: u8,
        /// Version supported.
        supported: u8,
    },
    /// Threshold is below 2.
    #[error("threshold {threshold} is below the minimum of 2")]
    ThresholdTooLow {
        /// Threshold found.
        threshold: u8,
    },
    /// Threshold exceeds the number of custodians.
    #[error("threshold {threshold} exceeds the {custodians} custodians")]
    ThresholdExceedsCustodians {
        /// Threshold found.
        threshold: u8,
        /// Custodian count found.
        custodians: u8,
    },
    /// A custodian index is 0.
    #[error("custodian slot {position} has index 0, which is reserved")]
    ZeroIndex {
        /// Position in the list.
        position: usize,
    },
    /// A custodian index repeats.
    #[error("custodian index {index} appears twice")]
    DuplicateIndex {
        /// The index.
        index: u16,
    },
    /// Custodian slots are not in strictly ascending index order.
    #[error("custodian slots are not in ascending index order at position {position}")]
    UnorderedIndices {
        /// Position of the first out-of-order slot.
        position: usize,
    },
    /// A custodian address repeats.
    #[error("custodian address {address} appears twice")]
    DuplicateAddress {
        /// The address.
        address: Address,
    },
    /// A custodian X25519 key repeats.
    #[error("custodian X25519 key appears at indices {first} and {second}")]
    DuplicateKey {
        /// First index.
        first: u16,
        /// Second index.
        second: u16,
    },
    /// A sealed share has the wrong length prefix.
    #[error("sealed share of {slot} is {len} bytes; version 1 needs {expected}")]
    BadSealedLength {
        /// Slot.
        slot: Slot,
        /// Length found.
        len: usize,
        /// Length expected.
        expected: usize,
    },
    /// A point does not decode, is the identity, has a torsion component, or is not canonical.
    #[error("{field} is not a canonical prime-order ed25519 point")]
    InvalidPoint {
        /// Which point.
        field: &'static str,
    },
    /// An X25519 public key has its (ignored) top bit set: not canonical.
    #[error("X25519 public key of {slot} is not canonical (top bit set)")]
    NonCanonicalX25519Key {
        /// Slot.
        slot: Slot,
    },
    /// The commitments say the patient's share is zero, so custodians alone would hold the key.
    #[error(
        "the key commitment equals the custodians' VSS constant term: the patient's essential \
         share is zero, custodians alone could open the record"
    )]
    ZeroPatientShare,
}
