//! `pmr`: the PMR Ledger node and its command-line client.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use eyre::{Context, Result};
use pmr_node::testnet::{init_node, init_testnet, TestnetOptions, DEV_CHAIN_ID};
use pmr_node::{lifecycle, Home, NodeConfig};
use pmr_testnet::{Cluster, Manifest, MANIFEST_FILE};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// jemalloc for Rust allocations (RocksDB's C++ keeps glibc: see the workspace `Cargo.toml`).
/// revm allocates per transaction and a block of mints allocates megabytes (receipts, change
/// sets); glibc handed large blocks back to the kernel and took fresh zeroed pages again every
/// block, where jemalloc reuses them (`cargo bench --workspace --bench execution`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "pmr",
    version,
    about = "PMR Ledger: a permissioned ledger for patient medical records",
    long_about = "PMR Ledger node and client.\n\nRun a local 4-validator testnet with `pmr dev`; \
                  run one node with `pmr start --home DIR`; query a node with `pmr status --rpc URL`; \
                  store an encrypted file with `pmr blob put FILE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Args)]
struct ClientArgs {
    /// gRPC endpoint of a node.
    #[arg(long, env = "PMR_RPC", default_value = "http://127.0.0.1:26602")]
    rpc: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node's home directory: keys (mode 0600), config.toml with defaults, genesis.
    Init {
        /// Home directory to create.
        #[arg(long)]
        home: PathBuf,
        /// Node name in logs and status.
        #[arg(long, default_value = "pmr-node")]
        moniker: String,
        /// Join the network of this genesis file; without it, a single-validator development
        /// chain is created with this node as its validator.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Chain id of a new development chain.
        #[arg(long, default_value_t = DEV_CHAIN_ID)]
        chain_id: u64,
    },
    /// Run a node until SIGINT or SIGTERM.
    Start {
        /// The node's home directory (config.toml, genesis.json, keys/, data/).
        #[arg(long)]
        home: PathBuf,
        /// Override `rpc_listen` of the config.
        #[arg(long)]
        rpc_listen: Option<std::net::SocketAddr>,
        /// Override `log_level` of the config (RUST_LOG overrides both).
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Local testnets: several validators on 127.0.0.1, each its own process.
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
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
    },
    /// Show a node's status: chain, height, latest block, validators, peers.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Misbehavior evidence a node recorded: validators that signed two different proposals,
    /// prevotes or precommits for one height and round (e.g. two processes with one key).
    Evidence {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Benchmarks against a running network.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Show a committed block with its commit certificate.
    Block {
        /// Height of the block.
        height: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypted blobs (record contents) in the nodes' content store.
    Blob {
        #[command(subcommand)]
        command: BlobCommand,
    },
    /// A node's own keys: print its identities, or give it a separate p2p identity.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Identities: passphrase-encrypted keystores of hospitals, patients and doctors.
    Identity {
        #[command(subcommand)]
        command: lifecycle::IdentityCommand,
    },
    /// Network administration (the ADMIN account): hospitals, custodians, permissions.
    Admin {
        #[command(subcommand)]
        command: lifecycle::AdminCommand,
    },
    /// Hospitals: register patients.
    Patient {
        #[command(subcommand)]
        command: lifecycle::PatientCommand,
    },
    /// Medical records: create, update, list, open.
    Record {
        #[command(subcommand)]
        command: lifecycle::RecordCommand,
    },
    /// Patients: grant and revoke access to their records.
    Access {
        #[command(subcommand)]
        command: lifecycle::AccessCommand,
    },
    /// Every event of a record (mint, versions, grants, revokes, share releases) with its block
    /// height; --proof FILE also exports what proves them.
    Audit {
        #[arg(long)]
        token: alloy_primitives::U256,
        /// Write the events' receipts, Merkle proofs, blocks and commit certificates here.
        #[arg(long)]
        proof: Option<PathBuf>,
        #[command(flatten)]
        net: lifecycle::NetArgs,
    },
    /// Check an audit proof file offline against a genesis file: every receipt is in a block
    /// that more than 2/3 of the genesis validators signed.
    VerifyProof {
        file: PathBuf,
        /// The token the proof must be about.
        #[arg(long)]
        token: alloy_primitives::U256,
        #[arg(long)]
        genesis: PathBuf,
        #[arg(long, value_enum, default_value_t = lifecycle::Format::Text)]
        output: lifecycle::Format,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the node's validator address and key, p2p peer id, custody key and operator
    /// account (what other operators put in their genesis and peer lists).
    Show {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Create keys/network_key.json: a p2p identity separate from the node (validator) key.
    /// Peers allow a validator by the peer id its node key implies unless they list another
    /// in their config, so every peer must then list the printed peer id. Refuses to
    /// overwrite an existing key.
    NewNetworkKey {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Subcommand)]
enum BlobCommand {
    /// Encrypt FILE on this machine with a fresh key (XChaCha20-Poly1305), upload only the
    /// ciphertext, write the key to FILE.key (mode 0600) and print the blob's root CID.
    Put {
        /// The file to store.
        file: PathBuf,
        /// Write the key here instead of FILE.key (never overwritten).
        #[arg(long)]
        key: Option<PathBuf>,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a blob (from any node: it fetches from its peers), decrypt it with KEYFILE and
    /// write the plaintext to -o FILE (mode 0600), only once all of it has authenticated.
    Get {
        /// Root CID of the blob.
        cid: String,
        /// Where to write the plaintext.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Key file written by `pmr blob put`.
        #[arg(long)]
        key: PathBuf,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Whether the node holds a blob, pins it, its size and which peers hold it.
    Stat {
        cid: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Operators: fetch a blob from peers if needed and pin it on the node.
    Pin {
        cid: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Operators: unpin a blob; its blocks go at the node's next garbage collection.
    Unpin {
        cid: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// End-to-end record latency: create (encrypt, upload, split, mint, replicated to every
    /// node) and open (collect shares, reconstruct, fetch, decrypt) of COUNT records.
    Records {
        /// gRPC endpoints of the network, comma separated.
        #[arg(long, value_delimiter = ',', default_value = lifecycle::DEV_RPC)]
        rpc: Vec<String>,
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Record size in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
        /// Key file of a hospital account.
        #[arg(long, default_value = ".pmr-dev/accounts/hospital.json")]
        hospital_key: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Open-loop load: offer transactions at a fixed rate from many accounts and report offered
    /// and finalized throughput, commit latency percentiles and rejects by reason.
    Load {
        /// gRPC endpoints, comma separated; transactions are spread over them.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "http://127.0.0.1:26602,http://127.0.0.1:26612,http://127.0.0.1:26622,http://127.0.0.1:26632"
        )]
        rpc: Vec<String>,
        /// Offered transactions per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// How long to offer load.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// What each transaction does: noop, transfer or mint.
        #[arg(long, default_value = "noop")]
        kind: pmr_testnet::LoadKind,
        /// Number of sending accounts (permitted by the admin before the run).
        #[arg(long, default_value_t = 200)]
        accounts: usize,
        /// Key file of the network admin.
        #[arg(long, default_value = ".pmr-dev/accounts/admin.json")]
        admin_key: PathBuf,
        /// How long to wait for accepted transactions to commit after the offering stops.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        drain: Duration,
        /// Most submissions in flight.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
        /// Send a transaction again, to the next node, when it has not committed this long
        /// after it was last sent (its node may have crashed holding it), and keep one every
        /// node answered "busy" to send later; `0s` (the default, so the offered load is
        /// exactly `--rate`) never resends. A submission always moves on to the next node when
        /// one cannot be reached. Scenarios (`pmr testnet run`) resend after 3 s.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        resubmit_after: Duration,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TestnetCommand {
    /// Write a testnet: per node keys, genesis and config on 127.0.0.1 ports that do not clash.
    Init {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory to create the testnet in.
        #[arg(long)]
        home: PathBuf,
        #[arg(long, default_value_t = DEV_CHAIN_ID)]
        chain_id: u64,
        /// First port (node i uses base+10i: p2p, +1 gossip, +2 gRPC, +3 metrics, +4 content);
        /// without it, ports the OS reports free.
        #[arg(long)]
        base_port: Option<u16>,
        /// How long a proposer waits for transactions before proposing an empty block.
        #[arg(long, value_parser = humantime::parse_duration)]
        empty_block_interval: Option<Duration>,
    },
    /// Start every node of a testnet as its own process; print their endpoints; stop them all on
    /// Ctrl-C.
    Up {
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
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// RUST_LOG when set, else `level`.
fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

fn init_tracing(level: &str, json: bool) {
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter(level));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Warnings and errors of a command that prints a report, on stderr so that `--output json`
/// stays parseable (RUST_LOG overrides the level).
fn init_cli_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("warn"))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    check_cpu()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            home,
            moniker,
            genesis,
            chain_id,
        } => {
            let home = Home::new(home);
            init_node(&home, &moniker, genesis.as_deref(), chain_id)?;
            println!("initialised {}", home.root.display());
            println!("start it with: pmr start --home {}", home.root.display());
            Ok(())
        }
        Command::Start {
            home,
            rpc_listen,
            log_level,
        } => start(Home::new(home), rpc_listen, log_level).await,
        Command::Testnet { command } => match command {
            TestnetCommand::Init {
                validators,
                home,
                chain_id,
                base_port,
                empty_block_interval,
            } => {
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
                })?;
                println!(
                    "testnet of {} validators written to {}",
                    manifest.nodes.len(),
                    home.display()
                );
                print_endpoints(&manifest);
                println!("start it with: pmr testnet up --home {}", home.display());
                Ok(())
            }
            TestnetCommand::Up { home } => up(&home).await,
            TestnetCommand::Run {
                manifests,
                keep,
                output,
            } => run_scenarios(&manifests, keep.as_deref(), output).await,
        },
        Command::Dev {
            home,
            validators,
            fresh,
            base_port,
        } => {
            if fresh && home.exists() {
                std::fs::remove_dir_all(&home)
                    .wrap_err_with(|| format!("cannot remove {}", home.display()))?;
            }
            if !home.join(MANIFEST_FILE).exists() {
                init_testnet(&TestnetOptions {
                    dir: home.clone(),
                    validators,
                    chain_id: DEV_CHAIN_ID,
                    base_port: Some(base_port),
                    template: NodeConfig::default(),
                })?;
                println!(
                    "created a {validators}-validator testnet in {}",
                    home.display()
                );
            } else {
                println!(
                    "resuming the testnet in {} (use --fresh for a new chain)",
                    home.display()
                );
            }
            up(&home).await
        }
        Command::Status { client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let s = c.status().await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status_json(&s))?),
                Output::Text => print_status(&s),
            }
            Ok(())
        }
        Command::Evidence { client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let evidence: Vec<serde_json::Value> = c
                .evidence()
                .await?
                .iter()
                .map(|e| {
                    let value = |v: &[u8]| {
                        if v.is_empty() {
                            "nil".to_string()
                        } else {
                            hex0x(v)
                        }
                    };
                    serde_json::json!({
                        "height": e.height,
                        "round": e.round,
                        "validator": hex0x(&e.validator),
                        "kind": e.kind,
                        "values": [value(&e.first_value), value(&e.second_value)],
                        "signed": [hex0x(&e.first_signed), hex0x(&e.second_signed)],
                    })
                })
                .collect();
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&evidence)?),
                Output::Text if evidence.is_empty() => println!("no misbehavior recorded"),
                Output::Text => {
                    for e in &evidence {
                        println!(
                            "height {} round {}: validator {} signed two {}s ({} and {})",
                            e["height"],
                            e["round"],
                            e["validator"].as_str().unwrap_or_default(),
                            e["kind"].as_str().unwrap_or_default(),
                            e["values"][0].as_str().unwrap_or_default(),
                            e["values"][1].as_str().unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Load {
                    rpc,
                    rate,
                    duration,
                    kind,
                    accounts,
                    admin_key,
                    drain,
                    max_in_flight,
                    resubmit_after,
                    output,
                },
        } => {
            init_cli_tracing();
            let admin = pmr_node::testnet::load_account(&admin_key)?;
            let report = pmr_testnet::run_load(pmr_testnet::LoadSpec {
                rpcs: rpc,
                rate,
                duration,
                kind,
                accounts,
                admin,
                drain,
                max_in_flight,
                resubmit_after: (!resubmit_after.is_zero()).then_some(resubmit_after),
            })
            .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => print!("{}", report.to_text()),
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Records {
                    rpc,
                    count,
                    size,
                    hospital_key,
                    output,
                },
        } => {
            let r = lifecycle::bench_records(&rpc, count, size, &hospital_key).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Output::Text => println!(
                    "{} records of {} bytes on {} nodes\ncreate (until minted and held by every node): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms\nopen (shares, reconstruct, fetch, decrypt):    p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                    r.records, r.size, r.nodes,
                    r.create_ms.p50, r.create_ms.p90, r.create_ms.p99, r.create_ms.max,
                    r.open_ms.p50, r.open_ms.p90, r.open_ms.p99, r.open_ms.max
                ),
            }
            Ok(())
        }
        Command::Blob { command } => blob(command).await,
        Command::Keys { command } => keys_command(command),
        Command::Identity { command } => lifecycle::identity(command).await,
        Command::Admin { command } => lifecycle::admin(command).await,
        Command::Patient { command } => lifecycle::patient(command).await,
        Command::Record { command } => lifecycle::record(command).await,
        Command::Access { command } => lifecycle::access(command).await,
        Command::Audit { token, proof, net } => lifecycle::audit(token, proof, net).await,
        Command::VerifyProof {
            file,
            token,
            genesis,
            output,
        } => {
            let events = lifecycle::verify_proof(&file, &genesis, token)?;
            match output {
                lifecycle::Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"verified": true, "events": events})
                    )?
                ),
                lifecycle::Format::Text => {
                    println!(
                        "verified: {} events, each in a block certified by the genesis validators",
                        events.len()
                    );
                    for (h, kind, detail) in events {
                        println!("height {h:>6}  {kind:<9} {detail}");
                    }
                }
            }
            Ok(())
        }
        Command::Block { height, client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let b = c.block(height).await?;
            let j = block_json(&b);
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&j)?),
                Output::Text => {
                    let h = b.header.unwrap_or_default();
                    println!("height      {}", h.height);
                    println!("hash        0x{}", hex::encode(&b.hash));
                    println!("parent      0x{}", hex::encode(&h.parent_hash));
                    println!("time (ms)   {}", h.timestamp_ms);
                    println!("proposer    0x{}", hex::encode(&h.proposer));
                    println!("txs         {}", b.transactions.len());
                    println!("state root  0x{}", hex::encode(&h.state_root));
                    println!("gas used    {}", h.gas_used);
                    let sigs = b.certificate.map(|c| c.signatures.len()).unwrap_or(0);
                    println!("commit sigs {sigs}");
                }
            }
            Ok(())
        }
    }
}

