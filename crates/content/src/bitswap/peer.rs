//! Per-peer tasks: the server side of one peer's wantlist, the writer of every message sent to
//! that peer, and the readers of the streams it opens to us.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::io::BufReader;
use futures::{AsyncWriteExt, StreamExt as _};
use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc};
use tokio::time::timeout;

use super::msg::{EngineMsg, PeerEntry, PeerMsg, Received};
use super::shared::NetCtx;
use super::wire::{self, Entry, Message, PayloadBlock, PresenceType, WantType, Wantlist};
use super::Counters;

#[derive(Clone, Copy, Debug)]
struct LedgerEntry {
    want_type: WantType,
    send_dont_have: bool,
    seq: u64,
}

/// One peer's wantlist as this node holds it: bounded, answered in arrival order.
#[derive(Default)]
struct Ledger {
    entries: HashMap<Cid, LedgerEntry>,
    ready: VecDeque<(Cid, u64)>,
    waiting: HashSet<Cid>,
    seq: u64,
}

impl Ledger {
    fn apply(&mut self, wl: Wantlist, max: usize, counters: &Counters) {
        if wl.full {
            self.entries.clear();
            self.ready.clear();
            self.waiting.clear();
        }
        for e in wl.entries {
            let Ok(cid) = Cid::try_from(&e.block[..]) else {
                Counters::inc(&counters.malformed_messages, 1);
                continue;
            };
            if e.cancel {
                if self.entries.remove(&cid).is_some() {
                    self.waiting.remove(&cid);
                }
                continue;
            }
            let want_type = WantType::try_from(e.want_type).unwrap_or(WantType::Block);
            if let Some(ex) = self.entries.get_mut(&cid) {
                if want_type == WantType::Block && ex.want_type == WantType::Have {
                    ex.want_type = WantType::Block;
                    ex.send_dont_have = e.send_dont_have;
                    if self.waiting.remove(&cid) {
                        self.ready.push_back((cid, ex.seq));
                    }
                }
                continue;
            }
            if self.entries.len() >= max {
                Counters::inc(&counters.dropped_want_entries, 1);
                continue;
            }
            self.seq += 1;
            self.entries.insert(
                cid,
                LedgerEntry {
                    want_type,
                    send_dont_have: e.send_dont_have,
                    seq: self.seq,
                },
            );
            self.ready.push_back((cid, self.seq));
        }
        // Cancelled entries linger in `ready` until popped; compact so a peer cycling wants and
        // cancels cannot grow it past the entry bound.
        if self.ready.len() > 2 * max {
            let entries = &self.entries;
            let waiting = &self.waiting;
            self.ready.retain(|(c, s)| {
                entries.get(c).is_some_and(|e| e.seq == *s) && !waiting.contains(c)
            });
        }
    }

    fn arrived(&mut self, cid: &Cid) {
        if self.waiting.remove(cid) {
            if let Some(e) = self.entries.get(cid) {
                self.ready.push_back((*cid, e.seq));
            }
        }
    }

    fn recheck_waiting(&mut self) {
        for cid in self.waiting.drain() {
            if let Some(e) = self.entries.get(&cid) {
                self.ready.push_back((cid, e.seq));
            }
        }
    }
}

/// A frame ready to write, with what it carries for the counters.
struct Frame {
    bytes: Vec<u8>,
    blocks: u64,
    block_bytes: u64,
}

/// Starts the task serving `peer` and writing to it.
/// The peer's task, started if needed.
pub(crate) fn ensure_peer(ctx: &Arc<NetCtx>, peer: PeerId) -> PeerEntry {
    if let Some(e) = ctx.peers().get(&peer) {
        if !e.tx.is_closed() {
            return e.clone();
        }
    }
    let entry = spawn_peer(ctx.clone(), peer);
    ctx.peers().insert(peer, entry.clone());
    entry
}

pub(crate) fn spawn_peer(ctx: Arc<NetCtx>, peer: PeerId) -> PeerEntry {
    let (tx, rx) = mpsc::channel(4096);
    let (wtx, wrx) = mpsc::channel::<Frame>(1);
    let entry = PeerEntry::new(tx);
    tokio::spawn(writer(ctx.clone(), peer, wrx));
    let task = PeerTask {
        new_blocks: ctx.store.subscribe(),
        ctx,
        peer,
        inbox: rx,
        writer: wtx,
        ledger: Ledger::default(),
        client: Vec::new(),
        wantlist_len: entry.wantlist_len.clone(),
    };
    tokio::spawn(task.run());
    entry
}

enum Ev {
    Msg(Option<PeerMsg>),
    Block(Result<Cid, broadcast::error::RecvError>),
    Permit(Option<mpsc::OwnedPermit<Frame>>),
}

struct PeerTask {
    ctx: Arc<NetCtx>,
    peer: PeerId,
    inbox: mpsc::Receiver<PeerMsg>,
    new_blocks: broadcast::Receiver<Cid>,
    writer: mpsc::Sender<Frame>,
    ledger: Ledger,
    client: Vec<Entry>,
    wantlist_len: Arc<std::sync::atomic::AtomicUsize>,
}

