//! Creating the files of a network: `pmr init` (one node) and `pmr testnet init` (N validators
//! on 127.0.0.1 with ports that do not clash, `pmr_testnet::ports`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use eyre::{bail, Context, Result};
use pmr_consensus::{peer_id_of, PeerConfig, PrivateKey};
use pmr_primitives::{Address, GasLimits, Genesis, GenesisValidator};
use pmr_shares::X25519PublicKey;
use pmr_testnet::{testnet_ports, Manifest, NodeEntry};

use crate::config::{Home, NodeConfig};
use crate::keys::{generate_account, generate_custodian, generate_node_key};

/// Default chain id of local networks.
pub const DEV_CHAIN_ID: u64 = 7357;

/// Where a development node keeps its key passphrase (in its home: a development chain's keys
/// are only as safe as the machine).
pub const DEV_PASSPHRASE_FILE: &str = "keys/passphrase";

/// A development node's custodian keystore, encrypted under a random passphrase written to
/// [`DEV_PASSPHRASE_FILE`] (mode 0600).
fn dev_custodian(home: &Home) -> Result<(Address, X25519PublicKey)> {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let passphrase = hex::encode(bytes);
    pmr_client::secret_file::write_secret_file(
        &home.root.join(DEV_PASSPHRASE_FILE),
        passphrase.as_bytes(),
    )?;
    generate_custodian(&home.custodian_keystore(), &passphrase)
}

/// Options of `pmr testnet init`.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    /// The testnet directory: node homes, accounts and `testnet.json` go here.
    pub dir: PathBuf,
    /// Number of genesis validators, each with voting power 1 (nodes 0 to `validators - 1`).
    pub validators: usize,
    /// Further nodes, outside the genesis validator set (nodes `validators` on): full nodes
    /// with keys of their own, in every node's peer list, that the council can make validators
    /// (`pmr gov propose add-validator`).
    pub spare: usize,
    /// Chain id of the genesis (see [`DEV_CHAIN_ID`]).
    pub chain_id: u64,
    /// First port; node `i` uses `base + 10 i`: p2p, +1 gossip, +2 gRPC, +3 metrics, +4 content.
    /// `None`: ports the OS says are free.
    pub base_port: Option<u16>,
    /// Overrides applied to every node's config (e.g. timeouts in tests).
    pub template: NodeConfig,
    /// The address of each node, in order (each listens on and is certified for its own):
    /// for nodes in network namespaces of their own. Empty: every node on 127.0.0.1.
    pub hosts: Vec<IpAddr>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a testnet: per node a home with keys, genesis and config; shared development