async fn start(
    home: Home,
    rpc_listen: Option<std::net::SocketAddr>,
    log_level: Option<String>,
) -> Result<()> {
    let mut config = NodeConfig::load(&home.config())?;
    if let Some(addr) = rpc_listen {
        config.rpc_listen = addr;
    }
    if let Some(level) = log_level {
        config.log_level = level;
    }
    init_tracing(&config.log_level, config.log_json);
    let mut node = pmr_node::spawn(&home, config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = node.wait() => {
            if let Err(e) = &result {
                error!(target: "pmr::node", error = %e, "node halted");
            }
            result
        }
        _ = tokio::signal::ctrl_c() => {
            info!(target: "pmr::node", "SIGINT: shutting down");
            node.shutdown().await;
            Ok(())
        }
        _ = term.recv() => {
            info!(target: "pmr::node", "SIGTERM: shutting down");
            node.shutdown().await;
            Ok(())
        }
    }
}

async fn run_scenarios(
    manifests: &[PathBuf],
    keep: Option<&std::path::Path>,
    output: Output,
) -> Result<()> {
    // The harness's and the load generator's own warnings (e.g. a node's block stream ending).
    init_cli_tracing();
    let bin = std::env::current_exe().wrap_err("cannot find the pmr binary itself")?;
    // Every manifest is checked before anything runs.
    let scenarios = manifests
        .iter()
        .map(|m| Ok((m, pmr_testnet::Scenario::load(m)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut reports = Vec::new();
    // Scenarios the harness could not run to the end (a node that never came up, say): the
    // others still run and report.
    let mut errors: Vec<(String, String)> = Vec::new();
    for (m, scenario) in scenarios {
        let tmp = tempfile_dir()?;
        let dir = match keep {
            Some(k) => k.join(&scenario.name),
            None => tmp.join("net"),
        };
        eprintln!("running scenario {} ({})", scenario.name, m.display());
        let result = pmr_testnet::run_scenario(&scenario, &bin, &dir).await;
        if keep.is_none() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        match result {
            Ok(report) => {
                if output == Output::Text {
                    print!("{}", report.to_text());
                }
                reports.push(report);
            }
            Err(e) => {
                let hint = if keep.is_some() {
                    format!(" (its nodes' logs are in {})", dir.display())
                } else {
                    " (run again with --keep DIR to keep the nodes' logs)".to_string()
                };
                eprintln!("scenario {} could not run: {e}{hint}", scenario.name);
                if output == Output::Text {
                    println!("scenario {}: could not run: {e}\nFAILED", scenario.name);
                }
                errors.push((scenario.name.clone(), e.to_string()));
            }
        }
    }
    if output == Output::Json {
        let errors: Vec<_> = errors
            .iter()
            .map(|(name, error)| serde_json::json!({"name": name, "error": error}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "reports": reports,
                "could_not_run": errors,
            }))?
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .chain(errors.iter().map(|(n, _)| n.as_str()))
        .collect();
    if !failed.is_empty() {
        eyre::bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

/// RocksDB is compiled for hardware CRC32C (SSE4.2 + PCLMUL, see `.cargo/config.toml`): say so
/// plainly instead of dying of an illegal instruction on a CPU without them.
fn check_cpu() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if !(std::is_x86_feature_detected!("sse4.2") && std::is_x86_feature_detected!("pclmulqdq")) {
        eyre::bail!(
            "this CPU lacks SSE4.2 or PCLMUL, which this build of pmr (its RocksDB) needs; every \
             x86-64 server CPU since 2010 has both. On such a machine, build without the \
             CXXFLAGS/CFLAGS of .cargo/config.toml"
        );
    }
    Ok(())
}

fn keys_command(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Show { home, output } => {
            let home = Home::new(home);
            let key = pmr_node::keys::load_node_key(&home.node_key())?;
            let network = pmr_node::keys::network_identity(&home, &key)?;
            let public = key.public_key();
            let address = pmr_primitives::ValidatorAddress::from_public_key(public.as_bytes());
            let custody = pmr_node::keys::load_custody_key(&home.custody_key())
                .ok()
                .map(|k| hex::encode(pmr_shares::X25519PublicKey::from(&k).as_bytes()));
            let operator = pmr_node::testnet::load_account(&home.operator_key())
                .ok()
                .map(|w| w.address().to_string());
            let j = serde_json::json!({
                "validator_address": address.0.to_string(),
                "consensus_key": hex::encode(public.as_bytes()),
                "peer_id": network.public().to_peer_id().to_string(),
                "separate_network_key": home.network_key().exists(),
                "custody_key": custody,
                "operator": operator,
            });
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&j)?),
                Output::Text => {
                    println!(
                        "validator address  {}",
                        j["validator_address"].as_str().unwrap_or_default()
                    );
                    println!(
                        "consensus key      {}",
                        j["consensus_key"].as_str().unwrap_or_default()
                    );
                    println!(
                        "peer id            {}",
                        j["peer_id"].as_str().unwrap_or_default()
                    );
                    println!(
                        "custody key        {}",
                        j["custody_key"].as_str().unwrap_or("none")
                    );
                    println!(
                        "operator           {}",
                        j["operator"].as_str().unwrap_or("none")
                    );
                }
            }
            Ok(())
        }
        KeysCommand::NewNetworkKey { home } => {
            let home = Home::new(home);
            let key = pmr_node::keys::generate_node_key(&home.network_key())?;
            let peer = pmr_consensus::network_keypair(&key).public().to_peer_id();
            println!("{peer}");
            Ok(())
        }
    }
}

