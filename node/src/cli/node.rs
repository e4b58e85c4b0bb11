//! `pmr init`, `pmr start`, `pmr keys`: a node's home, its process, its keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;
use eyre::Result;
use serde::Serialize;
use tracing::{error, info};

use super::Output;
use crate::init::{init_node, DEV_CHAIN_ID};
use crate::{keys, Home, NodeConfig};

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
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
        rpc_listen: Option<SocketAddr>,
        /// Override `log_level` of the config (RUST_LOG overrides both).
        #[arg(long)]
        log_level: Option<String>,
        /// Serve the gRPC API in plaintext instead of TLS. Anyone on the network path can then
        /// read every answer (blocks, blobs) and rewrite the keys clients seal record shares
        /// to: only for a node whose clients run on the same machine.
        #[arg(long)]
        insecure: bool,
        /// For benchmarks that price the trust boundary only: with --insecure, check no
        /// caller's session or role (every method open to anyone who reaches the port). Never
        /// on a node that holds real records.
        #[arg(long, requires = "insecure")]
        no_auth: bool,
    },
    /// The network's TLS certificates: a CA, and node certificates it signs.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// A node's own keys: print its identities, or give it a separate p2p identity.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Restore a stopped node's database from a backup (`pmr backup`): the backup is copied to
    /// data/db.restoring and its state verified against its latest header there; only then
    /// does it replace the database, which is kept aside as data/db.replaced-TIME (never
    /// deleted). Start
    /// the node afterwards: it syncs the blocks committed since the backup from its peers.
    Restore {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        /// The backup directory (HOME/data/backups/NAME on the node that made it).
        #[arg(long)]
        from: PathBuf,
    },
    /// The node's execution state: check it against the chain's state root, or write and
    /// check snapshots of it.
    #[command(subcommand)]
    State(StateCommand),
    /// The genesis ceremony: build a network's genesis from its operators' public keys, and
    /// check it (see `docs/operators.md`).
    #[command(subcommand)]
    Genesis(super::genesis::GenesisCommand),
    /// The other nodes this node dials and lets in: add one from its operator's public key
    /// listing and announced addresses, or list them.
    #[command(subcommand)]
    Peer(super::peer::PeerCommand),
}

#[derive(Subcommand)]
pub(crate) enum StateCommand {
    /// Recompute the state root from every account, storage page and code on the node's disk
    /// and compare it with the root of the node's latest block header. Reads the whole state;
    /// run it on a stopped node. Fails (exit status 1) on any difference.
    Verify {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
    },
    /// Join by state sync: fetch the state of a peer's latest height (as this node's
    /// operator: needs PMR_KEY_PASSPHRASE), check it against that height's block and the
    /// validators' commit certificate (from the genesis), and write it into this node's empty
    /// data directory; `pmr start` then continues from the next height. Blocks before it stay
    /// with the peers that keep them. Run on a stopped node that holds no block.
    Sync {
        /// The node's home directory (config, genesis, keys, the network's CA).
        #[arg(long)]
        home: PathBuf,
        /// A peer's gRPC endpoint, e.g. https://node-b.example:26602.
        #[arg(long)]
        from: String,
    },
    /// Write the state at the node's latest height to one file (run it on a stopped node).
    Snapshot {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        /// The snapshot file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute a snapshot's state root from its entries and compare it with the root it
    /// names and, with --root, the one you trust (from a block header the network signed).
    /// A node loading a snapshot runs the same check and refuses one that fails it.
    VerifySnapshot {
        /// The snapshot file.
        snapshot: PathBuf,
        /// The state root it must have.
        #[arg(long)]
        root: Option<alloy_primitives::B256>,
    },
}

/// `pmr state verify`.
#[derive(Serialize)]
struct StateVerdict {
    height: u64,
    header_root: alloy_primitives::B256,
    computed_root: alloy_primitives::B256,
    accounts: u64,
    pages: u64,
    codes: u64,
    matches: bool,
}

impl fmt::Display for StateVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "height         {}", self.height)?;
        writeln!(f, "header root    {}", self.header_root)?;
        writeln!(f, "computed root  {}", self.computed_root)?;
        writeln!(
            f,
            "entries read   {} accounts, {} storage pages, {} codes",
            self.accounts, self.pages, self.codes
        )?;
        write!(
            f,
            "{}",
            if self.matches {
                "the stored state is the state the header commits to"
            } else {
                "MISMATCH: the stored state is not the state the header commits to"
            }
        )
    }
}

