//! Execution throughput: PMR mints per second through the executor with RocksDB state
//! (one block of N mints, then write_to_batch + a synced commit per block), beside a bare revm
//! loop on an in-memory CacheDB running the same mint with one EVM reused, and the same loop
//! running a plain OpenZeppelin v5 mint (the reference figure's workload).

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

mod fixtures;

/// The node's allocator (see `node/src/main.rs`), so the figures stand for the node.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use alloy_primitives::{Address, TxKind, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixtures::*;
use pmr_contract::PMR;
use pmr_execution::constructor_args;
use pmr_primitives::SignedTx;
use rayon::prelude::*;
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::{ExecuteCommitEvm, ExecuteEvm, MainBuilder};

const MINTS_PER_BLOCK: u64 = 2_000;

fn executor_mints(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, exec) = registered_executor(dir.path());
    let h = hospital();
    let mut nonce = 1u64;
    let mut next_block = || -> Vec<SignedTx> {
        let start = nonce;
        nonce += MINTS_PER_BLOCK;
        (start..start + MINTS_PER_BLOCK)
            .into_par_iter()
            .map(|n| sign(&h, n, &mint_call(n)))
            .collect()
    };

    let mut group = c.benchmark_group("execution");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(MINTS_PER_BLOCK));
    group.bench_function(
        format!("executor_rocksdb_block_of_{MINTS_PER_BLOCK}_mints"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let txs = next_block();
                    let height = exec.head().0 + 1;
                    let start = Instant::now();
                    let executed = exec.execute_block(&env(height), &txs).expect("block");
                    commit(&store, &exec, &executed);
                    total += start.elapsed();
                    assert!(executed.receipts.iter().all(|r| r.success));
                }
                total
            })
        },
    );
    group.finish();
}

alloy_sol_types::sol!(PlainMint, "../../evm-contracts/artifacts/PlainMint.json");

type BareEvm = revm::handler::MainnetEvm<revm::handler::MainnetContext<CacheDB<EmptyDB>>>;

/// One EVM on an in-memory `CacheDB`, reused for every transaction, with `initcode` deployed;
/// returns it and the deployed address.
fn bare_evm(initcode: Vec<u8>) -> (BareEvm, Address) {
    let mut evm = bare::context().build_mainnet();
    let deployed = evm
        .transact_commit(bare::tx(
            Address::repeat_byte(0xde),
            0,
            TxKind::Create,
            initcode,
        ))
        .expect("deploy");
    let address = deployed.created_address().expect("created");
    (evm, address)
}

/// Times `iters` calls from `caller` (nonces from `*nonce` on), the calldata of each built
/// before the clock starts; every call must succeed.
fn bare_calls(
    evm: &mut BareEvm,
    to: Address,
    caller: Address,
    nonce: &mut u64,
    iters: u64,
    calldata: impl Fn(u64) -> Vec<u8>,
) -> Duration {
    let txs: Vec<TxEnv> = (*nonce..*nonce + iters)
        .map(|n| bare::tx(caller, n, TxKind::Call(to), calldata(n)))
        .collect();
    *nonce += iters;
    let start = Instant::now();
    for tx in txs {
        let r = evm.transact_commit(tx).expect("call");
        assert!(r.is_success());
    }
    start.elapsed()
}

fn bare_revm_mints(c: &mut Criterion) {
    let mut group = c.benchmark_group("execution");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));

    let mut initcode = PMR::BYTECODE.to_vec();
    initcode.extend_from_slice(&constructor_args(&genesis()).abi_encode());
    let (mut evm, pmr) = bare_evm(initcode);
    let h = hospital().address();
    let r = evm
        .transact_commit(bare::tx(
            h,
            0,
            TxKind::Call(pmr),
            register_patient_call_at(pmr).abi_encode(),
        ))
        .expect("register");
    assert!(r.is_success());
    let mut nonce = 1;
    group.bench_function("bare_revm_cachedb_mint", |b| {
        b.iter_custom(|iters| {
            bare_calls(&mut evm, pmr, h, &mut nonce, iters, |n| {
                mint_call(n).abi_encode()
            })
        })
    });
    let total = evm
        .transact(bare::tx(
            h,
            nonce,
            TxKind::Call(pmr),
            PMR::totalMintedCall {}.abi_encode(),
        ))
        .expect("view");
    assert_eq!(
        U256::from_be_slice(total.result.output().expect("output")),
        U256::from(nonce - 1)
    );

    // The reference: a plain OpenZeppelin v5 mint (owner, balance, Transfer) on the same EVM.
    let (mut evm, plain) = bare_evm(PlainMint::BYTECODE.to_vec());
    let to = patient_address();
    let mut nonce = 0;
    group.bench_function("bare_revm_cachedb_plain_oz_mint", |b| {
        b.iter_custom(|iters| {
            bare_calls(&mut evm, plain, h, &mut nonce, iters, |_| {
                PlainMint::mintCall { to }.abi_encode()
            })
        })
    });
    let balance = evm
        .transact(bare::tx(
            h,
            nonce,
            TxKind::Call(plain),
            PlainMint::balanceOfCall { owner: to }.abi_encode(),
        ))
        .expect("view");
    assert_eq!(
        U256::from_be_slice(balance.result.output().expect("output")),
        U256::from(nonce)
    );
    group.finish();
}

criterion_group!(benches, executor_mints, bare_revm_mints);
criterion_main!(benches);
