//! The record-key lifecycle through the public API: split, custody, grant, release, open — and
//! every way a caller can get it wrong.

mod common;

use alloy_primitives::{Address, U256};
use common::Setup;
use pmr_shares::{
    open_custodian_share, open_granted_patient_share, open_patient_share, open_sealed_share,
    reconstruct_record_key, seal_patient_share_to, seal_share_to, split_record_key,
    verify_custodian_share, CustodianInfo, CustodianShare, GrantContext, KeyCommitment, RecordKey,
    ShareError, Slot, X25519PublicKey, X25519Secret, DEK_CONTEXT,
};

#[test]
fn full_lifecycle_grant_release_reconstruct() {
    let mut s = Setup::new(7, 4, 1);
    let ctx = s.grant_context();
    let grantee_pk = X25519PublicKey::from(&s.grantee_secret);

    // Patient opens s_p and re-seals it to the grantee for the grant transaction.
    let s_p = open_patient_share(&s.envelope, &s.patient_secret).expect("patient opens");
    let granted = seal_patient_share_to(&s_p, &grantee_pk, &ctx, &mut s.rng).expect("reseal");

    // Custodians 2, 3, 5, 7 release their shares sealed to the grantee.
    let released: Vec<(u16, _)> = [2u16, 3, 5, 7]
        .iter()
        .map(|&i| {
            let share = s.custodian_share(i);
            (
                i,
                seal_share_to(&share, &grantee_pk, &ctx, &mut s.rng).expect("seal"),
            )
        })
        .collect();

    // Grantee opens everything and reconstructs.
    let s_p_g = open_granted_patient_share(&granted, &s.grantee_secret, &ctx).expect("open s_p");
    let shares: Vec<CustodianShare> = released
        .iter()
        .map(|(i, sealed)| open_sealed_share(sealed, *i, &s.grantee_secret, &ctx).expect("open"))
        .collect();
    let key = reconstruct_record_key(&s.envelope, &s_p_g, &shares).expect("reconstruct");
    assert!(key == s.key);
    let expected_dek = blake3::derive_key(DEK_CONTEXT, s.key.to_bytes().as_ref());
    assert_eq!(*key.dek(), expected_dek);
    assert_eq!(DEK_CONTEXT, "pmr record dek v1");
}

#[test]
fn released_share_is_bound_to_grant_and_custodian_index() {
    let mut s = Setup::new(5, 3, 2);
    let ctx = s.grant_context();
    let grantee_pk = X25519PublicKey::from(&s.grantee_secret);
    let share = s.custodian_share(2);
    let sealed = seal_share_to(&share, &grantee_pk, &ctx, &mut s.rng).expect("seal");

    // Presented as custodian 3's share: refused, blamed on slot 3 (the claimed sender).
    assert_eq!(
        open_sealed_share(&sealed, 3, &s.grantee_secret, &ctx).expect_err("must be rejected"),
        ShareError::SealOpenFailed {
            slot: Slot::Custodian(3)
        }
    );
    // Another token, grantee, chain or record version: refused.
    let variants = [
        GrantContext {
            token_id: U256::from(9999u64),
            ..ctx
        },
        GrantContext {
            grantee: Address::repeat_byte(0xcd),
            ..ctx
        },
        GrantContext { chain_id: 8, ..ctx },
        GrantContext {
            key_commitment: RecordKey::generate(&mut s.rng).commitment(),
            ..ctx
        },
    ];
    for other in variants {
        assert!(matches!(
            open_sealed_share(&sealed, 2, &s.grantee_secret, &other),
            Err(ShareError::SealOpenFailed { .. })
        ));
    }
    // Another recipient key: refused.
    let stranger = X25519Secret::random_from_rng(&mut s.rng);
    assert!(open_sealed_share(&sealed, 2, &stranger, &ctx).is_err());
    // A patient grant cannot be opened as a custodian release, nor the reverse.
    let s_p = s.patient_share();
    let granted = seal_patient_share_to(&s_p, &grantee_pk, &ctx, &mut s.rng).expect("seal");
    assert!(open_sealed_share(&granted, 1, &s.grantee_secret, &ctx).is_err());
    assert_eq!(
        open_granted_patient_share(&sealed, &s.grantee_secret, &ctx).expect_err("must be rejected"),
        ShareError::SealOpenFailed {
            slot: Slot::Patient
        }
    );
    // The right context opens.
    assert!(open_sealed_share(&sealed, 2, &s.grantee_secret, &ctx).expect("open") == share);
}

