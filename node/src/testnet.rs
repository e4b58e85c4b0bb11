//! Creating the files of a network: `pmr init` (one node) and `pmr testnet init` (N validators
//! on 127.0.0.1 with ports that do not clash).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use eyre::{bail, Context, Result};
use pmr_client::Wallet;
use pmr_consensus::{peer_id_of, PeerConfig, PrivateKey};
use pmr_primitives::{Address, GasLimits, Genesis, GenesisValidator};
use pmr_testnet::{Manifest, NodeEntry};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Home, NodeConfig};
use crate::keys::{generate_custody_key, generate_node_key, read_secret_file, write_secret_file};

/// Default chain id of local networks.
pub const DEV_CHAIN_ID: u64 = 7357;

/// A development account key file (secp256k1, plaintext: for local testnets only).
#[derive(Serialize, Deserialize)]
struct AccountKeyFile {
    r#type: String,
    address: Address,
    secret: String,
    note: String,
}

/// Creates a secp256k1 account key file.
pub fn generate_account(path: &Path) -> Result<Wallet> {
    let wallet = Wallet::random();
    let file = AccountKeyFile {
        r#type: "secp256k1".into(),
        address: wallet.address(),
        secret: wallet.to_hex(),
        note: "development key, stored unencrypted: never use it on a real network".into(),
    };
    write_secret_file(path, serde_json::to_string_pretty(&file)?.as_bytes())?;
    Ok(wallet)
}

/// Loads a secp256k1 account key file.
pub fn load_account(path: &Path) -> Result<Wallet> {
    let bytes = read_secret_file(path)?;
    let file: AccountKeyFile = serde_json::from_slice(&bytes)
        .wrap_err_with(|| format!("{} is not an account key file", path.display()))?;
    Ok(Wallet::from_hex(&file.secret)?)
}

/// Ports of one node.
#[derive(Clone, Copy, Debug)]
struct Ports {
    p2p: u16,
    gossip: u16,
    rpc: u16,
    metrics: u16,
    content: u16,
}

const PORTS_PER_NODE: u16 = 10;
/// Ports each node uses out of its block of [`PORTS_PER_NODE`].
const PORTS_USED: usize = 5;

fn fixed_ports(base: u16, i: usize) -> Ports {
    let b = base + PORTS_PER_NODE * i as u16;
    Ports {
        p2p: b,
        gossip: b + 1,
        rpc: b + 2,
        metrics: b + 3,
        content: b + 4,
    }
}

/// First port the kernel hands out for outgoing connections and `bind(0)`.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Lowest port a free-port testnet uses.
const FREE_PORTS_FROM: u16 = 10_000;
/// `pmr dev`'s default ports, left alone.
const DEV_PORTS: std::ops::Range<u16> = 26_600..26_700;

/// Free ports for `n` nodes, laid out like `--base-port` (node `i` at `base + 10 i ..`) from a
/// random base below the kernel's ephemeral range: ports handed out by `bind(0)` come from the
/// same range as the source ports of every outgoing connection on the machine, so one of them
/// could be taken by some process's dial before the node binds it. Every port is checked by
/// binding it (all held until the choice is made); if no block is free, ports the OS hands out.
fn free_ports(n: usize) -> Result<Vec<Ports>> {
    let span = PORTS_PER_NODE as usize * n;
    let top = ephemeral_start().saturating_sub(1) as usize;
    if top > FREE_PORTS_FROM as usize + span {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let base = rng.gen_range(FREE_PORTS_FROM as usize..=top - span) as u16;
            let end = base as usize + span;
            if (base as usize) < DEV_PORTS.end as usize && end > DEV_PORTS.start as usize {
                continue;
            }
            let ports: Vec<Ports> = (0..n).map(|i| fixed_ports(base, i)).collect();
            let held: std::io::Result<Vec<TcpListener>> = ports
                .iter()
                .flat_map(|p| [p.p2p, p.gossip, p.rpc, p.metrics, p.content])
                .map(|port| TcpListener::bind(("127.0.0.1", port)))
                .collect();
            if held.is_ok() {
                return Ok(ports);
            }
        }
    }
    os_free_ports(n)
}