/// A fresh directory under the system temp dir.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "pmr-scenario-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

async fn blob(command: BlobCommand) -> Result<()> {
    match command {
        BlobCommand::Put {
            file,
            key,
            quiet,
            client,
        } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let put = pmr_node::blobs::put_file(&c, &file, key.as_deref(), !quiet).await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&put)?),
                Output::Text => {
                    println!("{}", put.root_cid);
                    eprintln!(
                        "stored {} ({} bytes, {} encrypted); key written to {} (mode 0600): keep it, the blob cannot be read without it",
                        file.display(),
                        put.plaintext_size,
                        put.size,
                        put.key_file.display()
                    );
                }
            }
            Ok(())
        }
        BlobCommand::Get {
            cid,
            out,
            key,
            quiet,
            client,
        } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let got = pmr_node::blobs::get_file(&c, &cid, &out, &key, !quiet).await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&got)?),
                Output::Text => println!("wrote {} bytes to {}", got.bytes, got.output.display()),
            }
            Ok(())
        }
        BlobCommand::Stat { cid, client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            print_blob_stat(&c.blob_stat(&cid).await?, client.output)
        }
        BlobCommand::Pin { cid, client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            print_blob_stat(&c.pin(&cid).await?, client.output)
        }
        BlobCommand::Unpin { cid, client } => {
            let c = pmr_client::PmrClient::connect(&client.rpc).await?;
            let was = c.unpin(&cid).await?;
            match client.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"root_cid": cid, "was_pinned": was})
                ),
                Output::Text if was => {
                    println!("unpinned {cid}; its blocks go at the next garbage collection")
                }
                Output::Text => println!("{cid} was not pinned"),
            }
            Ok(())
        }
    }
}