#[test]
fn envelope_slot_cannot_be_moved_between_records_or_slots() {
    // Same custodians and patient, two records.
    let a = Setup::new(4, 2, 3);
    let mut rng = rand::rngs::OsRng;
    let other_key = RecordKey::generate(&mut rng);
    let b = split_record_key(
        &other_key,
        2,
        &a.custodians,
        &X25519PublicKey::from(&a.patient_secret),
        &mut rng,
    )
    .expect("split");

    // Transplant custodian 1's sealed share from record A into record B's slot 1.
    let mut bytes = b.encode();
    let from = a.envelope.custodian(1).expect("slot").sealed.to_bytes();
    let to = b.custodian(1).expect("slot").sealed.to_bytes();
    let at = bytes
        .windows(to.len())
        .position(|w| w == to)
        .expect("slot in encoding");
    bytes[at..at + to.len()].copy_from_slice(&from);
    let moved = pmr_shares::ShareEnvelope::decode(&bytes).expect("decodes");
    assert_eq!(
        open_custodian_share(&moved, 1, a.secret_of(1)).expect_err("must be rejected"),
        ShareError::SealOpenFailed {
            slot: Slot::Custodian(1)
        }
    );
    // Same for the patient slot.
    let mut bytes = b.encode();
    let from = a.envelope.patient().sealed.to_bytes();
    let to = b.patient().sealed.to_bytes();
    let at = bytes.windows(80).position(|w| w == to).expect("slot");
    bytes[at..at + 80].copy_from_slice(&from);
    let moved = pmr_shares::ShareEnvelope::decode(&bytes).expect("decodes");
    assert_eq!(
        open_patient_share(&moved, &a.patient_secret).expect_err("must be rejected"),
        ShareError::SealOpenFailed {
            slot: Slot::Patient
        }
    );
}

#[test]
fn wrong_keys_and_unknown_custodians_are_named() {
    let s = Setup::new(3, 2, 4);
    assert_eq!(
        open_custodian_share(&s.envelope, 1, s.secret_of(2)).expect_err("must be rejected"),
        ShareError::WrongRecipientKey {
            slot: Slot::Custodian(1)
        }
    );
    assert_eq!(
        open_custodian_share(&s.envelope, 9, s.secret_of(1)).expect_err("must be rejected"),
        ShareError::UnknownCustodian { index: 9 }
    );
    // The envelope does not name the patient's key: another key just does not open the slot.
    assert_eq!(
        open_patient_share(&s.envelope, s.secret_of(1)).expect_err("must be rejected"),
        ShareError::SealOpenFailed {
            slot: Slot::Patient
        }
    );
    // Finding one's slot by key or address.
    let pk = X25519PublicKey::from(s.secret_of(2));
    assert_eq!(s.envelope.custodian_by_key(&pk).map(|c| c.index), Some(2));
    assert_eq!(
        s.envelope
            .custodian_by_address(&Address::with_last_byte(3))
            .map(|c| c.index),
        Some(3)
    );
}

#[test]
fn reconstruct_rejects_duplicates_unknowns_and_forgeries() {
    let s = Setup::new(5, 3, 5);
    let sp = s.patient_share();
    let one = s.custodian_share(1);
    let err = reconstruct_record_key(
        &s.envelope,
        &sp,
        &[one.clone(), one.clone(), s.custodian_share(2)],
    )
    .expect_err("must be rejected");
    assert_eq!(err, ShareError::DuplicateShare { custodian: 1 });

    // Custodian 4 hands over custodian 1's value under its own index.
    let forged = CustodianShare::from_bytes(4, &one.value_bytes()).expect("canonical");
    assert_eq!(
        verify_custodian_share(&s.envelope, &forged).expect_err("must be rejected"),
        ShareError::ForgedShare { custodian: 4 }
    );
    let err = reconstruct_record_key(
        &s.envelope,
        &sp,
        &[s.custodian_share(1), s.custodian_share(2), forged],
    )
    .expect_err("must be rejected");
    assert_eq!(err, ShareError::ForgedShare { custodian: 4 });
    assert_eq!(err.culprit(), Some(Slot::Custodian(4)));

    let stranger = CustodianShare::from_bytes(6, &one.value_bytes()).expect("canonical");
    assert_eq!(
        reconstruct_record_key(&s.envelope, &sp, &[stranger]).expect_err("must be rejected"),
        ShareError::UnknownCustodian { index: 6 }
    );
    assert_eq!(
        CustodianShare::from_bytes(0, &one.value_bytes()).expect_err("must be rejected"),
        ShareError::ZeroCustodianIndex
    );
    assert_eq!(
        CustodianShare::from_bytes(2, &[0xff; 32]).expect_err("must be rejected"),
        ShareError::MalformedShare {
            slot: Slot::Custodian(2)
        }
    );
}

