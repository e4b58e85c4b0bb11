//! Release challenges: canonical bytes, EIP-191 signatures (interoperable with alloy's signer),
//! signer checks, malleability, freshness.

use alloy_primitives::{Address, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use pmr_shares::{ReleaseChallenge, ShareError, CHALLENGE_LEN};

fn challenge(grantee: Address) -> ReleaseChallenge {
    ReleaseChallenge {
        chain_id: 31337,
        custodian: Address::repeat_byte(0x11),
        token_id: U256::from(77u64),
        grantee,
        nonce: B256::repeat_byte(0x5a),
        issued_at_ms: 1_700_000_000_000,
        reply_key: B256::repeat_byte(0x33),
    }
}

#[test]
fn bytes_round_trip_and_layout() {
    let c = challenge(Address::repeat_byte(0x22));
    let b = c.to_bytes();
    assert_eq!(b.len(), CHALLENGE_LEN);
    assert_eq!(b[0], 2);
    assert_eq!(&b[121..153], &[0x33; 32]);
    assert_eq!(&b[1..9], &31337u64.to_be_bytes());
    assert_eq!(&b[9..29], &[0x11; 20]);
    assert_eq!(b[60], 77);
    assert_eq!(&b[61..81], &[0x22; 20]);
    assert_eq!(ReleaseChallenge::from_bytes(&b), Ok(c));
    assert!(matches!(
        ReleaseChallenge::from_bytes(&b[..120]),
        Err(ShareError::BadChallenge(_))
    ));
    let mut v3 = b;
    v3[0] = 3;
    assert!(matches!(
        ReleaseChallenge::from_bytes(&v3),
        Err(ShareError::BadChallenge(m)) if m.contains("unknown version 3")
    ));
}

#[test]
fn alloy_personal_sign_verifies() {
    let signer = PrivateKeySigner::random();
    let c = challenge(signer.address());
    // What a wallet does: personal_sign over the 32 hash bytes.
    let sig = signer
        .sign_message_sync(c.signing_hash().as_slice())
        .expect("sign");
    assert_eq!(c.verify(&sig.as_bytes()), Ok(signer.address()));
    // Same with v as 0/1 (y parity) instead of 27/28.
    assert_eq!(c.verify(&sig.as_rsy()), Ok(signer.address()));
}

#[test]
fn own_sign_matches_alloy_and_verifies() {
    let signer = PrivateKeySigner::random();
    let key = signer.credential().clone();
    let c = challenge(signer.address());
    let ours = c.sign(&key).expect("sign");
    let theirs = signer
        .sign_message_sync(c.signing_hash().as_slice())
        .expect("sign")
        .as_bytes();
    assert_eq!(ours, theirs, "RFC 6979 deterministic signatures agree");
    assert_eq!(c.verify(&ours), Ok(signer.address()));
}

#[test]
fn wrong_signer_or_tampered_challenge_is_refused() {
    let grantee = PrivateKeySigner::random();
    let other = PrivateKeySigner::random();
    let c = challenge(grantee.address());
    let sig = other
        .sign_message_sync(c.signing_hash().as_slice())
        .expect("sign")
        .as_bytes();
    assert_eq!(
        c.verify(&sig),
        Err(ShareError::SignerMismatch {
            expected: grantee.address(),
            recovered: other.address()
        })
    );
    let sig = grantee
        .sign_message_sync(c.signing_hash().as_slice())
        .expect("sign")
        .as_bytes();
    for tampered in [
        ReleaseChallenge { chain_id: 1, ..c },
        ReleaseChallenge {
            custodian: Address::repeat_byte(0x12),
            ..c
        },
        ReleaseChallenge {
            token_id: U256::from(78u64),
            ..c
        },
        ReleaseChallenge {
            nonce: B256::repeat_byte(0x5b),
            ..c
        },
        ReleaseChallenge {
            issued_at_ms: c.issued_at_ms + 1,
            ..c
        },
        // Another key to seal the share to: a man in the middle cannot redirect it.
        c.with_reply_key(B256::repeat_byte(0x34)),
    ] {
        assert!(matches!(
            tampered.verify(&sig),
            Err(ShareError::SignerMismatch { .. } | ShareError::BadSignature(_))
        ));
    }
    // Signing the raw hash without the EIP-191 prefix does not verify.
    let key = grantee.credential().clone();
    let (raw, recid) = key
        .sign_prehash_recoverable(c.signing_hash().as_slice())
        .expect("sign");
    let mut bad = [0u8; 65];
    bad[..64].copy_from_slice(&raw.to_bytes());
    bad[64] = 27 + u8::from(recid.is_y_odd());
    assert!(c.verify(&bad).is_err());
}

#[test]
fn malformed_and_malleable_signatures_are_refused() {
    let signer = PrivateKeySigner::random();
    let c = challenge(signer.address());
    let sig = signer
        .sign_message_sync(c.signing_hash().as_slice())
        .expect("sign");
    assert!(
        matches!(c.verify(&sig.as_bytes()[..64]), Err(ShareError::BadSignature(m)) if m.contains("64 bytes"))
    );
    let mut bad_v = sig.as_bytes();
    bad_v[64] = 37;
    assert!(matches!(c.verify(&bad_v), Err(ShareError::BadSignature(m)) if m.contains("v = 37")));
    // The high-s twin (n − s, flipped parity) recovers the same key but is refused.
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .expect("order");
    let high_s = n - sig.s();
    let mut twin = [0u8; 65];
    twin[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
    twin[32..64].copy_from_slice(&high_s.to_be_bytes::<32>());
    twin[64] = 27 + u8::from(!sig.v());
    assert!(matches!(c.verify(&twin), Err(ShareError::BadSignature(m)) if m.contains("high-s")));
}

#[test]
fn freshness_window() {
    let c = challenge(Address::ZERO);
    let t = c.issued_at_ms;
    assert_eq!(c.check_fresh(t, 60_000, 5_000), Ok(()));
    assert_eq!(c.check_fresh(t + 60_000, 60_000, 5_000), Ok(()));
    assert_eq!(
        c.check_fresh(t + 60_001, 60_000, 5_000),
        Err(ShareError::ChallengeExpired {
            age_ms: 60_001,
            max_age_ms: 60_000
        })
    );
    assert_eq!(c.check_fresh(t - 5_000, 60_000, 5_000), Ok(()));
    assert_eq!(
        c.check_fresh(t - 5_001, 60_000, 5_000),
        Err(ShareError::ChallengeFromFuture {
            ahead_ms: 5_001,
            max_skew_ms: 5_000
        })
    );
}

#[test]
fn new_challenges_have_fresh_nonces() {
    let mut rng = rand::rngs::OsRng;
    let a = ReleaseChallenge::new(
        1,
        Address::ZERO,
        U256::from(1u64),
        Address::ZERO,
        5,
        &mut rng,
    );
    let b = ReleaseChallenge::new(
        1,
        Address::ZERO,
        U256::from(1u64),
        Address::ZERO,
        5,
        &mut rng,
    );
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.signing_hash(), b.signing_hash());
}
