//! Transaction admission: decode + signature recovery (`SignedTx::decode`) per second on one
//! core and across a block in parallel with rayon, beside the raw recovery rate of the
//! `secp256k1` library that alloy uses.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

mod fixtures;

/// The node's allocator (see `node/src/main.rs`), so the figures stand for the node.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::Duration;

use alloy_primitives::Bytes;
use alloy_sol_types::SolCall;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixtures::*;
use pmr_contract::PMR_ADDRESS;
use pmr_primitives::SignedTx;
use rayon::prelude::*;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, SECP256K1};

const BLOCK: usize = 1_000;

fn signed_block() -> Vec<Bytes> {
    let h = hospital();
    (0..BLOCK as u64)
        .into_par_iter()
        .map(|n| sign_raw(&h, n, PMR_ADDRESS, mint_call(n).abi_encode()))
        .collect()
}

fn decode_and_recover(c: &mut Criterion) {
    let raw = signed_block();
    let mut group = c.benchmark_group("admission");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(BLOCK as u64));
    group.bench_function("signed_tx_decode_one_core", |b| {
        b.iter(|| {
            raw.iter()
                .map(|r| SignedTx::decode(r.clone(), &LIMITS).expect("valid"))
                .collect::<Vec<_>>()
        })
    });
    group.bench_function(
        format!(
            "signed_tx_decode_rayon_{}_threads",
            rayon::current_num_threads()
        ),
        |b| {
            b.iter(|| {
                raw.par_iter()
                    .map(|r| SignedTx::decode(r.clone(), &LIMITS).expect("valid"))
                    .collect::<Vec<_>>()
            })
        },
    );
    group.finish();
}

fn raw_secp256k1(c: &mut Criterion) {
    let secret = secp256k1::SecretKey::from_slice(&[0x22; 32]).expect("key");
    let items: Vec<(Message, RecoverableSignature)> = (0..BLOCK as u64)
        .map(|n| {
            let msg = Message::from_digest(alloy_primitives::keccak256(n.to_be_bytes()).0);
            (msg, SECP256K1.sign_ecdsa_recoverable(&msg, &secret))
        })
        .collect();
    // Recover from the 65-byte wire form, as transaction decoding does.
    let wire: Vec<(Message, [u8; 64], i32)> = items
        .iter()
        .map(|(m, s)| {
            let (id, bytes) = s.serialize_compact();
            (*m, bytes, i32::from(id))
        })
        .collect();
    let recover = |(m, bytes, id): &(Message, [u8; 64], i32)| {
        let id = RecoveryId::try_from(*id).expect("id");
        let sig = RecoverableSignature::from_compact(bytes, id).expect("sig");
        SECP256K1.recover_ecdsa(m, &sig).expect("recover")
    };
    let mut group = c.benchmark_group("admission");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(BLOCK as u64));
    group.bench_function("secp256k1_recover_one_core", |b| {
        b.iter(|| wire.iter().map(recover).collect::<Vec<_>>())
    });
    group.bench_function(
        format!(
            "secp256k1_recover_rayon_{}_threads",
            rayon::current_num_threads()
        ),
        |b| b.iter(|| wire.par_iter().map(recover).collect::<Vec<_>>()),
    );
    group.finish();
}

criterion_group!(benches, decode_and_recover, raw_secp256k1);
criterion_main!(benches);
