//! State shared by the network, peer and reader tasks: the block store, limits, counters, the
//! engine's inbox and the registry of peer tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::{PeerId, StreamProtocol};
use tokio::sync::mpsc;

use super::msg::{EngineMsg, PeerEntry};
use super::{Counters, Limits};
use crate::store::BlockStore;

/// What the network task is started with, to share with the peer and reader tasks.
pub(crate) struct CtxParts {
    pub(crate) protocol: StreamProtocol,
    pub(crate) store: BlockStore,
    pub(crate) limits: Limits,
    pub(crate) counters: Arc<Counters>,
    pub(crate) engine_tx: mpsc::Sender<EngineMsg>,
}

/// State shared by the network, peer and reader tasks.
pub(crate) struct NetCtx {
    pub store: BlockStore,
    pub limits: Limits,
    pub counters: Arc<Counters>,
    pub protocol: StreamProtocol,
    pub engine_tx: mpsc::Sender<EngineMsg>,
    control: Mutex<libp2p_stream::Control>,
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
}

impl NetCtx {
    pub(crate) fn new(parts: CtxParts, control: libp2p_stream::Control) -> Self {
        Self {
            store: parts.store,
            limits: parts.limits,
            counters: parts.counters,
            protocol: parts.protocol,
            engine_tx: parts.engine_tx,
            control: Mutex::new(control),
            peers: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn control(&self) -> libp2p_stream::Control {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, PeerEntry>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn remove_peer(&self, peer: &PeerId) {
        self.peers().remove(peer);
    }

    pub(crate) fn wantlist_sizes(&self) -> Vec<(PeerId, usize)> {
        self.peers()
            .iter()
            .map(|(p, e)| {
                (
                    *p,
                    e.wantlist_len.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}
