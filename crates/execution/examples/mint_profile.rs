//! Profiling aid: signs blocks of mints up front, then executes and commits them, printing
//! the time spent in execution and in the commit. `perf record` this to see the executor alone.

#[path = "../benches/fixtures/mod.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use rayon::prelude::*;

/// The node's allocator (see `node/src/main.rs`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let blocks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let per_block: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, exec) = registered_executor(dir.path());
    let h = hospital();
    let all: Vec<Vec<_>> = (0..blocks)
        .map(|b| {
            (0..per_block)
                .into_par_iter()
                .map(|i| {
                    let n = 1 + b * per_block + i;
                    sign(&h, n, &mint_call(n))
                })
                .collect()
        })
        .collect();
    let (mut t_exec, mut t_commit) = (Duration::ZERO, Duration::ZERO);
    let mut gas_per_mint = 0;
    // A third argument `sign-only` stops here: the baseline to subtract under `perf stat`.
    let run = std::env::args().nth(3).as_deref() != Some("sign-only");
    for txs in all.iter().filter(|_| run) {
        let height = exec.head().0 + 1;
        let t0 = Instant::now();
        let executed = exec.execute_block(&env(height), txs).expect("block");
        let t1 = Instant::now();
        commit(&store, &exec, &executed);
        t_exec += t1 - t0;
        t_commit += t1.elapsed();
        assert!(executed.receipts.iter().all(|r| r.success));
        gas_per_mint = executed.gas_used / per_block;
    }
    let n = (blocks * per_block) as f64;
    println!(
        "{n} mints ({gas_per_mint} gas each): execute {:.2} µs/mint, commit {:.2} µs/mint, \
         total {:.0} mints/s",
        t_exec.as_secs_f64() * 1e6 / n,
        t_commit.as_secs_f64() * 1e6 / n,
        n / (t_exec + t_commit).as_secs_f64()
    );
}
