//! `config.toml`: the committed example is the defaults; unknown keys are errors.

use pmr_node::config::{ContentSettings, NodeConfig};

const EXAMPLE: &str = include_str!("../../config.example.toml");

#[test]
fn committed_example_is_the_defaults() {
    let example: NodeConfig = toml::from_str(EXAMPLE).expect("config.example.toml parses");
    assert_eq!(
        example,
        NodeConfig::default(),
        "config.example.toml drifted from the defaults"
    );
}

#[test]
fn empty_file_is_the_defaults_and_unknown_keys_are_errors() {
    let empty: NodeConfig = toml::from_str("").expect("empty config");
    assert_eq!(empty, NodeConfig::default());
    let typo = toml::from_str::<NodeConfig>("[consensus]\nmax_block_tx = 5\n").unwrap_err();
    assert!(typo.to_string().contains("max_block_tx"), "{typo}");
    let nested =
        toml::from_str::<NodeConfig>("[consensus.timeouts]\npropse = \"1s\"\n").unwrap_err();
    assert!(nested.to_string().contains("propse"), "{nested}");
    let content = toml::from_str::<NodeConfig>("[content]\nmax_size = 5\n").unwrap_err();
    assert!(content.to_string().contains("max_size"), "{content}");
}

#[test]
fn peers_round_trip_with_and_without_a_content_address() {
    let text = r#"
        [[consensus.peers]]
        name = "a"
        peer_id = "12D3KooWA"
        p2p = "/ip4/10.0.0.2/tcp/26656"
        gossip = "/ip4/10.0.0.2/tcp/26657"
        content = "/ip4/10.0.0.2/tcp/26658"

        [[consensus.peers]]
        name = "b"
        peer_id = "12D3KooWB"
        p2p = "/ip4/10.0.0.3/tcp/26656"
        gossip = "/ip4/10.0.0.3/tcp/26657"

        [content]
        max_record_size = 1048576
        replicate = false
    "#;
    let cfg: NodeConfig = toml::from_str(text).expect("parses");
    let peers = &cfg.consensus.peers;
    assert_eq!(
        peers[0].content,
        Some("/ip4/10.0.0.2/tcp/26658".parse().unwrap())
    );
    assert_eq!(peers[1].content, None);
    assert_eq!(cfg.content.max_record_size, 1 << 20);
    assert!(!cfg.content.replicate);
    assert_eq!(cfg.content.listen, ContentSettings::default().listen);
    let again: NodeConfig = toml::from_str(&toml::to_string_pretty(&cfg).unwrap()).unwrap();
    assert_eq!(again, cfg);
}
