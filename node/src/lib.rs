//! The `pmr` node: wires storage, execution, consensus, the content store, custody and the
//! gRPC API together, and holds the command line.
//!
//! - [`spawn`] starts a node in-process (tests use it); `pmr start` calls the same function.
//! - [`config`]: `config.toml`; [`keys`]: the node's key files; [`init`]: a node's or a local
//!   testnet's files; [`cli`]: every `pmr` command.

pub mod cli;
pub mod config;
mod content;
pub mod init;
pub mod keys;
mod metrics;
pub mod state_sync;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use eyre::{Context, Result};
use pmr_consensus::{ConsensusMetrics, ConsensusNode, Ledger, StartParams};
use pmr_content::ContentNode;
use pmr_custody::{
    replicate, Custody, CustodyParams, ReleaseLimits, ReplicatePolicy, UploadPolicy, Uploads,
};
use pmr_execution::Executor;
use pmr_primitives::Genesis;
use pmr_rpc::auth::Sessions;
use pmr_rpc::{
    AccessLayer, AuthApi, ContentApi, DiskFloor, LedgerApi, LedgerLimits, Roles, ServerHandle,
    ServerLimits, ServerTls, Services, ShareApi,
};
use pmr_storage::Store;
use prometheus_client::registry::Registry;
use tracing::info;

pub use config::{Home, NodeConfig};

/// A running node.
pub struct NodeHandle {
    /// The node's ledger: chain, mempool and execution state.
    pub ledger: Arc<Ledger>,
    /// The address the gRPC server bound (useful with port 0).
    pub rpc_addr: SocketAddr,
    /// The address the metrics server bound; `None` when metrics are disabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The content store (its network listens on `content.listen_addrs()`).
    pub content: ContentNode,
    consensus: ConsensusNode,
    rpc: ServerHandle,
    metrics: Option<tokio::task::JoinHandle<()>>,
    sampler: tokio::task::JoinHandle<()>,
    replicator: Option<tokio::task::JoinHandle<()>>,
    collector: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    /// Runs until consensus stops. An error means the node had to halt (state divergence) or
    /// its engine died.
    pub async fn wait(&mut self) -> Result<()> {
        match (&mut self.consensus.app).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(eyre::Report::new(e)),
            Err(e) => Err(eyre::eyre!("consensus task failed: {e}")),
        }
    }

    /// Stops the node: the API first, then replication and the content network, then
    /// consensus.
    pub async fn shutdown(self) {
        self.rpc.shutdown().await;
        if let Some(m) = self.metrics {
            m.abort();
        }
        self.sampler.abort();
        self.collector.abort();
        if let Some(r) = self.replicator {
            r.abort();
            let _ = r.await;
        }
        self.content.shutdown().await;
        self.consensus.shutdown().await;
    }
}

