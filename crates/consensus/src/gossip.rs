//! Transaction gossip between network members over libp2p gossipsub.
//!
//! A transaction admitted at one node's door is batched and published to every other node, so
//! whichever validator proposes next has it. Only the configured peers (the validator set and
//! listed full nodes) may connect: every other peer id is refused at the connection level.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::codec::{CodecError, Reader, Writer};

const TOPIC: &str = "/pmr/txs/1";
/// Largest gossip message; a batch is flushed before it would exceed this.
const MAX_MESSAGE: usize = 1024 * 1024;
/// How long a batch may wait for more transactions before it is published.
const BATCH_DELAY: Duration = Duration::from_millis(3);
/// Most bytes of batches kept while no peer has subscribed yet (a node that just started takes
/// submissions before its gossip peers are back); the oldest go first past this.
const MAX_BACKLOG: usize = 8 * MAX_MESSAGE;

/// Where and to whom the gossip layer connects.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// The libp2p identity to connect with; the node passes its consensus network key, so both
    /// layers share one peer id.
    pub keypair: Keypair,
    /// Where gossip listens for connections.
    pub listen: Multiaddr,
    /// Peers to keep a connection to, with an address to dial.
    pub dial: Vec<(PeerId, Multiaddr)>,
    /// Every peer allowed to connect (the validator set and listed full nodes).
    pub allowed: HashSet<PeerId>,
}

/// Errors starting the gossip layer.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Building the libp2p transport or the gossipsub behaviour failed.
    #[error("gossip transport setup failed: {0}")]
    Transport(String),
    /// The listen address cannot be bound.
    #[error("cannot listen for transaction gossip on {addr}: {reason} (is the port taken? choose another `gossip_listen` address)")]
    Listen {
        /// The address to listen on.
        addr: Multiaddr,
        /// Why it cannot be bound.
        reason: String,
    },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    gossipsub: gossipsub::Behaviour,
}

/// Handle to publish transactions.
#[derive(Clone)]
pub struct TxGossip {
    out: mpsc::Sender<Bytes>,
    peers: Arc<AtomicUsize>,
    listening: tokio::sync::watch::Receiver<Vec<Multiaddr>>,
}

impl TxGossip {
    /// Queues a transaction for broadcast. Drops it (it stays in the local mempool) when the
    /// queue is full.
    pub fn publish(&self, raw: Bytes) {
        if self.out.try_send(raw).is_err() {
            debug!(target: "pmr::gossip", "gossip queue full, transaction stays local");
        }
    }

    /// Number of connected gossip peers.
    pub fn peer_count(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// The addresses gossip listens on, once it listens (a `listen` address with port 0 gets
    /// its port here); empty if the layer stopped first.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        let addrs = match rx.wait_for(|a| !a.is_empty()).await {
            Ok(addrs) => addrs.clone(),
            Err(_) => Vec::new(),
        };
        addrs
    }
}

/// Encodes a batch of raw transactions.
pub fn encode_batch(txs: &[Bytes]) -> Bytes {
    let mut w = Writer::default();
    w.len(txs.len());
    for tx in txs {
        w.bytes(tx);
    }
    w.finish()
}

/// Decodes [`encode_batch`] output.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Bytes>, CodecError> {
    let mut r = Reader::new(bytes);
    let n = r.len("transaction batch", 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Bytes::copy_from_slice(r.bytes("transaction")?));
    }
    r.end()?;
    Ok(out)
}

/// Starts the gossip layer. `on_batch` receives every batch published by another node.
pub fn spawn(
    cfg: GossipConfig,
    on_batch: impl Fn(PeerId, Vec<Bytes>) + Send + Sync + 'static,
) -> Result<TxGossip, GossipError> {
    let mut swarm = build_swarm(&cfg)?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| GossipError::Listen {
            addr: cfg.listen.clone(),
            reason: e.to_string(),
        })?;
    let (out, rx) = mpsc::channel(100_000);
    let peers = Arc::new(AtomicUsize::new(0));
    let (listen_tx, listening) = tokio::sync::watch::channel(Vec::new());
    tokio::spawn(run(swarm, cfg, rx, peers.clone(), listen_tx, on_batch));
    Ok(TxGossip {
        out,
        peers,
        listening,
    })
}

