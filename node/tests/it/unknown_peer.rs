//! Only network members may connect: a stranger's libp2p connection is established and then
//! dropped, on the consensus port and on the gossip port, while a member's identity dialing the
//! same address at the same time stays connected; the stranger never shows up as a peer.

use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, noise, ping, tcp, yamux, Multiaddr};

#[derive(NetworkBehaviour)]
struct Stranger {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// What became of a connection dialed to a node.
#[derive(Debug, PartialEq, Eq)]
enum Dial {
    /// The connection was never established (wrong port, protocol mismatch, refused).
    NotEstablished(String),
    /// Established (the node completed the noise handshake and yamux), then closed.
    ClosedAfterEstablished,
    /// Established and still open at the deadline.
    KeptOpen,
}

/// Dials `addr` with identity `key`, announcing `protocol` in identify, and watches the
/// connection until `within` has passed.
async fn dial(addr: Multiaddr, key: identity::Keypair, protocol: &str, within: Duration) -> Dial {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|k| Stranger {
            identify: identify::Behaviour::new(identify::Config::new(
                protocol.to_string(),
                k.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(200)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(addr).unwrap();
    let deadline = tokio::time::sleep(within);
    tokio::pin!(deadline);
    let mut established = false;
    loop {
        tokio::select! {
            _ = &mut deadline => {
                return if established {
                    Dial::KeptOpen
                } else {
                    Dial::NotEstablished("no connection before the deadline".into())
                };
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { .. } => established = true,
                SwarmEvent::ConnectionClosed { .. } if established => {
                    return Dial::ClosedAfterEstablished;
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Dial::NotEstablished(error.to_string());
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused() {
    let mut net = start_net(4, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let cfg: toml::Table = std::fs::read_to_string(net.dir.path().join("node0/config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let consensus = cfg["consensus"].as_table().unwrap();
    let p2p: Multiaddr = consensus["p2p_listen"].as_str().unwrap().parse().unwrap();
    let gossip: Multiaddr = consensus["gossip_listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Gossip port: node 3 stops, and its p2p identity, a member's, dials node 0 beside a
    // stranger, at the same time. The stranger's connection must be established (so the port
    // and protocols were right) and then closed by the node; the member's must stay open.
    net.cluster.kill(3).unwrap();
    let home = pmr_node::Home::new(net.cluster.home(3));
    let node_key = pmr_node::keys::load_node_key(&home.node_key()).unwrap();
    let member = pmr_node::keys::network_identity(&home, &node_key).unwrap();
    let within = Duration::from_secs(10);
    let (stranger, kept) = tokio::join!(
        dial(
            gossip.clone(),
            identity::Keypair::generate_ed25519(),
            "/pmr/test",
            within
        ),
        dial(gossip, member, "/pmr/test", within),
    );
    assert_eq!(
        stranger,
        Dial::ClosedAfterEstablished,
        "gossip port: a stranger"
    );
    assert_eq!(kept, Dial::KeptOpen, "gossip port: a member");
    net.cluster.start(3).unwrap();
    let deadline = std::time::Instant::now() + T;
    while node0_peers(&net).await.len() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Consensus port: the stranger speaks malachite's identify protocol, so that a mismatch
    // cannot be what closes its connection; malachite's own dialer needs the whole consensus
    // stack, so the members on that address are the real nodes: all three stay connected.
    let before = node0_peers(&net).await;
    let stranger = dial(
        p2p,
        identity::Keypair::generate_ed25519(),
        "/malachitebft-core-consensus/v1beta1",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        stranger,
        Dial::ClosedAfterEstablished,
        "consensus port: a stranger"
    );
    assert_eq!(
        node0_peers(&net).await,
        before,
        "the members stayed connected"
    );
    // And the chain goes on.
    let h = net.height(0).await;
    net.wait_height(0, h + 2).await;
}

/// Node 0's peers' ids, sorted.
async fn node0_peers(net: &Net) -> Vec<String> {
    let status = net.client(0).await.status().await.unwrap();
    let mut ids: Vec<String> = status.peers.into_iter().map(|p| p.peer_id).collect();
    ids.sort();
    ids
}
