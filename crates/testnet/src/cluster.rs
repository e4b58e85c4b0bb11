//! Node processes of a testnet.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pmr_client::PmrClient;
use tokio::time::{sleep, Instant};
use tracing::info;

use crate::manifest::Manifest;

/// Errors of the harness. Each says what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("testnet manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("cannot start {node} ({bin}): {reason}")]
    Spawn {
        node: String,
        bin: PathBuf,
        reason: String,
    },
    #[error("no node {0} in this testnet")]
    NoSuchNode(usize),
    #[error("node {0} is not running")]
    NotRunning(String),
    #[error("signal to {node} failed: {reason}")]
    Signal { node: String, reason: String },
    #[error("load generator: {0}")]
    Load(String),
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("timed out after {timeout:?} waiting for {what}; last observation: {last}")]
    Timeout {
        timeout: Duration,
        what: String,
        last: String,
    },
}

struct Proc {
    child: Child,
}

/// A testnet's node processes.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    manifest: Manifest,
    procs: Vec<Option<Proc>>,
    /// Extra arguments for `pmr start` (e.g. `--log-level`).
    pub start_args: Vec<String>,
}

impl Cluster {
    /// Opens the testnet in `dir`, to be run with the `pmr` binary at `bin`.
    pub fn open(dir: &Path, bin: &Path) -> Result<Self, HarnessError> {
        let manifest = Manifest::load(dir)?;
        let procs = manifest.nodes.iter().map(|_| None).collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            manifest,
            procs,
            start_args: Vec::new(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.manifest.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.nodes.is_empty()
    }

    /// Home directory of node `i`.
    pub fn home(&self, i: usize) -> PathBuf {
        self.dir.join(&self.manifest.nodes[i].home)
    }

    /// The log file of node `i` (appended to across restarts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.home(i).join("node.log")
    }

    pub fn rpc(&self, i: usize) -> &str {
        &self.manifest.nodes[i].rpc
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.procs.get_mut(i) {
            Some(Some(p)) => matches!(p.child.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Starts node `i` as a `pmr start` process logging to its `node.log`.
    pub fn start(&mut self, i: usize) -> Result<(), HarnessError> {
        let entry = self
            .manifest
            .nodes
            .get(i)
            .ok_or(HarnessError::NoSuchNode(i))?
            .clone();
        let home = self.home(i);
        let spawn_err = |reason: String| HarnessError::Spawn {
            node: entry.name.clone(),
            bin: self.bin.clone(),
            reason,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(home.join("node.log"))
            .map_err(|e| spawn_err(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| spawn_err(e.to_string()))?;
        let child = Command::new(&self.bin)
            .arg("start")
            .arg("--home")
            .arg(&home)
            .args(&self.start_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| spawn_err(e.to_string()))?;
        info!(target: "pmr::testnet", node = %entry.name, pid = child.id(), "started");
        self.procs[i] = Some(Proc { child });
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<(), HarnessError> {
        for i in 0..self.len() {
            self.start(i)?;
        }
        Ok(())
    }

    fn signal(&mut self, i: usize, sig: Signal) -> Result<(), HarnessError> {
        let name = self.manifest.nodes[i].name.clone();
        let p = self
            .procs
            .get_mut(i)
            .and_then(|p| p.as_mut())
            .ok_or_else(|| HarnessError::NotRunning(name.clone()))?;
        kill(Pid::from_raw(p.child.id() as i32), sig).map_err(|e| HarnessError::Signal {
            node: name,
            reason: e.to_string(),
        })
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    pub fn kill(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGKILL)?;
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.child.wait();
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the node has not exited within `grace`.
    pub async fn stop(&mut self, i: usize, grace: Duration) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running(i) {
                self.procs[i] = None;
                return Ok(());
            }
            sleep(Duration::from_millis(50)).await;
        }
        self.kill(i)
    }

    /// SIGSTOP: the process freezes (a hung node, from the network's view).
    pub fn pause(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGCONT)
    }

    /// Kills every node that is running.
    pub fn kill_all(&mut self) {
        for i in 0..self.len() {
            if self.procs[i].is_some() {
                let _ = self.resume(i);
                let _ = self.kill(i);
            }
        }
    }

    /// A client of node `i`, retrying until it accepts connections or `timeout` passes.
    pub async fn client(&self, i: usize, timeout: Duration) -> Result<PmrClient, HarnessError> {
        let url = self.rpc(i).to_string();
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match PmrClient::connect(url.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e.to_string(),
            }
            sleep(Duration::from_millis(100)).await;
        }
        Err(HarnessError::Timeout {
            timeout,
            what: format!(
                "node {} to accept gRPC connections at {url}",
                self.manifest.nodes[i].name
            ),
            last,
        })
    }

    /// Waits until node `i` has committed `height`.
    pub async fn wait_height(
        &self,
        i: usize,
        height: u64,
        timeout: Duration,
    ) -> Result<u64, HarnessError> {
        let deadline = Instant::now() + timeout;
        let client = self.client(i, timeout).await?;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match client.status().await {
                Ok(s) if s.height >= height => return Ok(s.height),
                Ok(s) => last = format!("height {}", s.height),
                Err(e) => last = e.to_string(),
            }
            sleep(Duration::from_millis(50)).await;
        }
        Err(HarnessError::Timeout {
            timeout,
            what: format!(
                "node {} to reach height {height}",
                self.manifest.nodes[i].name
            ),
            last,
        })
    }

    /// The last lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
