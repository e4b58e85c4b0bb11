//! Ciphertext integrity: tampering, reordering, truncation, mixing records, wrong key.

use pmr_blob::crypto::{HEADER, SEGMENT, TAG};
use pmr_blob::{decrypt_to_vec, encrypt_to_vec, CryptoError, DataKey};

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

const FULL: usize = SEGMENT + TAG;

#[test]
fn tampered_byte_fails_with_segment_index() {
    let k = DataKey::generate();
    let mut ct = encrypt_to_vec(&k, &sample(3 * SEGMENT));
    ct[HEADER + FULL + 10] ^= 1;
    let err = decrypt_to_vec(&k, &ct).expect_err("tampered");
    assert!(matches!(err, CryptoError::Tampered { segment: 1 }), "{err}");
    assert!(
        err.to_string().contains("segment 1 failed authentication"),
        "{err}"
    );
}

#[test]
fn reordered_segments_fail() {
    let k = DataKey::generate();
    let ct = encrypt_to_vec(&k, &sample(3 * SEGMENT));
    let mut swapped = ct.clone();
    let (a, b) = (HEADER, HEADER + FULL);
    swapped[a..a + FULL].copy_from_slice(&ct[b..b + FULL]);
    swapped[b..b + FULL].copy_from_slice(&ct[a..a + FULL]);
    let err = decrypt_to_vec(&k, &swapped).expect_err("reordered");
    assert!(matches!(err, CryptoError::Tampered { segment: 0 }), "{err}");
}

#[test]
fn truncation_at_a_segment_boundary_is_reported_as_truncation() {
    let k = DataKey::generate();
    let ct = encrypt_to_vec(&k, &sample(3 * SEGMENT + 5));
    let cut = &ct[..HEADER + 2 * FULL];
    let err = decrypt_to_vec(&k, cut).expect_err("truncated");
    assert!(
        matches!(err, CryptoError::Truncated { segments: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    // Dropping the final segment of an exact multiple.
    let ct = encrypt_to_vec(&k, &sample(2 * SEGMENT));
    let err = decrypt_to_vec(&k, &ct[..HEADER + FULL]).expect_err("truncated");
    assert!(matches!(err, CryptoError::Truncated { .. }), "{err}");
    // Cutting inside a segment.
    let err = decrypt_to_vec(&k, &ct[..ct.len() - 3]).expect_err("cut");
    assert!(matches!(err, CryptoError::Tampered { .. }), "{err}");
    // Extra bytes after the end.
    let mut long = ct.clone();
    long.extend_from_slice(&[0u8; 20]);
    assert!(decrypt_to_vec(&k, &long).is_err());
}

#[test]
fn segment_from_another_record_under_the_same_key_fails() {
    let k = DataKey::generate();
    let a = encrypt_to_vec(&k, &sample(2 * SEGMENT));
    let b = encrypt_to_vec(&k, &sample(2 * SEGMENT));
    let mut mixed = a.clone();
    mixed[HEADER..HEADER + FULL].copy_from_slice(&b[HEADER..HEADER + FULL]);
    let err = decrypt_to_vec(&k, &mixed).expect_err("mixed");
    assert!(matches!(err, CryptoError::Tampered { segment: 0 }), "{err}");
}

#[test]
fn wrong_key_and_bad_header_fail_clearly() {
    let ct = encrypt_to_vec(&DataKey::generate(), b"patient record");
    let err = decrypt_to_vec(&DataKey::generate(), &ct).expect_err("wrong key");
    assert!(err.to_string().contains("key is wrong"), "{err}");
    let err = decrypt_to_vec(&DataKey::generate(), b"short").expect_err("short");
    assert!(matches!(err, CryptoError::BadHeader(_)), "{err}");
    let mut bad = ct.clone();
    bad[0] = b'X';
    assert!(matches!(
        decrypt_to_vec(&DataKey::generate(), &bad),
        Err(CryptoError::BadHeader(_))
    ));
}

#[test]
fn same_plaintext_encrypts_differently() {
    let k = DataKey::generate();
    let a = encrypt_to_vec(&k, b"x");
    let b = encrypt_to_vec(&k, b"x");
    assert_ne!(a, b, "random salt per encryption");
    assert_eq!(decrypt_to_vec(&k, &a).expect("a"), b"x");
}
