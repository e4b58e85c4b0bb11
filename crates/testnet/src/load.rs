//! An open-loop load generator: transactions are offered at a fixed rate from many accounts,
//! whatever the network's pace, and each is timed from submission until a node streams the
//! block that commits it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy_sol_types::SolCall;
use futures::StreamExt;
use pmr_client::{
    Address, Bytes, ClientError, ConnectOptions, PmrClient, Wallet, B256, PMR, PMR_ADDRESS,
};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::HarnessError;

/// What each load transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadKind {
    /// A call with no data to an address without code (21,000 gas).
    Noop,
    /// A zero-value transfer to another load account.
    Transfer,
    /// `PMR.mintRecord`: a hospital mints a record token to a patient.
    Mint,
}

impl std::str::FromStr for LoadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "noop" => Ok(Self::Noop),
            "transfer" => Ok(Self::Transfer),
            "mint" => Ok(Self::Mint),
            other => Err(format!(
                "unknown load kind `{other}`: use noop, transfer or mint"
            )),
        }
    }
}

/// A load run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// gRPC endpoints; transactions are spread over them round-robin.
    pub rpcs: Vec<String>,
    /// Offered transactions per second.
    pub rate: f64,
    /// How long transactions are offered for; `rate × duration` are offered in all.
    pub duration: Duration,
    /// What each transaction does.
    pub kind: LoadKind,
    /// Number of sending accounts.
    pub accounts: usize,
    /// The network's admin, to permit (or register as hospitals) the load accounts.
    pub admin: Wallet,
    /// How to reach the nodes (their CA, and the account the load's calls are made as).
    pub connect: ConnectOptions,
    /// How long to wait for the last transactions after the offering stops.
    pub drain: Duration,
    /// Most submissions in flight at once.
    pub max_in_flight: usize,
    /// A transaction not committed this long after it was last sent is sent again, to the
    /// next node: the node that took it may have crashed before passing it on. `None` never
    /// resends (a submission still goes to the next node when one cannot be reached).
    pub resubmit_after: Option<Duration>,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    /// Percentiles (nearest rank) of samples in milliseconds.
    pub fn from_ms(mut samples: Vec<f64>) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| -> f64 {
            if samples.is_empty() {
                0.0
            } else {
                samples[((samples.len() as f64 - 1.0) * p).round() as usize]
            }
        };
        Latency {
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// What a load run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Hashes of the transactions seen committed (for invariant checks; not printed).
    #[serde(skip)]
    pub committed: Vec<B256>,
    /// What the transactions did.
    pub kind: LoadKind,
    /// Nodes the transactions were spread over.
    pub nodes: usize,
    /// Sending accounts.
    pub accounts: usize,
    /// How long the offering actually took, in seconds.
    pub duration_s: f64,
    /// Transactions offered.
    pub offered: u64,
    /// Transactions offered per second over the offering window.
    pub offered_rate: f64,
    /// Submissions some node accepted into its mempool.
    pub accepted: u64,
    /// Submissions that went to another node because the first one could not be reached.
    pub failovers: u64,
    /// Sends of a transaction again, to another node, because it was not committed in time.
    pub resubmitted: u64,
    /// Submissions every node answered "busy" or could not take (none refused the
    /// transaction itself): kept, to be sent again later (only when resending).
    pub deferred: u64,
    /// Transactions not refused that had not committed when the drain ended.
    pub uncommitted: u64,
    /// Submissions refused, counted by the start of the node's error message.
    pub rejected: BTreeMap<String, u64>,
    /// Load transactions seen committed by the first node's block stream.
    pub finalized: u64,
    /// Finalized transactions per second, over the longer of the offering window and the time
    /// to the last block seen.
    pub finalized_rate: f64,
    /// Time from a transaction's first offer until the first node streamed its block, in
    /// milliseconds.
    pub commit_latency_ms: Latency,
    /// Blocks committed from the first offer until the drain ended.
    pub blocks: u64,
    /// Blocks per second, from the first offer to the last block seen (at least the offering
    /// window).
    pub blocks_per_s: f64,
    /// Mean transactions per block (load or not) over those blocks.
    pub mean_txs_per_block: f64,
}

