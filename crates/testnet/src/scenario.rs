//! Scenarios: a testnet of real `pmr` processes, load, faults at given times, then invariants.
//!
//! A scenario manifest (TOML) names the validators, the run's duration, optional load and the
//! faults, each at a time from the start:
//!
//! ```toml
//! name = "n4-kill-restart"
//! validators = 4
//! duration = "30s"
//! [load]
//! kind = "noop"      # noop | transfer | mint
//! rate = 200         # transactions per second, open loop
//! [[fault]]
//! at = "5s"
//! action = "kill"    # kill | stop | pause | resume | start | wipe | truncate
//! nodes = [1]        #   | partition | heal | skew | twin
//! ```
//!
//! `wipe` is disk loss: SIGKILL, delete the node's data directory, restart it (it rejoins by
//! sync). `truncate` is a torn write: SIGKILL, cut the tail off the consensus WAL and RocksDB's
//! newest log, restart. `partition` cuts the listed nodes off from the rest (every node reaches
//! its peers through a proxy the harness controls); `heal` restores every link. `skew` restarts
//! the nodes with their clock shifted by `by` (e.g. `"+30s"`, through libfaketime; `"0s"` sets
//! it right). `twin` starts a second process with a validator's keys (a double signer).
//! At the end every fault still in place is healed, and the runner
//! waits for all of them to reach the height the network had then (the recovery time). Then it
//! checks, and names in its report:
//! - `no-fork`: every node has the same block hash at every height they all have;
//! - `no-loss`: every transaction the load generator saw committed is in every node's chain;
//! - `same-state`: every node reports the same state root at every common height, and gives
//!   the same answers to record queries (owners, versions, access) at the last one;
//! - `progress`: the chain grew in every stretch of at least 6 s (20 s with a double signer)
//!   with at most f nodes down
//!   (starting 15 s after any moment with more than f down);
//! - `recovered`: every node caught up within `recovery_timeout`.
//!
//! and, when the scenario has such faults:
//! - `halted`: during a partition, no side without more than 2/3 of the validators committed
//!   a block (after a short grace for a block already decided at the cut): with a quorum on
//!   neither side no node did, otherwise the cut-off nodes did not;
//! - `evidence`: every double-signing validator's equivocation was recorded by another node;
//! - `clock`: block timestamps only grow, and none ran ahead of the harness's clock by more
//!   than the allowed drift.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{keccak256, B256};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{sleep, Instant};

use crate::cluster::{Cluster, HarnessError};
use crate::faults::FaultState;
use crate::links::Links;
use crate::load::{run_load, LoadKind, LoadReport, LoadSpec};

/// A scenario manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub validators: usize,
    /// How long faults and load run.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default)]
    pub load: Option<LoadSection>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// Longest wait for every node to catch up after the faults are healed.
    #[serde(default = "default_recovery", with = "humantime_serde")]
    pub recovery_timeout: Duration,
}

fn default_recovery() -> Duration {
    Duration::from_secs(90)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    #[serde(default = "default_kind")]
    pub kind: String,
    pub rate: f64,
    #[serde(default = "default_accounts")]
    pub accounts: usize,
}

fn default_kind() -> String {
    "noop".into()
}