fn build_swarm(cfg: &GossipConfig) -> Result<Swarm<Behaviour>, GossipError> {
    let allowed = cfg.allowed.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_behaviour(
            |key| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let config = gossipsub::ConfigBuilder::default()
                    .max_transmit_size(MAX_MESSAGE + 4096)
                    .validation_mode(ValidationMode::Strict)
                    .heartbeat_interval(Duration::from_millis(500))
                    .build()
                    .map_err(|e| e.to_string())?;
                let gossipsub =
                    gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)?;
                let mut allow =
                    allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
                for p in &allowed {
                    allow.allow_peer(*p);
                }
                Ok(Behaviour { allow, gossipsub })
            },
        )
        .map_err(|e| GossipError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    cfg: GossipConfig,
    mut rx: mpsc::Receiver<Bytes>,
    peers: Arc<AtomicUsize>,
    listening: tokio::sync::watch::Sender<Vec<Multiaddr>>,
    on_batch: impl Fn(PeerId, Vec<Bytes>) + Send + Sync + 'static,
) {
    let topic = IdentTopic::new(TOPIC);
    if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&topic) {
        warn!(target: "pmr::gossip", error = %e, "cannot subscribe to the transaction topic");
        return;
    }
    let me = *swarm.local_peer_id();
    let mut redial = tokio::time::interval(Duration::from_secs(1));
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut backlog = Backlog::default();
    let flush = tokio::time::sleep(BATCH_DELAY);
    tokio::pin!(flush);
    let mut flush_armed = false;
    loop {
        tokio::select! {
            _ = redial.tick() => {
                for (peer, addr) in &cfg.dial {
                    if *peer != me && !swarm.is_connected(peer) {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(*peer)
                            .addresses(vec![addr.clone()])
                            .build();
                        let _ = swarm.dial(opts);
                    }
                }
            }
            maybe = rx.recv() => {
                let Some(tx) = maybe else { return };
                if batch_bytes + tx.len() + 4 > MAX_MESSAGE && !batch.is_empty() {
                    publish(&mut swarm, &topic, &mut batch, &mut batch_bytes, &mut backlog);
                }
                batch_bytes += tx.len() + 4;
                batch.push(tx);
                if !flush_armed {
                    flush.as_mut().reset(tokio::time::Instant::now() + BATCH_DELAY);
                    flush_armed = true;
                }
            }
            _ = &mut flush, if flush_armed => {
                flush_armed = false;
                publish(&mut swarm, &topic, &mut batch, &mut batch_bytes, &mut backlog);
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    propagation_source,
                    message,
                    ..
                })) => match decode_batch(&message.data) {
                    Ok(txs) => on_batch(propagation_source, txs),
                    Err(e) => warn!(target: "pmr::gossip", peer = %propagation_source, error = %e, "undecodable transaction batch"),
                },
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                    peer_id,
                    topic: subscribed,
                })) if subscribed == topic.hash() && !backlog.is_empty() => {
                    info!(target: "pmr::gossip", peer = %peer_id, batches = backlog.batches.len(), "publishing the transactions held while no peer was subscribed");
                    backlog.publish(&mut swarm, &topic);
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    info!(target: "pmr::gossip", peer = %peer_id, "gossip peer connected");
                    peers.store(swarm.connected_peers().count(), Ordering::Relaxed);
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } => {
                    debug!(target: "pmr::gossip", peer = %peer_id, "gossip peer disconnected");
                    peers.store(swarm.connected_peers().count(), Ordering::Relaxed);
                }
                SwarmEvent::NewListenAddr { address, .. } => {
                    listening.send_modify(|a| a.push(address));
                }
                _ => {}
            },
        }
    }
}

fn publish(
    swarm: &mut Swarm<Behaviour>,
    topic: &IdentTopic,
    batch: &mut Vec<Bytes>,
    batch_bytes: &mut usize,
    backlog: &mut Backlog,
) {
    if batch.is_empty() {
        return;
    }
    let data = encode_batch(batch);
    batch.clear();
    *batch_bytes = 0;
    backlog.push(data);
    backlog.publish(swarm, topic);
}

/// Batches not yet published because no peer was subscribed to the topic: sent, oldest first,
/// as soon as one is (otherwise they would reach the proposers only when this node proposes).
#[derive(Default)]
struct Backlog {
    batches: std::collections::VecDeque<Bytes>,
    bytes: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn push(&mut self, data: Bytes) {
        self.bytes += data.len();
        self.batches.push_back(data);
        while self.bytes > MAX_BACKLOG {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            debug!(target: "pmr::gossip", "gossip backlog full; the oldest batch stays local");
        }
    }

    /// Publishes the batches in order once some peer is subscribed to the topic (until then
    /// they wait for the first subscription). Each batch is moved into gossipsub, not copied;
    /// one that fails anyway is dropped (its transactions stay in this node's mempool).
    fn publish(&mut self, swarm: &mut Swarm<Behaviour>, topic: &IdentTopic) {
        let hash = topic.hash();
        let subscribed = swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&hash));
        if !subscribed {
            return;
        }
        while let Some(data) = self.batches.pop_front() {
            self.bytes -= data.len();
            if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), data) {
                debug!(target: "pmr::gossip", error = %e, "transaction batch not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gossip layer listening on a loopback port the OS picks, allowing (and, when given an
    /// address, dialing) `other`; it reports every batch it receives.
    fn member(
        key: &Keypair,
        other: &Keypair,
        other_addr: Option<Multiaddr>,
    ) -> (TxGossip, mpsc::UnboundedReceiver<Vec<Bytes>>) {
        let other_id = other.public().to_peer_id();
        let cfg = GossipConfig {
            keypair: key.clone(),
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            dial: other_addr.into_iter().map(|a| (other_id, a)).collect(),
            allowed: HashSet::from([other_id]),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let gossip = spawn(cfg, move |_, batch| {
            let _ = tx.send(batch);
        })
        .expect("gossip starts");
        (gossip, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_published_before_any_peer_is_sent_once_one_subscribes() {
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        // A listens on a port it holds from the start (no port is probed and released); B,
        // started later, dials it.
        let (a, _from_b) = member(&ka, &kb, None);
        let a_addr = a
            .listen_addrs()
            .await
            .into_iter()
            .next()
            .expect("A listens");
        let tx = Bytes::from_static(b"submitted while alone");
        a.publish(tx.clone());
        // Well past the batching delay: the batch found no subscriber.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a.peer_count(), 0);

        let (_b, mut from_a) = member(&kb, &ka, Some(a_addr));
        let got = tokio::time::timeout(Duration::from_secs(20), from_a.recv())
            .await
            .expect("timed out waiting for node B to receive the batch node A held")
            .expect("B's gossip layer stopped");
        assert_eq!(got, vec![tx]);
    }

    #[test]
    fn batches_round_trip_and_reject_garbage() {
        let txs = vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        assert_eq!(decode_batch(&encode_batch(&txs)).unwrap(), txs);
        let enc = encode_batch(&txs);
        assert!(decode_batch(&enc[..enc.len() - 1]).is_err());
        assert!(decode_batch(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
