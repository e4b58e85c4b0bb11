//! `pmr dev` and `pmr testnet init|up|run`: local networks of `pmr` processes on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use eyre::{Context, Result};
use pmr_testnet::{Cluster, Manifest, ScenarioReport, MANIFEST_FILE};
use serde::Serialize;

use super::Output;
use crate::init::{init_testnet, TestnetOptions, DEV_CHAIN_ID};
use crate::NodeConfig;

#[derive(Subcommand)]
pub(crate) enum TestnetCommand {
    /// Local testnets: several validators on 127.0.0.1, each its own process.
    #[command(subcommand)]
    Testnet(Testnet),
    /// The one command for a local network: a 4-validator testnet with default settings, created
    /// on first use in --home and resumed afterwards. Ctrl-C stops every node.
    Dev {
        /// Where the testnet lives.
        #[arg(long, default_value = ".pmr-dev")]
        home: PathBuf,
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Delete an existing testnet in --home and start a new chain.
        #[arg(long)]
        fresh: bool,
        /// First port (node i uses base+10i: p2p, +1 gossip, +2 gRPC, +3 metrics, +4 content).
        #[arg(long, default_value_t = 26600)]
        base_port: u16,
        /// For benchmarks that price the trust boundary only: start every node with
        /// `--insecure --no-auth` (plaintext gRPC, no caller checked). Clients then connect to
        /// http:// URLs with --insecure. Never for records that matter.
        #[arg(long)]
        insecure_no_auth: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum Testnet {
    /// Write a testnet: per node keys, genesis and config on 127.0.0.1 ports that do not clash.
    Init {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory to create the testnet in.
        #[arg(long)]
        home: PathBuf,
        /// Chain id of the new chain.
        #[arg(long, default_value_t = DEV_CHAIN_ID)]
        chain_id: u64,
        /// First port (node i uses base+10i: p2p, +1 gossip, +2 gRPC, +3 metrics, +4 content);
        /// without it, ports the OS reports free.
        #[arg(long)]
        base_port: Option<u16>,
        /// How long a proposer waits for transactions before proposing an empty block.
        #[arg(long, value_parser = humantime::parse_duration)]
        empty_block_interval: Option<Duration>,
        /// One address per node, comma-separated: node i listens on the i-th (instead of
        /// 127.0.0.1), its peers dial it there and its TLS certificate names it. For nodes in
        /// network namespaces of their own (the scenario harness's `namespaces = true`).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<std::net::IpAddr>,
        /// Further nodes outside the genesis validator set (full nodes with keys of their own,
        /// peers of every node), which the council can make validators later.
        #[arg(long, default_value_t = 0)]
        spare: usize,
    },
    /// Start every node of a testnet as its own process; print their endpoints; stop them all on
    /// Ctrl-C.
    Up {
        /// The testnet's directory.
        #[arg(long)]
        home: PathBuf,
    },
    /// Run a scenario manifest (testnet/scenarios/*/*.toml): a fresh testnet, load, faults on
    /// schedule (kill, stop, pause, resume, start, wipe), then the invariants (no fork, no loss,
    /// same state, progress while at most f nodes are down, recovery). Exits non-zero when an
    /// invariant fails.
    Run {
        /// Scenario manifests to run one after the other.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Keep each scenario's testnet here (DIR/NAME) instead of a temporary directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

impl TestnetCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            TestnetCommand::Testnet(Testnet::Init {
                validators,
                home,
                chain_id,
                base_port,
                empty_block_interval,
                hosts,
                spare,
            }) => {
                let mut template = NodeConfig::default();
                if let Some(d) = empty_block_interval {
                    template.consensus.empty_block_interval = d;
                }
                let manifest = init_testnet(&TestnetOptions {
                    dir: home.clone(),
                    validators,
                    chain_id,
                    base_port,
                    template,
                    hosts,
                    spare,
                })?;
                println!(
                    "testnet of {} validators written to {}",
                    manifest.nodes.len(),
                    home.display()
                );
                print_endpoints(&manifest, false);
                println!("start it with: pmr testnet up --home {}", home.display());
                Ok(())
            }
            TestnetCommand::Testnet(Testnet::Up { home }) => up(&home, false).await,
            TestnetCommand::Testnet(Testnet::Run { manifests, keep }) => {
                run_scenarios(&manifests, keep.as_deref(), out).await
            }
            TestnetCommand::Dev {
                home,
                validators,
                fresh,
                base_port,
                insecure_no_auth,
            } => {
                if fresh && home.exists() {
                    std::fs::remove_dir_all(&home)
                        .wrap_err_with(|| format!("cannot remove {}", home.display()))?;
                }
                if home.join(MANIFEST_FILE).exists() {
                    println!(
                        "resuming the testnet in {} (use --fresh for a new chain)",
                        home.display()
                    );
                } else {
                    init_testnet(&TestnetOptions {
                        dir: home.clone(),
                        validators,
                        chain_id: DEV_CHAIN_ID,
                        base_port: Some(base_port),
                        template: NodeConfig::default(),
                        hosts: Vec::new(),
                        spare: 0,
                    })?;
                    println!(
                        "created a {validators}-validator testnet in {}",
                        home.display()
                    );
                }
                up(&home, insecure_no_auth).await
            }
        }
    }
}

fn print_endpoints(m: &Manifest, plaintext: bool) {
    println!("{:<8} {:<28} {:<36}", "node", "gRPC", "metrics");
    for n in &m.nodes {
        let rpc = if plaintext {
            n.rpc.replacen("https://", "http://", 1)
        } else {
            n.rpc.clone()
        };
        println!("{:<8} {:<28} {:<36}", n.name, rpc, n.metrics);
    }
}

/// Runs the testnet in `dir` until Ctrl-C; `insecure_no_auth` starts its nodes with
/// `--insecure --no-auth` (benchmarks only).
async fn up(dir: &Path, insecure_no_auth: bool) -> Result<()> {
    super::init_node_tracing("warn", false);
    let bin = std::env::current_exe().wrap_err("cannot find the pmr binary")?;
    let mut cluster = Cluster::open(dir, &bin)?;
    if insecure_no_auth {
        cluster.start_args = vec!["--insecure".into(), "--no-auth".into()];
        eprintln!("WARNING: plaintext gRPC and no caller checked (--insecure-no-auth): for benchmarks only");
    }
    cluster.start_all()?;
    for i in 0..cluster.len() {
        cluster
            .client(i, Duration::from_secs(60))
            .await
            .wrap_err_with(|| {
                format!(
                    "node{i} did not start; its log:\n{}",
                    cluster.log_tail(i, 30)
                )
            })?;
    }
    println!(
        "testnet running ({} nodes, logs in <home>/nodeN/node.log):",
        cluster.len()
    );
    print_endpoints(cluster.manifest(), insecure_no_auth);
    println!("accounts: {}", dir.join("accounts").display());
    println!("try: pmr status --rpc {}", cluster.rpc(0));
    println!("Ctrl-C stops every node.");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = check.tick() => {
                if let Some(i) = (0..cluster.len()).find(|&i| !cluster.is_running(i)) {
                    eprintln!("node{i} exited; last log lines:\n{}", cluster.log_tail(i, 20));
                    eprintln!("stopping the testnet");
                    stop_all(&mut cluster).await;
                    eyre::bail!("node{i} exited unexpectedly");
                }
            }
        }
    }
    println!("stopping {} nodes", cluster.len());
    stop_all(&mut cluster).await;
    Ok(())
}

