//! The libp2p side: a swarm with TCP + noise + yamux, an allow-list of peers (others are denied
//! at connection time), redialing of configured peers, and the bitswap stream protocol.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, identity::Keypair, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

use super::msg::EngineMsg;
use super::peer;
use super::shared::{CtxParts, NetCtx};
use crate::error::ContentError;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    stream: libp2p_stream::Behaviour,
}

/// Commands to the network task.
pub(crate) enum NetCmd {
    Shutdown(oneshot::Sender<()>),
}

/// What `start` hands back.
pub(crate) struct NetHandle {
    pub ctx: Arc<NetCtx>,
    pub cmd: mpsc::Sender<NetCmd>,
    pub listen: watch::Receiver<Vec<Multiaddr>>,
    pub peer_id: PeerId,
}

/// Builds the swarm, starts listening and spawns the network and accept tasks.
pub(crate) fn start(
    keypair: Keypair,
    listen: Vec<Multiaddr>,
    peers: Vec<(PeerId, Vec<Multiaddr>)>,
    parts: CtxParts,
) -> Result<NetHandle, ContentError> {
    let protocol = parts.protocol.clone();
    let peer_id = keypair.public().to_peer_id();
    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for (p, _) in &peers {
        allow.allow_peer(*p);
    }
    let stream = libp2p_stream::Behaviour::new();
    let mut control = stream.new_control();
    let incoming = control
        .accept(protocol.clone())
        .map_err(|e| ContentError::Network(e.to_string()))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| ContentError::Network(format!("transport: {e}")))?
        .with_behaviour(|_| Behaviour { allow, stream })
        .map_err(|e| ContentError::Network(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for addr in listen {
        swarm.listen_on(addr.clone()).map_err(|e| {
            ContentError::Network(format!(
                "cannot listen on {addr}: {e}; choose a different address or port"
            ))
        })?;
    }
    let ctx = Arc::new(NetCtx::new(parts, control));
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    tokio::spawn(peer::accept_loop(ctx.clone(), incoming));
    tokio::spawn(run(swarm, ctx.clone(), peers, cmd_rx, listen_tx));
    Ok(NetHandle {
        ctx,
        cmd: cmd_tx,
        listen: listen_rx,
        peer_id,
    })
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    ctx: Arc<NetCtx>,
    peers: Vec<(PeerId, Vec<Multiaddr>)>,
    mut cmd: mpsc::Receiver<NetCmd>,
    listen_tx: watch::Sender<Vec<Multiaddr>>,
) {
    let mut redial = tokio::time::interval(ctx.limits.redial_interval);
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = cmd.recv() => match c {
                Some(NetCmd::Shutdown(done)) => {
                    let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
                    for p in connected {
                        let _ = swarm.disconnect_peer_id(p);
                    }
                    drop(swarm);
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            _ = redial.tick() => {
                for (p, addrs) in &peers {
                    if addrs.is_empty() || swarm.is_connected(p) {
                        continue;
                    }
                    let opts = DialOpts::peer_id(*p)
                        .addresses(addrs.clone())
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = swarm.dial(opts) {
                        tracing::trace!(target: "pmr::content", peer = %p, error = %e, "dial not started");
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(target: "pmr::content", %address, "bitswap listening");
                    listen_tx.send_modify(|v| v.push(address));
                }
                SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                    if num_established.get() == 1 => {
                        tracing::debug!(target: "pmr::content", peer = %peer_id, "peer connected");
                        let entry = peer::ensure_peer(&ctx, peer_id);
                        let _ = ctx.engine_tx.send(EngineMsg::PeerUp(peer_id, entry.tx)).await;
                    }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        tracing::debug!(target: "pmr::content", peer = %peer_id, "peer disconnected");
                        ctx.remove_peer(&peer_id);
                        let _ = ctx.engine_tx.send(EngineMsg::PeerDown(peer_id)).await;
                    }
                SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                    tracing::debug!(target: "pmr::content", addr = %send_back_addr, error = %error, "inbound connection refused");
                }
                _ => {}
            }
        }
    }
}