/// Opens the database at `path` (a stopped node's, or one being restored).
fn open_stopped_store(path: &std::path::Path) -> Result<pmr_storage::Store> {
    if !path.exists() {
        eyre::bail!(
            "{} holds no database: is this a node's home?",
            path.display()
        );
    }
    pmr_storage::Store::open(path).map_err(|e| {
        eyre::eyre!(
            "cannot open {} ({e}): stop the node first, this reads its database directly",
            path.display()
        )
    })
}

/// Copies the backup `from` into `home`'s data directory as `db.restoring`, verifies it there
/// (its state against its latest header), and only then puts it in place of the database,
/// which is kept aside. Returns the verdict.
fn restore(home: &Home, from: &std::path::Path) -> Result<StateVerdict> {
    if !from.join("CURRENT").is_file() {
        eyre::bail!(
            "{} is not a database backup (no CURRENT file)",
            from.display()
        );
    }
    let data = home.data();
    std::fs::create_dir_all(&data)?;
    let (from_abs, data_abs) = (from.canonicalize()?, data.canonicalize()?);
    if from_abs.starts_with(data_abs.join("db")) {
        eyre::bail!(
            "{} is the node's own database, not a backup",
            from.display()
        );
    }
    let db = home.db();
    if db.exists() {
        // Refuses while the node runs: its database is locked.
        drop(open_stopped_store(&db)?);
    }
    let staging = data.join("db.restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() || !kind.is_file() {
            eyre::bail!(
                "{} in the backup is not a plain file: refusing to restore from it",
                entry.path().display()
            );
        }
        let to = staging.join(entry.file_name());
        std::fs::copy(entry.path(), &to)?;
        std::fs::File::open(&to)?.sync_all()?;
    }
    std::fs::File::open(&staging)?.sync_all()?;
    let verdict = verify_state_at(home, &staging)?;
    if !verdict.matches {
        return Ok(verdict);
    }
    if db.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = data.join(format!("db.replaced-{stamp}"));
        std::fs::rename(&db, &aside)?;
        println!("the database it replaces is kept at {}", aside.display());
    }
    std::fs::rename(&staging, &db)?;
    std::fs::File::open(&data)?.sync_all()?;
    Ok(verdict)
}

/// `pmr state verify --home`: the recomputed root against the latest header's.
fn verify_state(home: &Home) -> Result<StateVerdict> {
    verify_state_at(home, &home.db())
}

/// [`verify_state`] of the database at `db` (the node's, or one being restored).
fn verify_state_at(home: &Home, db: &std::path::Path) -> Result<StateVerdict> {
    let genesis = pmr_primitives::Genesis::load(&home.genesis())?;
    let store = open_stopped_store(db)?;
    let check = pmr_execution::Executor::verify_stored_state(&store)?;
    let chain = pmr_consensus::ChainStore::open(store, genesis.hash())?;
    let header_root = if check.height == 0 {
        // Height 0 has no header: its root is the one the genesis file gives.
        check.recorded_root
    } else {
        chain
            .block(check.height)?
            .ok_or_else(|| eyre::eyre!("no block at the executed height {}", check.height))?
            .header
            .state_root
    };
    let chain_height = chain.height()?;
    if chain_height != check.height {
        eyre::bail!(
            "the chain is at height {chain_height} but the executed state at {}: the database \
             is inconsistent",
            check.height
        );
    }
    Ok(StateVerdict {
        height: check.height,
        header_root,
        computed_root: check.computed_root,
        accounts: check.counts.accounts,
        pages: check.counts.pages,
        codes: check.counts.codes,
        matches: check.matches() && header_root == check.computed_root,
    })
}

