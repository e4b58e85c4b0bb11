//! Crashes under load: a validator is SIGKILLed again and again at arbitrary moments while the
//! network executes a stream of mints, then aborted by a failpoint inside the commit of a known
//! height (the block executed, its batch not written); after each restart it catches up, the
//! aborted height is committed again, and its state equals the others' at every height.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use alloy_primitives::B256;
use alloy_sol_types::SolCall;
use pmr_client::{Wallet, PMR, PMR_ADDRESS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_execution_leaves_state_equal() {
    let mut net = start_net(4, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let id = net.chain_id;
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;
    let patient = Wallet::random();
    let reg = hospital
        .sign_call(
            id,
            0,
            PMR_ADDRESS,
            pmr_contract::register_patient_call(
                &patient,
                id,
                B256::repeat_byte(1),
                B256::repeat_byte(2),
            )
            .unwrap()
            .abi_encode()
            .into(),
            500_000,
        )
        .unwrap();
    submit_and_wait(&c0, reg).await;

    // A steady stream of mints in batches, submitted to node 0.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let c0 = c0.clone();
        tokio::spawn(async move {
            let mut nonce = 1u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..40 {
                    let root = PMR::Cid {
                        codec: 0x55,
                        digest: alloy_primitives::keccak256(nonce.to_be_bytes()),
                    };
                    let call = PMR::mintRecordCall {
                        to: pmr_contract::stealth::mint_to_account(&patient, 3).unwrap(),
                        root: root.clone(),
                        envelope: root,
                        keyCommitment: alloy_primitives::keccak256(nonce.to_le_bytes()),
                    };
                    let raw = hospital
                        .sign_call(id, nonce, PMR_ADDRESS, call.abi_encode().into(), 1_000_000)
                        .unwrap();
                    if c0.submit(raw).await.is_ok() {
                        nonce += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            nonce
        })
    };

    // Kill node 3 at moments that fall inside block execution and commit as often as not.
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        net.cluster.kill(3).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        net.cluster.start(3).unwrap();
        let h = net.height(0).await;
        net.wait_height(3, h).await;
    }
    // Then a kill that is known to fall inside the commit: node 3 restarts with a failpoint
    // that aborts the process in the commit of a coming height, with that block executed and
    // its batch staged but not written.
    net.cluster.kill(3).unwrap();
    let at = net.height(0).await + 4;
    net.cluster
        .set_env(
            3,
            vec![(
                "PMR_TEST_FAILPOINT".into(),
                format!("abort-mid-commit@{at}"),
            )],
        )
        .unwrap();
    net.cluster.start(3).unwrap();
    let deadline = std::time::Instant::now() + T;
    while net.cluster.is_running(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 did not reach its failpoint at height {at}\n{}",
            net.cluster.log_tail(3, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log_at_abort = std::fs::read_to_string(net.cluster.log_path(3)).unwrap();
    assert!(
        log_at_abort.contains("failpoint abort-mid-commit"),
        "node 3 stopped, but not at its failpoint:\n{}",
        net.cluster.log_tail(3, 30)
    );
    {
        // The block was not committed: the node's chain ends just below it.
        let store = pmr_storage::Store::open(net.cluster.home(3).join("data/db")).unwrap();
        let genesis = pmr_primitives::Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
        let chain = pmr_consensus::ChainStore::open(store, genesis.hash()).unwrap();
        assert_eq!(
            chain.height().unwrap(),
            at - 1,
            "the abort was not mid-commit"
        );
    }
    // Restarted without the failpoint, it executes and commits that height again.
    net.cluster.set_env(3, vec![]).unwrap();
    net.cluster.start(3).unwrap();
    net.wait_height(3, at + 1).await;
    let log = std::fs::read_to_string(net.cluster.log_path(3)).unwrap();
    let after_restart = strip_ansi(&log[log_at_abort.len()..]);
    assert!(
        after_restart
            .lines()
            .any(|l| l.contains("committed block") && l.contains(&format!("height={at} "))),
        "node 3 did not commit height {at} after its restart:\n{}",
        net.cluster.log_tail(3, 30)
    );

    stop.store(true, Ordering::Relaxed);
    let submitted = load.await.unwrap();
    assert!(
        submitted > 50,
        "load generator made no progress ({submitted})"
    );

    // Let the last transactions land, then compare every height on every node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tip = net.height(0).await;
    for i in 0..4 {
        net.wait_height(i, tip).await;
    }
    let clients = [
        net.client(0).await,
        net.client(1).await,
        net.client(2).await,
        net.client(3).await,
    ];
    for h in 1..=tip {
        let mut roots = Vec::new();
        for c in &clients {
            roots.push(c.block(h).await.unwrap().header.unwrap().state_root);
        }
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "state roots differ at height {h}: {roots:?}"
        );
    }
    // And the state itself answers alike: total minted, read on each node at the tip.
    let mut totals = Vec::new();
    for c in &clients {
        let out = c
            .call(
                None,
                PMR_ADDRESS,
                PMR::totalMintedCall {}.abi_encode().into(),
                Some(tip),
            )
            .await
            .unwrap();
        totals.push(PMR::totalMintedCall::abi_decode_returns(&out.output).unwrap());
    }
    assert!(totals.windows(2).all(|w| w[0] == w[1]), "{totals:?}");
    assert!(totals[0] > alloy_primitives::U256::from(10u64));
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