fn default_accounts() -> usize {
    50
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Kill,
    Stop,
    Pause,
    Resume,
    Start,
    Wipe,
    /// SIGKILL, cut the last bytes off the consensus WAL and RocksDB's newest write-ahead log
    /// (a torn write), restart.
    Truncate,
    /// Cut the listed nodes off from the others (both ways, every peer port).
    Partition,
    /// Restore every link.
    Heal,
    /// Restart the nodes with their clock shifted by `by`.
    Skew,
    /// Start a second process with the node's validator key.
    Twin,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub action: Action,
    #[serde(default)]
    pub nodes: Vec<usize>,
    /// `skew`: the clock offset, e.g. `"+30s"` or `"-30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Scenario {
    /// Reads and checks a manifest.
    pub fn load(path: &Path) -> Result<Self, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| HarnessError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks manifest text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, HarnessError> {
        let bad = |reason: String| HarnessError::Manifest {
            path: origin.to_path_buf(),
            reason,
        };
        let s: Scenario = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        s.check().map_err(bad)?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.validators == 0 {
            return Err("validators must be at least 1".into());
        }
        for f in &self.faults {
            if let Some(n) = f.nodes.iter().find(|n| **n >= self.validators) {
                return Err(format!(
                    "fault at {:?} names node {n}, but there are {} validators",
                    f.at, self.validators
                ));
            }
            if f.at > self.duration {
                return Err(format!(
                    "fault at {:?} is after the end of the run ({:?})",
                    f.at, self.duration
                ));
            }
            let at = f.at;
            let distinct: BTreeSet<usize> = f.nodes.iter().copied().collect();
            if distinct.len() != f.nodes.len() {
                return Err(format!("fault at {at:?} names a node twice"));
            }
            match f.action {
                Action::Heal if !f.nodes.is_empty() => {
                    return Err(format!("heal at {at:?} restores every link: give no nodes"))
                }
                Action::Heal => {}
                _ if f.nodes.is_empty() => {
                    return Err(format!("fault at {at:?} ({:?}) names no nodes", f.action))
                }
                // The listed nodes are the side cut off: at most half, so the observer (an
                // unlisted node) is on the side that can go on.
                Action::Partition if 2 * f.nodes.len() > self.validators => {
                    return Err(format!(
                        "partition at {at:?} must list the smaller side (at most half of the \
                         {} validators)",
                        self.validators
                    ))
                }
                Action::Skew => {
                    let by = f.by.as_deref().ok_or_else(|| {
                        format!("skew at {at:?} needs `by`, the clock offset (e.g. \"+30s\")")
                    })?;
                    crate::faults::parse_offset(by)?;
                }
                _ => {}
            }
            if f.by.is_some() && f.action != Action::Skew {
                return Err(format!("fault at {at:?}: `by` is only for skew"));
            }
        }
        if self.observer().is_none() {
            return Err("every node is faulted: leave one node alone to observe commits".into());
        }
        let twins = self.nodes_of(Action::Twin);
        if twins.iter().collect::<BTreeSet<_>>().len() != twins.len() {
            return Err("a node can have one twin".into());
        }
        if !twins.is_empty() && self.has(Action::Partition) {
            return Err(
                "twin and partition faults cannot be combined: the twin's links have no proxy"
                    .into(),
            );
        }
        if let Some(l) = &self.load {
            l.kind.parse::<LoadKind>()?;
            if !(l.rate > 0.0) {
                return Err("load rate must be positive".into());
            }
        }
        Ok(())
    }

    /// The lowest node no fault touches: the load generator watches commits there.
    fn observer(&self) -> Option<usize> {
        let touched: HashSet<usize> = self.faults.iter().flat_map(|f| f.nodes.clone()).collect();
        (0..self.validators).find(|n| !touched.contains(n))
    }

    /// The most validators that may fail with the chain still live: f of 3f + 1.
    pub fn max_faulty(&self) -> usize {
        self.validators.saturating_sub(1) / 3
    }

    /// The nodes named by every fault of one kind, in manifest order (repeats kept).
    fn nodes_of(&self, action: Action) -> Vec<usize> {
        self.faults
            .iter()
            .filter(|f| f.action == action)
            .flat_map(|f| f.nodes.iter().copied())
            .collect()
    }

    fn has(&self, action: Action) -> bool {
        self.faults.iter().any(|f| f.action == action)
    }

    /// The invariants a run of this scenario checks, in report order.
    pub fn invariant_names(&self) -> Vec<&'static str> {
        let mut names = vec!["no-fork", "same-state", "no-loss", "progress", "recovered"];
        if self.has(Action::Partition) {
            names.push("halted");
        }
        if self.has(Action::Twin) {
            names.push("evidence");
        }
        if self.has(Action::Skew) {
            names.push("clock");
        }
        names
    }
}

/// One checked invariant.
#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// What a scenario run showed.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub validators: usize,
    pub faults: Vec<Fault>,
    /// Transactions the load generator saw committed.
    pub acknowledged: u64,
    /// Of those, missing from some node's chain.
    pub lost: u64,
    /// Heights at which nodes hold different blocks.
    pub forks: u64,
    /// From the end of the run (every fault healed) until every node had the height the
    /// network had then.
    pub recovery_ms: u64,
    pub final_height: u64,
    pub invariants: Vec<Invariant>,
    pub load: Option<LoadReport>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.passed)
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "scenario {}: {} validators, {} faults, final height {}\n\
             acknowledged {} tx, lost {}, forks {}, recovery {}\n",
            self.name,
            self.validators,
            self.faults.len(),
            self.final_height,
            self.acknowledged,
            self.lost,
            self.forks,
            format!("{:.1} s", self.recovery_ms as f64 / 1000.0)
        );
        if let Some(l) = &self.load {
            s.push_str(&format!(
                "load: {} offered at {:.0}/s, {} accepted ({} sent to the next node, {} deferred, {} resent), {} finalized, {} never committed, commit p50 {:.0} ms p99 {:.0} ms, rejected {:?}\n",
                l.offered,
                l.offered_rate,
                l.accepted,
                l.failovers,
                l.deferred,
                l.resubmitted,
                l.finalized,
                l.uncommitted,
                l.commit_latency_ms.p50,
                l.commit_latency_ms.p99,
                l.rejected
            ));
        }
        for i in &self.invariants {
            s.push_str(&format!(
                "  [{}] {:<10} {}\n",
                if i.passed { "ok" } else { "FAILED" },
                i.name,
                i.detail
            ));
        }
        s.push_str(if self.passed() {
            "PASSED\n"
        } else {
            "FAILED\n"
        });
        s
    }
}

fn harness(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(e.to_string())
}

/// Reads the admin account a `pmr testnet init` wrote.
fn admin_wallet(dir: &Path) -> Result<pmr_client::Wallet, HarnessError> {
    let path = dir.join("accounts/admin.json");
    let text = std::fs::read_to_string(&path).map_err(harness)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(harness)?;
    let secret = v["secret"]
        .as_str()
        .ok_or_else(|| harness(format!("{} has no secret", path.display())))?;
    pmr_client::Wallet::from_hex(secret).map_err(harness)
}