async fn stop_all(cluster: &mut Cluster) {
    for i in 0..cluster.len() {
        if cluster.is_running(i) {
            let _ = cluster.stop(i, Duration::from_secs(10)).await;
        }
    }
}

/// A scenario the harness could not run to the end (a node that never came up, say).
#[derive(Serialize)]
struct CouldNotRun {
    name: String,
    error: String,
}

/// `pmr testnet run --output json`.
#[derive(Serialize)]
struct ScenarioRuns {
    reports: Vec<ScenarioReport>,
    could_not_run: Vec<CouldNotRun>,
}

async fn run_scenarios(manifests: &[PathBuf], keep: Option<&Path>, out: Output) -> Result<()> {
    // The harness's and the load generator's own warnings (e.g. a node's block stream ending).
    pmr_cli::init_cli_tracing();
    let bin = std::env::current_exe().wrap_err("cannot find the pmr binary itself")?;
    // Every manifest is checked before anything runs.
    let scenarios = manifests
        .iter()
        .map(|m| Ok((m, pmr_testnet::Scenario::load(m)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut runs = ScenarioRuns {
        reports: Vec::new(),
        could_not_run: Vec::new(),
    };
    for (m, scenario) in scenarios {
        let tmp = tempfile::tempdir().wrap_err("cannot create a temporary directory")?;
        let dir = match keep {
            Some(k) => k.join(&scenario.name),
            None => tmp.path().join("net"),
        };
        eprintln!("running scenario {} ({})", scenario.name, m.display());
        match pmr_testnet::run_scenario(&scenario, &bin, &dir).await {
            Ok(report) => {
                if out == Output::Text {
                    print!("{}", report.to_text());
                }
                runs.reports.push(report);
            }
            Err(e) => {
                let hint = match keep {
                    Some(_) => format!(" (its nodes' logs are in {})", dir.display()),
                    None => " (run again with --keep DIR to keep the nodes' logs)".into(),
                };
                eprintln!("scenario {} could not run: {e}{hint}", scenario.name);
                if out == Output::Text {
                    println!("scenario {}: could not run: {e}\nFAILED", scenario.name);
                }
                runs.could_not_run.push(CouldNotRun {
                    name: scenario.name.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    }
    let failed: Vec<&str> = runs
        .reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .chain(runs.could_not_run.iter().map(|c| c.name.as_str()))
        .collect();
    if !failed.is_empty() {
        eyre::bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}
