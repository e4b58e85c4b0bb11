//! The client side of bitswap: which blocks are wanted, which peer is asked for each, and what
//! happens on a block, a DONT_HAVE, a timeout, a bad block or a lost peer.
//!
//! Wants are grouped by the record root they belong to; peers that delivered blocks of a group
//! are asked first for the rest of it, peers that said DONT_HAVE last. A want nobody has been
//! asked for yet and whose group has no known provider goes to every connected peer at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cid::Cid;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::msg::{EngineMsg, PeerMsg, Received, WantFailure, WantReply};
use super::wire::WantType;
use super::{Counters, Limits};
use crate::store::BlockStore;

struct Want {
    waiters: Vec<WantReply>,
    group: Cid,
    asked: HashMap<PeerId, Instant>,
    tried: HashSet<PeerId>,
    /// Peers connected at any time since the want was made. Only a peer new to this set
    /// restarts the not-found clock, so a peer that keeps reconnecting (or that accepts the
    /// connection and then drops it, as an allow-list does) cannot keep the want alive forever.
    seen: HashSet<PeerId>,
    created: Instant,
    stuck_since: Option<Instant>,
    last_retry: Instant,
    ever_asked: bool,
    /// How long to wait once every peer was asked, before reporting the block not found.
    patience: Duration,
}

#[derive(Default)]
struct Group {
    wants: usize,
    // peer -> (blocks delivered, DONT_HAVEs / failures)
    score: HashMap<PeerId, (u32, u32)>,
}

struct PeerState {
    tx: mpsc::Sender<PeerMsg>,
    inflight: usize,
}

struct Probe {
    cid: Cid,
    reply: Option<oneshot::Sender<Vec<PeerId>>>,
    asked: HashSet<PeerId>,
    haves: Vec<PeerId>,
    deadline: Instant,
}

/// A bounded set of recently completed or cancelled CIDs, to tell a late duplicate from a
/// block nobody asked for.
struct Recent {
    order: VecDeque<Cid>,
    set: HashSet<Cid>,
    cap: usize,
}

