//! A validator whose state no longer matches the network's halts instead of forking: node 3's
//! copy of an account is corrupted on disk while it is down; when it catches up to a block that
//! touches that account, its execution disagrees with the header the network signed, and it
//! stops with an error that says so, without committing that block.

use std::time::{Duration, Instant};

use crate::common::*;
use pmr_storage::{Column, Durability, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_state_halts_the_node_instead_of_forking() {
    let mut net = start_net(4, |_, _| {}).await;
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;
    let (_, first) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 0)).await;
    net.wait_height(3, first).await;

    // Node 3 goes down; its newest version of the hospital's account gets another nonce.
    net.cluster.kill(3).unwrap();
    {
        let store = Store::open(net.cluster.home(3).join("data/db")).expect("open node3's RocksDB");
        let versions = store
            .scan_prefix(Column::Accounts, hospital.address().as_slice())
            .unwrap();
        let (key, value) = versions.first().expect("the hospital's account is stored");
        let mut corrupted = value.clone();
        let nonce = u64::from_be_bytes(corrupted[..8].try_into().unwrap());
        assert_eq!(nonce, 1, "the hospital sent one transaction");
        corrupted[..8].copy_from_slice(&(nonce + 7).to_be_bytes());
        store
            .put(Column::Accounts, key, &corrupted, Durability::Sync)
            .unwrap();
    }

    // The others commit the hospital's next transaction.
    let (_, touched) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 1)).await;

    // Node 3 restarts, syncs, and halts at that block with a clear error.
    net.cluster.start(3).unwrap();
    let deadline = Instant::now() + T;
    while net.cluster.is_running(3) {
        assert!(
            Instant::now() < deadline,
            "timed out after {T:?} waiting for node3 to halt on divergence\n{}",
            net.cluster.log_tail(3, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(net.cluster.log_path(3)).unwrap();
    assert!(
        log.contains(&format!("STATE DIVERGENCE at height {touched}")),
        "node3 did not report the divergence at height {touched}:\n{}",
        net.cluster.log_tail(3, 40)
    );
    // It never committed the block it disagrees with.
    let store = Store::open(net.cluster.home(3).join("data/db")).expect("reopen node3's RocksDB");
    let genesis = pmr_primitives::Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
    let chain = pmr_consensus::ChainStore::open(store, genesis.hash()).unwrap();
    assert!(
        chain.height().unwrap() < touched,
        "node3 committed a block it could not reproduce"
    );

    // The network goes on with 3 of 4.
    let h = net.height(0).await;
    net.wait_height(0, h + 2).await;
}
