//! Client + node pipeline throughput beside its limits on the same machine:
//! raw blake3, raw XChaCha20-Poly1305, and encrypt → chunk → hash → store in RocksDB.
//!
//! `cargo bench -p pmr-content --bench pipeline`

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pmr_blob::{encrypt_to_vec, DataKey, EncryptingReader};
use pmr_content::{ContentConfig, ContentNode, Keypair};

const LEN: usize = 32 * 1024 * 1024;

fn data() -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1u64;
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = data();
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(8));
    g.throughput(Throughput::Bytes(LEN as u64));

    g.bench_function(BenchmarkId::new("blake3", "32MiB"), |b| {
        b.iter(|| blake3::hash(&data))
    });
    g.bench_function(BenchmarkId::new("blake3_256KiB_blocks", "32MiB"), |b| {
        b.iter(|| {
            for chunk in data.chunks(256 * 1024) {
                criterion::black_box(blake3::hash(chunk));
            }
        })
    });
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = data.clone();
    g.bench_function(BenchmarkId::new("xchacha20poly1305_64KiB", "32MiB"), |b| {
        b.iter(|| {
            for (i, seg) in buf.chunks_mut(64 * 1024).enumerate() {
                let mut nonce = [0u8; 24];
                nonce[16..].copy_from_slice(&(i as u64).to_be_bytes());
                criterion::black_box(
                    cipher
                        .encrypt_in_place_detached(&nonce.into(), b"", seg)
                        .expect("encrypt"),
                );
            }
        })
    });
    let key = DataKey::generate();
    g.bench_function(BenchmarkId::new("encrypt_to_vec", "32MiB"), |b| {
        b.iter(|| encrypt_to_vec(&key, &data))
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = rt.block_on(async {
        let store = pmr_storage::Store::open(dir.path()).expect("store");
        let cfg = ContentConfig::new(
            Keypair::generate_ed25519(),
            "/ip4/127.0.0.1/tcp/0".parse().expect("addr"),
        );
        ContentNode::spawn(cfg, store).await.expect("node")
    });
    g.bench_function(BenchmarkId::new("chunk_store", "32MiB"), |b| {
        b.iter(|| rt.block_on(node.put_stream(&data[..])).expect("put"))
    });
    g.bench_function(BenchmarkId::new("encrypt_chunk_store", "32MiB"), |b| {
        b.iter(|| {
            rt.block_on(node.put_stream(EncryptingReader::new(&key, &data[..])))
                .expect("put")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