/// accounts (admin, hospital); and the manifest the harness and `pmr testnet up` read.
pub fn init_testnet(opts: &TestnetOptions) -> Result<Manifest> {
    if opts.validators == 0 {
        bail!("a testnet needs at least one validator");
    }
    if opts.dir.join(pmr_testnet::MANIFEST_FILE).exists() {
        bail!(
            "{} already holds a testnet: remove it or choose another --home",
            opts.dir.display()
        );
    }
    let total = opts.validators + opts.spare;
    if !opts.hosts.is_empty() && opts.hosts.len() != total {
        bail!(
            "{} hosts for {total} nodes: give one address per node",
            opts.hosts.len(),
        );
    }
    let host = |i: usize| {
        opts.hosts
            .get(i)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    };
    let ports = testnet_ports(total, opts.base_port)?;
    std::fs::create_dir_all(&opts.dir)
        .wrap_err_with(|| format!("cannot create {}", opts.dir.display()))?;

    // The testnet's CA: its key stays in the testnet directory, never in a node's home.
    let ca_cert = opts.dir.join("ca.pem");
    let ca_key = opts.dir.join("ca.key");
    crate::tls::new_ca(&ca_cert, &ca_key)?;

    let accounts_dir = opts.dir.join("accounts");
    let admin = generate_account(&accounts_dir.join("admin.json"))?;
    let hospital = generate_account(&accounts_dir.join("hospital.json"))?;

    let mut node_keys: Vec<PrivateKey> = Vec::new();
    let mut validators = Vec::new();
    for i in 0..total {
        let home = Home::new(opts.dir.join(format!("node{i}")));
        let key = generate_node_key(&home.node_key())?;
        let (operator, custody) = dev_custodian(&home)?;
        if i >= opts.validators {
            node_keys.push(key);
            continue;
        }
        validators.push(GenesisValidator {
            name: format!("node{i}"),
            consensus_key: hex::encode(key.public_key().as_bytes()),
            custody_key: Some(hex::encode(custody.as_bytes())),
            operator: Some(operator),
            voting_power: 1,
        });
        node_keys.push(key);
    }
    let genesis = Genesis {
        chain_id: opts.chain_id,
        genesis_time_ms: now_ms(),
        validators,
        admin: admin.address(),
        council: Vec::new(),
        council_threshold: 1,
        hospitals: vec![hospital.address()],
        permitted: vec![],
        gas: GasLimits::default(),
    };
    genesis.validate()?;
    let genesis_json = serde_json::to_string_pretty(&genesis)?;
    std::fs::write(opts.dir.join("genesis.json"), &genesis_json)?;

    let peers: Vec<PeerConfig> = node_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Ok(PeerConfig {
                name: format!("node{i}"),
                peer_id: peer_id_of(k.public_key().as_bytes())?.to_string(),
                p2p: tcp_multiaddr(host(i), ports[i].p2p)?,
                gossip: tcp_multiaddr(host(i), ports[i].gossip)?,
                content: Some(tcp_multiaddr(host(i), ports[i].content)?),
                validator: None,
            })
        })
        .collect::<Result<_>>()?;

    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let name = format!("node{i}");
        let home = Home::new(opts.dir.join(&name));
        std::fs::write(home.genesis(), &genesis_json)?;
        let ip = host(i);
        local_certificate(&home, &name, ip, &ca_cert, &ca_key)?;
        let mut cfg = opts.template.clone();
        cfg.moniker = name.clone();
        cfg.key_passphrase_file = Some(PathBuf::from(DEV_PASSPHRASE_FILE));
        cfg.rpc_listen = SocketAddr::new(ip, p.rpc);
        cfg.metrics_listen = Some(SocketAddr::new(ip, p.metrics));
        cfg.consensus.p2p_listen = tcp_multiaddr(ip, p.p2p)?;
        cfg.consensus.gossip_listen = tcp_multiaddr(ip, p.gossip)?;
        cfg.content.listen = tcp_multiaddr(ip, p.content)?;
        cfg.consensus.peers = peers
            .iter()
            .filter(|peer| peer.name != name)
            .cloned()
            .collect();
        cfg.save(&home.config())?;
        nodes.push(NodeEntry {
            name: name.clone(),
            home: PathBuf::from(&name),
            rpc: format!("https://{}", SocketAddr::new(ip, p.rpc)),
            metrics: format!("http://{}/metrics", SocketAddr::new(ip, p.metrics)),
            validator: i < opts.validators,
        });
    }
    let manifest = Manifest {
        chain_id: opts.chain_id,
        nodes,
        accounts: vec![
            ("admin".into(), PathBuf::from("accounts/admin.json")),
            ("hospital".into(), PathBuf::from("accounts/hospital.json")),
        ],
        ca: PathBuf::from("ca.pem"),
    };
    manifest.save(&opts.dir)?;
    Ok(manifest)
}

/// `/ip4/IP/tcp/PORT` (or `/ip6/…`).
fn tcp_multiaddr<T>(ip: IpAddr, port: u16) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let proto = if ip.is_ipv4() { "ip4" } else { "ip6" };
    Ok(format!("/{proto}/{ip}/tcp/{port}").parse()?)
}

/// A TLS certificate for a node of this machine (`localhost`, `name`, 127.0.0.1, ::1 and
/// `ip`, the node's own address), signed by the CA at `ca_cert` / `ca_key`; the CA certificate
/// is copied beside it.
fn local_certificate(
    home: &Home,
    name: &str,
    ip: IpAddr,
    ca_cert: &Path,
    ca_key: &Path,
) -> Result<()> {
    std::fs::create_dir_all(home.root.join("tls"))?;
    std::fs::copy(ca_cert, home.ca_cert()).wrap_err_with(|| {
        format!(
            "cannot copy the CA certificate into {}",
            home.root.display()
        )
    })?;
    local_certificate_in_place(home, name, Some(ip), ca_key)
}