/// Runs `scenario` with the `pmr` binary `bin` in the (empty or absent) directory `dir`.
pub async fn run_scenario(
    scenario: &Scenario,
    bin: &Path,
    dir: &Path,
) -> Result<ScenarioReport, HarnessError> {
    scenario.check().map_err(|reason| HarnessError::Manifest {
        path: PathBuf::from(&scenario.name),
        reason,
    })?;
    let out = Command::new(bin)
        .args(["testnet", "init", "--validators"])
        .arg(scenario.validators.to_string())
        .args(["--empty-block-interval", "500ms", "--home"])
        .arg(dir)
        .output()
        .map_err(|e| harness(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(harness(format!(
            "pmr testnet init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut cluster = Cluster::open(dir, bin)?;
    let mut state = FaultState::default();
    if scenario.has(Action::Partition) {
        let homes: Vec<PathBuf> = (0..cluster.len()).map(|i| cluster.home(i)).collect();
        let homes: Vec<&Path> = homes.iter().map(|h| h.as_path()).collect();
        let names: Vec<String> = cluster
            .manifest()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        state.links = Some(Links::install(&homes, &names).await?);
    }
    for f in scenario.faults.iter().filter(|f| f.action == Action::Twin) {
        for &i in &f.nodes {
            cluster.prepare_twin(i)?;
        }
    }
    cluster.start_all()?;
    let boot = Duration::from_secs(60);
    for i in 0..cluster.len() {
        cluster.wait_height(i, 2, boot).await?;
    }
    let observer = scenario.observer().unwrap_or(0);
    let n = cluster.len();

    // Load, in the background, watched on the observer.
    let load = match &scenario.load {
        Some(l) => {
            let mut rpcs = vec![cluster.rpc(observer).to_string()];
            rpcs.extend(
                (0..n)
                    .filter(|i| *i != observer)
                    .map(|i| cluster.rpc(i).to_string()),
            );
            let spec = LoadSpec {
                rpcs,
                rate: l.rate,
                duration: scenario.duration,
                kind: l.kind.parse().map_err(harness)?,
                accounts: l.accounts,
                admin: admin_wallet(dir)?,
                drain: Duration::from_secs(30),
                max_in_flight: 4096,
                resubmit_after: Some(RESUBMIT_AFTER),
            };
            Some(tokio::spawn(run_load(spec)))
        }
        None => None,
    };

    // Faults on schedule, sampling the network's height meanwhile.
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|f| f.at);
    let mut next = 0;
    let clients = {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(cluster.client(i, boot).await?);
        }
        v
    };
    let mut twin_chains: Vec<(usize, Vec<B256>)> = Vec::new();
    while start.elapsed() < scenario.duration {
        while next < faults.len() && faults[next].at <= start.elapsed() {
            let f = &faults[next];
            state.apply(&mut cluster, f).await?;
            tracing::info!(target: "pmr::scenario", at = ?f.at, action = ?f.action, nodes = ?f.nodes, "fault");
            next += 1;
        }
        let status = clients[observer].status().await.ok();
        // During a partition every node's height is watched (with a short deadline each: a
        // cut-off node still answers its own gRPC).
        let all = if !state.cut_off.is_empty() {
            let asks = clients
                .iter()
                .map(|c| tokio::time::timeout(Duration::from_millis(500), c.status()));
            Some(
                futures::future::join_all(asks)
                    .await
                    .into_iter()
                    .map(|r| r.ok().and_then(|s| s.ok()).map(|s| s.height))
                    .collect(),
            )
        } else {
            None
        };
        samples.push(Sample {
            at: start.elapsed(),
            wall_ms: now_ms(),
            height: status.as_ref().map(|s| s.height),
            tip_timestamp_ms: status.as_ref().map(|s| s.latest_timestamp_ms),
            faulty: state.faulty(),
            no_quorum: state.no_quorum,
            cut_off: state.cut_off.iter().copied().collect(),
            all,
        });
        sleep(Duration::from_millis(250)).await;
    }
    // The double signers' own chains, before they are stopped.
    for (of, rpc, _) in cluster.twins() {
        twin_chains.push((of, twin_chain(&rpc).await));
    }

    // Heal everything and time the catch-up.
    state.heal_all(&mut cluster).await?;
    let heal = Instant::now();
    let target = clients[observer].status().await.map_err(harness)?.height;
    let mut recovered = true;
    let deadline = heal + scenario.recovery_timeout;
    for i in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || cluster.wait_height(i, target, left).await.is_err() {
            recovered = false;
        }
    }
    let recovery_ms = heal.elapsed().as_millis() as u64;

    let load = match load {
        Some(t) => Some(t.await.map_err(harness)??),
        None => None,
    };

    // Invariants, over the chain up to the observer's height once the load has drained (every
    // transaction it saw committed is at or below it); every node must reach it first.
    let mut invariants = Vec::new();
    let verify_to = clients[observer].status().await.map_err(harness)?.height;
    let mut chains: Vec<Vec<ChainEntry>> = Vec::new();
    let mut caught_up = Vec::with_capacity(n);
    for i in 0..n {
        cluster
            .wait_height(i, verify_to, scenario.recovery_timeout)
            .await?;
        let c = cluster.client(i, boot).await?;
        chains.push(fetch_chain(&c, verify_to).await?);
        caught_up.push(c);
    }
    let common = chains.iter().map(|c| c.len()).min().unwrap_or(0);
    let final_height = verify_to;
    let mut forks = 0u64;
    let mut state_diffs = 0u64;
    for h in 0..common {
        if chains.iter().any(|c| c[h].hash != chains[0][h].hash) {
            forks += 1;
        }
        if chains
            .iter()
            .any(|c| c[h].state_root != chains[0][h].state_root)
        {
            state_diffs += 1;
        }
    }
    let mut twin_heights = 0usize;
    for (_, twin) in &twin_chains {
        for (h, hash) in twin.iter().enumerate().take(common) {
            twin_heights += 1;
            if *hash != chains[0][h].hash {
                forks += 1;
            }
        }
    }
    invariants.push(Invariant {
        name: "no-fork".into(),
        passed: forks == 0,
        detail: format!(
            "{n} nodes agree on every block hash of heights 1..={common}{}: {forks} heights differ",
            if twin_chains.is_empty() {
                String::new()
            } else {
                format!(" (and the double signers on the {twin_heights} they committed)")
            }
        ),
    });
    // Beyond the commitment: the records as each node's EVM answers for them at that height.
    // A node that cannot answer fails the invariant rather than the run.
    let mut answers = Vec::with_capacity(n);
    for (i, c) in caught_up.iter().enumerate() {
        answers.push(
            record_queries(c, common as u64)
                .await
                .map_err(|e| format!("node {i}: {e}")),
        );
    }
    let unanswered: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    let first = answers.iter().find_map(|a| a.as_ref().ok());
    let query_diffs = answers.iter().filter(|a| a.as_ref().ok() != first).count();
    let queries = first.map_or(0, |q| q.len());
    let tokens = queries.saturating_sub(1) / 4;
    // Under mint load the queries must have covered minted records, not only the count.
    let minting = scenario.load.as_ref().is_some_and(|l| l.kind == "mint");
    invariants.push(Invariant {
        name: "same-state".into(),
        passed: state_diffs == 0
            && query_diffs == 0
            && unanswered.is_empty()
            && common > 0
            && (!minting || tokens > 0),
        detail: format!(
            "state roots of heights 1..={common}: {state_diffs} differ; record queries at \
             height {common} (totalMinted, then ownerOf, versionCount and hasAccess of {tokens} \
             tokens): {query_diffs} node(s) answer differently{}{}",
            if unanswered.is_empty() {
                String::new()
            } else {
                format!(" ({unanswered:?})")
            },
            if minting && tokens == 0 {
                "; mint load but no record to query"
            } else {
                ""
            }
        ),
    });
    // Every load transaction is valid: no node may refuse one (busy or unreachable nodes only
    // delay it: the load sends it to the next), and each must commit before the drain ends.
    let (offered, uncommitted, refused) = load.as_ref().map_or((0, 0, 0), |r| {
        (r.offered, r.uncommitted, r.rejected.values().sum::<u64>())
    });
    let (acknowledged, lost) = match &load {
        Some(r) => {
            let mut lost = 0u64;
            for hash in &r.committed {
                if chains
                    .iter()
                    .any(|c| !c.iter().any(|e| e.txs.contains(hash)))
                {
                    lost += 1;
                }
            }
            (r.committed.len() as u64, lost)
        }
        None => (0, 0),
    };
    invariants.push(Invariant {
        name: "no-loss".into(),
        // With load, seeing nothing committed means the check saw nothing: a failure.
        passed: lost == 0
            && uncommitted == 0
            && refused == 0
            && (load.is_none() || acknowledged > 0),
        detail: format!(
            "{acknowledged} transactions seen committed; {lost} missing from some node; of \
             {offered} offered, {refused} refused and {uncommitted} neither refused nor committed"
        ),
    });
    let f = scenario.max_faulty();
    let heights = observed_heights(&samples);
    // An equivocating validator may leave honest nodes locked on different values (each counts
    // whichever of its two votes arrived first), so Tendermint legitimately needs several
    // rounds, each longer than the last, before a height decides (4 rounds, 8.5 s, seen in
    // n4-double-sign); crash faults cost at most a round or two.
    let window = Duration::from_secs(if scenario.has(Action::Twin) { 20 } else { 6 });
    let stalls = stalled_stretches(&heights, f, window);
    invariants.push(Invariant {
        name: "progress".into(),
        passed: stalls.is_empty(),
        detail: if stalls.is_empty() {
            format!("the chain grew in every {window:?} stretch with at most {f} node(s) faulty (15 s after any moment with more)")
        } else {
            format!("no new block while at most {f} node(s) were faulty during {stalls:?}")
        },
    });
    invariants.push(Invariant {
        name: "recovered".into(),
        passed: recovered,
        detail: format!(
            "every node reached height {target} within {:?} of the heal",
            scenario.recovery_timeout
        ),
    });
    if scenario.has(Action::Partition) {
        invariants.push(halted(&samples));
    }
    if scenario.has(Action::Twin) {
        invariants.push(evidence_recorded(scenario, cluster.dir(), &clients).await);
    }
    if scenario.has(Action::Skew) {
        invariants.push(clock_sane(&samples, &chains[observer]));
    }
    cluster.kill_all();
    Ok(ScenarioReport {
        name: scenario.name.clone(),
        validators: n,
        faults: scenario.faults.clone(),
        acknowledged,
        lost,
        forks,
        recovery_ms,
        final_height,
        invariants,
        load,
    })
}

/// One observation of the network during the run.
#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    /// The harness's real clock, ms since the Unix epoch.
    wall_ms: u64,
    /// The observer's height and tip timestamp (`None`: it did not answer).
    height: Option<u64>,
    tip_timestamp_ms: Option<u64>,
    faulty: usize,
    no_quorum: bool,
    /// Nodes cut off from the larger side of the partition in place.
    cut_off: Vec<usize>,
    /// Every node's height, sampled during a partition.
    all: Option<Vec<Option<u64>>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `(time, observer height, faulty nodes)` per sample; a sample the observer did not answer
/// keeps the last height seen.
fn observed_heights(samples: &[Sample]) -> Vec<(Duration, u64, usize)> {
    let mut last = 0;
    samples
        .iter()
        .map(|s| {
            last = s.height.unwrap_or(last);
            (s.at, last, s.faulty)
        })
        .collect()
}

/// A committed block as the checks see it.
struct ChainEntry {
    hash: B256,
    state_root: B256,
    timestamp_ms: u64,
    txs: Vec<B256>,
}

async fn fetch_chain(c: &pmr_client::PmrClient, to: u64) -> Result<Vec<ChainEntry>, HarnessError> {
    let blocks: Vec<_> = futures::stream::iter(1..=to)
        .map(|h| c.block(h))
        .buffered(16)
        .collect()
        .await;
    let mut chain = Vec::new();
    for b in blocks {
        let b = b.map_err(harness)?;
        let (state_root, timestamp_ms) = b
            .header
            .as_ref()
            .map(|h| (B256::from_slice(&h.state_root), h.timestamp_ms))
            .unwrap_or_default();
        chain.push(ChainEntry {
            hash: B256::from_slice(&b.hash),
            state_root,
            timestamp_ms,
            txs: b.transactions.iter().map(keccak256).collect(),
        });
    }
    Ok(chain)
}

/// The most tokens whose owner, versions and access [`record_queries`] asks about.
const QUERIED_TOKENS: u64 = 200;

/// The load sends a transaction again, to the next node, when it has not committed this long
/// after it was last sent: a node killed, paused or cut off may hold it in its mempool.
const RESUBMIT_AFTER: Duration = Duration::from_secs(3);

/// Answers of the PMR contract at `height` (read-only calls, each node's own EVM): the number of
/// records, then for up to [`QUERIED_TOKENS`] token ids spread over them, the owner, the
/// version count, and whether a fixed probe address (granted nothing) and the token's owner
/// have access. Raw outputs, so any difference in what a node returns counts.
async fn record_queries(
    c: &pmr_client::PmrClient,
    height: u64,
) -> Result<Vec<(bool, Vec<u8>)>, HarnessError> {
    use alloy_primitives::{Address, U256};
    use alloy_sol_types::SolCall;
    use pmr_client::{PMR, PMR_ADDRESS};
    let call = |data: Vec<u8>| c.call(None, PMR_ADDRESS, data.into(), Some(height));
    let total = call(PMR::totalMintedCall {}.abi_encode())
        .await
        .map_err(harness)?;
    let minted = PMR::totalMintedCall::abi_decode_returns(&total.output)
        .map(|t| t.saturating_to::<u64>())
        .unwrap_or(0);
    let mut out = vec![(total.success, total.output.to_vec())];
    let step = minted.div_ceil(QUERIED_TOKENS).max(1);
    let probe = Address::repeat_byte(0x5a);
    for id in (1..=minted).step_by(step as usize) {
        let token = U256::from(id);
        let owner = call(PMR::ownerOfCall { tokenId: token }.abi_encode())
            .await
            .map_err(harness)?;
        let holder = PMR::ownerOfCall::abi_decode_returns(&owner.output).unwrap_or(probe);
        out.push((owner.success, owner.output.to_vec()));
        for data in [
            PMR::versionCountCall { tokenId: token }.abi_encode(),
            PMR::hasAccessCall {
                tokenId: token,
                grantee: probe,
            }
            .abi_encode(),
            PMR::hasAccessCall {
                tokenId: token,
                grantee: holder,
            }
            .abi_encode(),
        ] {
            let r = call(data).await.map_err(harness)?;
            out.push((r.success, r.output.to_vec()));
        }
    }
    Ok(out)
}

/// The block hashes a double signer committed (empty if it cannot be reached).
async fn twin_chain(rpc: &str) -> Vec<B256> {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        pmr_client::PmrClient::connect(rpc.to_string()),
    )
    .await
    else {
        return Vec::new();
    };
    let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(5), c.status()).await else {
        return Vec::new();
    };
    match fetch_chain(&c, status.height).await {
        Ok(chain) => chain.into_iter().map(|e| e.hash).collect(),
        Err(_) => Vec::new(),
    }
}

