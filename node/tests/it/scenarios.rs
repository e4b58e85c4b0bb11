//! The CI set of testnet scenarios (`testnet/scenarios/ci/*.toml`): real `pmr` processes,
//! load, faults, and the invariants each report names (no fork, no loss, same state, progress
//! while at most f nodes are faulty, recovery; plus, where the faults call for them, no commit
//! without a quorum during a partition, recorded equivocation of a double signer, sane
//! block timestamps under clock skew, and bounded memory under a flood of proposal parts).

use std::path::Path;

use crate::common::BIN;
use pmr_testnet::{run_scenario, Scenario};

/// Runs a CI scenario; `extra` names the invariants its faults add to the five every
/// scenario checks.
async fn run(name: &str, text: &str, extra: &[&str]) {
    let scenario = Scenario::parse(text, Path::new(name)).expect("manifest");
    let dir = tempfile::tempdir().unwrap();
    let report = run_scenario(&scenario, Path::new(BIN), &dir.path().join("net"))
        .await
        .unwrap_or_else(|e| panic!("scenario {name} could not run: {e}"));
    println!("{}", report.to_text());
    let names: Vec<&str> = report.invariants.iter().map(|i| i.name.as_str()).collect();
    let mut expected = vec!["no-fork", "same-state", "no-loss", "progress", "recovered"];
    expected.extend_from_slice(extra);
    assert_eq!(names, expected, "every invariant is checked");
    assert!(report.passed(), "{}", report.to_text());
    assert!(report.final_height > 5, "{}", report.to_text());
    if scenario.load.is_some() {
        assert!(report.acknowledged > 0, "{}", report.to_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_no_faults() {
    run(
        "n4-no-faults",
        include_str!("../../../testnet/scenarios/ci/n4-no-faults.toml"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_kill_restart() {
    run(
        "n4-kill-restart",
        include_str!("../../../testnet/scenarios/ci/n4-kill-restart.toml"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_disk_loss() {
    run(
        "n4-disk-loss",
        include_str!("../../../testnet/scenarios/ci/n4-disk-loss.toml"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_partition() {
    run(
        "n4-partition",
        include_str!("../../../testnet/scenarios/ci/n4-partition.toml"),
        &["halted"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_double_sign() {
    run(
        "n4-double-sign",
        include_str!("../../../testnet/scenarios/ci/n4-double-sign.toml"),
        &["evidence"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_clock_skew() {
    run(
        "n4-clock-skew",
        include_str!("../../../testnet/scenarios/ci/n4-clock-skew.toml"),
        &["clock"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_torn_logs() {
    run(
        "n4-torn-logs",
        include_str!("../../../testnet/scenarios/ci/n4-torn-logs.toml"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_flood() {
    run(
        "n4-flood",
        include_str!("../../../testnet/scenarios/ci/n4-flood.toml"),
        &["flood-contained"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_rolling_restart() {
    run(
        "n4-rolling-restart",
        include_str!("../../../testnet/scenarios/ci/n4-rolling-restart.toml"),
        &[],
    )
    .await;
}

/// Root only (the harness makes network namespaces and veth pairs), as on the machines CI runs
/// on; elsewhere the scenario reports that it needs root and the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_namespaces() {
    run(
        "n4-namespaces",
        include_str!("../../../testnet/scenarios/ci/n4-namespaces.toml"),
        &["halted", "isolated"],
    )
    .await;
}