/// Ports the OS reports free right now (held open until all are chosen, so none repeats).
fn os_free_ports(n: usize) -> Result<Vec<Ports>> {
    let listeners: Vec<TcpListener> = (0..n * PORTS_USED)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .wrap_err("cannot find free ports on 127.0.0.1")?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;
    Ok(ports
        .chunks(PORTS_USED)
        .map(|c| Ports {
            p2p: c[0],
            gossip: c[1],
            rpc: c[2],
            metrics: c[3],
            content: c[4],
        })
        .collect())
}

/// Options of `pmr testnet init`.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    pub dir: PathBuf,
    pub validators: usize,
    pub chain_id: u64,
    /// First port; node `i` uses `base + 10 i`: p2p, +1 gossip, +2 gRPC, +3 metrics, +4 content.
    /// `None`: ports the OS says are free.
    pub base_port: Option<u16>,
    /// Overrides applied to every node's config (e.g. timeouts in tests).
    pub template: NodeConfig,
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
    std::fs::create_dir_all(&opts.dir)
        .wrap_err_with(|| format!("cannot create {}", opts.dir.display()))?;
    let ports: Vec<Ports> = match opts.base_port {
        Some(base) => {
            let last =
                base as usize + PORTS_PER_NODE as usize * (opts.validators - 1) + PORTS_USED - 1;
            if last > u16::MAX as usize {
                bail!(
                    "--base-port {base} leaves no room for {} nodes (10 ports each, up to {last}); choose a lower base port",
                    opts.validators
                );
            }
            (0..opts.validators).map(|i| fixed_ports(base, i)).collect()
        }
        None => free_ports(opts.validators)?,
    };

    let accounts_dir = opts.dir.join("accounts");
    let admin = generate_account(&accounts_dir.join("admin.json"))?;
    let hospital = generate_account(&accounts_dir.join("hospital.json"))?;

    let mut node_keys: Vec<PrivateKey> = Vec::new();
    let mut validators = Vec::new();
    for i in 0..opts.validators {
        let home = Home::new(opts.dir.join(format!("node{i}")));
        let key = generate_node_key(&home.node_key())?;
        let operator = generate_account(&home.operator_key())?;
        let custody = generate_custody_key(&home.custody_key())?;
        validators.push(GenesisValidator {
            name: format!("node{i}"),
            consensus_key: hex::encode(key.public_key().as_bytes()),
            custody_key: Some(hex::encode(custody.as_bytes())),
            operator: Some(operator.address()),
            voting_power: 1,
        });
        node_keys.push(key);
    }
    let genesis = Genesis {
        chain_id: opts.chain_id,
        genesis_time_ms: now_ms(),
        validators,
        admin: admin.address(),
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
                p2p: format!("/ip4/127.0.0.1/tcp/{}", ports[i].p2p).parse()?,
                gossip: format!("/ip4/127.0.0.1/tcp/{}", ports[i].gossip).parse()?,
                content: Some(format!("/ip4/127.0.0.1/tcp/{}", ports[i].content).parse()?),
            })
        })
        .collect::<Result<_>>()?;

    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let name = format!("node{i}");
        let home = Home::new(opts.dir.join(&name));
        std::fs::write(home.genesis(), &genesis_json)?;
        let mut cfg = opts.template.clone();
        cfg.moniker = name.clone();
        cfg.rpc_listen = format!("127.0.0.1:{}", p.rpc).parse()?;
        cfg.metrics_listen = Some(format!("127.0.0.1:{}", p.metrics).parse()?);
        cfg.consensus.p2p_listen = format!("/ip4/127.0.0.1/tcp/{}", p.p2p).parse()?;
        cfg.consensus.gossip_listen = format!("/ip4/127.0.0.1/tcp/{}", p.gossip).parse()?;
        cfg.content.listen = format!("/ip4/127.0.0.1/tcp/{}", p.content).parse()?;
        cfg.consensus.peers = peers
            .iter()
            .filter(|peer| peer.name != name)
            .cloned()
            .collect();
        cfg.save(&home.config())?;
        nodes.push(NodeEntry {
            name: name.clone(),
            home: PathBuf::from(&name),
            rpc: format!("http://127.0.0.1:{}", p.rpc),
            metrics: format!("http://127.0.0.1:{}/metrics", p.metrics),
            validator: true,
        });
    }
    let manifest = Manifest {
        chain_id: opts.chain_id,
        nodes,
        accounts: vec![
            ("admin".into(), PathBuf::from("accounts/admin.json")),
            ("hospital".into(), PathBuf::from("accounts/hospital.json")),
        ],
    };
    manifest.save(&opts.dir)?;
    Ok(manifest)
}