/// A block committed at the moment of a cut may still land; after this, none may.
const CUT_GRACE: Duration = Duration::from_secs(3);

/// `halted`: during a partition, no side without a quorum committed a block (after
/// [`CUT_GRACE`], for one decided at the cut): with a quorum on neither side, the highest height
/// of any node stays put; otherwise the highest height of the cut-off nodes does. A node a
/// block behind may still sync that block from its own side, which commits nothing new, so
/// only the maximum counts; it is taken from samples every watched node answered.
fn halted(samples: &[Sample]) -> Invariant {
    let mut grew = Vec::new();
    let mut watched = 0usize;
    // (start of the partition, who is watched, the highest height at the first full sample)
    let mut current: Option<(Duration, Vec<usize>, Option<u64>)> = None;
    for s in samples {
        let (Some(all), false) = (&s.all, s.cut_off.is_empty()) else {
            current = None;
            continue;
        };
        let who: Vec<usize> = if s.no_quorum {
            (0..all.len()).collect()
        } else {
            s.cut_off.clone()
        };
        if current.as_ref().is_none_or(|(_, w, _)| *w != who) {
            current = Some((s.at, who.clone(), None));
        }
        let Some((start, _, base)) = current.as_mut() else {
            continue;
        };
        if s.at < *start + CUT_GRACE {
            continue;
        }
        let heights: Option<Vec<u64>> =
            who.iter().map(|i| all.get(*i).copied().flatten()).collect();
        let Some(top) = heights.and_then(|h| h.into_iter().max()) else {
            continue;
        };
        watched += 1;
        let b = *base.get_or_insert(top);
        if top > b {
            grew.push((who.clone(), b, top, s.at));
        }
    }
    Invariant {
        name: "halted".into(),
        passed: grew.is_empty() && watched > 0,
        detail: if grew.is_empty() {
            format!("no side without a quorum committed a block during the partition ({watched} samples in which every watched node answered)")
        } else {
            format!("a side without a quorum grew (nodes, from, to, at): {grew:?}")
        },
    }
}

