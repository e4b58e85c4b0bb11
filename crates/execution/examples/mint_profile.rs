//! Profiling aid: signs blocks of mints up front, then executes and commits them, printing
//! the time spent in execution and in the commit (split into staging the batch, RocksDB's
//! write and marking the block committed), and the CPU time of every thread of the process
//! over the same span (RocksDB's background flushes and compactions included). `perf record`
//! this to see the executor alone: `mkfifo ctl ack; PERF_CTL_FIFO=ctl perf record -D -1
//! --control fifo:ctl,ack -g mint_profile 40 2000` samples from the first block on.

#[path = "../benches/fixtures/mod.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use pmr_storage::Durability;
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
    // The commit's parts: staging the batch, RocksDB's write (WAL, fsync, memtables).
    let (mut t_stage, mut t_write) = (Duration::ZERO, Duration::ZERO);
    let mut gas_per_mint = 0;
    // A third argument `sign-only` stops here: the baseline to subtract under `perf stat`.
    let run = std::env::args().nth(3).as_deref() != Some("sign-only");
    // Under `perf record -D -1 --control fifo:CTL,ACK`, with PERF_CTL_FIFO=CTL in the
    // environment, sampling starts here: the signing above stays out of the profile.
    if let Some(ctl) = std::env::var_os("PERF_CTL_FIFO") {
        std::fs::write(ctl, "enable\n").expect("write to PERF_CTL_FIFO");
    }
    let cpu_start = process_cpu();
    for txs in all.iter().filter(|_| run) {
        let height = exec.head().0 + 1;
        let t0 = Instant::now();
        let executed = exec.execute_block(&env(height), txs).expect("block");
        let t1 = Instant::now();
        // `fixtures::commit`, each step timed.
        let mut batch = store.batch_with_capacity(executed.batch_bytes());
        exec.write_to_batch(&executed, &mut batch);
        let t2 = Instant::now();
        batch.commit(Durability::Sync).expect("commit");
        let t3 = Instant::now();
        exec.mark_committed(&executed);
        t_exec += t1 - t0;
        t_commit += t1.elapsed();
        t_stage += t2 - t1;
        t_write += t3 - t2;
        assert!(executed.receipts.iter().all(|r| r.success));
        gas_per_mint = executed.gas_used / per_block;
    }
    let cpu = process_cpu().saturating_sub(cpu_start);
    let n = (blocks * per_block) as f64;
    println!(
        "{n} mints ({gas_per_mint} gas each): execute {:.2} µs/mint, commit {:.2} µs/mint, \
         total {:.0} mints/s; CPU of every thread (RocksDB's flushes too) {:.2} µs/mint\n\
         commit = stage {:.2} + RocksDB write {:.2} + mark committed {:.2} µs/mint",
        t_exec.as_secs_f64() * 1e6 / n,
        t_commit.as_secs_f64() * 1e6 / n,
        n / (t_exec + t_commit).as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n,
        t_stage.as_secs_f64() * 1e6 / n,
        t_write.as_secs_f64() * 1e6 / n,
        (t_commit - t_stage - t_write).as_secs_f64() * 1e6 / n,
    );
}

/// User and system CPU time of the whole process so far (every thread), from
/// `/proc/self/stat` (Linux; zero elsewhere). Clock ticks: run enough blocks for a second or
/// more of work.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces); utime and
    // stime are fields 14 and 15 of the whole line.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux platform Rust targets.
    Duration::from_millis(ticks * 10)
}
