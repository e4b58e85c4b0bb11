//! Property tests of essential secret sharing: for random 2 ≤ t ≤ n ≤ 16, any t custodian shares
//! plus s_p reconstruct s; t−1 do not; all n without s_p do not; a flipped bit in any share or
//! any sealed share is detected and blamed on the right custodian; the envelope encoding is
//! canonical.

mod common;

use common::{interpolate_at_zero, scalar_of, Setup};
use pmr_shares::{
    open_custodian_share, open_patient_share, open_sealed_share, reconstruct_record_key,
    seal_share_to, CustodianShare, PatientShare, RecordKey, SealedShare, ShareEnvelope, ShareError,
    Slot, SEALED_SHARE_LEN,
};
use proptest::prelude::*;
use proptest::sample::Index;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// (n, t) with 2 ≤ t ≤ n ≤ 16.
fn params() -> impl Strategy<Value = (u16, usize)> {
    (2u16..=16).prop_flat_map(|n| (Just(n), 2usize..=usize::from(n)))
}

/// A random subset of `k` indices out of 1..=n, chosen by `seed`.
fn subset(n: u16, k: usize, seed: u64) -> Vec<u16> {
    let mut all: Vec<u16> = (1..=n).collect();
    all.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    all.truncate(k);
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn any_t_shares_plus_patient_reconstruct((n, t) in params(), seed: u64, pick: u64) {
        let s = Setup::new(n, t, seed);
        let shares: Vec<CustodianShare> =
            subset(n, t, pick).into_iter().map(|i| s.custodian_share(i)).collect();
        let key = reconstruct_record_key(&s.envelope, &s.patient_share(), &shares)
            .expect("t shares + s_p reconstruct");
        prop_assert!(key == s.key);
        prop_assert_eq!(*key.dek(), *s.key.dek());
        // More than t (all n) also works.
        let all: Vec<CustodianShare> = (1..=n).map(|i| s.custodian_share(i)).collect();
        let key = reconstruct_record_key(&s.envelope, &s.patient_share(), &all)
            .expect("n shares + s_p reconstruct");
        prop_assert!(key == s.key);
    }

    #[test]
    fn t_minus_one_shares_do_not_reconstruct((n, t) in params(), seed: u64, pick: u64) {
        let s = Setup::new(n, t, seed);
        let shares: Vec<CustodianShare> =
            subset(n, t - 1, pick).into_iter().map(|i| s.custodian_share(i)).collect();
        let err = reconstruct_record_key(&s.envelope, &s.patient_share(), &shares).expect_err("must be rejected");
        prop_assert_eq!(err, ShareError::NotEnoughShares { have: t - 1, need: t });
        // And the arithmetic itself: interpolating t-1 points does not give s_c.
        let guess = interpolate_at_zero(&shares) + scalar_of(&s.patient_share().to_bytes());
        let guessed_key = RecordKey::from_bytes(&guess.to_bytes());
        if let Ok(k) = guessed_key {
            prop_assert_eq!(
                s.envelope.key_commitment().verify_key(&k),
                Err(ShareError::KeyCommitmentMismatch)
            );
        }
    }

    #[test]
    fn all_custodians_without_patient_do_not_reconstruct((n, t) in params(), seed: u64) {
        let mut s = Setup::new(n, t, seed);
        let all: Vec<CustodianShare> = (1..=n).map(|i| s.custodian_share(i)).collect();
        // The coalition gets s_c exactly — which is not s.
        let s_c = interpolate_at_zero(&all);
        let as_key = RecordKey::from_bytes(&s_c.to_bytes()).expect("s_c is non-zero");
        prop_assert_eq!(
            s.envelope.key_commitment().verify_key(&as_key),
            Err(ShareError::KeyCommitmentMismatch)
        );
        // Guessing the patient's share is caught before any key is output.
        let fake = PatientShare::from_bytes(&RecordKey::generate(&mut s.rng).to_bytes())
            .expect("random non-zero scalar");
        prop_assert_eq!(
            reconstruct_record_key(&s.envelope, &fake, &all).expect_err("must be rejected"),
            ShareError::PatientShareMismatch
        );
    }

    #[test]
    fn flipped_bit_in_a_share_is_blamed_on_its_custodian(
        (n, t) in params(), seed: u64, pick: u64, victim: Index, bit in 0usize..256,
    ) {
        let s = Setup::new(n, t, seed);
        let chosen = subset(n, t, pick);
        let culprit = chosen[victim.index(chosen.len())];
        let mut shares = Vec::new();
        let mut early = None;
        for &i in &chosen {
            let share = s.custodian_share(i);
            if i != culprit {
                shares.push(share);
                continue;
            }
            let mut bytes = *share.value_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            match CustodianShare::from_bytes(i, &bytes) {
                Ok(bad) => shares.push(bad),
                Err(e) => early = Some(e),
            }
        }
        let err = match early {
            Some(e) => e,
            None => reconstruct_record_key(&s.envelope, &s.patient_share(), &shares).expect_err("must be rejected"),
        };
        prop_assert_eq!(err.culprit(), Some(Slot::Custodian(culprit)), "{:?}", err);
    }

    #[test]
    fn flipped_bit_in_an_envelope_slot_is_blamed_on_its_custodian(
        (n, t) in params(), seed: u64, victim: Index, bit in 0usize..(SEALED_SHARE_LEN * 8),
    ) {
        let s = Setup::new(n, t, seed);
        let culprit = victim.index(usize::from(n)) as u16 + 1;
        let mut bytes = s.envelope.encode();
        let slot = s.envelope.custodian(culprit).expect("slot").sealed.to_bytes();
        let at = find(&bytes, &slot);
        bytes[at + bit / 8] ^= 1 << (bit % 8);
        let tampered = ShareEnvelope::decode(&bytes).expect("sealed bytes are opaque to decode");
        let err = open_custodian_share(&tampered, culprit, s.secret_of(culprit)).expect_err("must be rejected");
        prop_assert_eq!(err, ShareError::SealOpenFailed { slot: Slot::Custodian(culprit) });
        // Every other custodian and the patient are unaffected.
        for i in (1..=n).filter(|&i| i != culprit) {
            prop_assert!(open_custodian_share(&tampered, i, s.secret_of(i)).is_ok());
        }
        prop_assert!(open_patient_share(&tampered, &s.patient_secret).is_ok());
    }

    #[test]
    fn flipped_bit_in_a_released_share_is_blamed_on_its_custodian(
        (n, t) in params(), seed: u64, victim: Index, bit in 0usize..(SEALED_SHARE_LEN * 8),
    ) {
        let mut s = Setup::new(n, t, seed);
        let culprit = victim.index(usize::from(n)) as u16 + 1;
        let ctx = s.grant_context();
        let grantee_pk = pmr_shares::X25519PublicKey::from(&s.grantee_secret);
        let share = s.custodian_share(culprit);
        let sealed = seal_share_to(&share, &grantee_pk, &ctx, &mut s.rng).expect("seal");
        let mut bytes = sealed.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let tampered = SealedShare::from_bytes(&bytes).expect("80 bytes");
        let err = open_sealed_share(&tampered, culprit, &s.grantee_secret, &ctx).expect_err("must be rejected");
        prop_assert_eq!(err.culprit(), Some(Slot::Custodian(culprit)));
        // The untampered one opens to the same share.
        let opened = open_sealed_share(&sealed, culprit, &s.grantee_secret, &ctx).expect("open");
        prop_assert!(opened == share);
    }

    #[test]
    fn envelope_encoding_round_trips_and_is_canonical(
        (n, t) in params(), seed: u64, flip in proptest::option::of(any::<Index>()), bit in 0usize..8,
    ) {
        let s = Setup::new(n, t, seed);
        let bytes = s.envelope.encode();
        let decoded = ShareEnvelope::decode(&bytes).expect("decode own encoding");
        prop_assert_eq!(&decoded, &s.envelope);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        // Any single-bit variant either is rejected or re-encodes to exactly itself.
        if let Some(at) = flip {
            let mut variant = bytes;
            let i = at.index(variant.len());
            variant[i] ^= 1 << bit;
            if let Ok(env) = ShareEnvelope::decode(&variant) {
                prop_assert_eq!(env.encode(), variant);
            }
        }
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(env) = ShareEnvelope::decode(&bytes) {
            prop_assert_eq!(env.encode(), bytes);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("sealed share is inside the encoding")
}
