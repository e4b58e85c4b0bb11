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
//! nodes = [1]
//! ```
//!
//! `wipe` is disk loss: SIGKILL, delete the node's data directory, restart it (it rejoins by
//! sync). `truncate` is a torn write: SIGKILL, cut the tail off the consensus WAL and RocksDB's
//! newest log, restart. At the end every node still down is healed (resumed or restarted), and the runner
//! waits for all of them to reach the height the network had then (the recovery time). Then it
//! checks, and names in its report:
//! - `no-fork`: every node has the same block hash at every height they all have;
//! - `no-loss`: every transaction the load generator saw committed is in every node's chain;
//! - `same-state`: every node reports the same state root at the common height;
//! - `progress`: the chain grew in every stretch of at least 6 s with at most f nodes down
//!   (starting 15 s after any moment with more than f down);
//! - `recovered`: every node caught up within `recovery_timeout`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{keccak256, B256};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{sleep, Instant};

use crate::cluster::{Cluster, HarnessError};
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
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub action: Action,
    pub nodes: Vec<usize>,
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
        }
        if self.observer().is_none() {
            return Err("every node is faulted: leave one node alone to observe commits".into());
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
                "load: {} offered at {:.0}/s, {} accepted, {} finalized, commit p50 {:.0} ms p99 {:.0} ms, rejected {:?}\n",
                l.offered,
                l.offered_rate,
                l.accepted,
                l.finalized,
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
            };
            Some(tokio::spawn(run_load(spec)))
        }
        None => None,
    };

    // Faults on schedule, sampling the network's height meanwhile.
    let start = Instant::now();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut paused: BTreeSet<usize> = BTreeSet::new();
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
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
    while start.elapsed() < scenario.duration {
        while next < faults.len() && faults[next].at <= start.elapsed() {
            let f = &faults[next];
            for &i in &f.nodes {
                apply(&mut cluster, i, f.action, &mut down, &mut paused).await?;
            }
            tracing::info!(target: "pmr::scenario", at = ?f.at, action = ?f.action, nodes = ?f.nodes, "fault");
            next += 1;
        }
        let h = clients[observer]
            .status()
            .await
            .map(|s| s.height)
            .unwrap_or(0);
        samples.push((start.elapsed(), h, down.len()));
        sleep(Duration::from_millis(250)).await;
    }

    // Heal everything and time the catch-up.
    for i in down.clone() {
        let action = if paused.contains(&i) {
            Action::Resume
        } else {
            Action::Start
        };
        apply(&mut cluster, i, action, &mut down, &mut paused).await?;
    }
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
    let mut chains: Vec<Vec<(B256, B256, Vec<B256>)>> = Vec::new();
    for i in 0..n {
        cluster
            .wait_height(i, verify_to, scenario.recovery_timeout)
            .await?;
        let c = cluster.client(i, boot).await?;
        let c = &c;
        let blocks: Vec<_> = futures::stream::iter(1..=verify_to)
            .map(|h| c.block(h))
            .buffered(16)
            .collect()
            .await;
        let mut chain = Vec::new();
        for b in blocks {
            let b = b.map_err(harness)?;
            let state = b
                .header
                .as_ref()
                .map(|h| B256::from_slice(&h.state_root))
                .unwrap_or_default();
            let txs = b.transactions.iter().map(keccak256).collect();
            chain.push((B256::from_slice(&b.hash), state, txs));
        }
        chains.push(chain);
    }
    let common = chains.iter().map(|c| c.len()).min().unwrap_or(0);
    let final_height = verify_to;
    let mut forks = 0u64;
    let mut state_diffs = 0u64;
    for h in 0..common {
        if chains.iter().any(|c| c[h].0 != chains[0][h].0) {
            forks += 1;
        }
        if chains.iter().any(|c| c[h].1 != chains[0][h].1) {
            state_diffs += 1;
        }
    }
    invariants.push(Invariant {
        name: "no-fork".into(),
        passed: forks == 0,
        detail: format!(
            "{n} nodes agree on every block hash of heights 1..={common}: {forks} heights differ"
        ),
    });
    invariants.push(Invariant {
        name: "same-state".into(),
        passed: state_diffs == 0 && common > 0,
        detail: format!("state roots of heights 1..={common}: {state_diffs} differ"),
    });
    let (acknowledged, lost) = match &load {
        Some(r) => {
            let mut lost = 0u64;
            for hash in &r.committed {
                if chains
                    .iter()
                    .any(|c| !c.iter().any(|(_, _, txs)| txs.contains(hash)))
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
        passed: lost == 0 && (load.is_none() || acknowledged > 0),
        detail: format!(
            "{acknowledged} transactions seen committed; {lost} missing from some node"
        ),
    });
    let f = scenario.max_faulty();
    let stalls = stalled_stretches(&samples, f, Duration::from_secs(6));
    invariants.push(Invariant {
        name: "progress".into(),
        passed: stalls.is_empty(),
        detail: if stalls.is_empty() {
            format!("the chain grew in every 6 s stretch with at most {f} node(s) down (15 s after any outage of more)")
        } else {
            format!("no new block while at most {f} node(s) were down during {stalls:?}")
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

async fn apply(
    cluster: &mut Cluster,
    i: usize,
    action: Action,
    down: &mut BTreeSet<usize>,
    paused: &mut BTreeSet<usize>,
) -> Result<(), HarnessError> {
    match action {
        Action::Kill => {
            cluster.kill(i)?;
            down.insert(i);
        }
        Action::Stop => {
            cluster.stop(i, Duration::from_secs(10)).await?;
            down.insert(i);
        }
        Action::Pause => {
            cluster.pause(i)?;
            paused.insert(i);
            down.insert(i);
        }
        Action::Resume => {
            cluster.resume(i)?;
            paused.remove(&i);
            down.remove(&i);
        }
        Action::Start => {
            if paused.remove(&i) {
                cluster.resume(i)?;
            } else if !cluster.is_running(i) {
                cluster.start(i)?;
            }
            down.remove(&i);
        }
        Action::Truncate => {
            if cluster.is_running(i) {
                cluster.kill(i)?;
            }
            let data = cluster.home(i).join("data");
            let mut logs = vec![data.join("wal").join("consensus.wal")];
            let mut db_logs: Vec<PathBuf> = std::fs::read_dir(data.join("db"))
                .map_err(harness)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            db_logs.sort();
            logs.extend(db_logs.pop());
            for log in logs {
                let len = std::fs::metadata(&log).map_err(harness)?.len();
                let cut = len.saturating_sub(TRUNCATE_BYTES.min(len / 2));
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log)
                    .and_then(|f| f.set_len(cut))
                    .map_err(|e| harness(format!("cannot truncate {}: {e}", log.display())))?;
                tracing::info!(target: "pmr::scenario", log = %log.display(), from = len, to = cut, "truncated");
            }
            cluster.start(i)?;
            down.remove(&i);
        }
        Action::Wipe => {
            if cluster.is_running(i) {
                cluster.kill(i)?;
            }
            let data = cluster.home(i).join("data");
            std::fs::remove_dir_all(&data)
                .map_err(|e| harness(format!("cannot wipe {}: {e}", data.display())))?;
            cluster.start(i)?;
            down.remove(&i);
        }
    }
    Ok(())
}

/// Bytes a `truncate` fault cuts off each log (at most half of it).
const TRUNCATE_BYTES: u64 = 100;

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
}