fn print_blob_stat(s: &pmr_client::BlobStat, output: Output) -> Result<()> {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "root_cid": s.root_cid,
                "local": s.local,
                "pinned": s.pinned,
                "size": s.size,
                "blocks_local": s.blocks_local,
                "replicas": s.replica_peer_ids,
            }))?
        ),
        Output::Text => {
            println!("root cid      {}", s.root_cid);
            println!("local         {}", s.local);
            println!("pinned        {}", s.pinned);
            match s.size {
                Some(n) => println!("size          {n}"),
                None => println!("size          unknown (root not on this node)"),
            }
            println!("blocks here   {}", s.blocks_local);
            println!("replicas      {}", s.replica_peer_ids.len());
            for p in &s.replica_peer_ids {
                println!("  {p}");
            }
        }
    }
    Ok(())
}

fn print_endpoints(m: &Manifest) {
    println!("{:<8} {:<28} {:<36}", "node", "gRPC", "metrics");
    for n in &m.nodes {
        println!("{:<8} {:<28} {:<36}", n.name, n.rpc, n.metrics);
    }
}

async fn up(dir: &std::path::Path) -> Result<()> {
    init_tracing("warn", false);
    let bin = std::env::current_exe().wrap_err("cannot find the pmr binary")?;
    let mut cluster = Cluster::open(dir, &bin)?;
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
    print_endpoints(cluster.manifest());
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
                for i in 0..cluster.len() {
                    if !cluster.is_running(i) {
                        eprintln!("node{i} exited; last log lines:\n{}", cluster.log_tail(i, 20));
                        eprintln!("stopping the testnet");
                        stop_all(&mut cluster).await;
                        eyre::bail!("node{i} exited unexpectedly");
                    }
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

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fn status_json(s: &pmr_client::NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "chain_id": s.chain_id,
        "node": s.node_name,
        "height": s.height,
        "latest_hash": hex0x(&s.latest_hash),
        "latest_timestamp_ms": s.latest_timestamp_ms,
        "genesis_hash": hex0x(&s.genesis_hash),
        "state_root": hex0x(&s.state_root),
        "syncing": s.syncing,
        "mempool_size": s.mempool_size,
        "validator_address": (!s.validator_address.is_empty()).then(|| hex0x(&s.validator_address)),
        "validators": s.validators.iter().map(|v| serde_json::json!({
            "name": v.name, "address": hex0x(&v.address), "voting_power": v.voting_power,
        })).collect::<Vec<_>>(),
        "peers": s.peers.iter().map(|p| serde_json::json!({"peer_id": p.peer_id, "address": p.address})).collect::<Vec<_>>(),
    })
}