impl PeerTask {
    async fn run(mut self) {
        loop {
            let has_work = !self.client.is_empty() || !self.ledger.ready.is_empty();
            let ev = tokio::select! {
                msg = self.inbox.recv() => Ev::Msg(msg),
                got = self.new_blocks.recv() => Ev::Block(got),
                permit = self.writer.clone().reserve_owned(), if has_work => Ev::Permit(permit.ok()),
            };
            match ev {
                Ev::Msg(None) | Ev::Permit(None) => break,
                Ev::Msg(Some(msg)) => {
                    self.handle(msg);
                    // Take everything queued so one message carries many entries.
                    while let Ok(msg) = self.inbox.try_recv() {
                        self.handle(msg);
                    }
                }
                Ev::Block(Ok(cid)) => self.ledger.arrived(&cid),
                Ev::Block(Err(broadcast::error::RecvError::Lagged(_))) => {
                    self.ledger.recheck_waiting()
                }
                Ev::Block(Err(broadcast::error::RecvError::Closed)) => break,
                Ev::Permit(Some(permit)) => {
                    if let Some(frame) = self.build() {
                        permit.send(frame);
                    }
                }
            }
            self.wantlist_len
                .store(self.ledger.entries.len(), Ordering::Relaxed);
        }
        tracing::debug!(target: "pmr::content", peer = %self.peer, "peer task ended");
    }

    fn handle(&mut self, msg: PeerMsg) {
        match msg {
            PeerMsg::Wantlist(wl) => {
                self.ledger
                    .apply(wl, self.ctx.limits.max_wantlist_entries, &self.ctx.counters)
            }
            PeerMsg::Want(cid, t) => self.client.push(Entry {
                block: Bytes::from(cid.to_bytes()),
                priority: 1,
                cancel: false,
                want_type: t as i32,
                send_dont_have: true,
            }),
            PeerMsg::Cancel(cid) => self.client.push(Entry {
                block: Bytes::from(cid.to_bytes()),
                priority: 0,
                cancel: true,
                want_type: WantType::Block as i32,
                send_dont_have: false,
            }),
        }
    }

    /// The next message: our wants first, then answers to the peer's wants up to the size
    /// budget, in the order the peer asked.
    fn build(&mut self) -> Option<Frame> {
        let budget = self.ctx.limits.max_outbound_message;
        let mut msg = Message::default();
        let mut size = 16usize;
        if !self.client.is_empty() {
            let take = self.client.len().min(budget / 64);
            let entries: Vec<Entry> = self.client.drain(..take).collect();
            size += entries.len() * 48;
            msg.wantlist = Some(Wantlist {
                entries,
                full: false,
            });
        }
        let (mut blocks, mut block_bytes) = (0u64, 0u64);
        while let Some((cid, seq)) = self.ledger.ready.pop_front() {
            let Some(e) = self.ledger.entries.get(&cid).copied() else {
                continue;
            };
            if e.seq != seq {
                continue;
            }
            if size + 48 > budget {
                self.ledger.ready.push_front((cid, seq));
                break;
            }
            match e.want_type {
                WantType::Block => match self.ctx.store.get(&cid) {
                    Ok(Some(data)) => {
                        if size + data.len() + 64 > budget && !msg.payload.is_empty() {
                            self.ledger.ready.push_front((cid, seq));
                            break;
                        }
                        size += data.len() + 64;
                        blocks += 1;
                        block_bytes += data.len() as u64;
                        msg.payload.push(PayloadBlock {
                            prefix: wire::cid_prefix(&cid),
                            data,
                        });
                        self.ledger.entries.remove(&cid);
                    }
                    Ok(None) | Err(_) => {
                        if e.send_dont_have {
                            size += 48;
                            msg.block_presences
                                .push(presence(&cid, PresenceType::DontHave));
                        }
                        self.ledger.waiting.insert(cid);
                    }
                },
                WantType::Have => {
                    if self.ctx.store.has(&cid).unwrap_or(false) {
                        size += 48;
                        msg.block_presences.push(presence(&cid, PresenceType::Have));
                        self.ledger.entries.remove(&cid);
                    } else {
                        if e.send_dont_have {
                            size += 48;
                            msg.block_presences
                                .push(presence(&cid, PresenceType::DontHave));
                        }
                        self.ledger.waiting.insert(cid);
                    }
                }
            }
        }
        if msg.wantlist.is_none() && msg.payload.is_empty() && msg.block_presences.is_empty() {
            return None;
        }
        Some(Frame {
            bytes: wire::encode_frame(&msg),
            blocks,
            block_bytes,
        })
    }
}

fn presence(cid: &Cid, t: PresenceType) -> wire::BlockPresence {
    wire::BlockPresence {
        cid: Bytes::from(cid.to_bytes()),
        r#type: t as i32,
    }
}

