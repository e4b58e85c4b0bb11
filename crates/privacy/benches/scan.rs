//! What a patient's record scan costs: its viewing key judging ERC-5564 announcements, with
//! the view tag (one scalar multiplication and a hash per announcement; the address only for
//! the one in 256 whose tag matches) and without it (the address derived for every one).
//! Throughput is per announcement; a million costs 1,000,000 times the time per element.
//! Run: `cargo bench --profile maxperf --workspace --bench scan`.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use alloy_primitives::B256;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pmr_privacy::stealth::generate;
use pmr_privacy::{Announcement, StealthKeys};
use rand::rngs::OsRng;

/// Announcements per measured batch: 1,000 to other patients and 4 to the scanner.
const OTHERS: usize = 1_000;
const MINE: usize = 4;

fn announcements(me: &StealthKeys) -> Vec<Announcement> {
    let other = StealthKeys::derive(&B256::repeat_byte(2)).expect("keys");
    let mut out: Vec<Announcement> = (0..OTHERS)
        .map(|i| generate(&other.meta_address(), i as u32, &mut OsRng))
        .collect();
    for i in 0..MINE {
        out.insert(i * 250, generate(&me.meta_address(), 7, &mut OsRng));
    }
    out
}

fn scan(c: &mut Criterion) {
    let me = StealthKeys::derive(&B256::repeat_byte(1)).expect("keys");
    let all = announcements(&me);
    let view = me.viewing_key();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("with_view_tag", |b| {
        b.iter(|| {
            let found = all.iter().filter(|a| view.scan(a).is_some()).count();
            assert_eq!(found, MINE);
        })
    });
    g.bench_function("without_view_tag", |b| {
        b.iter(|| {
            let found = all
                .iter()
                .filter(|a| view.scan_without_view_tag(a).is_some())
                .count();
            assert_eq!(found, MINE);
        })
    });
    // The hospital's side, for scale: one fresh one-time owner per mint.
    g.throughput(Throughput::Elements(1));
    g.bench_function("generate", |b| {
        b.iter_batched(
            || me.meta_address(),
            |meta| generate(&meta, 1, &mut OsRng),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
