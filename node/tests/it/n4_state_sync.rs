//! State sync (#24 §3): a node whose disk is lost joins from a peer's snapshot of a recent
//! height, checked against the block the validators signed at that height, instead of
//! replaying the chain; then it follows the chain and agrees with the others. Only the
//! operators of the network's validators may take a snapshot; a certificate for another block
//! does not install.

use crate::common::*;
use alloy_sol_types::SolCall;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_joins_from_a_verified_snapshot() {
    let mut net = start_net(4, |_, _| {}).await;
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;
    let mut last = 0;
    for nonce in 0..5 {
        last = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, nonce))
            .await
            .1;
    }
    net.wait_height(0, last + 2).await;

    // Who may not take a snapshot: a permitted account that operates no validator (a curious
    // hospital), and a stranger without a session.
    let err = net
        .client_as(0, &hospital)
        .await
        .state_snapshot()
        .await
        .expect_err("a hospital");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::PermissionDenied),
        "a hospital: {err}"
    );
    let anon = net.client_without_session(0).await;
    let err = anon.state_snapshot().await.expect_err("a stranger");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::Unauthenticated),
        "a stranger: {err}"
    );

    // Node 3's disk is lost.
    net.cluster.kill(3).unwrap();
    std::fs::remove_dir_all(net.cluster.home(3).join("data")).unwrap();
    let home = net.cluster.home(3);
    let home = home.to_str().unwrap();
    let from = net.cluster.rpc(0).to_string();

    // A snapshot that would not fit above the node's free-space floor is refused before it
    // is fetched (here: a floor of 2^62 bytes), and nothing is left behind.
    let config = net.cluster.home(3).join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let mut table: toml::Table = original.parse().unwrap();
    table
        .entry("rpc")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .unwrap()
        .insert("min_free_disk".into(), toml::Value::Integer(1 << 62));
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    let (fitted, text) = run_pmr(&["state", "sync", "--home", home, "--from", &from], &[]);
    assert!(!fitted && text.contains("min_free_disk"), "{text}");
    assert!(!net
        .cluster
        .home(3)
        .join("data/state-sync.snapshot")
        .exists());
    std::fs::write(&config, original).unwrap();

    // State sync from node 0, as node 3's operator (another validator's operator).
    let (synced, text) = run_pmr(
        &[
            "state", "sync", "--home", home, "--from", &from, "--output", "json",
        ],
        &[],
    );
    assert!(synced, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    let base = report["height"].as_u64().unwrap();
    assert!(base > last, "{report}");
    assert!(report["entries"].as_u64().unwrap() > 0, "{report}");
    assert!(report["signed_power"].as_u64().unwrap() >= 3, "{report}");
    // The snapshot file (the whole state) is gone once imported.
    assert!(!net
        .cluster
        .home(3)
        .join("data/state-sync.snapshot")
        .exists());
    // A second sync into a node that now holds a block: refused.
    let (again, text) = run_pmr(&["state", "sync", "--home", home, "--from", &from], &[]);
    assert!(!again && text.contains("already holds blocks"), "{text}");

    // It starts at base + 1, follows the chain and agrees with the others.
    net.cluster.start(3).unwrap();
    let (_, after) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 5)).await;
    let tip = net.height(0).await;
    net.wait_height(3, tip.max(after) + 1).await;
    let c3 = net.client(3).await;
    for h in [base, base + 1, after] {
        let mine = c3.block(h).await.unwrap();
        let theirs = c0.block(h).await.unwrap();
        assert_eq!(mine.hash, theirs.hash, "height {h}");
        assert_eq!(
            mine.header.unwrap().state_root,
            theirs.header.unwrap().state_root,
            "height {h}"
        );
    }
    // The transaction committed after the join is on node 3; blocks before the base are not
    // (they stay with the peers that keep them).
    let err = c3.block(base - 1).await.expect_err("below the base");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::NotFound),
        "{err}"
    );
    assert!(c0.block(base - 1).await.is_ok());
    // Nor the state below it: an account or a call at an earlier height is refused, saying
    // why, where a node that keeps every height answers.
    let below = c3
        .account(hospital.address(), Some(base - 1))
        .await
        .expect_err("state below the base");
    assert!(
        matches!(&below, pmr_client::ClientError::Rpc(s) if s.code() == Code::NotFound
            && s.message().contains("joined from a snapshot")),
        "{below}"
    );
    let at_base = c3.account(hospital.address(), Some(base)).await.unwrap();
    let theirs = c0.account(hospital.address(), Some(base)).await.unwrap();
    assert_eq!(at_base.nonce, theirs.nonce);
    assert!(theirs.nonce >= 5, "the five transactions before the sync");
    let call = pmr_client::PMR::totalMintedCall {}.abi_encode();
    let err = c3
        .call(None, pmr_client::PMR_ADDRESS, call.clone().into(), Some(0))
        .await
        .expect_err("a call at genesis");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::NotFound),
        "{err}"
    );
    assert!(c0
        .call(None, pmr_client::PMR_ADDRESS, call.into(), Some(0))
        .await
        .is_ok());

    // A certificate for another block does not install a base: block `base` with the
    // certificate of `base + 1`.
    let genesis = pmr_primitives::Genesis::load(&net.cluster.home(0).join("genesis.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = pmr_storage::Store::open(dir.path()).unwrap();
    let chain = pmr_consensus::ChainStore::open(store, genesis.hash()).unwrap();
    let block = c0.block(base).await.unwrap();
    let next = c0.block(base + 1).await.unwrap().certificate.unwrap();
    let forged = pmr_node::state_sync::certificate_of(&next).unwrap();
    let validators = pmr_consensus::validator_set(&genesis).unwrap();
    let err = chain
        .install_base(genesis.chain_id, &validators, &block.encoded, &forged)
        .expect_err("a certificate of another block");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(chain.height().unwrap(), 0, "nothing was written");
}
