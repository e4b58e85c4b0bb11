//! Applying a scenario's faults to a running testnet, and what is faulty at each moment.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::flood::Flooder;
use super::spec::{parse_offset, Action, Fault};
use crate::cluster::{Cluster, HarnessError};
use crate::links::Links;

/// Bytes a `truncate` fault cuts off each log (at most half of it).
const TRUNCATE_BYTES: u64 = 100;

fn harness(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(e.to_string())
}

/// Where Debian's `faketime` package puts the library that shifts a process's clock.
fn libfaketime() -> Result<PathBuf, HarnessError> {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            harness(
                "a `skew` fault needs libfaketime (Debian: apt-get install faketime; \
                 scripts/setup installs it)",
            )
        })
}

/// What is wrong with the testnet right now.
#[derive(Default)]
pub(crate) struct FaultState {
    /// Nodes whose process is not running or is frozen.
    pub down: BTreeSet<usize>,
    pub paused: BTreeSet<usize>,
    /// Nodes outside the largest side of the current partition.
    pub cut_off: BTreeSet<usize>,
    /// A partition is in place and no side of it holds more than 2/3 of the validators.
    pub no_quorum: bool,
    /// Nodes running with a shifted clock.
    pub skewed: BTreeSet<usize>,
    /// Validators with a second process signing with their key.
    pub twinned: BTreeSet<usize>,
    /// Proxies between the nodes, when the scenario partitions them.
    pub links: Option<Links>,
    /// The flooder standing in for a node, while it runs.
    pub flooder: Option<Flooder>,
    /// The network's height at the last sample (where a flooder aims).
    pub tip: u64,
    /// What the flooder published, once stopped.
    pub flood_report: Option<pmr_consensus::flood::FloodReport>,
}

impl FaultState {
    /// Validators that are down, cut off, skewed or double-signing.
    pub(super) fn faulty(&self) -> usize {
        let mut all = self.down.clone();
        all.extend(&self.cut_off);
        all.extend(&self.skewed);
        all.extend(&self.twinned);
        all.len()
    }

    /// Notes the network's height (a flooder aims above it).
    pub(super) fn observe_tip(&mut self, height: u64) {
        self.tip = self.tip.max(height);
        if let Some(f) = &self.flooder {
            f.set_tip(height);
        }
    }

    /// Applies one fault to node(s) of `cluster`.
    pub(super) async fn apply(
        &mut self,
        cluster: &mut Cluster,
        fault: &Fault,
    ) -> Result<(), HarnessError> {
        match fault.action {
            Action::Partition => self.partition(cluster.len(), &fault.nodes)?,
            Action::Heal => self.heal_links(),
            _ => {
                for &i in &fault.nodes {
                    self.apply_to(cluster, i, fault).await?;
                }
            }
        }
        Ok(())
    }

    fn partition(&mut self, n: usize, side: &[usize]) -> Result<(), HarnessError> {
        let links = self
            .links
            .as_ref()
            .ok_or_else(|| harness("a partition needs the links installed before the start"))?;
        links.partition(&[side.to_vec()]);
        (self.cut_off, self.no_quorum) = split(n, side);
        Ok(())
    }

    fn heal_links(&mut self) {
        if let Some(l) = &self.links {
            l.heal();
        }
        self.cut_off.clear();
        self.no_quorum = false;
    }

    async fn apply_to(
        &mut self,
        cluster: &mut Cluster,
        i: usize,
        fault: &Fault,
    ) -> Result<(), HarnessError> {
        match fault.action {
            Action::Kill => {
                cluster.kill(i)?;
                self.down.insert(i);
            }
            Action::Stop => {
                cluster.stop(i, Duration::from_secs(10)).await?;
                self.down.insert(i);
            }
            Action::Pause => {
                cluster.pause(i)?;
                self.paused.insert(i);
                self.down.insert(i);
            }
            Action::Resume => {
                cluster.resume(i)?;
                self.paused.remove(&i);
                self.down.remove(&i);
            }
            Action::Start => {
                if self.paused.remove(&i) {
                    cluster.resume(i)?;
                } else if !cluster.is_running(i) {
                    start_serving(cluster, i).await?;
                }
                self.down.remove(&i);
            }
            Action::Truncate => {
                if cluster.is_running(i) {
                    cluster.kill(i)?;
                }
                truncate_logs(cluster, i)?;
                start_serving(cluster, i).await?;
                self.down.remove(&i);
            }
            Action::Wipe => {
                if cluster.is_running(i) {
                    cluster.kill(i)?;
                }
                let data = cluster.home(i).join("data");
                std::fs::remove_dir_all(&data)
                    .map_err(|e| harness(format!("cannot wipe {}: {e}", data.display())))?;
                start_serving(cluster, i).await?;
                self.down.remove(&i);
            }
            Action::Skew => {
                let offset_ms =
                    parse_offset(fault.by.as_deref().unwrap_or("0s")).map_err(harness)?;
                self.skew(cluster, i, offset_ms).await?;
            }
            Action::Twin => {
                let rpc = cluster.start_twin(i).await?;
                tracing::info!(target: "pmr::scenario", node = i, %rpc, "double signer started");
                self.twinned.insert(i);
            }
            Action::Flood => {
                if cluster.is_running(i) {
                    cluster.kill(i)?;
                }
                self.down.insert(i);
                self.flooder = Some(Flooder::start(i, &cluster.home(i), self.tip)?);
            }
            Action::Partition | Action::Heal => unreachable!("handled in apply"),
        }
        Ok(())
    }

