//! The `flood` fault: a validator's process is replaced by a hostile member that keeps the
//! validator's p2p identity (so its peers let it in) and publishes proposal parts nobody asked
//! for ([`pmr_consensus::flood`]). The honest nodes must refuse them, keep their memory bounded
//! and go on committing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pmr_consensus::flood::{flood, FloodParams, FloodReport};
use pmr_consensus::{network_keypair, ConsensusConfig, PrivateKey};
use pmr_primitives::Genesis;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::HarnessError;

/// Bytes per second the flooder publishes: several times a full block every second.
pub(super) const FLOOD_RATE: u64 = 8 * 1024 * 1024;

fn harness(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(e.to_string())
}

/// A flooder running in the harness's process.
pub(crate) struct Flooder {
    /// The node it stands in for.
    pub node: usize,
    tip: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<FloodReport, pmr_consensus::ConsensusError>>,
}

#[derive(Deserialize)]
struct KeyFile {
    r#type: String,
    secret: String,
}

/// The node key of the node whose home is `home` (its validator key and p2p identity).
fn node_key(home: &Path) -> Result<PrivateKey, HarnessError> {
    let path = home.join("keys").join("node_key.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| harness(format!("cannot read {}: {e}", path.display())))?;
    let file: KeyFile =
        serde_json::from_str(&text).map_err(|e| harness(format!("{}: {e}", path.display())))?;
    let secret: [u8; 32] = (file.r#type == "ed25519")
        .then(|| alloy_primitives::hex::decode(&file.secret).ok())
        .flatten()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| harness(format!("{} is not an ed25519 key file", path.display())))?;
    Ok(PrivateKey::from(secret))
}

/// The `[consensus]` table of the node's `config.toml`.
fn consensus_config(home: &Path) -> Result<ConsensusConfig, HarnessError> {
    let path = home.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| harness(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| harness(format!("{}: {e}", path.display())))?;
    let consensus = table
        .get("consensus")
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    consensus
        .try_into()
        .map_err(|e| harness(format!("{} [consensus]: {e}", path.display())))
}

impl Flooder {
    /// Starts flooding as node `node` (whose process must already be stopped: the flooder
    /// takes its p2p port) at [`FLOOD_RATE`], aiming at the heights above `tip`.
    pub(super) fn start(node: usize, home: &Path, tip: u64) -> Result<Self, HarnessError> {
        let key = node_key(home)?;
        let genesis = Genesis::load(&home.join("genesis.json")).map_err(harness)?;
        let config = consensus_config(home)?;
        let tip = Arc::new(AtomicU64::new(tip));
        let (stop, stop_rx) = watch::channel(false);
        let params = FloodParams {
            moniker: format!("flood{node}"),
            keypair: network_keypair(&key),
            validator_key: Some(key),
            config,
            genesis,
            tip: tip.clone(),
            bytes_per_second: std::env::var("PMR_FLOOD_RATE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(FLOOD_RATE),
            stop: stop_rx,
        };
        let task = tokio::spawn(flood(params));
        tracing::info!(target: "pmr::scenario", node, "flooder started");
        Ok(Self {
            node,
            tip,
            stop,
            task,
        })
    }

    /// Aims the next streams above `height`.
    pub(super) fn set_tip(&self, height: u64) {
        self.tip.fetch_max(height, Ordering::Relaxed);
    }

    /// Stops the flood and says what it published (an error if the flooder failed).
    pub(super) async fn stop(self) -> Result<FloodReport, HarnessError> {
        let _ = self.stop.send(true);
        let report = self
            .task
            .await
            .map_err(harness)?
            .map_err(|e| harness(format!("flooder failed: {e}")))?;
        tracing::info!(target: "pmr::scenario", node = self.node, ?report, "flooder stopped");
        Ok(report)
    }
}

/// Reads one counter or gauge from a node's Prometheus endpoint (`http://host:port/metrics`):
/// the sum over its label sets, `None` if the endpoint does not answer or lacks it.
pub(super) async fn scrape(url: &str, metric: &str) -> Option<f64> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let path = format!("/{}", path.trim_start_matches('/'));
    let fetch = async {
        let mut conn = tokio::net::TcpStream::connect(authority).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        conn.read_to_end(&mut body).await.ok()?;
        String::from_utf8(body).ok()
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(2), fetch)
        .await
        .ok()??;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Most an honest node's resident memory may grow while the flooder runs. Buffered streams are
/// bounded per publisher (two blocks' bytes); the rest is the p2p layer's recent-message cache
/// and allocator slack under 8 MiB/s of traffic: +92 to +108 MiB measured in 30 s runs and
/// +101 to +129 MiB in a 60 s run (2026-12-07; +1 to +2.5 MiB with the flooder silent). With
/// every stream buffered, as before per-publisher quotas, the 244 MiB a 30 s run publishes
/// stay in memory.
pub(super) const MAX_RSS_GROWTH: u64 = 192 * 1024 * 1024;

/// Most bytes of proposal streams an honest node may hold while the flooder runs: the one
/// publisher's quota (twice a block's 8 MiB plus 1 MiB of slack) and one honest block in
/// progress. Far below what buffering every stream reaches.
pub(super) const MAX_BUFFERED: f64 = 3.0 * 9.0 * 1024.0 * 1024.0;

/// What the honest nodes hold while a flooder runs: resident memory (the first and the largest
/// reading) and the largest `pmr_proposal_stream_bytes` each reported.
#[derive(Default)]
pub(super) struct FloodWatch {
    /// (first, peak) resident bytes, per node.
    pub rss: std::collections::BTreeMap<usize, (u64, u64)>,
    /// Peak bytes of proposal streams in progress, per node.
    pub buffered: std::collections::BTreeMap<usize, f64>,
}

impl FloodWatch {
    /// Records node `i`'s resident memory.
    pub(super) fn record(&mut self, i: usize, rss: Option<u64>) {
        if let Some(r) = rss {
            let e = self.rss.entry(i).or_insert((r, r));
            e.1 = e.1.max(r);
        }
    }

    /// Records node `i`'s bytes of proposal streams in progress.
    pub(super) fn record_buffered(&mut self, i: usize, bytes: Option<f64>) {
        if let Some(b) = bytes {
            let e = self.buffered.entry(i).or_insert(b);
            *e = e.max(b);
        }
    }
}

/// The `flood-contained` invariant: the flooder published; every honest node (`honest`) was
/// measured and counted refused parts; none held more than [`MAX_BUFFERED`] in
/// streams or grew past [`MAX_RSS_GROWTH`].
pub(super) fn contained(
    report: Option<FloodReport>,
    honest: &[usize],
    refused: &[Option<f64>],
    watch: &FloodWatch,
) -> super::invariants::Invariant {
    let report = report.unwrap_or_default();
    let refusing = refused
        .iter()
        .filter(|r| r.is_some_and(|v| v > 0.0))
        .count();
    let growth: Vec<(usize, u64)> = honest
        .iter()
        .filter_map(|i| watch.rss.get(i).map(|(a, b)| (*i, b.saturating_sub(*a))))
        .collect();
    let worst = growth.iter().map(|g| g.1).max().unwrap_or(0);
    let buffered: Vec<(usize, f64)> = honest
        .iter()
        .filter_map(|i| watch.buffered.get(i).map(|b| (*i, *b)))
        .collect();
    let max_buffered = MAX_BUFFERED;
    let most_buffered = buffered.iter().map(|b| b.1).fold(0.0, f64::max);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    super::invariants::Invariant {
        name: "flood-contained".into(),
        passed: report.bytes > 0
            && !honest.is_empty()
            && refusing == honest.len()
            && growth.len() == honest.len()
            && worst <= MAX_RSS_GROWTH
            && buffered.len() == honest.len()
            && most_buffered <= max_buffered,
        detail: format!(
            "the flooder published {} parts ({:.0} MiB) in {} streams; {refusing} of {} honest \
             nodes counted refused parts ({refused:?}); resident memory growth of {} measured \
             node(s) during the flood: {} (at most {:.0} MiB allowed); most bytes of proposal \
             streams held: {} (at most {:.0} MiB)",
            report.parts,
            mib(report.bytes),
            report.streams,
            honest.len(),
            growth.len(),
            growth
                .iter()
                .map(|(i, g)| format!("node{i} +{:.1} MiB", mib(*g)))
                .collect::<Vec<_>>()
                .join(", "),
            mib(MAX_RSS_GROWTH),
            buffered
                .iter()
                .map(|(i, b)| format!("node{i} {:.1} MiB", b / (1024.0 * 1024.0)))
                .collect::<Vec<_>>()
                .join(", "),
            max_buffered / (1024.0 * 1024.0),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        let path = dir.path().join("keys").join("node_key.json");
        std::fs::write(&path, r#"{"type":"x25519","secret":"00","public_key":""}"#).unwrap();
        assert!(
            node_key(dir.path()).is_err(),
            "a custody key is not a node key"
        );
        let secret = "11".repeat(32);
        std::fs::write(
            &path,
            format!(r#"{{"type":"ed25519","secret":"{secret}","public_key":""}}"#),
        )
        .unwrap();
        assert!(node_key(dir.path()).is_ok());
    }

    #[test]
    fn containment_needs_evidence_from_every_honest_node() {
        let report = Some(FloodReport {
            parts: 10,
            bytes: 640 * 1024,
            streams: 2,
        });
        let mut w = FloodWatch::default();
        w.record(0, Some(100 << 20));
        w.record(0, Some(120 << 20));
        w.record(1, Some(100 << 20));
        w.record_buffered(0, Some(1e6));
        w.record_buffered(1, Some(2e6));
        let refused = [Some(3.0), Some(1.0)];
        let ok = contained(report, &[0, 1], &refused, &w);
        assert!(ok.passed, "{}", ok.detail);
        assert!(!contained(None, &[0, 1], &refused, &w).passed, "no flood");
        assert!(
            !contained(report, &[0, 1], &[Some(3.0), Some(0.0)], &w).passed,
            "node 1 refused nothing"
        );
        assert!(
            !contained(report, &[0, 1, 2], &[Some(3.0), Some(1.0), Some(1.0)], &w).passed,
            "node 2 unmeasured"
        );
        assert!(!contained(report, &[], &[], &w).passed, "nothing judged");
        let mut over = FloodWatch {
            rss: w.rss.clone(),
            buffered: w.buffered.clone(),
        };
        over.record_buffered(1, Some(MAX_BUFFERED + 1.0));
        assert!(
            !contained(report, &[0, 1], &refused, &over).passed,
            "too much buffered"
        );
        w.record(1, Some((100 << 20) + MAX_RSS_GROWTH + 1));
        assert!(
            !contained(report, &[0, 1], &refused, &w).passed,
            "too much memory"
        );
    }
}
