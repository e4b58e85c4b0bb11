//! `pmr testnet init` writes per-node configs whose ports and peers fit together.

use std::path::Path;

use pmr_node::config::{Home, NodeConfig};
use pmr_node::init::{init_testnet, TestnetOptions, DEV_CHAIN_ID};
use pmr_testnet::ports::{ephemeral_start, DEV_PORTS};

fn init(dir: &Path, base_port: Option<u16>) -> Vec<NodeConfig> {
    init_testnet(&TestnetOptions {
        dir: dir.to_path_buf(),
        validators: 3,
        chain_id: DEV_CHAIN_ID,
        base_port,
        template: NodeConfig::default(),
        hosts: Vec::new(),
        spare: 0,
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
        hosts: Vec::new(),
        spare: 0,
    })
    .unwrap_err();
    assert!(err.to_string().contains("lower base port"), "{err}");
}

/// `--hosts`: node i listens on, is dialled at and is certified for its own address (nodes in
/// network namespaces of their own); the count must match.
#[test]
fn hosts_give_each_node_its_address_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<std::net::IpAddr> = (1..=3)
        .map(|i| format!("10.77.0.{i}").parse().unwrap())
        .collect();
    let manifest = init_testnet(&TestnetOptions {
        dir: dir.path().to_path_buf(),
        validators: 3,
        chain_id: DEV_CHAIN_ID,
        base_port: Some(32000),
        template: NodeConfig::default(),
        hosts: hosts.clone(),
        spare: 0,
    })
    .expect("init testnet");
    for (i, host) in hosts.iter().enumerate() {
        let home = Home::new(dir.path().join(format!("node{i}")));
        let cfg = NodeConfig::load(&home.config()).expect("config");
        assert_eq!(cfg.rpc_listen.ip(), *host);
        assert_eq!(cfg.metrics_listen.expect("metrics").ip(), *host);
        for listen in [
            &cfg.consensus.p2p_listen,
            &cfg.consensus.gossip_listen,
            &cfg.content.listen,
        ] {
            assert!(
                listen.to_string().starts_with(&format!("/ip4/{host}/tcp/")),
                "{listen}"
            );
        }
        for p in &cfg.consensus.peers {
            let j: usize = p.name.trim_start_matches("node").parse().unwrap();
            assert!(p
                .p2p
                .to_string()
                .starts_with(&format!("/ip4/{}/", hosts[j])));
        }
        assert_eq!(
            manifest.nodes[i].rpc,
            format!("https://{host}:{}", cfg.rpc_listen.port())
        );
        let cert = home.resolve(&NodeConfig::default().rpc.tls_cert);
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl is missing: run ./scripts/setup");
        let sans = String::from_utf8_lossy(&out.stdout);
        assert!(sans.contains(&format!("IP Address:{host}")), "{sans}");
        assert!(sans.contains("IP Address:127.0.0.1"), "{sans}");
    }
    let err = init_testnet(&TestnetOptions {
        dir: dir.path().join("other"),
        validators: 4,
        chain_id: DEV_CHAIN_ID,
        base_port: Some(32100),
        template: NodeConfig::default(),
        hosts,
        spare: 0,
    })
    .unwrap_err();
    assert!(err.to_string().contains("3 hosts for 4 nodes"), "{err}");
}
