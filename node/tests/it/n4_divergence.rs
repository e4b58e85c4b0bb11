//! A validator whose state no longer matches the network's halts instead of forking: node 3's
//! copy of an account (or of a storage page) is corrupted on disk while it is down; when it
//! catches up to a block that writes it, its execution disagrees with the header the network
//! signed, and it stops with an error that says so, without committing that block. Before
//! that, `pmr state verify` finds the corruption on the stopped node.

use std::time::{Duration, Instant};

use crate::common::*;
use alloy_primitives::U256;
use pmr_client::{PMR, PMR_ADDRESS};
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
    halts_on_divergence_at(&mut net, touched).await;
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

/// Waits until node 3 has stopped, and checks that it halted reporting the divergence at
/// `height`.
async fn halts_on_divergence_at(net: &mut Net, height: u64) {
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
        log.contains(&format!("STATE DIVERGENCE at height {height}")),
        "node3 did not report the divergence at height {height}:\n{}",
        net.cluster.log_tail(3, 40)
    );
}

/// Runs `pmr state ARGS`; returns (success, stdout + stderr).
fn pmr_state(args: &[&str]) -> (bool, String) {
    let mut all = vec!["state"];
    all.extend_from_slice(args);
    run_pmr(&all, &[])
}

/// The state root commits to the stored state (#30): on a stopped validator, `pmr state
/// verify` recomputes it from disk and agrees with the header the network signed, and a
/// snapshot of it checks against that header's root; after one stored page that no later
/// transaction touches is changed, `verify` reports the mismatch, no snapshot can be written,
/// the node still follows the chain, and it halts on divergence at the first block that
/// writes that page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_verify_reports_a_corrupted_page_and_the_node_halts_when_it_is_written() {
    let mut net = start_net(4, |_, _| {}).await;
    let (admin, hospital) = (net.account("admin"), net.account("hospital"));
    let doctor = pmr_client::Wallet::random();
    let c0 = net.client(0).await;
    let permit = |permitted| PMR::setPermittedCall {
        account: doctor.address(),
        permitted,
    };
    let permitted = ok(&c0, net.chain_id, &admin, permit(true)).await;
    net.wait_height(3, permitted.height).await;

    net.cluster.kill(3).unwrap();
    let home = net.cluster.home(3);
    let home = home.to_str().unwrap();
    let (good, text) = pmr_state(&["verify", "--home", home]);
    assert!(good, "a healthy node's state did not verify:\n{text}");
    assert!(
        text.contains("the stored state is the state the header commits to"),
        "{text}"
    );
    // The check read the state: the contract's code and pages, the accounts.
    let (_, counts) = text.split_once("entries read").expect("counts printed");
    assert!(!counts.trim_start().starts_with("0 accounts"), "{text}");

    // A snapshot of it, checked against the root of the same height's header on node 0.
    let height = {
        let (_, h) = text.split_once("height").unwrap();
        h.split_whitespace().next().unwrap().parse::<u64>().unwrap()
    };
    let header_root = c0.block(height).await.unwrap().header.unwrap().state_root;
    let root = format!("0x{}", alloy_primitives::hex::encode(&header_root));
    let snap = net.dir.path().join("node3.snap");
    let snap_path = snap.to_str().unwrap();
    let (written, text) = pmr_state(&["snapshot", "--home", home, "--out", snap_path]);
    assert!(written, "{text}");
    let (checks, text) = pmr_state(&["verify-snapshot", snap_path, "--root", &root]);
    assert!(checks, "{text}");
    let mut bytes = std::fs::read(&snap).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snap, &bytes).unwrap();
    let (checks, text) = pmr_state(&["verify-snapshot", snap_path, "--root", &root]);
    assert!(
        !checks,
        "a snapshot with a changed byte was accepted:\n{text}"
    );
    assert!(text.contains("snapshot refused"), "{text}");

    // Change one bit of the doctor's permission word (1 becomes 0x101: still permitted, so
    // no read of it behaves differently) in node 3's newest version of its page.
    {
        let store = Store::open(net.cluster.home(3).join("data/db")).expect("open node3's RocksDB");
        let slot = pmr_contract::ContractLayout::get()
            .unwrap()
            .permitted_key(doctor.address());
        let mut prefix = PMR_ADDRESS.to_vec();
        prefix.extend_from_slice(&(slot & !U256::from(7)).to_be_bytes::<32>());
        let (key, mut value) = store
            .scan_prefix(Column::Storage, &prefix)
            .unwrap()
            .into_iter()
            .next()
            .expect("the permission page is stored");
        let index = (slot.as_limbs()[0] & 7) as u32;
        let mask = value[0];
        assert!(mask & (1 << index) != 0, "the doctor's word is set");
        // The word's place among the page's non-zero slots; its second-lowest byte.
        let place = (mask & ((1u8 << index) - 1)).count_ones() as usize;
        let at = 1 + 32 * place + 30;
        assert_eq!(value[at + 1], 1);
        value[at] ^= 1;
        store
            .put(Column::Storage, &key, &value, Durability::Sync)
            .unwrap();
    }
    let (good, text) = pmr_state(&["verify", "--home", home]);
    assert!(!good, "the corrupted page went unseen:\n{text}");
    assert!(text.contains("MISMATCH"), "{text}");
    let snap2 = net.dir.path().join("node3-corrupted.snap");
    let (written, text) =
        pmr_state(&["snapshot", "--home", home, "--out", snap2.to_str().unwrap()]);
    assert!(
        !written,
        "a snapshot of a corrupted state was written:\n{text}"
    );
    assert!(text.contains("no snapshot written"), "{text}");
    assert!(!snap2.exists());

    // Node 3 follows blocks that do not write the page ...
    net.cluster.start(3).unwrap();
    let (_, untouched) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 0)).await;
    net.wait_height(3, untouched + 1).await;
    assert!(net.cluster.is_running(3));
    // ... and halts at the one that does.
    let revoked = ok(&c0, net.chain_id, &admin, permit(false)).await;
    halts_on_divergence_at(&mut net, revoked.height).await;
}
