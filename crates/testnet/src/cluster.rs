//! Node processes of a testnet.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pmr_client::dev_account::load_dev_account;
use pmr_client::{ConnectOptions, PmrClient, Wallet};
use tokio::time::{sleep, Instant};
use tracing::info;

use crate::manifest::Manifest;

/// Errors of the harness. Each says what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A manifest (`testnet.json` or a scenario file) cannot be read, parsed, checked or written.
    #[error("testnet manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A node (or twin) process, or its home directory, could not be set up or spawned.
    #[error("cannot start {node} ({bin}): {reason}")]
    Spawn {
        /// The node's name.
        node: String,
        /// The `pmr` binary.
        bin: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A node index past the end of the manifest's node list.
    #[error("no node {0} in this testnet")]
    NoSuchNode(usize),
    /// A signal was to be sent to a node the harness has not started (or has killed).
    #[error("node {0} is not running")]
    NotRunning(String),
    /// Sending a signal to a node's process failed.
    #[error("signal to {node} failed: {reason}")]
    Signal {
        /// The node's name.
        node: String,
        /// What the OS said.
        reason: String,
    },
    /// The load generator failed (setup transactions, or the run itself).
    #[error("load generator: {0}")]
    Load(String),
    /// A fault scenario could not be run (a bad spec, or a fault, twin or link proxy that could
    /// not be set up); violated invariants go in the report instead.
    #[error("scenario: {0}")]
    Scenario(String),
    /// The records benchmark failed.
    #[error("records benchmark: {0}")]
    Bench(String),
    /// No ports could be chosen for the nodes (none free, or `--base-port` too high).
    #[error("{0}")]
    Ports(String),
    /// A wait (for a node to answer, reach a height, ...) ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}; last observation: {last}")]
    Timeout {
        /// How long the harness waited.
        timeout: Duration,
        /// What it was waiting for.
        what: String,
        /// The last thing it saw (a height, an error).
        last: String,
    },
}

struct Proc {
    child: Child,
}

/// A second process running with the keys of a validator (a double signer).
struct Twin {
    of: usize,
    home: PathBuf,
    rpc: String,
    proc: Option<Proc>,
}

/// A testnet's node processes.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    manifest: Manifest,
    procs: Vec<Option<Proc>>,
    /// Extra environment of each node's process (e.g. a skewed clock), kept across restarts.
    env: Vec<Vec<(String, String)>>,
    twins: Vec<Twin>,
    /// Each node's network namespace by name ([`crate::netns`]); empty when the nodes share
    /// the harness's.
    netns: Vec<String>,
    /// Extra arguments for `pmr start` (e.g. `--log-level`).
    pub start_args: Vec<String>,
}