impl LoadReport {
    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "load: {:?}, {} nodes, {} accounts, {:.1} s\n\
             offered     {} tx ({:.0}/s)\n\
             accepted    {} ({} sent to the next node, {} deferred, {} resent; {} never committed)\n\
             finalized   {} tx ({:.0}/s)\n\
             latency     p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms\n\
             blocks      {} ({:.2}/s, {:.1} tx/block)\n",
            self.kind,
            self.nodes,
            self.accounts,
            self.duration_s,
            self.offered,
            self.offered_rate,
            self.accepted,
            self.failovers,
            self.deferred,
            self.resubmitted,
            self.uncommitted,
            self.finalized,
            self.finalized_rate,
            self.commit_latency_ms.p50,
            self.commit_latency_ms.p90,
            self.commit_latency_ms.p99,
            self.commit_latency_ms.max,
            self.blocks,
            self.blocks_per_s,
            self.mean_txs_per_block,
        );
        if self.rejected.is_empty() {
            s.push_str("rejected    none\n");
        } else {
            for (reason, n) in &self.rejected {
                s.push_str(&format!("rejected    {n} x {reason}\n"));
            }
        }
        s
    }
}

/// A made-up raw-codec BLAKE3 CID (the contract stores whatever digest it is given).
fn fake_cid(seed: u64, tag: u8) -> PMR::Cid {
    let mut digest = alloy_primitives::keccak256(seed.to_be_bytes());
    digest[0] = tag;
    PMR::Cid {
        codec: 0x55,
        digest,
    }
}

async fn wait_all(c: &PmrClient, hashes: &[B256], timeout: Duration) -> Result<(), HarnessError> {
    for h in hashes {
        c.wait_committed(*h, timeout)
            .await
            .map_err(|e| HarnessError::Load(format!("setup transaction {h}: {e}")))?;
        let r = c
            .receipt(*h)
            .await
            .map_err(|e| HarnessError::Load(e.to_string()))?;
        if !r.receipt.is_some_and(|r| r.success) {
            return Err(HarnessError::Load(format!(
                "setup transaction {h} reverted"
            )));
        }
    }
    Ok(())
}

/// A transaction sent and not yet seen committed.
struct Pending {
    /// When it was first offered: its commit latency counts from here.
    first: Instant,
    /// When it was last sent.
    last: Instant,
    /// The node it was last sent to.
    node: usize,
    /// Times it was sent again.
    resends: u32,
    raw: Bytes,
}

impl Pending {
    /// Whether to send it again: `after` since it was last sent, the wait doubling with each
    /// resend (to at most 8 times `after`), so a halted network is not flooded meanwhile.
    fn resend_due(&self, now: Instant, after: Duration) -> bool {
        now.duration_since(self.last) >= after * (1 << self.resends.min(3))
    }
}

/// What became of a transaction's first submission.
enum Outcome {
    Accepted,
    /// Every node tried was busy or unreachable: still pending, to be sent again.
    Deferred,
    Refused,
}

/// How long one submission may take before the node counts as unreachable.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Submits `raw` to `clients[first]`, or to the next nodes in turn while one cannot be reached
/// (a node that refuses the transaction is not asked again elsewhere). A node that already
/// holds or committed the transaction has accepted it. Returns the node that accepted it.
async fn submit_anywhere(
    clients: &[PmrClient],
    first: usize,
    raw: &Bytes,
) -> Result<usize, ClientError> {
    let mut last = None;
    for i in 0..clients.len() {
        let node = (first + i) % clients.len();
        let r = match tokio::time::timeout(SUBMIT_TIMEOUT, clients[node].submit(raw.clone())).await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(
                SUBMIT_TIMEOUT,
                format!("{} to take a transaction", clients[node].url()),
            )),
        };
        match r {
            Ok(_) => return Ok(node),
            Err(e) if e.is_already_known() => return Ok(node),
            Err(e) if e.is_unreachable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one client"))
}