/// `pmr init`: one node's home with a fresh key and default config. Without a genesis file
/// given, it creates a single-validator development chain with this node as its validator.
pub fn init_node(home: &Home, moniker: &str, genesis: Option<&Path>, chain_id: u64) -> Result<()> {
    if home.config().exists() {
        bail!(
            "{} is already initialised: remove it or choose another --home",
            home.root.display()
        );
    }
    let key = generate_node_key(&home.node_key())?;
    let operator = generate_account(&home.operator_key())?;
    let custody = generate_custody_key(&home.custody_key())?;
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
                    operator: Some(operator.address()),
                    voting_power: 1,
                }],
                admin: admin.address(),
                hospitals: vec![],
                permitted: vec![],
                gas: GasLimits::default(),
            };
            std::fs::write(home.genesis(), serde_json::to_string_pretty(&g)?)?;
        }
    }
    let cfg = NodeConfig {
        moniker: moniker.into(),
        ..NodeConfig::default()
    };
    cfg.save(&home.config())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(dir: &Path, base_port: Option<u16>) -> Vec<NodeConfig> {
        init_testnet(&TestnetOptions {
            dir: dir.to_path_buf(),
            validators: 3,
            chain_id: DEV_CHAIN_ID,
            base_port,
            template: NodeConfig::default(),
        })
        .expect("init testnet");
        (0..3)
            .map(|i| {
                NodeConfig::load(&Home::new(dir.join(format!("node{i}"))).config()).expect("config")
            })
            .collect()
    }

    #[test]
    fn testnet_peers_carry_their_content_address() {
        let dir = tempfile::tempdir().unwrap();
        let cfgs = init(dir.path(), Some(31000));
        for (i, cfg) in cfgs.iter().enumerate() {
            let base = 31000 + 10 * i as u16;
            assert_eq!(
                cfg.content.listen.to_string(),
                format!("/ip4/127.0.0.1/tcp/{}", base + 4)
            );
            assert_eq!(cfg.rpc_listen.port(), base + 2);
            assert_eq!(cfg.consensus.peers.len(), 2);
            for p in &cfg.consensus.peers {
                let j: u16 = p.name.trim_start_matches("node").parse().unwrap();
                let want = format!("/ip4/127.0.0.1/tcp/{}", 31000 + 10 * j + 4);
                assert_eq!(p.content.as_ref().map(|a| a.to_string()), Some(want));
            }
        }
    }

    #[test]
    fn free_ports_are_distinct_including_content() {
        let dir = tempfile::tempdir().unwrap();
        let cfgs = init(dir.path(), None);
        let port = |a: &libp2p::Multiaddr| -> u16 {
            a.to_string().rsplit('/').next().unwrap().parse().unwrap()
        };
        let mut seen = std::collections::HashSet::new();
        for cfg in &cfgs {
            let content = cfg.content.listen.to_string();
            assert!(content.starts_with("/ip4/127.0.0.1/tcp/"), "{content}");
            for p in [
                cfg.rpc_listen.port(),
                cfg.metrics_listen.expect("metrics").port(),
                port(&cfg.consensus.p2p_listen),
                port(&cfg.consensus.gossip_listen),
                port(&cfg.content.listen),
            ] {
                assert!(seen.insert(p), "port {p} used twice");
                assert!(p < ephemeral_start(), "port {p} is in the ephemeral range");
                assert!(!DEV_PORTS.contains(&p), "port {p} is one of `pmr dev`'s");
            }
        }
        assert_eq!(seen.len(), 15);
        // The base+10i layout, like --base-port.
        let base = cfgs[0].rpc_listen.port() - 2;
        for (i, cfg) in cfgs.iter().enumerate() {
            assert_eq!(cfg.rpc_listen.port(), base + 10 * i as u16 + 2);
            assert_eq!(port(&cfg.content.listen), base + 10 * i as u16 + 4);
        }
    }

    #[test]
    fn a_base_port_too_high_for_the_nodes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = init_testnet(&TestnetOptions {
            dir: dir.path().to_path_buf(),
            validators: 4,
            chain_id: DEV_CHAIN_ID,
            base_port: Some(65520),
            template: NodeConfig::default(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("lower base port"), "{err}");
    }
}