impl Cluster {
    /// Opens the testnet in `dir`, to be run with the `pmr` binary at `bin`.
    pub fn open(dir: &Path, bin: &Path) -> Result<Self, HarnessError> {
        let manifest = Manifest::load(dir)?;
        let procs = manifest.nodes.iter().map(|_| None).collect();
        let env = manifest.nodes.iter().map(|_| Vec::new()).collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            manifest,
            procs,
            env,
            twins: Vec::new(),
            netns: Vec::new(),
            start_args: Vec::new(),
        })
    }

    /// Starts every node from now on in its own network namespace (`namespaces[i]` for node
    /// `i`, see [`crate::netns::Namespaces`]); the testnet must have been made with the
    /// namespaces' addresses (`pmr testnet init --hosts`).
    pub fn use_namespaces(
        &mut self,
        namespaces: &crate::netns::Namespaces,
    ) -> Result<(), HarnessError> {
        self.netns = (0..self.len())
            .map(|i| {
                namespaces.node(i).map(str::to_string).ok_or_else(|| {
                    HarnessError::Scenario(format!("no network namespace for node {i}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// The testnet's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The testnet directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number of nodes (twins not counted).
    pub fn len(&self) -> usize {
        self.manifest.nodes.len()
    }

    /// Whether the testnet has no nodes.
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

    /// The gRPC endpoint of node `i`.
    pub fn rpc(&self, i: usize) -> &str {
        &self.manifest.nodes[i].rpc
    }

    /// Whether the harness started node `i` and its process has not exited.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.procs.get_mut(i) {
            Some(Some(p)) => matches!(p.child.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Sets the extra environment node `i` is started with from now on.
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) -> Result<(), HarnessError> {
        *self.env.get_mut(i).ok_or(HarnessError::NoSuchNode(i))? = env;
        Ok(())
    }

    fn spawn(
        &self,
        name: &str,
        home: &Path,
        env: &[(String, String)],
        netns: Option<&String>,
    ) -> Result<Proc, HarnessError> {
        let spawn_err = |reason: String| HarnessError::Spawn {
            node: name.to_string(),
            bin: self.bin.clone(),
            reason,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(home.join("node.log"))
            .map_err(|e| spawn_err(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| spawn_err(e.to_string()))?;
        // In a namespace: `ip netns exec NS pmr start …`, which enters it and then execs the
        // node (the process keeps its pid, so signals reach the node).
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("start")
            .arg("--home")
            .arg(home)
            .args(&self.start_args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd.spawn().map_err(|e| spawn_err(e.to_string()))?;
        info!(target: "pmr::testnet", node = %name, pid = child.id(), "started");
        Ok(Proc { child })
    }

    fn entry(&self, i: usize) -> Result<&crate::manifest::NodeEntry, HarnessError> {
        self.manifest
            .nodes
            .get(i)
            .ok_or(HarnessError::NoSuchNode(i))
    }

    /// The process id of node `i`, while the harness runs it.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs.get(i)?.as_ref().map(|p| p.child.id())
    }

    /// Resident memory of node `i` in bytes (`VmRSS`), while it runs.
    pub fn rss(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Starts node `i` as a `pmr start` process logging to its `node.log`.
    pub fn start(&mut self, i: usize) -> Result<(), HarnessError> {
        let name = self.entry(i)?.name.clone();
        let proc = self.spawn(&name, &self.home(i), &self.env[i], self.netns.get(i))?;
        self.procs[i] = Some(proc);
        Ok(())
    }

    /// Prepares a second process for node `i`'s validator key (a double signer, as when an
    /// operator starts a backup of a live validator): a home with node `i`'s keys plus a p2p
    /// identity of its own (`keys/network_key.json`), its own ports and an empty data
    /// directory, listed as a peer in every node's config so it is let in. Call before the
    /// nodes start; [`Cluster::start_twin`] starts it.
    pub fn prepare_twin(&mut self, i: usize) -> Result<(), HarnessError> {
        let of = self.entry(i)?.name.clone();
        let name = format!("{of}-twin");
        let src = self.home(i);
        let home = self.dir.join(&name);
        let err = |e: String| HarnessError::Spawn {
            node: name.clone(),
            bin: self.bin.clone(),
            reason: e,
        };
        let io = |e: std::io::Error| err(e.to_string());
        std::fs::create_dir_all(home.join("keys")).map_err(io)?;
        for entry in std::fs::read_dir(src.join("keys")).map_err(io)? {
            let entry = entry.map_err(io)?;
            std::fs::copy(entry.path(), home.join("keys").join(entry.file_name())).map_err(io)?;
        }
        std::fs::copy(src.join("genesis.json"), home.join("genesis.json")).map_err(io)?;
        copy_dir(&src.join("tls"), &home.join("tls")).map_err(io)?;
        let out = Command::new(&self.bin)
            .args(["keys", "new-network-key", "--home"])
            .arg(&home)
            .output()
            .map_err(io)?;
        if !out.status.success() {
            return Err(err(format!(
                "pmr keys new-network-key: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let peer_id = String::from_utf8_lossy(&out.stdout).trim().to_string();

        let read = |path: &Path| -> Result<toml::Value, HarnessError> {
            let text = std::fs::read_to_string(path).map_err(io)?;
            toml::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))
        };
        let write = |path: &Path, cfg: &toml::Value| -> Result<(), HarnessError> {
            let text = toml::to_string(cfg).map_err(|e| err(e.to_string()))?;
            std::fs::write(path, text).map_err(io)
        };
        let port = || -> Result<u16, HarnessError> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
            Ok(l.local_addr().map_err(io)?.port())
        };
        let tcp = |p: u16| format!("/ip4/127.0.0.1/tcp/{p}");
        let (rpc_port, p2p, gossip, content) = (port()?, port()?, port()?, port()?);

        // The twin: node i's config on ports of its own, with node i among its peers.
        let mut cfg = read(&src.join("config.toml"))?;
        let own = |cfg: &toml::Value, section: Option<&str>, key: &str| {
            let v = match section {
                Some(s) => cfg.get(s).and_then(|t| t.get(key)),
                None => cfg.get(key),
            };
            v.and_then(|v| v.as_str()).unwrap_or_default().to_string()
        };
        let node_entry = {
            let mut t = toml::map::Map::new();
            t.insert("name".into(), of.clone().into());
            // Node i's peer id, as any other node lists it.
            let listed = (0..self.len()).filter(|j| *j != i).find_map(|j| {
                let c = read(&self.home(j).join("config.toml")).ok()?;
                c.get("consensus")?
                    .get("peers")?
                    .as_array()?
                    .iter()
                    .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(of.as_str()))?
                    .get("peer_id")?
                    .as_str()
                    .map(str::to_string)
            });
            t.insert("peer_id".into(), listed.unwrap_or_default().into());
            t.insert(
                "p2p".into(),
                own(&cfg, Some("consensus"), "p2p_listen").into(),
            );
            t.insert(
                "gossip".into(),
                own(&cfg, Some("consensus"), "gossip_listen").into(),
            );
            t.insert(
                "content".into(),
                own(&cfg, Some("content"), "listen").into(),
            );
            toml::Value::Table(t)
        };
        let set = |cfg: &mut toml::Value, section: Option<&str>, key: &str, value: String| {
            let table = match section {
                Some(s) => cfg.get_mut(s),
                None => Some(&mut *cfg),
            };
            if let Some(t) = table.and_then(|t| t.as_table_mut()) {
                t.insert(key.to_string(), toml::Value::String(value));
            }
        };
        set(&mut cfg, None, "moniker", name.clone());
        set(
            &mut cfg,
            None,
            "rpc_listen",
            format!("127.0.0.1:{rpc_port}"),
        );
        set(
            &mut cfg,
            None,
            "metrics_listen",
            format!("127.0.0.1:{}", port()?),
        );
        set(&mut cfg, Some("consensus"), "p2p_listen", tcp(p2p));
        set(&mut cfg, Some("consensus"), "gossip_listen", tcp(gossip));
        set(&mut cfg, Some("content"), "listen", tcp(content));
        if let Some(peers) = cfg
            .get_mut("consensus")
            .and_then(|c| c.get_mut("peers"))
            .and_then(|p| p.as_array_mut())
        {
            peers.push(node_entry);
        }
        write(&home.join("config.toml"), &cfg)?;

        // Every node lets the twin in (it is a listed peer, not a validator's own peer id).
        let mut entry = toml::map::Map::new();
        entry.insert("name".into(), name.clone().into());
        entry.insert("peer_id".into(), peer_id.into());
        entry.insert("p2p".into(), tcp(p2p).into());
        entry.insert("gossip".into(), tcp(gossip).into());
        entry.insert("content".into(), tcp(content).into());
        for j in 0..self.len() {
            let path = self.home(j).join("config.toml");
            let mut c = read(&path)?;
            if let Some(peers) = c
                .get_mut("consensus")
                .and_then(|c| c.get_mut("peers"))
                .and_then(|p| p.as_array_mut())
            {
                peers.push(toml::Value::Table(entry.clone()));
            }
            write(&path, &c)?;
        }
        self.twins.push(Twin {
            of: i,
            home,
            rpc: format!("https://127.0.0.1:{rpc_port}"),
            proc: None,
        });
        Ok(())
    }

    /// Starts the twin [`Cluster::prepare_twin`] made for node `i` from a copy of node `i`'s
    /// data directory (chain, state and consensus WAL: how a backup of a live validator is
    /// usually made), so both run from the same height: node `i` is stopped (SIGTERM) for the
    /// copy and restarted. Returns the twin's gRPC endpoint.
    pub async fn start_twin(&mut self, i: usize) -> Result<String, HarnessError> {
        let t = self
            .twins
            .iter()
            .position(|t| t.of == i)
            .ok_or_else(|| HarnessError::Scenario(format!("no twin prepared for node {i}")))?;
        if self.twins[t].proc.is_some() {
            return Err(HarnessError::Scenario(format!(
                "node {i}'s twin is already running"
            )));
        }
        let (name, home) = (
            format!("{}-twin", self.manifest.nodes[i].name),
            self.twins[t].home.clone(),
        );
        let was_running = self.is_running(i);
        if was_running {
            self.stop(i, Duration::from_secs(10)).await?;
        }
        let copied = copy_dir(&self.home(i).join("data"), &home.join("data"));
        if was_running {
            self.start(i)?;
        }
        copied.map_err(|e| HarnessError::Spawn {
            node: name.clone(),
            bin: self.bin.clone(),
            reason: format!("cannot copy the data directory: {e}"),
        })?;
        // The twin's listen ports were picked when it was prepared, before the testnet ran;
        // since then the OS may have handed one of them out as the ephemeral port of some
        // connection. Ports of its own are picked again now, and a twin that exits before its
        // API answers (a port taken after all) is started once more on new ones.
        for attempt in 0..2 {
            let rpc_port = repick_twin_ports(&home).map_err(|e| HarnessError::Spawn {
                node: name.clone(),
                bin: self.bin.clone(),
                reason: format!("cannot set the twin's ports: {e}"),
            })?;
            self.twins[t].rpc = format!("https://127.0.0.1:{rpc_port}");
            // Twins are refused in namespaces (`Scenario::check`): the harness's namespace.
            let mut proc = self.spawn(&name, &home, &self.env[i], None)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut exited = None;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    exited = Some(status);
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", rpc_port))
                    .await
                    .is_ok()
                {
                    break;
                }
                sleep(Duration::from_millis(100)).await;
            }
            match exited {
                None => {
                    self.twins[t].proc = Some(proc);
                    return Ok(self.twins[t].rpc.clone());
                }
                Some(status) => {
                    let log = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    tracing::warn!(target: "pmr::testnet", node = %name, %status, attempt, log = %tail.join("\n"), "double signer exited at start");
                    if attempt == 1 {
                        return Err(HarnessError::Spawn {
                            node: name,
                            bin: self.bin.clone(),
                            reason: format!("exited at start ({status}):\n{}", tail.join("\n")),
                        });
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// `(validator index, gRPC endpoint, home)` of every twin prepared.
    pub fn twins(&self) -> Vec<(usize, String, PathBuf)> {
        self.twins
            .iter()
            .map(|t| (t.of, t.rpc.clone(), t.home.clone()))
            .collect()
    }

    /// SIGKILLs every twin.
    pub fn kill_twins(&mut self) {
        for t in &mut self.twins {
            if let Some(mut p) = t.proc.take() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }

    /// Starts every node, in order; stops at the first that fails to start.
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

    /// Kills every node (and twin) that is running.
    pub fn kill_all(&mut self) {
        self.kill_twins();
        for i in 0..self.len() {
            if self.procs[i].is_some() {
                let _ = self.resume(i);
                let _ = self.kill(i);
            }
        }
    }

    /// Runs `pmr state verify` on node `i`'s home (the node must be stopped): the state root
    /// recomputed from its disk against its latest header's. Returns the verdict `pmr` printed
    /// (as JSON) and whether it passed.
    pub fn verify_state(&self, i: usize) -> Result<(bool, serde_json::Value), HarnessError> {
        let node = self
            .manifest
            .nodes
            .get(i)
            .ok_or(HarnessError::NoSuchNode(i))?;
        let out = Command::new(&self.bin)
            .args(["state", "verify", "--output", "json", "--home"])
            .arg(self.home(i))
            .output()
            .map_err(|e| HarnessError::Spawn {
                node: node.name.clone(),
                bin: self.bin.clone(),
                reason: format!("pmr state verify: {e}"),
            })?;
        let verdict = serde_json::from_slice(&out.stdout).map_err(|_| {
            HarnessError::Scenario(format!(
                "pmr state verify on {} printed no verdict: {}",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        Ok((out.status.success(), verdict))
    }

    /// The testnet's admin account (a development key file).
    pub fn admin(&self) -> Result<Wallet, HarnessError> {
        let path = self.dir.join("accounts/admin.json");
        load_dev_account(&path).map_err(|e| HarnessError::Manifest {
            path,
            reason: e.to_string(),
        })
    }

    /// How clients reach this testnet's nodes: its CA, as the admin account.
    pub fn connect_options(&self) -> Result<ConnectOptions, HarnessError> {
        let path = self.dir.join(&self.manifest.ca);
        let ca = std::fs::read(&path).map_err(|e| HarnessError::Manifest {
            path,
            reason: format!("cannot read the testnet's CA certificate: {e}"),
        })?;
        Ok(ConnectOptions {
            ca_pem: Some(ca),
            account: Some(self.admin()?),
            insecure: false,
        })
    }

    /// A client of node `i` (as the admin account), retrying until it accepts connections or
    /// `timeout` passes.
    pub async fn client(&self, i: usize, timeout: Duration) -> Result<PmrClient, HarnessError> {
        let mut url = self.rpc(i).to_string();
        let mut opts = self.connect_options()?;
        // Nodes started with `--insecure` serve plaintext.
        if self.start_args.iter().any(|a| a == "--insecure") {
            url = url.replacen("https://", "http://", 1);
            opts.insecure = true;
        }
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match PmrClient::connect(url.clone(), &opts).await {
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

/// Gives the twin in `home` new listen ports (API, metrics, consensus, gossip, content) in its
/// config; returns the API port. The nodes that list the twin's old addresses are not told:
/// the twin dials them (it lists them as peers), and they let its peer id in.
fn repick_twin_ports(home: &Path) -> Result<u16, String> {
    let path = home.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut cfg: toml::Value = toml::from_str(&text).map_err(|e| e.to_string())?;
    let port = || -> Result<u16, String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        Ok(l.local_addr().map_err(|e| e.to_string())?.port())
    };
    let rpc = port()?;
    let values = [
        (None, "rpc_listen", format!("127.0.0.1:{rpc}")),
        (None, "metrics_listen", format!("127.0.0.1:{}", port()?)),
        (
            Some("consensus"),
            "p2p_listen",
            format!("/ip4/127.0.0.1/tcp/{}", port()?),
        ),
        (
            Some("consensus"),
            "gossip_listen",
            format!("/ip4/127.0.0.1/tcp/{}", port()?),
        ),
        (
            Some("content"),
            "listen",
            format!("/ip4/127.0.0.1/tcp/{}", port()?),
        ),
    ];
    for (section, key, value) in values {
        let table = match section {
            Some(s) => cfg.get_mut(s),
            None => Some(&mut cfg),
        };
        if let Some(t) = table.and_then(|t| t.as_table_mut()) {
            t.insert(key.to_string(), toml::Value::String(value));
        }
    }
    std::fs::write(&path, toml::to_string(&cfg).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok(rpc)
}

/// Copies the directory tree `from` to `to` (which must not exist yet).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