/// A record from `GetEvidence` as the consensus library checks it.
fn to_equivocation(e: &pmr_client::proto::Equivocation) -> Option<pmr_consensus::Equivocation> {
    use pmr_consensus::EquivocationKind as K;
    let value = |v: &[u8]| (!v.is_empty()).then(|| B256::try_from(v).ok()).flatten();
    let value_or_nil = |v: &[u8]| -> Option<Option<B256>> {
        if v.is_empty() {
            Some(None)
        } else {
            value(v).map(Some)
        }
    };
    Some(pmr_consensus::Equivocation {
        height: e.height,
        round: e.round,
        validator: pmr_primitives::ValidatorAddress(
            alloy_primitives::Address::try_from(e.validator.as_slice()).ok()?,
        ),
        kind: match e.kind.as_str() {
            "proposal" => K::Proposal,
            "prevote" => K::Prevote,
            "precommit" => K::Precommit,
            _ => return None,
        },
        values: [
            value_or_nil(&e.first_value)?,
            value_or_nil(&e.second_value)?,
        ],
        signed: [
            e.first_signed.clone().into(),
            e.second_signed.clone().into(),
        ],
    })
}

/// `evidence`: another node recorded an equivocation of every double-signing validator, and
/// the record checks out offline against the genesis validator set (both messages signed by
/// that validator, for one height and round, signing different things).
async fn evidence_recorded(
    scenario: &Scenario,
    dir: &Path,
    clients: &[pmr_client::PmrClient],
) -> Invariant {
    let fail = |detail: String| Invariant {
        name: "evidence".into(),
        passed: false,
        detail,
    };
    let genesis = match pmr_primitives::Genesis::load(&dir.join("genesis.json")) {
        Ok(g) => g,
        Err(e) => return fail(format!("cannot read the genesis: {e}")),
    };
    let validators = match pmr_consensus::validator_set(&genesis) {
        Ok(v) => v,
        Err(e) => return fail(format!("cannot build the validator set: {e}")),
    };
    let twinned: BTreeSet<usize> = scenario.nodes_of(Action::Twin).into_iter().collect();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    let mut refused = 0usize;
    for &i in &twinned {
        let Ok(status) = clients[i].status().await else {
            missing.push(format!("node {i} (no status)"));
            continue;
        };
        let address = status.validator_address;
        let mut seen_by = Vec::new();
        let mut kinds = BTreeSet::new();
        for (j, c) in clients.iter().enumerate() {
            if twinned.contains(&j) {
                continue;
            }
            let Ok(records) = c.evidence().await else {
                continue;
            };
            let mut valid = false;
            for r in records.iter().filter(|e| e.validator == address) {
                match to_equivocation(r).map(|e| e.verify(&validators, genesis.chain_id)) {
                    Some(Ok(())) => {
                        valid = true;
                        kinds.insert(r.kind.clone());
                    }
                    _ => refused += 1,
                }
            }
            if valid {
                seen_by.push(j);
            }
        }
        if seen_by.is_empty() {
            missing.push(format!("node {i}"));
        } else {
            found.push(format!("node {i}: {kinds:?} recorded by nodes {seen_by:?}"));
        }
    }
    Invariant {
        name: "evidence".into(),
        passed: missing.is_empty() && refused == 0,
        detail: if missing.is_empty() && refused == 0 {
            format!(
                "equivocation of every double signer recorded and verified against the genesis: {}",
                found.join("; ")
            )
        } else {
            format!(
                "no verified evidence against {}; {refused} records failed verification",
                if missing.is_empty() {
                    "-".to_string()
                } else {
                    missing.join(", ")
                }
            )
        },
    }
}