fn local_certificate_in_place(
    home: &Home,
    name: &str,
    ip: Option<IpAddr>,
    ca_key: &Path,
) -> Result<()> {
    let tls = NodeConfig::default().rpc;
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    ips.extend(ip.filter(|ip| !ips.contains(ip)));
    crate::tls::issue(
        ca_key,
        &["localhost".to_string(), name.to_string()],
        &ips,
        &home.resolve(&tls.tls_cert),
        &home.resolve(&tls.tls_key),
    )
}

/// The passphrase that encrypts a real network's operator and custody keys.
fn operator_passphrase() -> Result<String> {
    std::env::var("PMR_KEY_PASSPHRASE").map_err(|_| {
        eyre::eyre!(
            "set PMR_KEY_PASSPHRASE to the passphrase that encrypts this node's operator \
             and custody keys (keys/custodian.json); give it again at every start, \
             from the environment or a file the service manager provides \
             (key_passphrase_file in config.toml)"
        )
    })
}

/// `pmr keys init`: a node's keys alone (validator key, encrypted custodian keystore), for a
/// genesis ceremony; `pmr init --genesis` later keeps them.
pub fn init_keys(home: &Home) -> Result<()> {
    if home.node_key().exists() || home.config().exists() {
        bail!(
            "{} already has keys: remove it or choose another --home",
            home.root.display()
        );
    }
    let passphrase = operator_passphrase()?;
    generate_node_key(&home.node_key())?;
    crate::keys::generate_custodian(&home.custodian_keystore(), &passphrase)?;
    Ok(())
}

/// `pmr init`: one node's home with a fresh key and default config. Without a genesis file
/// given, it creates a single-validator development chain with this node as its validator.
/// With one, in a home where `pmr keys init` made the keys, it keeps them (the genesis names
/// them) and makes no admin key.
pub fn init_node(home: &Home, moniker: &str, genesis: Option<&Path>, chain_id: u64) -> Result<()> {
    if home.config().exists() {
        bail!(
            "{} is already initialised: remove it or choose another --home",
            home.root.display()
        );
    }
    // Keys made by `pmr keys init` for a genesis ceremony are kept: the genesis names them.
    let keys_made =
        genesis.is_some() && home.node_key().exists() && home.custodian_keystore().exists();
    if keys_made {
        let g = Genesis::load(genesis.unwrap_or(Path::new("")))?;
        std::fs::write(home.genesis(), serde_json::to_string_pretty(&g)?)?;
        let cfg = NodeConfig {
            moniker: moniker.into(),
            ..NodeConfig::default()
        };
        cfg.save(&home.config())?;
        return Ok(());
    }
    let key = generate_node_key(&home.node_key())?;
    let (operator, custody, passphrase_file) = match genesis {
        // A real network's operator gives the passphrase (the service manager provides it
        // at every start).
        Some(_) => {
            let passphrase = operator_passphrase()?;
            let (operator, custody) =
                crate::keys::generate_custodian(&home.custodian_keystore(), &passphrase)?;
            (operator, custody, None)
        }
        None => {
            let (operator, custody) = dev_custodian(home)?;
            (operator, custody, Some(PathBuf::from(DEV_PASSPHRASE_FILE)))
        }
    };
    match genesis {
        Some(path) => {
            let g = Genesis::load(path)?;
            std::fs::write(home.genesis(), serde_json::to_string_pretty(&g)?)?;
        }
        None => {
            let admin = generate_account(&home.root.join("keys").join("admin.json"))?;
            let g = Genesis {
                chain_id,
                genesis_time_ms: now_ms(),
                validators: vec![GenesisValidator {
                    name: moniker.into(),
                    consensus_key: hex::encode(key.public_key().as_bytes()),
                    custody_key: Some(hex::encode(custody.as_bytes())),
                    operator: Some(operator),
                    voting_power: 1,
                }],
                admin: admin.address(),
                council: Vec::new(),
                council_threshold: 1,
                hospitals: vec![],
                permitted: vec![],
                gas: GasLimits::default(),
            };
            std::fs::write(home.genesis(), serde_json::to_string_pretty(&g)?)?;
            // A development chain is its own network: its CA lives in the home.
            let ca_key = home.root.join("tls").join("ca.key");
            crate::tls::new_ca(&home.ca_cert(), &ca_key)?;
            local_certificate_in_place(home, moniker, None, &ca_key)?;
        }
    }
    let cfg = NodeConfig {
        moniker: moniker.into(),
        key_passphrase_file: passphrase_file,
        ..NodeConfig::default()
    };
    cfg.save(&home.config())?;
    Ok(())
}
