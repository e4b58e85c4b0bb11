//! The messages the bitswap tasks exchange: requests to the engine (wants, what peers sent,
//! peers coming and going) and work for a peer task. The engine, network and peer tasks know
//! each other only through these and the shared [`super::shared::NetCtx`].

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::wire::{WantType, Wantlist};

/// Why a want failed.
#[derive(Debug, Clone)]
pub(crate) struct WantFailure {
    pub peers: usize,
    pub waited: Duration,
}

/// What one inbound message brought.
#[derive(Debug)]
pub(crate) struct Received {
    pub peer: PeerId,
    pub blocks: Vec<(Cid, Bytes)>,
    pub haves: Vec<Cid>,
    pub dont_haves: Vec<Cid>,
    /// Blocks refused before reaching the engine (bad prefix, unsupported hash, too large).
    pub bad: usize,
}

impl Received {
    pub(crate) fn new(peer: PeerId) -> Self {
        Self {
            peer,
            blocks: Vec::new(),
            haves: Vec::new(),
            dont_haves: Vec::new(),
            bad: 0,
        }
    }
}

pub(crate) type WantReply = oneshot::Sender<Result<Bytes, WantFailure>>;

/// Requests to the engine.
#[derive(Debug)]
pub(crate) enum EngineMsg {
    /// Fetch one block; `group` is the root of the record it belongs to.
    Want {
        cid: Cid,
        group: Cid,
        /// How long the want may stay unanswered once every peer was asked (the longest of its
        /// waiters' when several wait for one block).
        patience: Duration,
        reply: WantReply,
    },
    /// A message arrived from a peer.
    Received(Received),
    /// A peer connected.
    PeerUp(PeerId, mpsc::Sender<PeerMsg>),
    /// A peer's last connection closed.
    PeerDown(PeerId),
    /// Ask every connected peer whether it has `cid`; reply with those that do.
    Probe {
        cid: Cid,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// The peers currently connected.
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// Work for a peer task.
#[derive(Debug)]
pub(crate) enum PeerMsg {
    /// The peer's wantlist changes (server side).
    Wantlist(Wantlist),
    /// Ask the peer for a block or for whether it has one (client side).
    Want(Cid, WantType),
    /// Withdraw a want sent earlier (client side).
    Cancel(Cid),
}

/// A peer registry entry: the peer task's inbox and its bounds.
#[derive(Clone)]
pub(crate) struct PeerEntry {
    pub tx: mpsc::Sender<PeerMsg>,
    pub wantlist_len: Arc<AtomicUsize>,
    pub inbound: Arc<AtomicUsize>,
}

impl PeerEntry {
    pub(crate) fn new(tx: mpsc::Sender<PeerMsg>) -> Self {
        Self {
            tx,
            wantlist_len: Arc::new(AtomicUsize::new(0)),
            inbound: Arc::new(AtomicUsize::new(0)),
        }
    }
}
