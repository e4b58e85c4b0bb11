//! Interoperability with beetswap 0.5 (another bitswap 1.2.0 implementation), both directions,
//! over real libp2p TCP + noise + yamux on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blockstore::{Blockstore, InMemoryBlockstore};
use common::*;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::Swarm;
use pmr_blob::manifest::Manifest;
use pmr_content::{Cid, Keypair, PeerSpec};

type Beet = beetswap::Behaviour<64, InMemoryBlockstore<64>>;

fn beet_swarm(kp: Keypair, store: Arc<InMemoryBlockstore<64>>) -> Swarm<Beet> {
    let behaviour = beetswap::Behaviour::builder(store)
        .protocol_prefix("/pmr")
        .expect("prefix")
        .build();
    libp2p::SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// Fetches one block with beetswap, driving the swarm until it answers.
async fn beet_get(swarm: &mut Swarm<Beet>, cid: &Cid) -> Vec<u8> {
    let q = swarm.behaviour_mut().get(cid);
    within(30, &format!("beetswap get {cid}"), async {
        loop {
            if let SwarmEvent::Behaviour(ev) = swarm.select_next_some().await {
                match ev {
                    beetswap::Event::GetQueryResponse { query_id, data } if query_id == q => {
                        return data
                    }
                    beetswap::Event::GetQueryError { query_id, error } if query_id == q => {
                        panic!("beetswap error: {error}")
                    }
                    _ => {}
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beetswap_fetches_a_record_from_us() {
    init_tracing();
    let kb = Keypair::generate_ed25519();
    let ours = spawn_node(
        Keypair::generate_ed25519(),
        vec![PeerSpec {
            peer_id: kb.public().to_peer_id(),
            addrs: vec![],
        }],
        fast_limits(),
    )
    .await;
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 249) as u8).collect();
    let put = ours.node.put_bytes(&data).await.expect("put");

    let mut swarm = beet_swarm(kb, Arc::new(InMemoryBlockstore::new()));
    swarm
        .dial(ours.node.listen_addrs()[0].clone())
        .expect("dial");
    within(20, "beetswap connection", async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                return;
            }
        }
    })
    .await;
    let root = beet_get(&mut swarm, &put.root).await;
    let manifest = Manifest::decode(&put.root, &root).expect("our manifest");
    assert_eq!(manifest.links.len(), 6);
    let mut got = Vec::new();
    for link in &manifest.links {
        let leaf = beet_get(&mut swarm, &link.cid).await;
        assert_eq!(leaf.len() as u64, link.size);
        got.extend_from_slice(&leaf);
    }
    assert_eq!(got, data);
    assert!(ours.node.net_stats().blocks_sent >= 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_fetch_a_record_from_beetswap() {
    init_tracing();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 3 % 241) as u8).collect();
    let (root, size, blocks) = pmr_blob::dag::build_dag(&data, u64::MAX).expect("dag");
    let store = Arc::new(InMemoryBlockstore::<64>::new());
    let by_cid: HashMap<Cid, _> = blocks.into_iter().collect();
    for (cid, b) in &by_cid {
        store.put_keyed(cid, b).await.expect("beetswap store");
    }
    let kb = Keypair::generate_ed25519();
    let b_id = kb.public().to_peer_id();
    let mut swarm = beet_swarm(kb, store);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    let addr = within(10, "beetswap listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let ours = spawn_node(
        Keypair::generate_ed25519(),
        vec![PeerSpec {
            peer_id: b_id,
            addrs: vec![addr],
        }],
        fast_limits(),
    )
    .await;
    wait_peers(&ours.node, 1).await;
    let st = within(60, "fetch from beetswap", ours.node.fetch_and_pin(root))
        .await
        .expect("fetched");
    assert!(st.local && st.pinned);
    assert_eq!(st.size, Some(size));
    assert_eq!(ours.node.get_bytes(root).await.expect("read"), data);
    assert_eq!(ours.node.net_stats().blocks_received, by_cid.len() as u64);
}
