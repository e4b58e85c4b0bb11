//! Only network members may connect: a stranger's libp2p connection is dropped, on the consensus
//! port and on the gossip port, and it never shows up as a peer.

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

/// Dials `addr` as a stranger; returns whether the connection was closed (or refused) by the
/// node within `within`.
async fn stranger_is_dropped(addr: Multiaddr, within: Duration) -> bool {
    let key = identity::Keypair::generate_ed25519();
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
                "/malachite/1.0.0".into(),
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
    loop {
        tokio::select! {
            _ = &mut deadline => return false,
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => return true,
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused() {
    let net = start_net(4, |_, _| {}).await;
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

    assert!(
        stranger_is_dropped(gossip, Duration::from_secs(10)).await,
        "gossip port kept a stranger's connection"
    );
    assert!(
        stranger_is_dropped(p2p, Duration::from_secs(20)).await,
        "consensus port kept a stranger's connection"
    );
    // The members are still connected to each other and the chain goes on.
    let status = net.client(0).await.status().await.unwrap();
    assert_eq!(status.peers.len(), 3, "{:?}", status.peers);
    let h = status.height;
    net.wait_height(0, h + 2).await;
}
