//! Test harness: real nodes (RocksDB, libp2p TCP on 127.0.0.1, port 0) in one process.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pmr_content::{ContentConfig, ContentNode, Keypair, Limits, Multiaddr, PeerId, PeerSpec};
use pmr_storage::Store;
use tokio::io::{AsyncRead, ReadBuf};

pub(crate) struct TestNode {
    pub node: ContentNode,
    pub keypair: Keypair,
    pub dir: tempfile::TempDir,
}

pub(crate) fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")
}

/// Short timers so failure paths finish in seconds.
pub(crate) fn fast_limits() -> Limits {
    Limits {
        request_timeout: Duration::from_secs(2),
        not_found_timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(300),
        redial_interval: Duration::from_millis(200),
        stat_probe_timeout: Duration::from_millis(800),
        ..Limits::default()
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Bounds a wait and names what it waited for.
pub(crate) async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

pub(crate) async fn spawn_node(keypair: Keypair, peers: Vec<PeerSpec>, limits: Limits) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let mut cfg = ContentConfig::new(keypair.clone(), loopback());
    cfg.peers = peers;
    cfg.limits = limits;
    let node = ContentNode::spawn(cfg, store).await.expect("spawn node");
    TestNode { node, keypair, dir }
}

/// `n` nodes, all allowed to each other; node i dials nodes 0..i.
pub(crate) async fn spawn_mesh(n: usize, limits: Limits) -> Vec<TestNode> {
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate_ed25519()).collect();
    let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let peers = (0..n)
            .filter(|j| *j != i)
            .map(|j| PeerSpec {
                peer_id: ids[j],
                addrs: if j < i {
                    nodes[j].node.listen_addrs()
                } else {
                    Vec::new()
                },
            })
            .collect();
        nodes.push(spawn_node(key.clone(), peers, limits.clone()).await);
    }
    for t in &nodes {
        wait_peers(&t.node, n - 1).await;
    }
    nodes
}

pub(crate) async fn wait_peers(node: &ContentNode, n: usize) {
    within(20, &format!("{n} connected peers"), async {
        loop {
            if node.connected_peers().await.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A deterministic pseudo-random byte source of `len` bytes that holds nothing in memory.
pub(crate) struct PatternReader {
    left: u64,
    state: u64,
}

impl PatternReader {
    pub(crate) fn new(len: u64, seed: u64) -> Self {
        Self {
            left: len,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(64 * 1024) as usize;
        let mut out = vec![0u8; n];
        for chunk in out.chunks_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        buf.put_slice(&out);
        Poll::Ready(Ok(()))
    }
}

/// blake3 of a PatternReader's bytes, computed by reading it.
pub(crate) async fn pattern_hash(len: u64, seed: u64) -> blake3::Hash {
    use tokio::io::AsyncReadExt;
    let mut r = PatternReader::new(len, seed);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize()
}

/// A raw libp2p peer speaking bitswap frames directly (for hostile-peer tests).
pub(crate) struct RawPeer {
    pub peer_id: PeerId,
    pub control: libp2p_stream::Control,
    pub incoming: Option<libp2p_stream::IncomingStreams>,
}

pub(crate) const PROTOCOL: &str = "/pmr/ipfs/bitswap/1.2.0";

impl RawPeer {
    pub(crate) async fn start(keypair: Keypair, dial: Multiaddr) -> Self {
        use futures::StreamExt;
        let peer_id = keypair.public().to_peer_id();
        let behaviour = libp2p_stream::Behaviour::new();
        let mut control = behaviour.new_control();
        let incoming = control
            .accept(libp2p::StreamProtocol::new(PROTOCOL))
            .expect("accept");
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
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
            .build();
        swarm.dial(dial).expect("dial");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                if let libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } =
                    swarm.select_next_some().await
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(peer_id);
                    }
                }
            }
        });
        within(20, "raw peer connection", rx)
            .await
            .expect("connected");
        Self {
            peer_id,
            control,
            incoming: Some(incoming),
        }
    }

    pub(crate) async fn open(&mut self, to: PeerId) -> libp2p::Stream {
        within(
            20,
            "raw stream open",
            self.control
                .open_stream(to, libp2p::StreamProtocol::new(PROTOCOL)),
        )
        .await
        .expect("open stream")
    }
}
