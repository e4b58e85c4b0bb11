//! The scenario manifest: validators, duration, load and faults, checked before anything runs.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::HarnessError;
use crate::load::LoadKind;

/// A scenario manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the scenario in its report.
    pub name: String,
    /// What the scenario exercises (free text, for readers of the manifest).
    #[serde(default)]
    pub description: String,
    /// Number of nodes, all validators.
    pub validators: usize,
    /// How long faults and load run.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The `[load]` table: transactions offered during the run; none without one.
    #[serde(default)]
    pub load: Option<LoadSection>,
    /// The `[[fault]]` tables, each applied at its time from the start.
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// Longest wait for every node to catch up after the faults are healed.
    #[serde(default = "default_recovery", with = "humantime_serde")]
    pub recovery_timeout: Duration,
    /// The `[wan]` table: wide-area delay, jitter and loss on every link between nodes.
    #[serde(default)]
    pub wan: Option<crate::links::Wan>,
    /// Every node in a network namespace of its own, with its own address, joined to the
    /// others by veth pairs and a bridge (see [`crate::netns`]); root only.
    #[serde(default)]
    pub namespaces: bool,
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
    /// The rate is meant to exceed what the network can commit (a throughput measurement):
    /// transactions still pending when the drain ends are reported, not counted as lost.
    /// Everything committed must still be on every node, and nothing may be refused.
    #[serde(default)]
    pub saturate: bool,
}

fn default_kind() -> String {
    "noop".into()
}

fn default_accounts() -> usize {
    50
}

/// What a fault does to its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// SIGKILL: the process dies at once; it stays down until a `start`.
    Kill,
    /// SIGTERM, then SIGKILL if the node has not exited within 10 s.
    Stop,
    /// SIGSTOP: the process freezes (a hung node); `resume` or `start` thaws it.
    Pause,
    /// SIGCONT a paused node.
    Resume,
    /// Resume a paused node, or start a stopped one and wait until it serves.
    Start,
    /// Disk loss: SIGKILL, delete the data directory, restart (the node rejoins by sync).
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
    /// Replace the node's process by a flooder with its p2p identity that publishes proposal
    /// parts nobody asked for; it runs until the end of the run.
    Flood,
}

/// One fault of a scenario: an action on some nodes at a time from the start.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, from the start of the run (at most `duration`).
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What is done.
    pub action: Action,
    /// The nodes it acts on, by index (none for `heal`; for `partition`, the side cut off).
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

    pub(super) fn check(&self) -> Result<(), String> {
        if self.validators == 0 {
            return Err("validators must be at least 1".into());
        }
        if self.namespaces && self.validators > 250 {
            return Err("namespaces = true gives addresses to at most 250 validators".into());
        }
        if self.namespaces && self.has(Action::Twin) {
            return Err(
                "a twin (double signer) cannot run with namespaces = true: it shares its \
                 validator's addresses"
                    .into(),
            );
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
                    parse_offset(by)?;
                }
                _ => {}
            }
            if f.by.is_some() && f.action != Action::Skew {
                return Err(format!("fault at {at:?}: `by` is only for skew"));
            }
        }
        let twins = self.nodes_of(Action::Twin);
        if twins.iter().collect::<BTreeSet<_>>().len() != twins.len() {
            return Err("a node can have one twin".into());
        }
        let flooders = self.nodes_of(Action::Flood);
        if flooders.len() > 1 {
            return Err("one flood per scenario: the flooder runs until the end".into());
        }
        if !flooders.is_empty() && self.faults.iter().any(|f| f.action != Action::Flood) {
            return Err("a flood runs alone: the other invariants are judged without it".into());
        }
        if !twins.is_empty() && self.has(Action::Partition) {
            return Err(
                "twin and partition faults cannot be combined: the twin's links have no proxy"
                    .into(),
            );
        }
        if let Some(l) = &self.load {
            l.kind.parse::<LoadKind>()?;
            if l.rate.is_nan() || l.rate <= 0.0 {
                return Err("load rate must be positive".into());
            }
        }
        Ok(())
    }

    /// The lowest node no fault touches (`None` when every node is faulted, as in a rolling
    /// restart: the runner then watches node 0 and, while it is down, any node that answers).
    pub(super) fn observer(&self) -> Option<usize> {
        let touched: HashSet<usize> = self.faults.iter().flat_map(|f| f.nodes.clone()).collect();
        (0..self.validators).find(|n| !touched.contains(n))
    }

    /// The most validators that may fail with the chain still live: f of 3f + 1.
    pub fn max_faulty(&self) -> usize {
        self.validators.saturating_sub(1) / 3
    }

    /// The nodes named by every fault of one kind, in manifest order (repeats kept).
    pub(super) fn nodes_of(&self, action: Action) -> Vec<usize> {
        self.faults
            .iter()
            .filter(|f| f.action == action)
            .flat_map(|f| f.nodes.iter().copied())
            .collect()
    }

    pub(super) fn has(&self, action: Action) -> bool {
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
        if self.has(Action::Flood) {
            names.push("flood-contained");
        }
        if self.namespaces {
            names.push("isolated");
        }
        names
    }
}

/// Parses a clock offset such as `+30s`, `-1m 30s` or `0s` into signed milliseconds.
pub(super) fn parse_offset(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let d = humantime::parse_duration(rest.trim())
        .map_err(|e| format!("clock offset `{text}`: {e} (e.g. \"+30s\" or \"-30s\")"))?;
    Ok(sign * d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed scenario (the CI set and the long ones run on demand) parses and passes
    /// the checks, so a long scenario cannot rot unseen.
    #[test]
    fn every_committed_scenario_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testnet/scenarios");
        let mut checked = 0;
        for set in ["ci", "long"] {
            for entry in std::fs::read_dir(root.join(set)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    Scenario::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
                    checked += 1;
                }
            }
        }
        assert!(checked >= 15, "{checked} scenarios");
    }

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
        // Every node faulted (a rolling restart): allowed, with no unfaulted observer.
        let mut all = good.clone();
        all.faults[0].nodes = vec![0, 1, 2, 3];
        all.check().unwrap();
        assert_eq!(all.observer(), None);
        let mut late = good.clone();
        late.faults[0].at = Duration::from_secs(30);
        assert!(late.check().is_err());
        let mut twin_in_namespaces = good.clone();
        twin_in_namespaces.namespaces = true;
        twin_in_namespaces.check().unwrap();
        twin_in_namespaces.faults[0].action = Action::Twin;
        assert!(twin_in_namespaces
            .check()
            .unwrap_err()
            .contains("namespaces"));
        assert!(toml::from_str::<Scenario>(
            "name = \"x\"\nvalidators = 4\nduration = \"1s\"\nbogus = 1"
        )
        .is_err());
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
        let flood = parse("[[fault]]\nat = \"1s\"\naction = \"flood\"\nnodes = [3]\n").unwrap();
        assert_eq!(flood.invariant_names().last(), Some(&"flood-contained"));
        assert!(parse("[[fault]]\nat = \"1s\"\naction = \"flood\"\nnodes = [2, 3]\n").is_err());
        assert!(parse(
            "[[fault]]\nat = \"1s\"\naction = \"flood\"\nnodes = [3]\n\
             [[fault]]\nat = \"2s\"\naction = \"kill\"\nnodes = [2]\n"
        )
        .is_err());
        let split = parse("[[fault]]\nat = \"1s\"\naction = \"partition\"\nnodes = [3]\n").unwrap();
        assert!(
            split.invariant_names().contains(&"halted"),
            "3|1: the cut-off node must not commit"
        );
    }
}
