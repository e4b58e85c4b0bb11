//! The node's configuration file (`config.toml` in its home directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use eyre::{Context, Result};
use libp2p::Multiaddr;
use pmr_consensus::ConsensusConfig;
use serde::{Deserialize, Serialize};

/// A node's configuration. Every field has a default, so a config file only needs what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Name in logs and status.
    pub moniker: String,
    /// gRPC API address.
    pub rpc_listen: SocketAddr,
    /// Prometheus metrics address (`/metrics`); empty to disable.
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter (`info`, `pmr=debug,info`, ...); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// File holding the passphrase of the node's custodian keystore (relative to the home; the
    /// PMR_KEY_PASSPHRASE variable overrides it), as a service manager provides it.
    pub key_passphrase_file: Option<PathBuf>,
    /// The `[consensus]` table: p2p and gossip addresses, peers, timeouts, mempool and block
    /// limits.
    pub consensus: ConsensusConfig,
    /// The `[content]` table: the record blob store and its replication.
    pub content: ContentSettings,
    /// The `[rpc]` table: TLS, operators and bounds of the gRPC API on `rpc_listen`.
    pub rpc: RpcSettings,
}

/// The gRPC API's security and bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcSettings {
    /// The node's TLS certificate (PEM), signed by the network's CA, relative to the home.
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM, mode 0600), relative to the home.
    pub tls_key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM): mutual TLS.
    pub client_ca: Option<PathBuf>,
    /// Accounts besides the node's operator account that may pin and unpin blobs.
    pub operators: Vec<pmr_primitives::Address>,
    /// Open connections at most; more are closed as they arrive.
    pub max_connections: usize,
    /// Calls in flight on one connection at most.
    pub max_streams_per_connection: u32,
    /// How long a call may take to start answering.
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Block streams (`StreamBlocks`) open at once on this node.
    pub max_block_streams: usize,
    /// Block streams open at once per account.
    pub max_block_streams_per_account: usize,
    /// Transactions one account may submit per second (twice as many in a burst).
    pub submit_per_second: u32,
    /// Below this many free bytes on its data's filesystem, the node refuses uploads and new
    /// transactions (it keeps committing blocks).
    pub min_free_disk: u64,
    /// Serve plaintext instead of TLS: set only by `pmr start --insecure`, never by the file.
    #[serde(skip)]
    pub insecure: bool,
    /// Check no caller (benchmarks only): set only by `pmr start --insecure --no-auth`.
    #[serde(skip)]
    pub no_auth: bool,
}

impl Default for RpcSettings {
    fn default() -> Self {
        let limits = pmr_rpc::ServerLimits::default();
        let ledger = pmr_rpc::LedgerLimits::default();
        Self {
            tls_cert: PathBuf::from("tls/node.pem"),
            tls_key: PathBuf::from("tls/node.key"),
            client_ca: None,
            operators: Vec::new(),
            max_connections: limits.max_connections,
            max_streams_per_connection: limits.max_streams_per_connection,
            request_timeout: limits.request_timeout,
            max_block_streams: ledger.max_streams,
            max_block_streams_per_account: ledger.max_streams_per_account,
            submit_per_second: ledger.submit_per_second,
            min_free_disk: 1 << 30,
            insecure: false,
            no_auth: false,
        }
    }
}

/// The content store: encrypted record blobs replicated between the nodes over bitswap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentSettings {
    /// libp2p address of the content (bitswap) network.
    pub listen: Multiaddr,
    /// Largest record, in bytes of ciphertext, that PutBlob accepts or the node fetches.
    pub max_record_size: u64,
    /// Fetch and pin every record root and share envelope that a committed block mints or
    /// appends (PMR `RecordMinted` / `RecordVersionAppended` events).
    pub replicate: bool,
    /// Bytes one account may have uploaded that no committed record names yet.
    pub upload_quota: u64,
    /// How long an upload may wait for a committed record to name it before it is collected.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: std::time::Duration,
    /// How often expired uploads are collected.
    #[serde(with = "humantime_serde")]
    pub collect_every: std::time::Duration,
}

impl Default for ContentSettings {
    fn default() -> Self {
        let uploads = pmr_custody::UploadPolicy::default();
        Self {
            listen: "/ip4/0.0.0.0/tcp/26658".parse().expect("valid multiaddr"),
            max_record_size: pmr_content::DEFAULT_MAX_RECORD_SIZE,
            replicate: true,
            upload_quota: uploads.quota,
            upload_ttl: uploads.ttl,
            collect_every: uploads.collect_every,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            moniker: "pmr-node".into(),
            rpc_listen: "127.0.0.1:9090".parse().expect("valid address"),
            metrics_listen: Some("127.0.0.1:9100".parse().expect("valid address")),
            log_level: "info".into(),
            log_json: false,
            key_passphrase_file: None,
            consensus: ConsensusConfig::default(),
            content: ContentSettings::default(),
            rpc: RpcSettings::default(),
        }
    }
}

impl NodeConfig {
    /// Reads a config file; missing fields take their defaults.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .wrap_err_with(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).wrap_err_with(|| format!("invalid config file {}", path.display()))
    }

    /// Writes the config file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self).wrap_err("cannot serialize config")?;
        std::fs::write(path, text)
            .wrap_err_with(|| format!("cannot write config file {}", path.display()))
    }
}

/// The files of a node's home directory.
#[derive(Clone, Debug)]
pub struct Home {
    /// The home directory itself.
    pub root: PathBuf,
}

impl Home {
    /// The home directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The node's configuration file, `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The network's genesis, `genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    /// The node's ed25519 consensus key (its validator identity).
    pub fn node_key(&self) -> PathBuf {
        self.root.join("keys").join("node_key.json")
    }
    /// An optional separate libp2p identity (ed25519). Without it the node's peer id is
    /// derived from its node key, as the validators' peer ids in the genesis are.
    pub fn network_key(&self) -> PathBuf {
        self.root.join("keys").join("network_key.json")
    }
    /// The node's custodian keystore, encrypted under the node's key passphrase: its operator
    /// account (secp256k1, signs the node's own transactions: share-release logs) and its
    /// custody key (X25519, custodian shares are sealed to it).
    pub fn custodian_keystore(&self) -> PathBuf {
        self.root.join("keys").join("custodian.json")
    }
    /// The data directory: the database and the consensus state.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The RocksDB database, inside the data directory.
    pub fn db(&self) -> PathBuf {
        self.data().join("db")
    }
    /// `path` as the config means it: relative paths are relative to the home.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }
    /// The network CA's certificate, as `pmr init` and `pmr testnet init` leave it (clients
    /// pin it).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }
}
