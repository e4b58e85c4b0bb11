//! The content node: blockstore + bitswap network behind one cloneable handle.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use pmr_storage::Store;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::bitswap::engine::Engine;
use crate::bitswap::msg::{EngineMsg, WantFailure};
use crate::bitswap::net::{self, NetCmd};
use crate::bitswap::shared::{CtxParts, NetCtx};
use crate::bitswap::{wire, Counters, Limits, NetStats};
use crate::error::ContentError;
use crate::store::{BlockStore, GcReport, MAX_DEPTH};
use pmr_blob::dag::DagBuilder;
use pmr_blob::ids::{DAG_CBOR, MAX_BLOCK_SIZE, RAW};
use pmr_blob::manifest::Manifest;
use pmr_blob::BlobError;

/// Default largest record: 2 GiB.
pub const DEFAULT_MAX_RECORD_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// A peer this node may talk to.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// Its libp2p identity.
    pub peer_id: PeerId,
    /// Where to dial it; empty if it dials us.
    pub addrs: Vec<Multiaddr>,
}

/// Configuration of a content node.
#[derive(Clone, Debug)]
pub struct ContentConfig {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4002` (`tcp/0` picks a free port).
    pub listen: Vec<Multiaddr>,
    /// The node's libp2p identity.
    pub keypair: Keypair,
    /// The only peers allowed to connect; they are dialled at their addresses.
    pub peers: Vec<PeerSpec>,
    /// Prefix of the protocol id, e.g. `/pmr` gives `/pmr/ipfs/bitswap/1.2.0`; `None` speaks
    /// plain `/ipfs/bitswap/1.2.0`.
    pub protocol_prefix: Option<String>,
    /// Largest record accepted by `put_stream` or fetched from peers.
    pub max_record_size: u64,
    /// Protocol bounds and timers.
    pub limits: Limits,
}

impl ContentConfig {
    /// A config listening on `listen` with default limits and no peers.
    pub fn new(keypair: Keypair, listen: Multiaddr) -> Self {
        Self {
            listen: vec![listen],
            keypair,
            peers: Vec::new(),
            protocol_prefix: Some("/pmr".into()),
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            limits: Limits::default(),
        }
    }
}

/// A stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// Root CID naming the record.
    pub root: Cid,
    /// Record (ciphertext) size in bytes.
    pub size: u64,
}

/// What the node knows of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Root CID.
    pub root: Cid,
    /// Every block of the record is on this node.
    pub local: bool,
    /// The record is pinned here (kept by garbage collection).
    pub pinned: bool,
    /// Record size, if the root manifest is on this node.
    pub size: Option<u64>,
    /// Blocks of the record stored here.
    pub blocks_local: u64,
    /// Connected peers that said they hold the root (asked during `stat`).
    pub replicas: Vec<PeerId>,
}

struct Inner {
    store: BlockStore,
    engine: mpsc::Sender<EngineMsg>,
    net: Arc<NetCtx>,
    cmd: mpsc::Sender<NetCmd>,
    listen: tokio::sync::watch::Receiver<Vec<Multiaddr>>,
    peer_id: PeerId,
    counters: Arc<Counters>,
    limits: Limits,
    max_record_size: u64,
}

/// Handle to a running content node. Cheap to clone.
#[derive(Clone)]
pub struct ContentNode {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ContentNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentNode")
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}

impl ContentNode {
    /// Starts the node: opens the blockstore on `store`, listens, dials the configured peers.
    /// Returns once it listens on every configured address.
    pub async fn spawn(config: ContentConfig, store: Store) -> Result<Self, ContentError> {
        config.limits.validate().map_err(ContentError::Config)?;
        let proto = format!(
            "{}{}",
            config.protocol_prefix.as_deref().unwrap_or(""),
            wire::PROTOCOL
        );
        let protocol = StreamProtocol::try_from_owned(proto.clone()).map_err(|e| {
            ContentError::Config(format!(
                "protocol id `{proto}` is invalid ({e}); the prefix must start with `/`"
            ))
        })?;
        let blocks = BlockStore::new(store);
        let counters = Arc::new(Counters::default());
        let (engine_tx, engine_rx) = mpsc::channel(1024);
        let n_listen = config.listen.len();
        let handle = net::start(
            config.keypair,
            config.listen,
            config
                .peers
                .into_iter()
                .map(|p| (p.peer_id, p.addrs))
                .collect(),
            CtxParts {
                protocol,
                store: blocks.clone(),
                limits: config.limits.clone(),
                counters: counters.clone(),
                engine_tx: engine_tx.clone(),
            },
        )?;
        let engine = Engine::new(blocks.clone(), config.limits.clone(), counters.clone());
        tokio::spawn(engine.run(engine_rx));
        let mut listen = handle.listen.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            listen.wait_for(|v| v.len() >= n_listen),
        )
        .await
        .map_err(|_| ContentError::Network("timed out waiting for the listener to start".into()))?
        .map_err(|_| ContentError::Network("network task ended during start".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store: blocks,
                engine: engine_tx,
                net: handle.ctx,
                cmd: handle.cmd,
                listen: handle.listen,
                peer_id: handle.peer_id,
                counters,
                limits: config.limits,
                max_record_size: config.max_record_size,
            }),
        })
    }

    /// The bitswap limits this node runs with (timeouts, windows, sizes).
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// This node's libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Addresses the node listens on (with the real port when configured as `tcp/0`).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.listen.borrow().clone()
    }

    /// The blockstore (also usable through the `blockstore::Blockstore` trait).
    pub fn blockstore(&self) -> &BlockStore {
        &self.inner.store
    }

    /// Peers currently connected.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .engine
            .send(EngineMsg::Connected(tx))
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Protocol counters and each peer's wantlist size.
    pub fn net_stats(&self) -> NetStats {
        let mut s = self.inner.counters.snapshot();
        s.peer_wantlists = self.inner.net.wantlist_sizes();
        s
    }

    /// Chunks the (ciphertext) stream into blocks, stores them, pins the root and returns it.
    /// Memory stays bounded whatever the size. Past `max_record_size` it fails with
    /// [`BlobError::TooLarge`] and removes the blocks it had written.
    pub async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        mut reader: R,
    ) -> Result<PutResult, ContentError> {
        let store = &self.inner.store;
        let _guard = store.gc_lock().clone().read_owned().await;
        let mut builder = DagBuilder::new(self.inner.max_record_size);
        let mut buf = vec![0u8; MAX_BLOCK_SIZE];
        let mut pending = Vec::new();
        let mut written: Vec<Cid> = Vec::new();
        let result = async {
            loop {
                let n = reader.read(&mut buf).await.map_err(ContentError::Read)?;
                if n == 0 {
                    break;
                }
                builder.push(&buf[..n], &mut pending)?;
                if pending.len() >= 16 {
                    self.write_new(&mut pending, &mut written)?;
                }
            }
            let (root, size) = builder.finish(&mut pending);
            self.write_new(&mut pending, &mut written)?;
            store.set_pin(&root, size)?;
            Ok(PutResult { root, size })
        }
        .await;
        if result.is_err() && !written.is_empty() {
            if let Err(e) = store.remove_many(&written) {
                tracing::warn!(target: "pmr::content", error = %e, "could not remove the blocks of a failed upload; gc will");
            }
        }
        if let Ok(r) = &result {
            tracing::info!(target: "pmr::content", root = %r.root, size = r.size, "record stored and pinned");
        }
        result
    }

    fn write_new(
        &self,
        pending: &mut Vec<pmr_blob::dag::Block>,
        written: &mut Vec<Cid>,
    ) -> Result<(), ContentError> {
        let store = &self.inner.store;
        let mut fresh = Vec::with_capacity(pending.len());
        for b in pending.drain(..) {
            if !store.has(&b.0)? {
                written.push(b.0);
                fresh.push(b);
            }
        }
        store.put_computed(&fresh)
    }

    /// Stores an in-memory (ciphertext) record.
    pub async fn put_bytes(&self, data: &[u8]) -> Result<PutResult, ContentError> {
        self.put_stream(data).await
    }

    /// Streams a record's bytes in order, fetching missing blocks from peers with many in
    /// flight. Fails up front if the root cannot be found or the record is over the limit;
    /// later failures arrive as the stream's last item.
    pub async fn get_stream(&self, root: Cid) -> Result<BlobStream, ContentError> {
        let guard = self.inner.store.gc_lock().clone().read_owned().await;
        let data = self
            .fetch_block(root, root, self.inner.limits.not_found_timeout)
            .await?;
        let m = Manifest::decode(&root, &data)?;
        self.check_size(m.size)?;
        let size = m.size;
        let (tx, rx) = mpsc::channel(8);
        let me = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let res = me.walk_fetch(root, Some(data), Some(tx.clone())).await;
            if let Err(e) = res {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(BlobStream { size, rx })
    }

    /// Reads a whole record into memory (small records, tests).
    pub async fn get_bytes(&self, root: Cid) -> Result<Vec<u8>, ContentError> {
        let mut s = self.get_stream(root).await?;
        let mut out = Vec::with_capacity(s.size() as usize);
        while let Some(piece) = s.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// Fetches every missing block of the record from peers, then pins it.
    pub async fn fetch_and_pin(&self, root: Cid) -> Result<Stat, ContentError> {
        self.fetch_and_pin_within(root, self.inner.limits.not_found_timeout)
            .await
    }

    /// [`Self::fetch_and_pin`], giving up on the root block `patience` after every connected
    /// peer was asked and none had it (so a CID nobody holds costs little); the rest of the
    /// record, once its root is found, gets the usual not-found timeout.
    pub async fn fetch_and_pin_within(
        &self,
        root: Cid,
        patience: Duration,
    ) -> Result<Stat, ContentError> {
        let _guard = self.inner.store.gc_lock().clone().read_owned().await;
        let local = self.inner.store.walk(&root, |_, _| {})?;
        let size = if local.complete {
            local.size.unwrap_or(0)
        } else {
            let data = self.fetch_block(root, root, patience).await?;
            let m = Manifest::decode(&root, &data)?;
            self.check_size(m.size)?;
            self.walk_fetch(root, Some(data), None).await?
        };
        self.inner.store.set_pin(&root, size)?;
        tracing::info!(target: "pmr::content", %root, size, "record fetched and pinned");
        self.local_stat(root, Vec::new())
    }

    /// Replication hook, called when a record's mint is committed: fetch and pin it.
    pub async fn replicate(&self, root: Cid) -> Result<Stat, ContentError> {
        self.fetch_and_pin(root).await
    }

    /// Pins a record that is entirely on this node (no network); see [`Self::fetch_and_pin`].
    pub async fn pin(&self, root: Cid) -> Result<Stat, ContentError> {
        let _guard = self.inner.store.gc_lock().clone().read_owned().await;
        let mut first_missing = None;
        let st = self.inner.store.walk(&root, |cid, present| {
            if !present && first_missing.is_none() {
                first_missing = Some(*cid);
            }
        })?;
        if let Some(cid) = first_missing {
            return Err(ContentError::NotLocal { root, cid });
        }
        self.inner.store.set_pin(&root, st.size.unwrap_or(0))?;
        self.local_stat(root, Vec::new())
    }

    /// Unpins a record; its blocks go at the next [`Self::gc`]. Returns whether it was pinned.
    pub async fn unpin(&self, root: Cid) -> Result<bool, ContentError> {
        self.inner.store.remove_pin(&root)
    }

    /// Deletes every block no pinned record reaches.
    pub async fn gc(&self) -> Result<GcReport, ContentError> {
        self.inner.store.gc().await
    }

    /// Local state of a record plus which connected peers say they hold its root.
    pub async fn stat(&self, root: Cid) -> Result<Stat, ContentError> {
        let (tx, rx) = oneshot::channel();
        let replicas = if self
            .inner
            .engine
            .send(EngineMsg::Probe {
                cid: root,
                reply: tx,
            })
            .await
            .is_ok()
        {
            let wait = self.inner.limits.stat_probe_timeout + Duration::from_millis(500);
            tokio::time::timeout(wait, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.local_stat(root, replicas)
    }

    fn local_stat(&self, root: Cid, replicas: Vec<PeerId>) -> Result<Stat, ContentError> {
        let st = self.inner.store.walk(&root, |_, _| {})?;
        Ok(Stat {
            root,
            local: st.complete,
            pinned: self.inner.store.is_pinned(&root)?,
            size: st.size,
            blocks_local: st.blocks_present,
            replicas,
        })
    }

    /// Stops the network (closing connections). The handle's store stays usable.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd.send(NetCmd::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }

    fn check_size(&self, size: u64) -> Result<(), ContentError> {
        if size > self.inner.max_record_size {
            return Err(BlobError::TooLarge {
                limit: self.inner.max_record_size,
                seen: size,
            }
            .into());
        }
        Ok(())
    }

    fn want(
        &self,
        cid: Cid,
        group: Cid,
        patience: Duration,
    ) -> oneshot::Receiver<Result<Bytes, WantFailure>> {
        let (tx, rx) = oneshot::channel();
        let msg = EngineMsg::Want {
            cid,
            group,
            patience,
            reply: tx,
        };
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.inner.engine.try_send(msg) {
            let engine = self.inner.engine.clone();
            tokio::spawn(async move {
                let _ = engine.send(msg).await;
            });
        }
        rx
    }

    async fn fetch_block(
        &self,
        cid: Cid,
        group: Cid,
        patience: Duration,
    ) -> Result<Bytes, ContentError> {
        match self.inner.store.get(&cid) {
            Ok(Some(d)) => return Ok(d),
            Ok(None) | Err(ContentError::Blob(BlobError::CorruptBlock { .. })) => {}
            Err(e) => return Err(e),
        }
        match self.want(cid, group, patience).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(f)) => Err(not_found(vec![cid], &f)),
            Err(_) => Err(ContentError::Shutdown),
        }
    }

    /// Walks the DAG in record order with a window of blocks in flight; leaf bytes go to `sink`
    /// in order. Returns the record size.
    async fn walk_fetch(
        &self,
        root: Cid,
        root_data: Option<Bytes>,
        sink: Option<mpsc::Sender<Result<Bytes, ContentError>>>,
    ) -> Result<u64, ContentError> {
        let store = &self.inner.store;
        let window = self.inner.limits.session_window;
        let mut order: VecDeque<Slot> = VecDeque::new();
        order.push_back(Slot {
            cid: root,
            expect: None,
            depth: 0,
            len: root_data.as_ref().map_or(0, |d| d.len() as u64),
            data: root_data,
            requested: false,
        });
        let mut stash: HashMap<Cid, Bytes> = HashMap::new();
        let mut inflight = FuturesUnordered::new();
        let mut requested: HashMap<Cid, ()> = HashMap::new();
        let mut emitted = 0u64;
        let mut total = None;
        let bad = |reason: String| ContentError::BadDag { root, reason };
        loop {
            // Pop completed slots at the front, in order.
            while order.front().is_some_and(|s| s.data.is_some()) {
                let Some(slot) = order.pop_front() else { break };
                let Some(data) = slot.data else { break };
                if slot.cid.codec() == DAG_CBOR {
                    if slot.depth > MAX_DEPTH {
                        return Err(bad(format!("deeper than {MAX_DEPTH} levels")));
                    }
                    let m = Manifest::decode(&slot.cid, &data)?;
                    if let Some(e) = slot.expect {
                        if e != m.size {
                            return Err(bad(format!(
                                "manifest {} says {} bytes, its parent {e}",
                                slot.cid, m.size
                            )));
                        }
                    } else {
                        self.check_size(m.size)?;
                        total = Some(m.size);
                    }
                    for l in m.links.iter().rev() {
                        order.push_front(Slot {
                            cid: l.cid,
                            expect: Some(l.size),
                            depth: slot.depth + 1,
                            data: None,
                            len: 0,
                            requested: false,
                        });
                    }
                } else {
                    if slot.expect != Some(slot.len) || slot.len > MAX_BLOCK_SIZE as u64 {
                        return Err(bad(format!(
                            "leaf {} has {} bytes, its manifest says {:?}",
                            slot.cid, slot.len, slot.expect
                        )));
                    }
                    emitted += slot.len;
                    if let Some(tx) = &sink {
                        if tx.send(Ok(data)).await.is_err() {
                            return Err(ContentError::Shutdown);
                        }
                    }
                }
            }
            if order.is_empty() {
                break;
            }
            // Fill the window: local blocks directly, the rest from peers.
            for slot in order.iter_mut().take(window) {
                if slot.data.is_some() {
                    continue;
                }
                if let Some(d) = stash.get(&slot.cid) {
                    slot.len = d.len() as u64;
                    slot.data = Some(d.clone());
                    continue;
                }
                if slot.requested && requested.contains_key(&slot.cid) {
                    continue;
                }
                if slot.cid.codec() != RAW && slot.cid.codec() != DAG_CBOR {
                    return Err(bad(format!("link {} has an unknown codec", slot.cid)));
                }
                let local = if sink.is_none() && slot.cid.codec() == RAW {
                    // Only presence matters when pinning; skip reading the bytes.
                    if store.has(&slot.cid)? {
                        slot.len = slot.expect.unwrap_or(0);
                        slot.data = Some(Bytes::new());
                        continue;
                    }
                    None
                } else {
                    match store.get(&slot.cid) {
                        Ok(d) => d,
                        Err(ContentError::Blob(BlobError::CorruptBlock { .. })) => None,
                        Err(e) => return Err(e),
                    }
                };
                match local {
                    Some(d) => {
                        slot.len = d.len() as u64;
                        slot.data = Some(d);
                    }
                    None => {
                        slot.requested = true;
                        if requested.insert(slot.cid, ()).is_none() {
                            let cid = slot.cid;
                            let rx = self.want(cid, root, self.inner.limits.not_found_timeout);
                            inflight.push(rx.map(move |r| (cid, r)));
                        }
                    }
                }
            }
            if order.front().is_some_and(|s| s.data.is_some()) {
                continue;
            }
            let Some((cid, res)) = inflight.next().await else {
                return Err(bad("walk stalled with nothing in flight".into()));
            };
            let data = match res {
                Ok(Ok(d)) => d,
                Ok(Err(f)) => {
                    let mut missing = vec![cid];
                    while let Some(Some((c, Ok(Err(_))))) = inflight.next().now_or_never() {
                        missing.push(c);
                    }
                    return Err(not_found(missing, &f));
                }
                Err(_) => return Err(ContentError::Shutdown),
            };
            requested.remove(&cid);
            let mut matched = false;
            for slot in order.iter_mut().take(window) {
                if slot.cid == cid && slot.data.is_none() {
                    slot.len = data.len() as u64;
                    slot.data = Some(data.clone());
                    slot.requested = false;
                    matched = true;
                }
            }
            if !matched {
                // Its slot was pushed out of the window by a manifest expanding before it.
                stash.insert(cid, data);
            }
        }
        let total = total.unwrap_or(0);
        if emitted != total {
            return Err(bad(format!(
                "leaves hold {emitted} bytes, the root says {total}"
            )));
        }
        Ok(total)
    }
}

struct Slot {
    cid: Cid,
    expect: Option<u64>,
    depth: usize,
    data: Option<Bytes>,
    len: u64,
    requested: bool,
}

fn not_found(cids: Vec<Cid>, f: &WantFailure) -> ContentError {
    ContentError::NotFound {
        cids,
        peers: f.peers,
        waited_ms: f.waited.as_millis() as u64,
    }
}

/// A record's bytes, in order, as they arrive.
pub struct BlobStream {
    size: u64,
    rx: mpsc::Receiver<Result<Bytes, ContentError>>,
}

impl BlobStream {
    /// Record size from its root manifest.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, ContentError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