/// How far ahead of real time a block timestamp may be: the nodes' `max_clock_drift` (2 s by
/// default) plus sampling slack.
const CLOCK_SLACK_MS: u64 = 3_000;

/// `clock`: timestamps grow block by block, and the tip never ran ahead of real time.
fn clock_sane(samples: &[Sample], chain: &[ChainEntry]) -> Invariant {
    let backwards = chain
        .windows(2)
        .filter(|w| w[1].timestamp_ms <= w[0].timestamp_ms)
        .count();
    let ahead: Vec<u64> = samples
        .iter()
        .filter_map(|s| s.tip_timestamp_ms.map(|t| t.saturating_sub(s.wall_ms)))
        .filter(|d| *d > CLOCK_SLACK_MS)
        .collect();
    Invariant {
        name: "clock".into(),
        passed: backwards == 0 && ahead.is_empty(),
        detail: format!(
            "{backwards} block timestamps not after their parent's; tip ahead of real time by more than {CLOCK_SLACK_MS} ms in {} samples{}",
            ahead.len(),
            ahead.iter().max().map_or(String::new(), |m| format!(" (at most {m} ms)"))
        ),
    }
}

/// Time the chain gets to resume after more than f validators were down (their peers' round
/// timeouts have grown meanwhile, and returning nodes must start and catch up first).
const RESUME_GRACE: Duration = Duration::from_secs(15);

