//! Strict decoding of the share envelope: every malformation gets its own clear error.

mod common;

use common::Setup;
use pmr_shares::{EnvelopeError, ShareEnvelope, ShareError, Slot, ENVELOPE_VERSION};

const N: usize = 3;
const T: usize = 2;
const SLOT: usize = 2 + 20 + 32 + 2 + 80;
const VSS_AT: usize = 35;
const SLOTS_AT: usize = VSS_AT + 32 * T;
const PATIENT_AT: usize = SLOTS_AT + SLOT * N;
const TOTAL: usize = PATIENT_AT + 2 + 80;

fn valid() -> Vec<u8> {
    let bytes = Setup::new(N as u16, T, 11).envelope.encode();
    assert_eq!(bytes.len(), TOTAL, "layout documented in envelope.rs");
    bytes
}

fn decode_err(bytes: &[u8]) -> EnvelopeError {
    match ShareEnvelope::decode(bytes) {
        Err(ShareError::BadEnvelope(e)) => e,
        other => panic!("expected a BadEnvelope error, got {other:?}"),
    }
}

fn slot_at(i: usize) -> usize {
    SLOTS_AT + SLOT * i
}

#[test]
fn layout_matches_documentation() {
    let s = Setup::new(N as u16, T, 11);
    let bytes = s.envelope.encode();
    assert_eq!(bytes[0], ENVELOPE_VERSION);
    assert_eq!(bytes[1] as usize, T);
    assert_eq!(bytes[2] as usize, N);
    assert_eq!(&bytes[3..35], s.envelope.key_commitment().as_bytes());
    assert_eq!(
        &bytes[VSS_AT..VSS_AT + 32],
        &s.envelope.vss_commitments()[0]
    );
    for (i, c) in s.envelope.custodians().iter().enumerate() {
        let at = slot_at(i);
        assert_eq!(u16::from_be_bytes([bytes[at], bytes[at + 1]]), c.index);
        assert_eq!(&bytes[at + 2..at + 22], c.address.as_slice());
        assert_eq!(&bytes[at + 22..at + 54], c.public_key.as_bytes());
        assert_eq!(&bytes[at + 54..at + 56], &[0, 80]);
        assert_eq!(&bytes[at + 56..at + 136], c.sealed.as_bytes());
    }
    assert_eq!(&bytes[PATIENT_AT..PATIENT_AT + 2], &[0, 80]);
    assert_eq!(
        &bytes[PATIENT_AT + 2..],
        s.envelope.patient().sealed.as_bytes()
    );
    // The patient's key, public on-chain, appears nowhere: it would link the envelope to them.
    let patient_key = pmr_shares::X25519PublicKey::from(&s.patient_secret);
    assert!(!bytes
        .windows(32)
        .any(|w| w == patient_key.as_bytes().as_slice()));
}

#[test]
fn trailing_and_truncated() {
    let mut bytes = valid();
    bytes.push(0);
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::TrailingBytes { count: 1 }
    );
    let bytes = valid();
    assert!(matches!(
        decode_err(&bytes[..TOTAL - 1]),
        EnvelopeError::Truncated {
            field: "sealed share",
            needed: 80,
            remaining: 79
        }
    ));
    assert!(matches!(
        decode_err(&[]),
        EnvelopeError::Truncated {
            field: "version",
            ..
        }
    ));
}

#[test]
fn unknown_version() {
    // Version 1 named the patient's key; it is refused, as is any other.
    for found in [1u8, 3] {
        let mut bytes = valid();
        bytes[0] = found;
        assert_eq!(
            decode_err(&bytes),
            EnvelopeError::UnknownVersion {
                found,
                supported: 2
            }
        );
    }
}

#[test]
fn threshold_bounds() {
    let mut bytes = valid();
    bytes[1] = 4;
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::ThresholdExceedsCustodians {
            threshold: 4,
            custodians: 3
        }
    );
    bytes[1] = 1;
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::ThresholdTooLow { threshold: 1 }
    );
}

#[test]
fn indices_zero_duplicate_unordered() {
    let mut bytes = valid();
    bytes[slot_at(1)..slot_at(1) + 2].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(decode_err(&bytes), EnvelopeError::ZeroIndex { position: 1 });

    let mut bytes = valid();
    bytes[slot_at(1)..slot_at(1) + 2].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::DuplicateIndex { index: 1 }
    );

    let mut bytes = valid();
    // Swap indices 1 and 2 (slots stay in place): order 2, 1, 3.
    bytes[slot_at(0)..slot_at(0) + 2].copy_from_slice(&2u16.to_be_bytes());
    bytes[slot_at(1)..slot_at(1) + 2].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::UnorderedIndices { position: 1 }
    );
}

#[test]
fn duplicate_address_and_key() {
    let mut bytes = valid();
    let first: Vec<u8> = bytes[slot_at(0) + 2..slot_at(0) + 22].to_vec();
    bytes[slot_at(2) + 2..slot_at(2) + 22].copy_from_slice(&first);
    assert!(matches!(
        decode_err(&bytes),
        EnvelopeError::DuplicateAddress { .. }
    ));

    let mut bytes = valid();
    let first: Vec<u8> = bytes[slot_at(0) + 22..slot_at(0) + 54].to_vec();
    bytes[slot_at(2) + 22..slot_at(2) + 54].copy_from_slice(&first);
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::DuplicateKey {
            first: 1,
            second: 3
        }
    );
}

#[test]
fn non_canonical_x25519_key() {
    let mut bytes = valid();
    bytes[slot_at(0) + 22 + 31] |= 0x80;
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::NonCanonicalX25519Key {
            slot: Slot::Custodian(1)
        }
    );
}

#[test]
fn bad_sealed_length_prefix() {
    let mut bytes = valid();
    bytes[slot_at(1) + 55] = 79;
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::BadSealedLength {
            slot: Slot::Custodian(2),
            len: 79,
            expected: 80
        }
    );
    let mut bytes = valid();
    bytes[PATIENT_AT] = 1;
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::BadSealedLength {
            slot: Slot::Patient,
            len: 336,
            expected: 80
        }
    );
}

#[test]
fn invalid_points() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut bytes = valid();
    bytes[3..35].copy_from_slice(&identity);
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::InvalidPoint {
            field: "key commitment"
        }
    );
    let mut bytes = valid();
    bytes[VSS_AT + 32..VSS_AT + 64].copy_from_slice(&identity);
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::InvalidPoint {
            field: "VSS commitment"
        }
    );
    // y = p + 1 (≥ p, so non-canonical; it reduces to y = 1, the identity) is refused too.
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee; // little-endian p + 1 = 0x7fff…ffee
    non_canonical[31] = 0x7f;
    let mut bytes = valid();
    bytes[3..35].copy_from_slice(&non_canonical);
    assert_eq!(
        decode_err(&bytes),
        EnvelopeError::InvalidPoint {
            field: "key commitment"
        }
    );
}

#[test]
fn zero_patient_share_is_refused() {
    // S equal to the VSS constant term means s_p = 0: custodians alone would hold the key.
    let mut bytes = valid();
    let c0: Vec<u8> = bytes[VSS_AT..VSS_AT + 32].to_vec();
    bytes[3..35].copy_from_slice(&c0);
    assert_eq!(decode_err(&bytes), EnvelopeError::ZeroPatientShare);
}

#[test]
fn errors_read_clearly() {
    let mut bytes = valid();
    bytes[1] = 4;
    let msg = ShareEnvelope::decode(&bytes)
        .expect_err("must be rejected")
        .to_string();
    assert_eq!(
        msg,
        "bad share envelope: threshold 4 exceeds the 3 custodians"
    );
}