/// Starts the node whose files are in `home`, with `config`.
pub async fn spawn(home: &Home, config: NodeConfig) -> Result<NodeHandle> {
    if config.rpc.no_auth && !(config.rpc.insecure && config.rpc_listen.ip().is_loopback()) {
        eyre::bail!(
            "--no-auth (no caller checked) is for benchmarks on this machine only: it needs \
             --insecure and a loopback rpc_listen, not {}",
            config.rpc_listen
        );
    }
    let genesis = Genesis::load(&home.genesis())?;
    let node_key = keys::load_node_key(&home.node_key())?;
    let network = keys::network_identity(home, &node_key)?;
    let (custody_key, operator) =
        keys::load_custodian_keys(home, config.key_passphrase_file.as_deref())?;
    let server_tls = server_tls(home, &config)?;
    let session_secret = node_key.inner().to_bytes();
    std::fs::create_dir_all(home.data())
        .wrap_err_with(|| format!("cannot create {}", home.data().display()))?;
    let store = Store::open(home.db())?;
    let content_peers = content::peers(&config.consensus, &genesis, network.public().to_peer_id())?;
    let content = content::start(
        &config.content,
        network.clone(),
        content_peers,
        store.clone(),
    )
    .await?;
    let executor = Arc::new(
        Executor::open(store.clone(), &genesis).wrap_err("cannot open the execution state")?,
    );

    let mut registry = Registry::default();
    let metrics = ConsensusMetrics::default();
    metrics.register(&mut registry);
    let node_metrics = metrics::NodeMetrics::default();
    node_metrics.register(&mut registry);

    let custodians = genesis.custodians();
    // Who may fetch a state snapshot from this node to join: every validator's operator.
    let network_operators: Vec<_> = genesis
        .validators
        .iter()
        .filter_map(|v| v.operator)
        .collect();
    let chain_id = genesis.chain_id;
    let consensus = match pmr_consensus::start(StartParams {
        moniker: config.moniker.clone(),
        home: home.data(),
        genesis,
        node_key,
        network_key: network,
        config: config.consensus.clone(),
        store: store.clone(),
        executor,
        metrics,
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            content.shutdown().await;
            return Err(e.into());
        }
    };
    let ledger = consensus.ledger.clone();
    let custody = Custody::open(CustodyParams {
        chain_id,
        custodians,
        custody_key,
        operator,
        ledger: ledger.clone(),
        content: content.clone(),
        store: store.clone(),
        releases: node_metrics.share_releases.clone(),
        limits: ReleaseLimits::default(),
    });
    let custody = match custody {
        Ok(c) => c,
        Err(e) => {
            content.shutdown().await;
            consensus.shutdown().await;
            return Err(e.into());
        }
    };
    let uploads = Uploads::new(
        store.clone(),
        UploadPolicy {
            quota: config.content.upload_quota,
            ttl: config.content.upload_ttl,
            collect_every: config.content.collect_every,
        },
    );
    let collector = uploads.spawn_collector(content.clone());
    let replicator = config.content.replicate.then(|| {
        replicate::spawn(
            ledger.clone(),
            content.clone(),
            custody.clone(),
            uploads.clone(),
            store,
            ReplicatePolicy::default(),
        )
    });
    let disk = Arc::new(DiskFloor::new(home.data(), config.rpc.min_free_disk));
    let mut operators = config.rpc.operators.clone();
    operators.extend(custody.operator());
    let roles =
        Arc::new(Roles::new(ledger.clone(), operators).with_network_operators(network_operators));
    let sessions = Arc::new(Sessions::new(&session_secret, chain_id));
    let services = Services {
        ledger: LedgerApi::new(
            ledger.clone(),
            LedgerLimits {
                max_streams: config.rpc.max_block_streams,
                max_streams_per_account: config.rpc.max_block_streams_per_account,
                submit_per_second: config.rpc.submit_per_second,
                ..LedgerLimits::default()
            },
            disk.clone(),
        ),
        content: ContentApi::new(content.clone(), uploads, disk),
        shares: ShareApi::new(custody),
        auth: AuthApi::new(sessions.clone(), roles.clone()),
        access: if config.rpc.no_auth {
            tracing::warn!(target: "pmr::rpc", "checking NO caller (--no-auth): every method is open to anyone who reaches the port; for benchmarks only");
            AccessLayer::unchecked(sessions, roles)
        } else {
            AccessLayer::new(sessions, roles)
        },
    };
    let limits = ServerLimits {
        max_connections: config.rpc.max_connections,
        max_streams_per_connection: config.rpc.max_streams_per_connection,
        request_timeout: config.rpc.request_timeout,
        ..ServerLimits::default()
    };
    let rpc = match pmr_rpc::serve(config.rpc_listen, server_tls, limits, services).await {
        Ok(rpc) => rpc,
        Err(e) => {
            collector.abort();
            if let Some(r) = replicator {
                r.abort();
            }
            content.shutdown().await;
            consensus.shutdown().await;
            return Err(e.into());
        }
    };
    let (metrics, metrics_addr) = match config.metrics_listen {
        Some(addr) => {
            let (task, bound) = metrics::serve(addr, registry).await?;
            (Some(task), Some(bound))
        }
        None => (None, None),
    };
    let sampler = node_metrics.spawn_sampler(content.clone(), ledger.clone());
    info!(target: "pmr::node", moniker = %config.moniker, rpc = %rpc.local_addr, "node started");
    Ok(NodeHandle {
        ledger,
        rpc_addr: rpc.local_addr,
        metrics_addr,
        content,
        consensus,
        rpc,
        metrics,
        sampler,
        replicator,
        collector,
    })
}

/// RocksDB is compiled for hardware CRC32C (SSE4.2 + PCLMUL, see `.cargo/config.toml`): say so
/// plainly instead of dying of an illegal instruction on a CPU without them.
pub fn check_cpu() -> Result<()> {
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

/// The node's TLS identity from the files `config` names, or `None` (with a warning) when it
/// was started with `--insecure`.
fn server_tls(home: &Home, config: &NodeConfig) -> Result<Option<ServerTls>> {
    if config.rpc.insecure {
        tracing::warn!(target: "pmr::rpc", "serving gRPC in PLAINTEXT (--insecure): anyone on the network path can read every answer, including blocks and blobs, and rewrite the keys clients seal record shares to; use it only on a machine of your own");
        return Ok(None);
    }
    let read = |p: &std::path::Path, what: &str| {
        let path = home.resolve(p);
        std::fs::read(&path).wrap_err_with(|| {
            format!(
                "cannot read the node's TLS {what} {}: issue one signed by the network's CA \
                 with `pmr tls issue --ca-key CA_KEY --home {} --host NAME` (or start with \
                 --insecure on a machine of your own)",
                path.display(),
                home.root.display()
            )
        })
    };
    let key_path = home.resolve(&config.rpc.tls_key);
    pmr_client::secret_file::read_secret_file(&key_path)?;
    Ok(Some(ServerTls {
        cert_pem: read(&config.rpc.tls_cert, "certificate")?,
        key_pem: read(&config.rpc.tls_key, "key")?,
        client_ca_pem: config
            .rpc
            .client_ca
            .as_deref()
            .map(|p| read(p, "client CA"))
            .transpose()?,
    }))
}
