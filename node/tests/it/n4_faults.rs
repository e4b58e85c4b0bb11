//! Four validators under faults: a SIGKILLed node catches up; one of four down keeps the chain
//! going; two of four down stop it without a fork, and it resumes when one returns.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

/// Checks that no two nodes hold different blocks at one height.
async fn assert_no_fork(net: &Net, nodes: &[usize]) {
    let mut seen: HashMap<u64, (usize, Vec<u8>)> = HashMap::new();
    for &i in nodes {
        let tip = net.height(i).await;
        let hashes = net.hashes(i, tip).await;
        for (k, hash) in hashes.into_iter().enumerate() {
            let h = k as u64 + 1;
            match seen.get(&h) {
                Some((j, other)) => {
                    assert_eq!(&hash, other, "fork at height {h}: node{i} vs node{j}")
                }
                None => {
                    seen.insert(h, (i, hash));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_kill_restart_one_down_two_down() {
    let mut net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;

    // SIGKILL node 3; the other three keep committing (1 of 4 down), including transactions.
    net.cluster.kill(3).unwrap();
    let h = net.height(0).await;
    let (_, tx_height) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 0)).await;
    net.wait_height(0, h.max(tx_height) + 3).await;

    // Node 3 restarts, catches up by sync and agrees.
    net.cluster.start(3).unwrap();
    let target = net.height(0).await;
    net.wait_height(3, target).await;
    net.assert_same_chain(&[0, 1, 2, 3], target).await;

    // Two of four down: no progress.
    net.cluster.kill(2).unwrap();
    net.cluster.kill(3).unwrap();
    // A block already in flight may still land; after that, nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = net.height(0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        net.height(0).await,
        stalled,
        "committed with only 2 of 4 validators"
    );
    assert_eq!(net.height(1).await, stalled);
    // A transaction submitted meanwhile waits in the mempool.
    let pending = c0
        .submit(noop_tx(&hospital, net.chain_id, 1))
        .await
        .unwrap();
    assert!(c0.transaction(pending).await.unwrap().pending);

    // One returns: 3 of 4 again, the chain resumes and commits the waiting transaction.
    net.cluster.start(2).unwrap();
    let resumed = c0.wait_committed(pending, T).await.expect("resumes");
    assert!(resumed > stalled);
    net.wait_height(2, resumed).await;
    net.cluster.start(3).unwrap();
    net.wait_height(3, resumed).await;
    assert_no_fork(&net, &[0, 1, 2, 3]).await;
}
