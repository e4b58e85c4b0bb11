//! Split + seal for n = 7, t = 4; open + verify + reconstruct; and the bare FROST split as the
//! reference. Run: `cargo bench -p pmr-shares`.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{criterion_group, criterion_main, Criterion};
use frost_ed25519::keys::IdentifierList;
use pmr_shares::{
    open_custodian_share, open_granted_patient_share, open_patient_share, open_sealed_share,
    reconstruct_record_key, seal_patient_share_to, seal_share_to, split_record_key, CustodianInfo,
    GrantContext, RecordKey, X25519PublicKey, X25519Secret,
};
use rand::rngs::OsRng;

const N: u16 = 7;
const T: usize = 4;

fn custodians() -> (Vec<X25519Secret>, Vec<CustodianInfo>) {
    let secrets: Vec<X25519Secret> = (0..N)
        .map(|_| X25519Secret::random_from_rng(OsRng))
        .collect();
    let infos = secrets
        .iter()
        .enumerate()
        .map(|(i, sk)| CustodianInfo {
            index: i as u16 + 1,
            address: alloy_primitives::Address::repeat_byte(i as u8 + 1),
            public_key: X25519PublicKey::from(sk),
        })
        .collect();
    (secrets, infos)
}

fn bench(c: &mut Criterion) {
    let mut rng = OsRng;
    let (secrets, infos) = custodians();
    let patient_sk = X25519Secret::random_from_rng(OsRng);
    let patient_pk = X25519PublicKey::from(&patient_sk);
    let grantee_sk = X25519Secret::random_from_rng(OsRng);
    let grantee_pk = X25519PublicKey::from(&grantee_sk);
    let key = RecordKey::generate(&mut rng);

    let mut group = c.benchmark_group("shares n=7 t=4");

    group.bench_function("frost_ed25519::keys::split (reference)", |b| {
        let sk = frost_ed25519::SigningKey::new(&mut rng);
        b.iter(|| {
            frost_ed25519::keys::split(&sk, N, T as u16, IdentifierList::Default, &mut OsRng)
                .expect("split")
        })
    });

    group.bench_function("split + seal (envelope)", |b| {
        b.iter(|| split_record_key(&key, T, &infos, &patient_pk, &mut OsRng).expect("split"))
    });

    let envelope = split_record_key(&key, T, &infos, &patient_pk, &mut rng).expect("split");
    let bytes = envelope.encode();
    group.bench_function("encode + decode envelope", |b| {
        b.iter(|| pmr_shares::ShareEnvelope::decode(&envelope.encode()).expect("decode"))
    });
    let _ = bytes;

    group.bench_function("custodian: open own slot + verify", |b| {
        b.iter(|| open_custodian_share(&envelope, 3, &secrets[2]).expect("open"))
    });

    // What the grantee receives: t shares released by custodians, and s_p from the grant.
    let ctx = GrantContext {
        chain_id: 1,
        token_id: alloy_primitives::U256::from(42u64),
        grantee: alloy_primitives::Address::repeat_byte(0xee),
        key_commitment: envelope.key_commitment(),
    };
    let released: Vec<_> = (0..T)
        .map(|i| {
            let share = open_custodian_share(&envelope, i as u16 + 1, &secrets[i]).expect("open");
            seal_share_to(&share, &grantee_pk, &ctx, &mut rng).expect("seal")
        })
        .collect();
    let patient_share = open_patient_share(&envelope, &patient_sk).expect("patient");
    let granted = seal_patient_share_to(&patient_share, &grantee_pk, &ctx, &mut rng).expect("seal");

    group.bench_function("grantee: open t+1 sealed + verify + reconstruct", |b| {
        b.iter(|| {
            let shares: Vec<_> = released
                .iter()
                .enumerate()
                .map(|(i, s)| open_sealed_share(s, i as u16 + 1, &grantee_sk, &ctx).expect("open"))
                .collect();
            let sp = open_granted_patient_share(&granted, &grantee_sk, &ctx).expect("open");
            let k = reconstruct_record_key(&envelope, &sp, &shares).expect("reconstruct");
            k.dek()
        })
    });

    let opened: Vec<_> = released
        .iter()
        .enumerate()
        .map(|(i, s)| open_sealed_share(s, i as u16 + 1, &grantee_sk, &ctx).expect("open"))
        .collect();
    group.bench_function("verify + reconstruct only", |b| {
        b.iter(|| reconstruct_record_key(&envelope, &patient_share, &opened).expect("reconstruct"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