impl Recent {
    fn insert(&mut self, cid: Cid) {
        if self.set.insert(cid) {
            self.order.push_back(cid);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

pub(crate) struct Engine {
    store: BlockStore,
    limits: Limits,
    counters: Arc<Counters>,
    peers: HashMap<PeerId, PeerState>,
    wants: HashMap<Cid, Want>,
    queue: VecDeque<Cid>,
    groups: HashMap<Cid, Group>,
    recent: Recent,
    probes: Vec<Probe>,
    /// Where the engine reads the time: the system's, or (in tests) one the test moves.
    clock: Clock,
}

/// The engine's clock.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// A time the owner sets (unit tests: no test waits on, or races, the real clock).
    #[cfg(test)]
    Manual(Arc<std::sync::Mutex<Instant>>),
}

impl Clock {
    fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(test)]
            Clock::Manual(at) => *at.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Engine {
    pub(crate) fn new(store: BlockStore, limits: Limits, counters: Arc<Counters>) -> Self {
        Self {
            store,
            limits,
            counters,
            peers: HashMap::new(),
            wants: HashMap::new(),
            queue: VecDeque::new(),
            groups: HashMap::new(),
            recent: Recent {
                order: VecDeque::new(),
                set: HashSet::new(),
                cap: 16384,
            },
            probes: Vec::new(),
            clock: Clock::System,
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<EngineMsg>) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
                    }
                    self.schedule();
                }
                _ = tick.tick() => {
                    self.on_tick();
                    self.schedule();
                }
            }
        }
    }

    fn handle(&mut self, msg: EngineMsg) {
        match msg {
            EngineMsg::Want {
                cid,
                group,
                patience,
                reply,
            } => self.add_want(cid, group, patience, reply),
            EngineMsg::Received(r) => self.on_received(r),
            EngineMsg::PeerUp(peer, tx) => {
                self.peers.insert(peer, PeerState { tx, inflight: 0 });
                for w in self.wants.values_mut() {
                    if w.seen.insert(peer) {
                        w.stuck_since = None;
                    }
                }
            }
            EngineMsg::PeerDown(peer) => {
                self.peers.remove(&peer);
                let mut requeue = Vec::new();
                for (cid, w) in self.wants.iter_mut() {
                    if w.asked.remove(&peer).is_some() {
                        requeue.push(*cid);
                    }
                    w.tried.remove(&peer);
                }
                self.queue.extend(requeue);
                for p in &mut self.probes {
                    p.asked.remove(&peer);
                }
            }
            EngineMsg::Probe { cid, reply } => {
                let mut asked = HashSet::new();
                for (peer, st) in &self.peers {
                    if st.tx.try_send(PeerMsg::Want(cid, WantType::Have)).is_ok() {
                        asked.insert(*peer);
                    }
                }
                self.probes.push(Probe {
                    cid,
                    reply: Some(reply),
                    asked,
                    haves: Vec::new(),
                    deadline: self.clock.now() + self.limits.stat_probe_timeout,
                });
                self.finish_probes();
            }
            EngineMsg::Connected(reply) => {
                let _ = reply.send(self.peers.keys().copied().collect());
            }
        }
    }

    fn add_want(&mut self, cid: Cid, group: Cid, patience: Duration, reply: WantReply) {
        if let Some(w) = self.wants.get_mut(&cid) {
            w.waiters.push(reply);
            w.patience = w.patience.max(patience);
            return;
        }
        if let Ok(Some(data)) = self.store.get(&cid) {
            let _ = reply.send(Ok(data));
            return;
        }
        let now = self.clock.now();
        self.groups.entry(group).or_default().wants += 1;
        self.wants.insert(
            cid,
            Want {
                waiters: vec![reply],
                group,
                asked: HashMap::new(),
                tried: HashSet::new(),
                seen: self.peers.keys().copied().collect(),
                created: now,
                stuck_since: None,
                last_retry: now,
                ever_asked: false,
                patience,
            },
        );
        self.queue.push_back(cid);
    }

    fn send(&self, peer: &PeerId, msg: PeerMsg) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.tx.try_send(msg).is_ok())
    }

    fn release(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.inflight = p.inflight.saturating_sub(1);
        }
    }

    fn remove_want(&mut self, cid: &Cid) -> Option<Want> {
        let w = self.wants.remove(cid)?;
        for peer in w.asked.keys() {
            self.release(peer);
        }
        if let Some(g) = self.groups.get_mut(&w.group) {
            g.wants = g.wants.saturating_sub(1);
            if g.wants == 0 {
                self.groups.remove(&w.group);
            }
        }
        self.recent.insert(*cid);
        Some(w)
    }

    fn on_received(&mut self, r: Received) {
        let peer = r.peer;
        let mut penalize = r.bad > 0;
        for (cid, data) in r.blocks {
            if self.wants.contains_key(&cid) {
                if let Err(e) = self.store.put_computed(&[(cid, data.clone())]) {
                    tracing::error!(target: "pmr::content", %cid, error = %e, "cannot store a fetched block");
                    continue;
                }
                Counters::inc(&self.counters.blocks_received, 1);
                Counters::inc(&self.counters.bytes_received, data.len() as u64);
                let Some(w) = self.remove_want(&cid) else {
                    continue;
                };
                // Peers still asked, and peers that said DONT_HAVE (they keep the want
                // waiting and would send the block later), no longer need to.
                for other in w.asked.keys().chain(w.tried.iter()) {
                    if *other != peer {
                        self.send(other, PeerMsg::Cancel(cid));
                    }
                }
                // Cancel at the sender too: some servers (beetswap 0.5) keep served entries in
                // the wantlist until cancelled and stall once it is full.
                self.send(&peer, PeerMsg::Cancel(cid));
                if let Some(g) = self.groups.get_mut(&w.group) {
                    g.score.entry(peer).or_default().0 += 1;
                }
                for waiter in w.waiters {
                    let _ = waiter.send(Ok(data.clone()));
                }
                for p in &mut self.probes {
                    if p.cid == cid && !p.haves.contains(&peer) {
                        p.haves.push(peer);
                    }
                }
            } else if self.recent.set.contains(&cid) {
                Counters::inc(&self.counters.duplicate_blocks, 1);
            } else {
                Counters::inc(&self.counters.rejected_blocks, 1);
                tracing::warn!(target: "pmr::content", %peer, %cid, "block matches no wanted CID (corrupt or unsolicited); asking other peers");
                penalize = true;
            }
        }
        for cid in r.haves {
            for p in &mut self.probes {
                if p.cid == cid {
                    p.asked.remove(&peer);
                    if !p.haves.contains(&peer) {
                        p.haves.push(peer);
                    }
                }
            }
            if let Some(w) = self.wants.get(&cid) {
                if let Some(g) = self.groups.get_mut(&w.group) {
                    g.score.entry(peer).or_default().0 += 1;
                }
            }
        }
        for cid in r.dont_haves {
            for p in &mut self.probes {
                if p.cid == cid {
                    p.asked.remove(&peer);
                }
            }
            let mut requeue = false;
            if let Some(w) = self.wants.get_mut(&cid) {
                if w.asked.remove(&peer).is_some() {
                    requeue = true;
                }
                w.tried.insert(peer);
                if let Some(g) = self.groups.get_mut(&w.group) {
                    g.score.entry(peer).or_default().1 += 1;
                }
            }
            if requeue {
                self.release(&peer);
                self.queue.push_back(cid);
            }
        }
        if penalize {
            self.penalize(peer);
        }
        self.finish_probes();
    }

    /// Takes every outstanding want away from a peer that sent a bad block.
    fn penalize(&mut self, peer: PeerId) {
        let mut moved = Vec::new();
        for (cid, w) in self.wants.iter_mut() {
            if w.asked.remove(&peer).is_some() {
                w.tried.insert(peer);
                moved.push(*cid);
                if let Some(g) = self.groups.get_mut(&w.group) {
                    g.score.entry(peer).or_default().1 += 8;
                }
            }
        }
        for cid in &moved {
            self.release(&peer);
            self.send(&peer, PeerMsg::Cancel(*cid));
        }
        Counters::inc(&self.counters.rerequests, moved.len() as u64);
        self.queue.extend(moved);
    }

    fn finish_probes(&mut self) {
        let now = self.clock.now();
        let mut done = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            if p.asked.is_empty() || now >= p.deadline {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let mut p = self.probes.swap_remove(i);
            for peer in self.peers.keys() {
                if let Some(st) = self.peers.get(peer) {
                    let _ = st.tx.try_send(PeerMsg::Cancel(p.cid));
                }
            }
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(std::mem::take(&mut p.haves));
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.clock.now();
        // Fetches whose callers went away.
        let abandoned: Vec<Cid> = self
            .wants
            .iter_mut()
            .filter_map(|(cid, w)| {
                w.waiters.retain(|r| !r.is_closed());
                w.waiters.is_empty().then_some(*cid)
            })
            .collect();
        for cid in abandoned {
            if let Some(w) = self.remove_want(&cid) {
                for peer in w.asked.keys() {
                    self.send(peer, PeerMsg::Cancel(cid));
                }
            }
        }
        // Peers too slow to answer.
        let rt = self.limits.request_timeout;
        let mut expired = Vec::new();
        for (cid, w) in self.wants.iter_mut() {
            let late: Vec<PeerId> = w
                .asked
                .iter()
                .filter(|(_, at)| now.duration_since(**at) >= rt)
                .map(|(p, _)| *p)
                .collect();
            for p in late {
                w.asked.remove(&p);
                w.tried.insert(p);
                expired.push((*cid, p));
            }
        }
        for (cid, p) in expired {
            tracing::debug!(target: "pmr::content", peer = %p, %cid, "want timed out; asking another peer");
            self.release(&p);
            self.send(&p, PeerMsg::Cancel(cid));
            Counters::inc(&self.counters.rerequests, 1);
            self.queue.push_back(cid);
        }
        // Blocks nobody can provide.
        let failed: Vec<Cid> = self
            .wants
            .iter()
            .filter(|(_, w)| {
                w.stuck_since
                    .is_some_and(|s| now.duration_since(s) >= w.patience)
            })
            .map(|(c, _)| *c)
            .collect();
        let peers = self.peers.len();
        for cid in failed {
            if let Some(w) = self.remove_want(&cid) {
                for peer in w.asked.keys() {
                    self.send(peer, PeerMsg::Cancel(cid));
                }
                let waited = now.duration_since(w.created);
                for waiter in w.waiters {
                    let _ = waiter.send(Err(WantFailure { peers, waited }));
                }
            }
        }
        self.finish_probes();
    }

    /// Assigns queued wants to peers with room.
    fn schedule(&mut self) {
        let now = self.clock.now();
        let max = self.limits.max_blocks_in_flight_per_peer;
        let mut keep = VecDeque::new();
        let mut seen = HashSet::new();
        while let Some(cid) = self.queue.pop_front() {
            if !seen.insert(cid) {
                continue;
            }
            let Some(w) = self.wants.get_mut(&cid) else {
                continue;
            };
            if !w.asked.is_empty() {
                continue;
            }
            let mut candidates: Vec<PeerId> = self
                .peers
                .keys()
                .filter(|p| !w.tried.contains(*p))
                .copied()
                .collect();
            if candidates.is_empty() {
                if w.stuck_since.is_none() {
                    w.stuck_since = Some(now);
                }
                if !w.tried.is_empty()
                    && now.duration_since(w.last_retry) >= self.limits.retry_interval
                {
                    // Everyone was tried: ask again (they may have fetched it meanwhile).
                    w.tried.clear();
                    w.last_retry = now;
                }
                keep.push_back(cid);
                continue;
            }
            // `stuck_since` is only cleared by a peer new to this want: retrying peers that
            // already said DONT_HAVE, or that reconnected, does not extend the deadline.
            let group = self.groups.get(&w.group);
            let known = group.is_some_and(|g| g.score.values().any(|s| s.0 > 0));
            let rank = |p: &PeerId| -> u8 {
                match group.and_then(|g| g.score.get(p)) {
                    Some((h, _)) if *h > 0 => 0,
                    Some((_, d)) if *d > 0 => 2,
                    _ => 1,
                }
            };
            if !w.ever_asked && !known {
                // Nobody known to hold this record: ask everyone.
                w.ever_asked = true;
                for p in candidates {
                    if let Some(st) = self.peers.get_mut(&p) {
                        if st.tx.try_send(PeerMsg::Want(cid, WantType::Block)).is_ok() {
                            st.inflight += 1;
                            w.asked.insert(p, now);
                        }
                    }
                }
                if w.asked.is_empty() {
                    keep.push_back(cid);
                }
                continue;
            }
            candidates.retain(|p| self.peers.get(p).is_some_and(|s| s.inflight < max));
            candidates.sort_by_key(|p| {
                (
                    rank(p),
                    self.peers.get(p).map_or(usize::MAX, |s| s.inflight),
                )
            });
            let mut sent = false;
            for p in candidates {
                if let Some(st) = self.peers.get_mut(&p) {
                    if st.tx.try_send(PeerMsg::Want(cid, WantType::Block)).is_ok() {
                        st.inflight += 1;
                        w.asked.insert(p, now);
                        w.ever_asked = true;
                        sent = true;
                        break;
                    }
                }
            }
            if !sent {
                keep.push_back(cid);
            }
        }
        self.queue = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_blob::ids::{block_cid, DAG_CBOR};
    use std::sync::Mutex;

    /// An engine on a clock the test moves: no test here sleeps or races the real clock.
    fn engine(dir: &tempfile::TempDir, limits: Limits) -> (Engine, ManualClock) {
        let store = BlockStore::new(pmr_storage::Store::open(dir.path()).expect("open"));
        let mut e = Engine::new(store, limits, Arc::new(Counters::default()));
        let clock = ManualClock(Arc::new(Mutex::new(Instant::now())));
        e.clock = Clock::Manual(clock.0.clone());
        (e, clock)
    }

    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().expect("clock")
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().expect("clock") += by;
        }
    }

    /// A peer whose connections open and are dropped at once (it does not allow us) must not
    /// restart the not-found clock on every reconnection.
    #[test]
    fn a_reconnecting_peer_does_not_postpone_not_found_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nf = Duration::from_millis(300);
        let step = Duration::from_millis(20);
        let (mut e, clock) = engine(
            &dir,
            Limits {
                not_found_timeout: nf,
                retry_interval: Duration::from_millis(50),
                ..Limits::default()
            },
        );
        let cid = block_cid(DAG_CBOR, b"nobody has this");
        let (tx, mut rx) = oneshot::channel();
        e.handle(EngineMsg::Want {
            cid,
            group: cid,
            patience: nf,
            reply: tx,
        });
        e.schedule();
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let started = clock.now();
        let mut reconnections = 0;
        let result = loop {
            assert!(
                clock.now() - started < 10 * nf,
                "want still pending after {:?} of a reconnecting peer",
                clock.now() - started
            );
            let (ptx, _prx) = mpsc::channel(16);
            e.handle(EngineMsg::PeerUp(peer, ptx));
            e.schedule();
            e.handle(EngineMsg::PeerDown(peer));
            e.schedule();
            reconnections += 1;
            clock.advance(step);
            e.on_tick();
            e.schedule();
            if let Ok(r) = rx.try_recv() {
                break r;
            }
        };
        let failure = result.expect_err("nobody can provide the block");
        // It reconnected every step, and the want still failed within a few steps of one
        // not-found period.
        assert!(reconnections >= 10, "{reconnections}");
        assert!(failure.waited >= nf, "{failure:?}");
        assert!(failure.waited <= nf + 3 * step, "{failure:?}");
        assert!(e.wants.is_empty());
    }

    /// A peer that connects for the first time while a want is stuck still gets a full
    /// not-found period to answer.
    #[test]
    fn a_new_peer_restarts_the_not_found_clock_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nf = Duration::from_millis(300);
        let step = Duration::from_millis(20);
        let (mut e, clock) = engine(
            &dir,
            Limits {
                not_found_timeout: nf,
                ..Limits::default()
            },
        );
        let cid = block_cid(DAG_CBOR, b"late provider");
        let (tx, mut rx) = oneshot::channel();
        e.handle(EngineMsg::Want {
            cid,
            group: cid,
            patience: nf,
            reply: tx,
        });
        e.schedule();
        clock.advance(nf / 2);
        e.on_tick();
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let (ptx, mut prx) = mpsc::channel(16);
        e.handle(EngineMsg::PeerUp(peer, ptx));
        e.schedule();
        assert!(
            matches!(prx.try_recv(), Ok(PeerMsg::Want(c, WantType::Block)) if c == cid),
            "the new peer is asked"
        );
        // The peer says DONT_HAVE; the want is stuck again from now, not from its creation.
        let mut r = Received::new(peer);
        r.dont_haves.push(cid);
        e.handle(EngineMsg::Received(r));
        e.schedule();
        let stuck_again = clock.now();
        // Past one period from the want's creation, short of one from the DONT_HAVE.
        clock.advance(nf * 2 / 3);
        e.on_tick();
        e.schedule();
        assert!(
            rx.try_recv().is_err(),
            "failed before a full period after the new peer"
        );
        let result = loop {
            assert!(clock.now() - stuck_again < 10 * nf, "want never failed");
            clock.advance(step);
            e.on_tick();
            e.schedule();
            if let Ok(r) = rx.try_recv() {
                break r;
            }
        };
        assert!(result.is_err());
        let waited = clock.now() - stuck_again;
        assert!(waited >= nf && waited < nf + step, "{waited:?}");
    }
}