#[derive(Subcommand)]
pub(crate) enum TlsCommand {
    /// Create the network's CA: OUT/ca.pem (give it to every node and client) and OUT/ca.key
    /// (mode 0600: keep it off the validators, with whoever signs node certificates).
    NewCa {
        /// Directory to write ca.pem and ca.key in.
        #[arg(long)]
        out: PathBuf,
    },
    /// On a node's host: make its TLS key (HOME/tls/node.key, 0600, never leaves the host) and
    /// a certificate request naming the host names and addresses clients reach it by. Send
    /// the request (public) to the CA holder (`pmr tls sign`).
    Request {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        #[command(flatten)]
        names: CertNames,
        /// The request file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// At the CA holder: sign a node's certificate request (`pmr tls request`) with the CA
    /// key. Send the certificate back with the CA certificate (`pmr tls install`).
    Sign {
        /// The CA's key (`pmr tls new-ca`).
        #[arg(long)]
        ca_key: PathBuf,
        /// The node's request.
        #[arg(long)]
        request: PathBuf,
        /// The certificate file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// On the node's host: put the signed certificate and the network's CA certificate in
    /// place (HOME/tls/node.pem, HOME/tls/ca.pem).
    Install {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        /// The certificate `pmr tls sign` made.
        #[arg(long)]
        cert: PathBuf,
        /// The network's CA certificate.
        #[arg(long)]
        ca_cert: PathBuf,
    },
    /// Sign a node's TLS certificate with the CA key: HOME/tls/node.pem and node.key (0600),
    /// naming the host names and addresses clients reach the node by. The node's key is made
    /// where the CA key is: for a network one organization runs; between organizations use
    /// `pmr tls request` and `pmr tls sign`.
    Issue {
        /// The CA's key (`pmr tls new-ca`).
        #[arg(long)]
        ca_key: PathBuf,
        /// The CA's certificate, copied to HOME/tls/ca.pem for reference.
        #[arg(long)]
        ca_cert: PathBuf,
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        #[command(flatten)]
        names: CertNames,
    },
}

/// The names a node certificate carries.
#[derive(clap::Args)]
pub(crate) struct CertNames {
    /// A DNS name clients use for the node (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// An IP address clients use for the node (repeatable).
    #[arg(long = "ip")]
    ips: Vec<std::net::IpAddr>,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a node's keys only, for a genesis ceremony: the validator key, and the operator
    /// and custody keys encrypted under PMR_KEY_PASSPHRASE (keys/custodian.json). No genesis,
    /// no admin key. Send `pmr keys show --output json` to the coordinator, then run `pmr init
    /// --genesis` with the genesis it returns (the keys are kept).
    Init {
        /// Home directory to create.
        #[arg(long)]
        home: PathBuf,
    },
    /// Print the node's validator address and key, p2p peer id, custody key and operator
    /// account (what other operators put in their genesis and peer lists).
    Show {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
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

/// `pmr keys show`.
#[derive(Serialize)]
struct NodeKeys {
    validator_address: String,
    consensus_key: String,
    peer_id: String,
    separate_network_key: bool,
    custody_key: Option<String>,
    operator: Option<String>,
}

impl fmt::Display for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        writeln!(f, "validator address  {}", self.validator_address)?;
        writeln!(f, "consensus key      {}", self.consensus_key)?;
        writeln!(f, "peer id            {}", self.peer_id)?;
        writeln!(f, "custody key        {}", none(&self.custody_key))?;
        write!(f, "operator           {}", none(&self.operator))
    }
}

/// A snapshot written or checked.
#[derive(Serialize)]
#[serde(transparent)]
struct SnapshotView(pmr_execution::SnapshotInfo);

impl fmt::Display for SnapshotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        writeln!(f, "height      {}", i.height)?;
        writeln!(
            f,
            "state root  {} (recomputed from its entries)",
            i.state_root
        )?;
        write!(
            f,
            "entries     {} accounts, {} storage pages, {} codes",
            i.counts.accounts, i.counts.pages, i.counts.codes
        )
    }
}