#[test]
fn split_rejects_bad_parameters() {
    let mut rng = rand::rngs::OsRng;
    let key = RecordKey::generate(&mut rng);
    let patient = X25519PublicKey::from(&X25519Secret::random_from_rng(rng));
    let custodian = |index: u16, addr: u8| CustodianInfo {
        index,
        address: Address::with_last_byte(addr),
        public_key: X25519PublicKey::from(&X25519Secret::random_from_rng(rand::rngs::OsRng)),
    };
    let three = [custodian(1, 1), custodian(2, 2), custodian(3, 3)];
    assert_eq!(
        split_record_key(&key, 1, &three, &patient, &mut rng).expect_err("must be rejected"),
        ShareError::InvalidThreshold {
            threshold: 1,
            custodians: 3
        }
    );
    assert_eq!(
        split_record_key(&key, 4, &three, &patient, &mut rng).expect_err("must be rejected"),
        ShareError::InvalidThreshold {
            threshold: 4,
            custodians: 3
        }
    );
    assert_eq!(
        split_record_key(
            &key,
            2,
            &[custodian(1, 1), custodian(1, 2)],
            &patient,
            &mut rng
        )
        .expect_err("must be rejected"),
        ShareError::DuplicateCustodianIndex { index: 1 }
    );
    assert_eq!(
        split_record_key(
            &key,
            2,
            &[custodian(0, 1), custodian(1, 2)],
            &patient,
            &mut rng
        )
        .expect_err("must be rejected"),
        ShareError::ZeroCustodianIndex
    );
    assert_eq!(
        split_record_key(
            &key,
            2,
            &[custodian(1, 9), custodian(2, 9)],
            &patient,
            &mut rng
        )
        .expect_err("must be rejected"),
        ShareError::DuplicateCustodianAddress {
            address: Address::with_last_byte(9)
        }
    );
    let mut same_key = [custodian(1, 1), custodian(2, 2)];
    same_key[1].public_key = same_key[0].public_key;
    assert_eq!(
        split_record_key(&key, 2, &same_key, &patient, &mut rng).expect_err("must be rejected"),
        ShareError::DuplicateCustodianKey {
            first: 1,
            second: 2
        }
    );
    // A low-order X25519 key (all zeros) cannot be sealed to.
    let mut weak = [custodian(1, 1), custodian(2, 2)];
    weak[1].public_key = X25519PublicKey::from([0u8; 32]);
    assert!(matches!(
        split_record_key(&key, 2, &weak, &patient, &mut rng).expect_err("must be rejected"),
        ShareError::SealFailed {
            slot: Slot::Custodian(2),
            ..
        }
    ));
    // Input order does not matter: slots come out sorted by index.
    let shuffled = [custodian(3, 3), custodian(1, 1), custodian(2, 2)];
    let env = split_record_key(&key, 2, &shuffled, &patient, &mut rng).expect("split");
    let order: Vec<u16> = env.custodians().iter().map(|c| c.index).collect();
    assert_eq!(order, vec![1, 2, 3]);
    assert_eq!(env.threshold(), 2);
    assert_eq!(env.custodian_count(), 3);
    assert_eq!(env.vss_commitments().len(), 2);
    assert_eq!(env.key_commitment(), key.commitment());
}

#[test]
fn record_keys_and_commitments_are_strict() {
    assert_eq!(
        RecordKey::from_bytes(&[0u8; 32]).expect_err("must be rejected"),
        ShareError::InvalidRecordKey
    );
    assert_eq!(
        RecordKey::from_bytes(&[0xff; 32]).expect_err("must be rejected"),
        ShareError::InvalidRecordKey
    );
    // The identity point (y = 1) is not a valid commitment.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        KeyCommitment::from_bytes(&identity).expect_err("must be rejected"),
        ShareError::InvalidKeyCommitment
    );
    let key = RecordKey::generate(&mut rand::rngs::OsRng);
    let c = key.commitment();
    assert_eq!(KeyCommitment::from_bytes(&c.to_bytes()), Ok(c));
    assert!(c.verify_key(&key).is_ok());
    let other = RecordKey::generate(&mut rand::rngs::OsRng);
    assert_eq!(c.verify_key(&other), Err(ShareError::KeyCommitmentMismatch));
    assert_eq!(
        RecordKey::from_bytes(&key.to_bytes()).expect("round trip"),
        key
    );
    assert_eq!(format!("{key:?}"), "RecordKey(<redacted>)");
}