    /// Restarts node `i` with its clock shifted by `offset_ms` (0: the real clock again); the
    /// run fails if it cannot start under the shifted clock.
    async fn skew(
        &mut self,
        cluster: &mut Cluster,
        i: usize,
        offset_ms: i64,
    ) -> Result<(), HarnessError> {
        let env = if offset_ms == 0 {
            Vec::new()
        } else {
            vec![
                ("LD_PRELOAD".into(), libfaketime()?.display().to_string()),
                // libfaketime's relative offset, in seconds.
                (
                    "FAKETIME".into(),
                    format!("{:+.3}", offset_ms as f64 / 1000.0),
                ),
                // Timers and timeouts keep running on the real monotonic clock.
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ]
        };
        if cluster.is_running(i) {
            cluster.stop(i, Duration::from_secs(10)).await?;
        }
        cluster.set_env(i, env)?;
        start_serving(cluster, i).await?;
        // The fault's positive control: the node's own clock, as its log stamps its lines, is
        // off by what was asked (within 10 s), or set right again.
        let observed = cluster
            .log_tail(i, 20)
            .lines()
            .rev()
            .find_map(log_clock_ms)
            .ok_or_else(|| harness(format!("node{i} logged no time-stamped line after a skew")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let off = observed - now;
        if (off - offset_ms).abs() > 10_000 {
            return Err(harness(format!(
                "the clock skew of node{i} did not take effect: asked {offset_ms} ms, its log \
                 runs {off} ms off"
            )));
        }
        tracing::info!(target: "pmr::scenario", node = i, asked_ms = offset_ms, observed_ms = off, "clock skew in effect");
        self.paused.remove(&i);
        self.down.remove(&i);
        if offset_ms == 0 {
            self.skewed.remove(&i);
        } else {
            self.skewed.insert(i);
        }
        Ok(())
    }

    /// Ends every fault still in place: links healed, frozen nodes resumed, stopped ones
    /// restarted, skewed clocks set right, double signers killed, a flooder stopped (its node
    /// restarted).
    pub(super) async fn heal_all(&mut self, cluster: &mut Cluster) -> Result<(), HarnessError> {
        if let Some(f) = self.flooder.take() {
            self.flood_report = Some(f.stop().await?);
            // The flooder's listener closes as its network actor stops.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.heal_links();
        cluster.kill_twins();
        self.twinned.clear();
        for i in self.skewed.clone() {
            self.skew(cluster, i, 0).await?;
        }
        for i in self.down.clone() {
            if self.paused.remove(&i) {
                cluster.resume(i)?;
            } else if !cluster.is_running(i) {
                start_serving(cluster, i).await?;
            }
            self.down.remove(&i);
        }
        Ok(())
    }
}

/// Of `n` nodes split into `side` and the rest: the nodes cut off from the larger side (on a
/// tie, from the side without the listed nodes, where the observer is), and whether no side
/// holds more than 2/3 of the validators.
fn split(n: usize, side: &[usize]) -> (BTreeSet<usize>, bool) {
    let side: BTreeSet<usize> = side.iter().copied().filter(|i| *i < n).collect();
    let rest: BTreeSet<usize> = (0..n).filter(|i| !side.contains(i)).collect();
    let (big, small) = if side.len() > rest.len() {
        (side, rest)
    } else {
        (rest, side)
    };
    let no_quorum = 3 * big.len() <= 2 * n;
    (small, no_quorum)
}

/// Starts node `i` and waits for its gRPC to answer: a node that cannot come back (a corrupt
/// store after a truncation, a wipe it cannot recover from, a clock it cannot start under)
/// fails the run instead of passing as a node that is merely down.
async fn start_serving(cluster: &mut Cluster, i: usize) -> Result<(), HarnessError> {
    cluster.start(i)?;
    cluster.client(i, Duration::from_secs(30)).await?;
    Ok(())
}

/// The time stamp of a node's log line (ANSI colour codes and all), in milliseconds since the
/// Unix epoch: what the node's own clock said when it wrote the line.
fn log_clock_ms(line: &str) -> Option<i64> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs to its final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let stamp = plain.split_whitespace().next()?;
    let t = humantime::parse_rfc3339(stamp).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// Cuts the tail off node `i`'s consensus WAL and RocksDB's newest write-ahead log.
fn truncate_logs(cluster: &Cluster, i: usize) -> Result<(), HarnessError> {
    let data = cluster.home(i).join("data");
    // The consensus WAL's 12-byte header is synced when the file is created and never
    // rewritten, so a torn write can only cut what follows it.
    let mut logs = vec![(data.join("wal").join("consensus.wal"), 12)];
    let mut db_logs: Vec<PathBuf> = std::fs::read_dir(data.join("db"))
        .map_err(harness)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    db_logs.sort();
    logs.extend(db_logs.pop().map(|p| (p, 0)));
    truncate_tails(&logs, i)
}

/// Cuts up to [`TRUNCATE_BYTES`] (at most half) off the end of each `(file, bytes to keep)` of
/// node `i`. The fault's positive control: a truncation that cut nothing tested nothing, and
/// fails the run.
fn truncate_tails(logs: &[(PathBuf, u64)], i: usize) -> Result<(), HarnessError> {
    let mut cut_total = 0;
    for (log, keep) in logs {
        let len = std::fs::metadata(log).map_err(harness)?.len();
        let cut = len
            .saturating_sub(TRUNCATE_BYTES.min(len / 2))
            .max((*keep).min(len));
        std::fs::OpenOptions::new()
            .write(true)
            .open(log)
            .and_then(|f| f.set_len(cut))
            .map_err(|e| harness(format!("cannot truncate {}: {e}", log.display())))?;
        tracing::info!(target: "pmr::scenario", log = %log.display(), from = len, to = cut, "truncated");
        cut_total += len - cut;
    }
    if cut_total == 0 {
        return Err(harness(format!(
            "the truncate fault on node{i} cut nothing (its consensus WAL and RocksDB log hold \
             nothing past what a torn write keeps): the scenario would test no torn write"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_give_the_node_clock() {
        let line =
            "\u{1b}[2m2026-12-07T14:26:24.545844Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m pmr::node: up";
        assert_eq!(log_clock_ms(line), Some(1_796_653_584_545));
        assert_eq!(
            log_clock_ms("2026-12-07T14:26:24Z INFO plain"),
            Some(1_796_653_584_000)
        );
        assert_eq!(log_clock_ms("thread 'main' panicked"), None);
        assert_eq!(log_clock_ms(""), None);
    }

    #[test]
    fn a_truncation_that_cuts_nothing_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, db) = (dir.path().join("wal"), dir.path().join("db.log"));
        // Only the WAL's header and an empty RocksDB log: nothing to cut.
        std::fs::write(&wal, [7u8; 12]).unwrap();
        std::fs::write(&db, []).unwrap();
        let logs = vec![(wal.clone(), 12), (db.clone(), 0)];
        let err = truncate_tails(&logs, 2).unwrap_err().to_string();
        assert!(err.contains("cut nothing"), "{err}");
        // With records past the header, the tails go and the header stays.
        std::fs::write(&wal, [7u8; 112]).unwrap();
        std::fs::write(&db, [9u8; 64]).unwrap();
        truncate_tails(&logs, 2).unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() >= 12);
        assert!(std::fs::metadata(&wal).unwrap().len() < 112);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 32);
    }

    #[test]
    fn offsets_parse_with_a_sign() {
        assert_eq!(parse_offset("+30s"), Ok(30_000));
        assert_eq!(parse_offset("-1m 30s"), Ok(-90_000));
        assert_eq!(parse_offset("0s"), Ok(0));
        assert_eq!(parse_offset("45s"), Ok(45_000));
        assert!(parse_offset("soon").is_err());
    }

    #[test]
    fn partitions_count_the_smaller_side_and_quorum() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(split(4, &[2, 3]), (set(&[2, 3]), true), "2|2 has no quorum");
        assert_eq!(split(4, &[3]), (set(&[3]), false), "3|1 goes on");
        assert_eq!(split(4, &[0, 1, 2]), (set(&[3]), false));
        assert_eq!(
            split(7, &[4, 5, 6]),
            (set(&[4, 5, 6]), true),
            "4 of 7 is not > 2/3"
        );
        assert_eq!(split(7, &[5, 6]), (set(&[5, 6]), false));
        let mut s = FaultState::default();
        assert!(s.partition(4, &[2, 3]).is_err(), "no links installed");
        s.cut_off = set(&[2, 3]);
        s.skewed = set(&[3]);
        s.down = set(&[1]);
        assert_eq!(s.faulty(), 3, "a node counts once");
        s.heal_links();
        assert_eq!(s.faulty(), 2, "down and skewed remain");
    }
}