fn print_status(s: &pmr_client::NodeStatus) {
    println!("node          {}", s.node_name);
    println!("chain id      {}", s.chain_id);
    println!("height        {}", s.height);
    println!("latest hash   {}", hex0x(&s.latest_hash));
    println!("state root    {}", hex0x(&s.state_root));
    println!("syncing       {}", s.syncing);
    println!("mempool       {}", s.mempool_size);
    println!("validators    {}", s.validators.len());
    for v in &s.validators {
        println!(
            "  {:<10} {}  power {}",
            v.name,
            hex0x(&v.address),
            v.voting_power
        );
    }
    println!("peers         {}", s.peers.len());
    for p in &s.peers {
        println!("  {} {}", p.peer_id, p.address);
    }
}

fn block_json(b: &pmr_client::proto::BlockWithCertificate) -> serde_json::Value {
    let h = b.header.clone().unwrap_or_default();
    serde_json::json!({
        "hash": hex0x(&b.hash),
        "height": h.height,
        "parent_hash": hex0x(&h.parent_hash),
        "timestamp_ms": h.timestamp_ms,
        "proposer": hex0x(&h.proposer),
        "tx_root": hex0x(&h.tx_root),
        "state_root": hex0x(&h.state_root),
        "receipts_root": hex0x(&h.receipts_root),
        "gas_used": h.gas_used,
        "transactions": b.transactions.iter().map(|t| hex0x(t)).collect::<Vec<_>>(),
        "certificate": b.certificate.as_ref().map(|c| serde_json::json!({
            "round": c.round,
            "signatures": c.signatures.iter().map(|s| serde_json::json!({
                "validator": hex0x(&s.validator), "signature": hex0x(&s.signature),
            })).collect::<Vec<_>>(),
        })),
    })
}
