//! Pseudonym commitments and proofs of link.

use pmr_privacy::{LinkOpening, NationalId, PatientSecret, PseudonymCommitment, PseudonymError};
use rand::rngs::OsRng;

#[test]
fn commitment_is_keyed_and_spelling_independent() {
    let secret = PatientSecret::generate(&mut OsRng);
    let a = PseudonymCommitment::compute(
        &secret,
        &NationalId::parse("91-5523-7781-4402").expect("id"),
    );
    let b =
        PseudonymCommitment::compute(&secret, &NationalId::parse("91552377814402").expect("id"));
    assert_eq!(a, b, "same person, different spelling");

    let other_secret = PatientSecret::generate(&mut OsRng);
    let c = PseudonymCommitment::compute(
        &other_secret,
        &NationalId::parse("91552377814402").expect("id"),
    );
    assert_ne!(a, c, "no one without the secret computes the same value");

    let d =
        PseudonymCommitment::compute(&secret, &NationalId::parse("91552377814403").expect("id"));
    assert_ne!(a, d);

    // It is blake3's keyed hash over a domain-separated encoding, not a plain hash of the ID.
    let mut h = blake3::Hasher::new_keyed(secret.expose_bytes());
    h.update(b"pmr pseudonym v1\0abha-number\091552377814402");
    assert_eq!(a.to_bytes(), *h.finalize().as_bytes());
    assert_ne!(a.to_bytes(), *blake3::hash(b"91552377814402").as_bytes());
}

#[test]
fn schemes_are_domain_separated() {
    let secret = PatientSecret::from_bytes([9; 32]);
    let number =
        PseudonymCommitment::compute(&secret, &NationalId::parse("91552377814402").expect("id"));
    let address = PseudonymCommitment::compute(
        &secret,
        &NationalId::parse("91552377814402@abdm").expect("id"),
    );
    assert_ne!(number, address);
}

#[test]
fn proof_of_link() {
    let secret = PatientSecret::generate(&mut OsRng);
    let id = NationalId::parse("lakshmi.priya61@abdm").expect("id");
    let commitment = PseudonymCommitment::compute(&secret, &id);
    assert_eq!(commitment.verify_link(&id, &secret), Ok(()));
    assert_eq!(
        commitment.verify_link(
            &NationalId::parse("lakshmi.priya62@abdm").expect("id"),
            &secret
        ),
        Err(PseudonymError::LinkMismatch)
    );
    assert_eq!(
        commitment.verify_link(&id, &PatientSecret::generate(&mut OsRng)),
        Err(PseudonymError::LinkMismatch)
    );

    // Through the transportable opening, with a differently typed spelling.
    let opening = LinkOpening::new(&id, &secret);
    let json = serde_json::to_string(&opening).expect("serialize");
    let back: LinkOpening = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back.verify(&commitment), Ok(id.clone()));
    let typed = LinkOpening {
        scheme: "abha-address".into(),
        id: "Lakshmi.Priya61@ABDM".into(),
        secret: format!("0x{}", secret.expose_hex()),
    };
    assert_eq!(typed.verify(&commitment), Ok(id));
    let bad = LinkOpening {
        scheme: "abha-address".into(),
        id: "nope".into(),
        secret: secret.expose_hex(),
    };
    assert!(matches!(
        bad.verify(&commitment),
        Err(PseudonymError::Id(_))
    ));
    assert!(!format!("{opening:?}").contains(&secret.expose_hex()));
}

#[test]
fn hex_round_trip_and_errors() {
    let secret = PatientSecret::from_bytes([1; 32]);
    let c =
        PseudonymCommitment::compute(&secret, &NationalId::parse("12345678901234").expect("id"));
    assert_eq!(PseudonymCommitment::from_hex(&c.to_hex()), Ok(c));
    assert_eq!(
        PseudonymCommitment::from_hex("0x1234"),
        Err(PseudonymError::BadHex {
            what: "a pseudonym commitment"
        })
    );
    assert!(PatientSecret::from_hex(&"zz".repeat(32)).is_err());
    assert_eq!(format!("{secret:?}"), "PatientSecret(<redacted>)");
}