/// Writes frames to the peer over one outbound stream, reopened after an error.
async fn writer(ctx: Arc<NetCtx>, peer: PeerId, mut rx: mpsc::Receiver<Frame>) {
    let mut control = ctx.control();
    let mut stream: Option<libp2p::Stream> = None;
    let wt = ctx.limits.write_timeout;
    while let Some(frame) = rx.recv().await {
        for _attempt in 0..2 {
            if stream.is_none() {
                match timeout(wt, control.open_stream(peer, ctx.protocol.clone())).await {
                    Ok(Ok(s)) => stream = Some(s),
                    Ok(Err(e)) => {
                        tracing::debug!(target: "pmr::content", %peer, error = %e, "cannot open bitswap stream");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(target: "pmr::content", %peer, "timed out opening bitswap stream");
                        break;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { break };
            let res = timeout(wt, async {
                s.write_all(&frame.bytes).await?;
                s.flush().await
            })
            .await;
            match res {
                Ok(Ok(())) => {
                    Counters::inc(&ctx.counters.blocks_sent, frame.blocks);
                    Counters::inc(&ctx.counters.bytes_sent, frame.block_bytes);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "pmr::content", %peer, error = %e, "bitswap write failed; reopening");
                    stream = None;
                }
                Err(_) => {
                    tracing::debug!(target: "pmr::content", %peer, "bitswap write timed out; reopening");
                    stream = None;
                }
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
}

/// Reads the messages of one inbound stream until it ends or breaks a bound.
pub(crate) async fn read_inbound(
    ctx: Arc<NetCtx>,
    peer: PeerId,
    entry: PeerEntry,
    stream: libp2p::Stream,
) {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let counters = &ctx.counters;
    loop {
        let msg = match wire::read_frame(&mut r, ctx.limits.max_message_size).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(wire::WireError::Oversized { len, max }) => {
                Counters::inc(&counters.oversized_messages, 1);
                tracing::warn!(target: "pmr::content", %peer, len, max, "oversized bitswap message; closing the stream");
                break;
            }
            Err(wire::WireError::Decode(e)) => {
                Counters::inc(&counters.malformed_messages, 1);
                tracing::warn!(target: "pmr::content", %peer, error = %e, "malformed bitswap message; closing the stream");
                break;
            }
            Err(e) => {
                tracing::debug!(target: "pmr::content", %peer, error = %e, "bitswap stream ended");
                break;
            }
        };
        if let Some(wl) = msg.wantlist {
            if (!wl.entries.is_empty() || wl.full)
                && entry.tx.send(PeerMsg::Wantlist(wl)).await.is_err()
            {
                break;
            }
        }
        let mut rec = Received::new(peer);
        for b in msg.payload {
            if b.data.len() > 4 * pmr_blob::ids::MAX_BLOCK_SIZE {
                rec.bad += 1;
                continue;
            }
            match wire::block_cid_from_prefix(&b.prefix, &b.data) {
                Ok(cid) => rec.blocks.push((cid, b.data)),
                Err(_) => rec.bad += 1,
            }
        }
        for p in msg.block_presences {
            let Ok(cid) = Cid::try_from(&p.cid[..]) else {
                continue;
            };
            match PresenceType::try_from(p.r#type) {
                Ok(PresenceType::Have) => rec.haves.push(cid),
                Ok(PresenceType::DontHave) => rec.dont_haves.push(cid),
                Err(_) => {}
            }
        }
        if !msg.blocks.is_empty() {
            // Bitswap 1.0.0 blocks carry no prefix; this node only speaks 1.2.0.
            rec.bad += msg.blocks.len();
        }
        if rec.bad > 0 {
            Counters::inc(&counters.rejected_blocks, rec.bad as u64);
        }
        if (rec.bad > 0
            || !rec.blocks.is_empty()
            || !rec.haves.is_empty()
            || !rec.dont_haves.is_empty())
            && ctx.engine_tx.send(EngineMsg::Received(rec)).await.is_err()
        {
            break;
        }
    }
    entry.inbound.fetch_sub(1, Ordering::Relaxed);
    // Drain nothing more: dropping the reader closes the stream.
    let _ = r.into_inner().close().await;
}

/// Accepts inbound bitswap streams, bounded per peer.
pub(crate) async fn accept_loop(ctx: Arc<NetCtx>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let entry = ensure_peer(&ctx, peer);
        let open = entry.inbound.fetch_add(1, Ordering::Relaxed);
        if open >= ctx.limits.max_inbound_streams_per_peer {
            entry.inbound.fetch_sub(1, Ordering::Relaxed);
            Counters::inc(&ctx.counters.refused_streams, 1);
            tracing::warn!(target: "pmr::content", %peer, open, "too many inbound bitswap streams; closing the new one");
            drop(stream);
            continue;
        }
        tokio::spawn(read_inbound(ctx.clone(), peer, entry, stream));
    }
}