/// Stretches (start, end) of at least `window` with at most `f` nodes down (and at least
/// [`RESUME_GRACE`] after any moment with more than `f` down) in which the observed height did
/// not grow.
fn stalled_stretches(
    samples: &[(Duration, u64, usize)],
    f: usize,
    window: Duration,
) -> Vec<(Duration, Duration)> {
    let mut eligible = Vec::with_capacity(samples.len());
    let mut last_outage: Option<Duration> = None;
    for &(t, _, down) in samples {
        if down > f {
            last_outage = Some(t);
        }
        eligible.push(down <= f && last_outage.is_none_or(|o| t >= o + RESUME_GRACE));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        if !eligible[i] {
            i += 1;
            continue;
        }
        // The first sample at least `window` later, if the stretch stays eligible until then.
        let mut j = i;
        while j + 1 < samples.len() && eligible[j + 1] && samples[j + 1].0 - samples[i].0 < window {
            j += 1;
        }
        if j + 1 < samples.len() && eligible[j + 1] && samples[j + 1].1 <= samples[i].1 {
            out.push((samples[i].0, samples[j + 1].0));
        }
        i += 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_checked() {
        let good: Scenario = toml::from_str(
            r#"
            name = "x"
            validators = 4
            duration = "20s"
            [load]
            rate = 100
            [[fault]]
            at = "5s"
            action = "kill"
            nodes = [1]
            "#,
        )
        .unwrap();
        good.check().unwrap();
        assert_eq!(good.observer(), Some(0));
        assert_eq!(good.max_faulty(), 1);
        let mut bad = good.clone();
        bad.faults[0].nodes = vec![4];
        assert!(bad.check().unwrap_err().contains("node 4"));
        let mut all = good.clone();
        all.faults[0].nodes = vec![0, 1, 2, 3];
        assert!(all.check().unwrap_err().contains("observe"));
        let mut late = good.clone();
        late.faults[0].at = Duration::from_secs(30);
        assert!(late.check().is_err());
        assert!(toml::from_str::<Scenario>(
            "name = \"x\"\nvalidators = 4\nduration = \"1s\"\nbogus = 1"
        )
        .is_err());
    }

    #[test]
    fn stalls_only_count_with_at_most_f_down() {
        let s = |t: u64, h: u64, d: usize| (Duration::from_millis(t), h, d);
        // Growing: no stall.
        let grow: Vec<_> = (0..40).map(|k| s(k * 250, k, 0)).collect();
        assert!(stalled_stretches(&grow, 1, Duration::from_secs(6)).is_empty());
        // Flat with 2 of 4 down: allowed.
        let halted: Vec<_> = (0..40).map(|k| s(k * 250, 5, 2)).collect();
        assert!(stalled_stretches(&halted, 1, Duration::from_secs(6)).is_empty());
        // Flat with 1 down: a stall.
        let flat: Vec<_> = (0..40).map(|k| s(k * 250, 5, 1)).collect();
        assert!(!stalled_stretches(&flat, 1, Duration::from_secs(6)).is_empty());
        // After 2 of 4 were down the chain gets RESUME_GRACE before a flat stretch counts.
        let after: Vec<_> = (0..160)
            .map(|k| s(k * 250, 5, if k < 20 { 2 } else { 0 }))
            .collect();
        let stalls = stalled_stretches(&after, 1, Duration::from_secs(6));
        assert!(!stalls.is_empty());
        assert!(stalls
            .iter()
            .all(|(from, _)| *from >= Duration::from_millis(19 * 250) + RESUME_GRACE));
    }

    fn sample(ms: u64, all: &[u64], no_quorum: bool) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            wall_ms: 1_000_000 + ms,
            height: all.first().copied(),
            tip_timestamp_ms: Some(1_000_000 + ms),
            faulty: if no_quorum { 2 } else { 0 },
            no_quorum,
            cut_off: if no_quorum { vec![2, 3] } else { vec![] },
            all: no_quorum.then(|| all.iter().map(|h| Some(*h)).collect()),
        }
    }

    #[test]
    fn halted_fails_when_the_chain_grows_without_a_quorum() {
        // 2|2 from 1 s to 10 s; a block decided at the cut lands within the grace.
        let mut quiet = vec![sample(0, &[5, 5, 5, 5], false)];
        quiet.extend((1..=10).map(|s| {
            let h = if s == 1 { 6 } else { 7 };
            sample(s * 1000, &[h, h, h, 6], true)
        }));
        // Node 3 syncs the block it missed from its side: the maximum does not move.
        quiet.push(sample(10_500, &[7, 7, 7, 7], true));
        let ok = halted(&quiet);
        assert!(ok.passed, "{}", ok.detail);
        let mut grew = quiet.clone();
        grew.push(sample(11_000, &[8, 7, 7, 7], true));
        let bad = halted(&grew);
        assert!(!bad.passed, "{}", bad.detail);
        // Never watched (no sample after the grace): not a pass.
        assert!(!halted(&quiet[..3]).passed);
        // A node that did not answer gives no base: the later answer is not growth.
        let mut late = vec![sample(0, &[5, 5, 5, 5], false)];
        // Node 0 committed the block decided at the cut; it misses two samples' deadline.
        late.extend((1..=6).map(|s| sample(s * 1000, &[7, 6, 6, 6], true)));
        late[4].all.as_mut().unwrap()[0] = None;
        late[5].all.as_mut().unwrap()[0] = None;
        let r = halted(&late);
        assert!(r.passed, "{}", r.detail);
    }

    #[test]
    fn halted_watches_the_cut_off_side_when_the_rest_has_a_quorum() {
        let mut s: Vec<Sample> = (1..=8)
            .map(|t| {
                let mut x = sample(t * 1000, &[10 + t, 10 + t, 10 + t, 9], true);
                x.no_quorum = false;
                x.cut_off = vec![3];
                x
            })
            .collect();
        let r = halted(&s);
        assert!(
            r.passed,
            "the majority grows, node 3 stays put: {}",
            r.detail
        );
        s[7].all.as_mut().unwrap()[3] = Some(12);
        assert!(!halted(&s).passed, "an isolated node committed a block");
    }

    #[test]
    fn clock_fails_on_a_tip_ahead_of_real_time_or_time_going_back() {
        let entry = |t: u64| ChainEntry {
            hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp_ms: t,
            txs: vec![],
        };
        let chain = vec![entry(1), entry(2), entry(3)];
        let samples: Vec<Sample> = (0..10).map(|s| sample(s * 250, &[1], false)).collect();
        assert!(clock_sane(&samples, &chain).passed);
        let mut ahead = samples.clone();
        ahead[4].tip_timestamp_ms = Some(ahead[4].wall_ms + 30_000);
        assert!(!clock_sane(&ahead, &chain).passed);
        let back = vec![entry(1), entry(3), entry(3)];
        assert!(!clock_sane(&samples, &back).passed);
    }

    #[test]
    fn fault_fields_are_checked() {
        let base = "name = \"x\"\nvalidators = 4\nduration = \"20s\"\n";
        let parse = |faults: &str| Scenario::parse(&format!("{base}{faults}"), Path::new("t"));
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"partition\"\nnodes = [2, 3]\n").is_ok());
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"partition\"\nnodes = []\n").is_err());
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"heal\"\nnodes = [1]\n").is_err());
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"heal\"\n").is_ok());
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"skew\"\nnodes = [3]\n").is_err());
        assert!(
            parse("[[fault]]\nat = \"1s\"\naction = \"skew\"\nnodes = [3]\nby = \"soon\"\n")
                .is_err()
        );
        assert!(
            parse("[[fault]]\nat = \"1s\"\naction = \"skew\"\nnodes = [3]\nby = \"-30s\"\n")
                .is_ok()
        );
        assert!(
            parse("[[fault]]\nat = \"1s\"\naction = \"kill\"\nnodes = [3]\nby = \"1s\"\n").is_err()
        );
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"kill\"\n").is_err());
        let twin = parse("[[fault]]\nat = \"1s\"\naction = \"twin\"\nnodes = [3]\n").unwrap();
        assert_eq!(twin.invariant_names().last(), Some(&"evidence"));
        let split = parse("[[fault]]\nat = \"1s\"\naction = \"partition\"\nnodes = [3]\n").unwrap();
        assert!(
            split.invariant_names().contains(&"halted"),
            "3|1: the cut-off node must not commit"
        );
    }
}