impl NodeCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            NodeCommand::Init {
                home,
                moniker,
                genesis,
                chain_id,
            } => {
                let home = Home::new(home);
                let joining = genesis.is_some();
                init_node(&home, &moniker, genesis.as_deref(), chain_id)?;
                println!("initialised {}", home.root.display());
                if joining {
                    println!(
                        "before starting it, have the network's CA sign its TLS certificate: \
                         pmr tls issue --ca-key CA_KEY --ca-cert CA_CERT --home {} --host NAME",
                        home.root.display()
                    );
                }
                println!("start it with: pmr start --home {}", home.root.display());
                Ok(())
            }
            NodeCommand::Start {
                home,
                rpc_listen,
                log_level,
                insecure,
                no_auth,
            } => start(Home::new(home), rpc_listen, log_level, insecure, no_auth).await,
            NodeCommand::Tls(TlsCommand::NewCa { out }) => {
                let (cert, key) = (out.join("ca.pem"), out.join("ca.key"));
                crate::tls::new_ca(&cert, &key)?;
                println!(
                    "CA certificate {} (share it), key {} (keep it safe)",
                    cert.display(),
                    key.display()
                );
                Ok(())
            }
            NodeCommand::Tls(TlsCommand::Request {
                home,
                names,
                out: file,
            }) => {
                let home = Home::new(home);
                let tls = NodeConfig::load(&home.config()).unwrap_or_default().rpc;
                crate::tls::request(&names.hosts, &names.ips, &home.resolve(&tls.tls_key), &file)?;
                println!(
                    "TLS key {} made; send the request {} to the CA holder",
                    home.resolve(&tls.tls_key).display(),
                    file.display()
                );
                Ok(())
            }
            NodeCommand::Tls(TlsCommand::Sign {
                ca_key,
                request,
                out: file,
            }) => {
                crate::tls::sign(&ca_key, &request, &file)?;
                println!(
                    "certificate {} signed; send it back with the CA certificate",
                    file.display()
                );
                Ok(())
            }
            NodeCommand::Tls(TlsCommand::Install {
                home,
                cert,
                ca_cert,
            }) => {
                let home = Home::new(home);
                let tls = NodeConfig::load(&home.config()).unwrap_or_default().rpc;
                let to = home.resolve(&tls.tls_cert);
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::copy(&cert, &to)?;
                std::fs::copy(&ca_cert, home.ca_cert())?;
                println!("certificate installed at {}", to.display());
                Ok(())
            }
            NodeCommand::Tls(TlsCommand::Issue {
                ca_key,
                ca_cert,
                home,
                names,
            }) => {
                let home = Home::new(home);
                let tls = NodeConfig::load(&home.config()).unwrap_or_default().rpc;
                let (cert, key) = (home.resolve(&tls.tls_cert), home.resolve(&tls.tls_key));
                crate::tls::issue(&ca_key, &names.hosts, &names.ips, &cert, &key)?;
                std::fs::copy(&ca_cert, home.ca_cert())?;
                println!(
                    "certificate {} and key {} issued",
                    cert.display(),
                    key.display()
                );
                Ok(())
            }
            NodeCommand::Keys(KeysCommand::Show { home }) => {
                let home = Home::new(home);
                let key = keys::load_node_key(&home.node_key())?;
                let network = keys::network_identity(&home, &key)?;
                let public = key.public_key();
                let address = pmr_primitives::ValidatorAddress::from_public_key(public.as_bytes());
                let custodian = keys::custodian_public(&home.custodian_keystore()).ok();
                out.show(&NodeKeys {
                    validator_address: address.0.to_string(),
                    consensus_key: hex::encode(public.as_bytes()),
                    peer_id: network.public().to_peer_id().to_string(),
                    separate_network_key: home.network_key().exists(),
                    custody_key: custodian.as_ref().map(|(_, k)| hex::encode(k.as_bytes())),
                    operator: custodian.as_ref().map(|(a, _)| a.to_string()),
                })
            }
            NodeCommand::Restore { home, from } => {
                let verdict = restore(&Home::new(home), &from)?;
                out.show(&verdict)?;
                if !verdict.matches {
                    eyre::bail!(
                        "the backup's state does not verify: it is damaged; nothing was replaced \
                         (it is left in data/db.restoring for inspection)"
                    );
                }
                Ok(())
            }
            NodeCommand::State(StateCommand::Verify { home }) => {
                let verdict = verify_state(&Home::new(home))?;
                out.show(&verdict)?;
                if !verdict.matches {
                    eyre::bail!(
                        "state verification failed: restore this node's data from a healthy \
                         validator"
                    );
                }
                Ok(())
            }
            NodeCommand::State(StateCommand::Sync { home, from }) => {
                let report = crate::state_sync::state_sync(&Home::new(home), &from).await?;
                out.show(&report)
            }
            NodeCommand::State(StateCommand::Snapshot { home, out: file }) => {
                let store = open_stopped_store(&Home::new(home).db())?;
                let info = pmr_execution::export_snapshot(&store, &file)?;
                out.show(&SnapshotView(info))
            }
            NodeCommand::State(StateCommand::VerifySnapshot { snapshot, root }) => {
                let info = pmr_execution::verify_snapshot(&snapshot, root)?;
                out.show(&SnapshotView(info))?;
                if root.is_none() {
                    eprintln!(
                        "checked against the root the file names only: give --root (from a block \
                         header the network signed) to know it is the network's state"
                    );
                }
                Ok(())
            }
            NodeCommand::Genesis(c) => c.run(out),
            NodeCommand::Peer(c) => c.run(out),
            NodeCommand::Keys(KeysCommand::Init { home }) => {
                let home = Home::new(home);
                crate::init::init_keys(&home)?;
                println!(
                    "keys created in {}; send the output of `pmr keys show --home {} --output \
                     json` (public keys only) to the genesis coordinator",
                    home.root.join("keys").display(),
                    home.root.display()
                );
                Ok(())
            }
            NodeCommand::Keys(KeysCommand::NewNetworkKey { home }) => {
                let key = keys::generate_node_key(&Home::new(home).network_key())?;
                println!(
                    "{}",
                    pmr_consensus::network_keypair(&key).public().to_peer_id()
                );
                Ok(())
            }
        }
    }
}

/// Runs the node in `home` until SIGINT or SIGTERM, or until it halts.
async fn start(
    home: Home,
    rpc_listen: Option<SocketAddr>,
    log_level: Option<String>,
    insecure: bool,
    no_auth: bool,
) -> Result<()> {
    let mut config = NodeConfig::load(&home.config())?;
    config.rpc.insecure = insecure;
    config.rpc.no_auth = no_auth;
    if let Some(addr) = rpc_listen {
        config.rpc_listen = addr;
    }
    if let Some(level) = log_level {
        config.log_level = level;
    }
    super::init_node_tracing(&config.log_level, config.log_json);
    let mut node = crate::spawn(&home, config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let signal = tokio::select! {
        result = node.wait() => {
            if let Err(e) = &result {
                error!(target: "pmr::node", error = %e, "node halted");
            }
            return result;
        }
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    info!(target: "pmr::node", "{signal}: shutting down");
    node.shutdown().await;
    Ok(())
}