/// Every quarter of `after`, sends each transaction that is due (see [`Pending::resend_due`])
/// to the node after the one it last went to, as a client does when its node may have crashed with
/// the transaction still in its mempool. Runs until aborted.
async fn resubmit(
    clients: Arc<Vec<PmrClient>>,
    submitted: Arc<Mutex<HashMap<B256, Pending>>>,
    after: Duration,
    count: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval((after / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due: Vec<(usize, Bytes)> = submitted
            .lock()
            .await
            .values_mut()
            .filter(|p| p.resend_due(now, after))
            .map(|p| {
                p.last = now;
                p.resends += 1;
                p.node = (p.node + 1) % clients.len();
                (p.node, p.raw.clone())
            })
            .collect();
        count.fetch_add(due.len() as u64, Ordering::Relaxed);
        // Refusals are expected here (the transaction may have committed meanwhile); the
        // observer decides what committed.
        futures::stream::iter(due)
            .for_each_concurrent(64, |(node, raw)| {
                let clients = clients.clone();
                async move {
                    let _ = submit_anywhere(&clients, node, &raw).await;
                }
            })
            .await;
    }
}

/// Runs a load; see [`LoadSpec`].
pub async fn run_load(spec: LoadSpec) -> Result<LoadReport, HarnessError> {
    if spec.rpcs.is_empty() || spec.accounts == 0 || spec.rate <= 0.0 {
        return Err(HarnessError::Load(
            "need at least one endpoint, one account and a positive rate".into(),
        ));
    }
    let load_err = |e: pmr_client::ClientError| HarnessError::Load(e.to_string());
    let mut clients = Vec::new();
    for url in &spec.rpcs {
        clients.push(
            PmrClient::connect(url.clone(), &spec.connect)
                .await
                .map_err(load_err)?,
        );
    }
    let c0 = clients[0].clone();
    let chain_id = c0.status().await.map_err(load_err)?.chain_id;

    // Setup: permit the accounts (or make them hospitals, with one registered patient).
    let wallets: Vec<Wallet> = (0..spec.accounts).map(|_| Wallet::random()).collect();
    let mut admin_nonce = c0.nonce(spec.admin.address()).await.map_err(load_err)?;
    let mut setup = Vec::new();
    for w in &wallets {
        let data: Vec<u8> = match spec.kind {
            LoadKind::Mint => PMR::registerHospitalCall {
                hospital: w.address(),
            }
            .abi_encode(),
            _ => PMR::setPermittedCall {
                account: w.address(),
                permitted: true,
            }
            .abi_encode(),
        };
        let raw = spec
            .admin
            .sign_call(chain_id, admin_nonce, PMR_ADDRESS, data.into(), 300_000)
            .map_err(|e| HarnessError::Load(e.to_string()))?;
        admin_nonce += 1;
        setup.push(c0.submit(raw).await.map_err(load_err)?);
    }
    let patient_wallet = Wallet::random();
    let patient_meta = pmr_contract::stealth::meta_address_of(&patient_wallet)
        .map_err(|e| HarnessError::Load(e.to_string()))?;
    if spec.kind == LoadKind::Mint {
        let data = pmr_contract::register_patient_call(
            &patient_wallet,
            chain_id,
            B256::repeat_byte(0x11),
            B256::repeat_byte(0x22),
        )
        .map_err(|e| HarnessError::Load(e.to_string()))?
        .abi_encode();
        // Wait for the first hospital before it registers the patient.
        wait_all(&c0, &setup[..1], Duration::from_secs(60)).await?;
        let raw = wallets[0]
            .sign_call(chain_id, 0, PMR_ADDRESS, data.into(), 1_000_000)
            .map_err(|e| HarnessError::Load(e.to_string()))?;
        setup.push(c0.submit(raw).await.map_err(load_err)?);
    }
    if let Some(last) = setup.last() {
        wait_all(&c0, &[*last], Duration::from_secs(120)).await?;
    }

    // Pre-sign every transaction so signing does not compete with the network for CPU.
    let total = (spec.rate * spec.duration.as_secs_f64()).ceil() as u64;
    let mut nonces: Vec<u64> = vec![0; wallets.len()];
    if spec.kind == LoadKind::Mint {
        nonces[0] = 1;
    }
    let mut txs: Vec<(B256, Bytes)> = Vec::with_capacity(total as usize);
    for k in 0..total {
        let a = (k % wallets.len() as u64) as usize;
        let (to, data, gas) = match spec.kind {
            LoadKind::Noop => (Address::repeat_byte(0x42), Bytes::new(), 50_000),
            LoadKind::Transfer => (
                wallets[(a + 1) % wallets.len()].address(),
                Bytes::new(),
                50_000,
            ),
            LoadKind::Mint => (
                PMR_ADDRESS,
                PMR::mintRecordCall {
                    // A one-time owner per record, as hospitals mint them.
                    to: pmr_contract::stealth::mint_to(&patient_meta, 1),
                    root: fake_cid(k, 1),
                    envelope: fake_cid(k, 2),
                    keyCommitment: alloy_primitives::keccak256(k.to_be_bytes()),
                }
                .abi_encode()
                .into(),
                1_000_000,
            ),
        };
        let raw = wallets[a]
            .sign_call(chain_id, nonces[a], to, data, gas)
            .map_err(|e| HarnessError::Load(e.to_string()))?;
        nonces[a] += 1;
        txs.push((alloy_primitives::keccak256(&raw), raw));
    }

    // Observe commits on node 0's block stream; when it ends (the node stopped or restarted,
    // as in a rolling restart), on the next node that serves one, from the next height: every
    // height is seen once, whichever node showed it.
    let submitted: Arc<Mutex<HashMap<B256, Pending>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let committed: Arc<Mutex<Vec<B256>>> = Arc::new(Mutex::new(Vec::new()));
    let blocks_seen: Arc<Mutex<Vec<(Instant, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let first_stream = c0.stream_blocks(0).await.map_err(load_err)?;
    let observer = {
        let submitted = submitted.clone();
        let latencies = latencies.clone();
        let committed = committed.clone();
        let blocks_seen = blocks_seen.clone();
        let watch: Vec<PmrClient> = clients.clone();
        tokio::spawn(async move {
            let mut stream = Some(first_stream);
            let mut next_height = 0u64;
            let mut node = 0usize;
            loop {
                let mut s = match stream.take() {
                    Some(s) => s,
                    None => match watch[node].stream_blocks(next_height).await {
                        Ok(s) => s,
                        Err(_) => {
                            node = (node + 1) % watch.len();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                while let Some(Ok(block)) = s.next().await {
                    let height = block.header.as_ref().map_or(0, |h| h.height);
                    if height < next_height {
                        continue;
                    }
                    next_height = height + 1;
                    let now = Instant::now();
                    let mut sub = submitted.lock().await;
                    let mut lat = latencies.lock().await;
                    let mut seen = committed.lock().await;
                    for t in &block.transactions {
                        let hash = alloy_primitives::keccak256(t);
                        if let Some(p) = sub.remove(&hash) {
                            lat.push(now.duration_since(p.first).as_secs_f64() * 1000.0);
                            seen.push(hash);
                        }
                    }
                    blocks_seen
                        .lock()
                        .await
                        .push((now, block.transactions.len()));
                }
                tracing::info!(target: "pmr::load", node, next_height, "a block stream ended: watching the next node");
                node = (node + 1) % watch.len();
                // A node shutting down may end each new stream at once: do not spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let clients = Arc::new(clients);
    let failovers = Arc::new(AtomicU64::new(0));
    let resubmitted = Arc::new(AtomicU64::new(0));
    let resubmitter = spec.resubmit_after.map(|after| {
        tokio::spawn(resubmit(
            clients.clone(),
            submitted.clone(),
            after,
            resubmitted.clone(),
        ))
    });

    // Offer at the rate, open loop.
    let sem = Arc::new(Semaphore::new(spec.max_in_flight.max(1)));
    let rejected: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut tasks = Vec::new();
    let mut txs = txs.into_iter();
    let resending = spec.resubmit_after.is_some();
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * spec.rate) as u64).min(total);
        while sent < due {
            let Some((hash, raw)) = txs.next() else { break };
            let first = (sent as usize) % clients.len();
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| HarnessError::Load(e.to_string()))?;
            let (clients, submitted, rejected, failovers) = (
                clients.clone(),
                submitted.clone(),
                rejected.clone(),
                failovers.clone(),
            );
            let now = Instant::now();
            submitted.lock().await.insert(
                hash,
                Pending {
                    first: now,
                    last: now,
                    node: first,
                    resends: 0,
                    raw: raw.clone(),
                },
            );
            tasks.push(tokio::spawn(async move {
                let r = submit_anywhere(&clients, first, &raw).await;
                drop(permit);
                match r {
                    Ok(node) => {
                        if node != first {
                            failovers.fetch_add(1, Ordering::Relaxed);
                            if let Some(p) = submitted.lock().await.get_mut(&hash) {
                                p.node = node;
                            }
                        }
                        Outcome::Accepted
                    }
                    // "Try later", or no node reachable: the resender tries again later, as a
                    // client would.
                    Err(e) if resending && (e.is_busy() || e.is_unreachable()) => Outcome::Deferred,
                    Err(e) => {
                        submitted.lock().await.remove(&hash);
                        let msg = e.to_string();
                        let reason: String = msg.split(':').take(2).collect::<Vec<_>>().join(":");
                        *rejected.lock().await.entry(reason).or_default() += 1;
                        Outcome::Refused
                    }
                }
            }));
            sent += 1;
        }
    }
    let offer_window = start.elapsed();
    let (mut accepted, mut deferred) = (0u64, 0u64);
    for t in tasks {
        match t.await {
            Ok(Outcome::Accepted) => accepted += 1,
            Ok(Outcome::Deferred) => deferred += 1,
            Ok(Outcome::Refused) | Err(_) => {}
        }
    }
    // Drain: wait for the accepted ones to commit.
    let drain_deadline = Instant::now() + spec.drain;
    while Instant::now() < drain_deadline && !submitted.lock().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    observer.abort();
    if let Some(r) = resubmitter {
        r.abort();
    }
    let uncommitted = submitted.lock().await.len() as u64;

    let lat = latencies.lock().await.clone();
    let finalized = lat.len() as u64;
    let blocks = blocks_seen.lock().await;
    // Blocks committed from the first offer to the commit of the last finalized transaction.
    let window = offer_window.as_secs_f64();
    let last_commit = blocks
        .last()
        .map(|(t, _)| t.duration_since(start).as_secs_f64())
        .unwrap_or(window);
    let commit_window = last_commit.max(window);
    let in_window: Vec<&(Instant, usize)> = blocks.iter().filter(|(t, _)| *t >= start).collect();
    let block_count = in_window.len() as u64;
    let txs_in_window: usize = in_window.iter().map(|(_, n)| *n).sum();
    let rejected = rejected.lock().await.clone();
    let committed = committed.lock().await.clone();
    Ok(LoadReport {
        committed,
        kind: spec.kind,
        nodes: clients.len(),
        accounts: spec.accounts,
        duration_s: window,
        offered: total,
        offered_rate: total as f64 / window,
        accepted,
        failovers: failovers.load(Ordering::Relaxed),
        deferred,
        resubmitted: resubmitted.load(Ordering::Relaxed),
        uncommitted,
        rejected,
        finalized,
        finalized_rate: finalized as f64 / commit_window,
        commit_latency_ms: Latency::from_ms(lat),
        blocks: block_count,
        blocks_per_s: block_count as f64 / commit_window,
        mean_txs_per_block: if block_count == 0 {
            0.0
        } else {
            txs_in_window as f64 / block_count as f64
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pending_transaction_is_resent_with_backoff() {
        let t0 = Instant::now();
        let after = Duration::from_secs(3);
        let mut p = Pending {
            first: t0,
            last: t0,
            node: 0,
            resends: 0,
            raw: Bytes::new(),
        };
        let s = Duration::from_secs;
        assert!(!p.resend_due(t0 + s(2), after));
        assert!(p.resend_due(t0 + s(3), after));
        // Each resend doubles the wait, up to eight times `after`.
        for (resends, wait) in [(1, 6), (2, 12), (3, 24), (4, 24), (9, 24)] {
            p.resends = resends;
            assert!(!p.resend_due(t0 + s(wait - 1), after), "{resends}");
            assert!(p.resend_due(t0 + s(wait), after), "{resends}");
        }
    }
}
