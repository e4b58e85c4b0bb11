//! Replication: every node fetches and pins the blobs that committed blocks name.
//!
//! A committed `RecordMinted` or `RecordVersionAppended` event of the PMR contract carries a
//! record's root CID and its share envelope's CID (binary CIDv1). The replicator follows the
//! committed chain (the ledger's block subscription only wakes it; it reads receipts by height,
//! so a lagging subscription loses nothing). Each CID gets a first attempt in chain order, with
//! little patience for a CID no peer has; one that fails moves to a retry lane with growing
//! backoff and its own small concurrency. So a blob nobody holds (a CID that names nothing, a
//! holder that is down) never holds up the records after it. It never touches the consensus
//! path.
//!
//! Progress survives restarts: `content/replicated_height` in the `Meta` column is the height
//! through which every named blob had its first attempt, and each blob in the retry lane is
//! kept under `content/missing/`, so a node killed mid-fetch starts those heights again and
//! keeps retrying the missing ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, U256};
use alloy_sol_types::SolEvent;
use pmr_consensus::Ledger;
use pmr_content::{Cid, ContentError, ContentNode};
use pmr_contract::{event_cid, PMR, PMR_ADDRESS};
use pmr_execution::Receipt;
use pmr_storage::{Column, Durability, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::custody::Custody;
use crate::uploads::Uploads;

const TARGET: &str = "pmr::replicate";
/// `Meta` key of the height through which every named blob is settled.
pub const CURSOR_KEY: &[u8] = b"content/replicated_height";

/// Which blob of a record an event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// The encrypted record itself.
    RecordRoot,
    /// The sealed key shares of the record.
    ShareEnvelope,
}

impl BlobKind {
    fn as_str(self) -> &'static str {
        match self {
            BlobKind::RecordRoot => "record root",
            BlobKind::ShareEnvelope => "share envelope",
        }
    }
}

/// A blob a committed event names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The blob's root CID.
    pub cid: Cid,
    /// Whether it is the record or its share envelope.
    pub kind: BlobKind,
    /// The record token the event is about.
    pub token_id: U256,
    /// The record version the event creates (0 for the mint).
    pub version: u32,
    /// The version's key commitment as committed.
    pub key_commitment: B256,
    /// The height of the block the event was committed in.
    pub height: u64,
    /// The hash of the transaction that emitted the event.
    pub tx: B256,
}

/// How the replicator schedules fetches.
#[derive(Clone, Copy, Debug)]
pub struct ReplicatePolicy {
    /// First attempts running at once, in chain order.
    pub concurrency: usize,
    /// Retries running at once: blobs no peer had at the first attempt.
    pub retry_concurrency: usize,
    /// How long a first attempt waits once every connected peer said it lacks the blob: a CID
    /// that names nothing costs this, not the content store's full not-found timeout.
    pub first_patience: Duration,
    /// Wait before the first retry; doubles after each failure, up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between two retries of a blob.
    pub max_backoff: Duration,
    /// Blobs read from committed blocks ahead of their first attempts.
    pub max_queued: usize,
    /// Attempts after which a blob is given up (an operator can still `pmr blob pin` it).
    pub max_attempts: u32,
}

impl Default for ReplicatePolicy {
    fn default() -> Self {
        Self {
            concurrency: 32,
            retry_concurrency: 2,
            first_patience: Duration::from_millis(200),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            max_queued: 4096,
            max_attempts: 20,
        }
    }
}

/// The blobs the PMR events of committed `receipts` (of block `height`) name. A CID that does
/// not parse, or that this store cannot serve, is logged and skipped.
pub fn wanted_blobs(height: u64, receipts: &[Receipt]) -> Vec<Wanted> {
    let mut out = Vec::new();
    for r in receipts.iter().filter(|r| r.success) {
        for log in r.logs.iter().filter(|l| l.address == PMR_ADDRESS) {
            let Some(topic) = log.topics.first() else {
                continue;
            };
            let (token_id, version, key_commitment, root, envelope) = if *topic
                == PMR::RecordMinted::SIGNATURE_HASH
            {
                match PMR::RecordMinted::decode_raw_log(log.topics.iter().copied(), &log.data) {
                    Ok(e) => (e.tokenId, 0, e.keyCommitment, e.root, e.envelope),
                    Err(e) => {
                        warn!(target: TARGET, height, tx = %r.tx_hash, error = %e, "skipping an undecodable RecordMinted event");
                        continue;
                    }
                }
            } else if *topic == PMR::RecordVersionAppended::SIGNATURE_HASH {
                match PMR::RecordVersionAppended::decode_raw_log(
                    log.topics.iter().copied(),
                    &log.data,
                ) {
                    Ok(e) => (e.tokenId, e.version, e.keyCommitment, e.root, e.envelope),
                    Err(e) => {
                        warn!(target: TARGET, height, tx = %r.tx_hash, error = %e, "skipping an undecodable RecordVersionAppended event");
                        continue;
                    }
                }
            } else {
                continue;
            };
            for (kind, on_chain) in [
                (BlobKind::RecordRoot, root),
                (BlobKind::ShareEnvelope, envelope),
            ] {
                match event_cid(&on_chain) {
                    Ok(cid) => out.push(Wanted {
                        cid,
                        kind,
                        token_id,
                        version,
                        key_commitment,
                        height,
                        tx: r.tx_hash,
                    }),
                    Err(reason) => warn!(
                        target: TARGET,
                        height,
                        tx = %r.tx_hash,
                        token = %token_id,
                        kind = kind.as_str(),
                        codec = on_chain.codec,
                        digest = %on_chain.digest,
                        reason,
                        "skipping a malformed CID in a committed PMR event; nothing to replicate"
                    ),
                }
            }
        }
    }
    out
}

/// The height through which replication is settled, as stored.
pub fn load_cursor(store: &Store) -> u64 {
    match store.get(Column::Meta, CURSOR_KEY) {
        Ok(Some(v)) => v.try_into().map(u64::from_be_bytes).unwrap_or(0),
        Ok(None) => 0,
        Err(e) => {
            warn!(target: TARGET, error = %e, "cannot read the replication cursor; starting from genesis");
            0
        }
    }
}

/// `Meta` key prefix of a blob whose first attempt failed: it is retried until fetched, across
/// restarts.
const MISSING_PREFIX: &[u8] = b"content/missing/";

/// A blob waiting for a retry, as stored under [`MISSING_PREFIX`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Missing {
    cid: String,
    envelope: bool,
    token_id: U256,
    version: u32,
    key_commitment: B256,
    height: u64,
    tx: B256,
    attempts: u32,
}

impl Missing {
    fn of(w: &Wanted, attempts: u32) -> Self {
        Self {
            cid: w.cid.to_string(),
            envelope: w.kind == BlobKind::ShareEnvelope,
            token_id: w.token_id,
            version: w.version,
            key_commitment: w.key_commitment,
            height: w.height,
            tx: w.tx,
            attempts,
        }
    }

    fn wanted(&self) -> Option<Wanted> {
        Some(Wanted {
            cid: pmr_content::parse_cid(&self.cid).ok()?,
            kind: if self.envelope {
                BlobKind::ShareEnvelope
            } else {
                BlobKind::RecordRoot
            },
            token_id: self.token_id,
            version: self.version,
            key_commitment: self.key_commitment,
            height: self.height,
            tx: self.tx,
        })
    }
}

fn missing_key(cid: &Cid) -> Vec<u8> {
    [MISSING_PREFIX, &cid.to_bytes()].concat()
}

/// Starts the replicator. Abort the handle to stop it (running fetches stop with it).
pub fn spawn(
    ledger: Arc<Ledger>,
    content: ContentNode,
    custody: Custody,
    uploads: Uploads,
    store: Store,
    policy: ReplicatePolicy,
) -> JoinHandle<()> {
    tokio::spawn(Replicator::new(ledger, content, custody, uploads, store, policy).run())
}

/// What a fetch ended in.
enum Outcome {
    /// Fetched and pinned (and custody taken of an envelope).
    Held,
    /// No peer had it now: retry later.
    Retry,
    /// It can never be fetched (too large, malformed): logged and dropped.
    GiveUp,
    /// The content store is shutting down.
    Shutdown,
}

/// A fetch in flight: its blob, whether it is a first attempt, and how many attempts it had.
struct Job {
    wanted: Wanted,
    first: bool,
    attempts: u32,
}

/// The replication task: first attempts in chain order from a bounded queue, failed blobs in a
/// separate retry lane with growing backoff, so a blob nobody has (a CID that names nothing,
/// a holder that is down) never holds up the records after it.
struct Replicator {
    ledger: Arc<Ledger>,
    content: ContentNode,
    custody: Custody,
    uploads: Uploads,
    store: Store,
    policy: ReplicatePolicy,
    /// Blobs read from committed blocks, waiting for their first attempt.
    queued: VecDeque<Wanted>,
    /// Blobs whose first attempt is queued or running, by height (for the cursor).
    open: BTreeMap<u64, usize>,
    /// Blobs waiting for a retry: due time, then the blob and its attempts so far.
    retries: BTreeMap<(Instant, u64), (Wanted, u32)>,
    retry_seq: u64,
    running: JoinSet<Outcome>,
    jobs: HashMap<tokio::task::Id, Job>,
    first_running: usize,
}

impl Replicator {
    fn new(
        ledger: Arc<Ledger>,
        content: ContentNode,
        custody: Custody,
        uploads: Uploads,
        store: Store,
        policy: ReplicatePolicy,
    ) -> Self {
        Self {
            ledger,
            content,
            custody,
            uploads,
            store,
            policy,
            queued: VecDeque::new(),
            open: BTreeMap::new(),
            retries: BTreeMap::new(),
            retry_seq: 0,
            running: JoinSet::new(),
            jobs: HashMap::new(),
            first_running: 0,
        }
    }

    /// Blobs left waiting for a retry by an earlier run.
    fn load_missing(&mut self) {
        let entries = match self.store.scan_prefix(Column::Meta, MISSING_PREFIX) {
            Ok(e) => e,
            Err(e) => {
                warn!(target: TARGET, error = %e, "cannot read the blobs left to retry");
                return;
            }
        };
        let now = Instant::now();
        for (_, v) in entries {
            match serde_json::from_slice::<Missing>(&v).ok().and_then(|m| {
                let attempts = m.attempts;
                m.wanted().map(|w| (w, attempts))
            }) {
                Some((w, attempts)) => self.schedule_retry(w, attempts, now),
                None => {
                    warn!(target: TARGET, "skipping a corrupt entry of the blobs left to retry")
                }
            }
        }
    }

    fn schedule_retry(&mut self, w: Wanted, attempts: u32, after: Instant) {
        let shift = attempts.saturating_sub(1).min(16);
        let wait = (self.policy.backoff * (1u32 << shift)).min(self.policy.max_backoff);
        self.retry_seq += 1;
        self.retries
            .insert((after + wait, self.retry_seq), (w, attempts));
    }

    async fn run(mut self) {
        // Subscribe before reading the tip, so no commit slips between the two.
        let mut blocks = self.ledger.subscribe();
        // A node that joined by state sync has no receipts at or below its base: it starts
        // after it (blobs of older records are fetched when read).
        let mut settled = load_cursor(&self.store).max(self.ledger.executor.base_height());
        let mut next = settled + 1;
        self.load_missing();
        info!(target: TARGET, from = next, retrying = self.retries.len(), "replicating blobs named by committed blocks");
        loop {
            // Read committed heights while the queue has room.
            let tip = self.ledger.tip().height;
            while next <= tip && self.queued.len() < self.policy.max_queued {
                let receipts = match self.ledger.executor.receipts(next) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        warn!(target: TARGET, height = next, "receipts of a committed height are missing; retrying at the next block");
                        break;
                    }
                    Err(e) => {
                        warn!(target: TARGET, height = next, error = %e, "cannot read receipts; retrying at the next block");
                        break;
                    }
                };
                for w in wanted_blobs(next, &receipts) {
                    // Named by a committed record: no longer an upload that may expire.
                    if let Err(e) = self.uploads.named(&w.cid) {
                        warn!(target: TARGET, cid = %w.cid, error = %e, "cannot mark an upload as named by a record");
                    }
                    *self.open.entry(next).or_default() += 1;
                    self.queued.push_back(w);
                }
                next += 1;
            }
            self.start_jobs();
            let through = self.open.keys().next().map_or(next - 1, |h| h - 1);
            if through > settled {
                match self.store.put(
                    Column::Meta,
                    CURSOR_KEY,
                    &through.to_be_bytes(),
                    Durability::Buffered,
                ) {
                    Ok(()) => settled = through,
                    Err(e) => {
                        warn!(target: TARGET, error = %e, "cannot store the replication cursor")
                    }
                }
            }
            let next_retry = self.retries.keys().next().map(|(at, _)| *at);
            tokio::select! {
                r = blocks.recv() => match r {
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => debug!(target: TARGET, skipped = n, "block notifications lagged; reading receipts by height"),
                    Err(RecvError::Closed) => return,
                },
                res = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    if !self.finish(res) {
                        return;
                    }
                }
                _ = sleep_until(next_retry), if next_retry.is_some() => {}
            }
        }
    }

    /// Starts first attempts, then due retries, within their concurrencies.
    fn start_jobs(&mut self) {
        while self.first_running < self.policy.concurrency.max(1) {
            let Some(w) = self.queued.pop_front() else {
                break;
            };
            self.first_running += 1;
            self.launch(w, true, 1, self.policy.first_patience);
        }
        let now = Instant::now();
        while self.jobs.len() - self.first_running < self.policy.retry_concurrency.max(1) {
            let Some((&key, _)) = self.retries.iter().next() else {
                break;
            };
            if key.0 > now {
                break;
            }
            let Some((w, attempts)) = self.retries.remove(&key) else {
                break;
            };
            let patience = self.content.limits().not_found_timeout;
            self.launch(w, false, attempts + 1, patience);
        }
    }

    fn launch(&mut self, w: Wanted, first: bool, attempts: u32, patience: Duration) {
        let (content, custody) = (self.content.clone(), self.custody.clone());
        let job = w.clone();
        let id = self
            .running
            .spawn(fetch(content, custody, job, attempts, patience))
            .id();
        self.jobs.insert(
            id,
            Job {
                wanted: w,
                first,
                attempts,
            },
        );
    }

    /// Books a finished fetch; `false` when replication must stop.
    fn finish(
        &mut self,
        res: Option<Result<(tokio::task::Id, Outcome), tokio::task::JoinError>>,
    ) -> bool {
        let (id, outcome) = match res {
            Some(Ok((id, o))) => (id, o),
            Some(Err(e)) => {
                if e.is_panic() {
                    warn!(target: TARGET, error = %e, "a replication fetch panicked");
                }
                (e.id(), Outcome::Retry)
            }
            None => return true,
        };
        let Some(job) = self.jobs.remove(&id) else {
            return true;
        };
        if job.first {
            self.first_running -= 1;
            if let Some(n) = self.open.get_mut(&job.wanted.height) {
                *n -= 1;
                if *n == 0 {
                    self.open.remove(&job.wanted.height);
                }
            }
        }
        let key = missing_key(&job.wanted.cid);
        match outcome {
            Outcome::Held | Outcome::GiveUp => {
                if !job.first {
                    let mut batch = self.store.batch();
                    batch.delete(Column::Meta, &key);
                    if let Err(e) = batch.commit(Durability::Buffered) {
                        warn!(target: TARGET, error = %e, "cannot forget a blob fetched on retry");
                    }
                }
            }
            Outcome::Retry if job.attempts >= self.policy.max_attempts => {
                warn!(target: TARGET, cid = %job.wanted.cid, token = %job.wanted.token_id, attempts = job.attempts, "giving up replicating a blob no peer had in all its attempts; `pmr blob pin` fetches it once a holder is back");
                let mut batch = self.store.batch();
                batch.delete(Column::Meta, &key);
                if let Err(e) = batch.commit(Durability::Buffered) {
                    warn!(target: TARGET, error = %e, "cannot forget a blob given up");
                }
            }
            Outcome::Retry => {
                // Remembered durably before the cursor may pass its height.
                let entry = Missing::of(&job.wanted, job.attempts);
                match serde_json::to_vec(&entry) {
                    Ok(v) => {
                        if let Err(e) = self.store.put(Column::Meta, &key, &v, Durability::Sync) {
                            warn!(target: TARGET, error = %e, "cannot remember a blob to retry");
                        }
                    }
                    Err(e) => warn!(target: TARGET, error = %e, "cannot encode a blob to retry"),
                }
                self.schedule_retry(job.wanted, job.attempts, Instant::now());
            }
            Outcome::Shutdown => return false,
        }
        true
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn retryable(e: &ContentError) -> bool {
    matches!(
        e,
        ContentError::NotFound { .. }
            | ContentError::Network(_)
            | ContentError::Storage(_)
            | ContentError::Read(_)
    )
}

/// One attempt at one blob.
async fn fetch(
    content: ContentNode,
    custody: Custody,
    w: Wanted,
    attempt: u32,
    patience: Duration,
) -> Outcome {
    match content.fetch_and_pin_within(w.cid, patience).await {
        Ok(stat) => {
            info!(
                target: TARGET,
                cid = %w.cid,
                kind = w.kind.as_str(),
                token = %w.token_id,
                height = w.height,
                size = stat.size.unwrap_or(0),
                attempt,
                "replicated: fetched and pinned"
            );
            if w.kind == BlobKind::ShareEnvelope && custody.is_custodian() {
                if let Err(e) = custody
                    .take_custody(w.token_id, w.version, w.cid, w.key_commitment)
                    .await
                {
                    warn!(target: TARGET, token = %w.token_id, version = w.version, error = %e, "cannot take custody of a share envelope; a release will retry");
                }
            }
            Outcome::Held
        }
        Err(ContentError::Shutdown) => Outcome::Shutdown,
        Err(e) if retryable(&e) => {
            let level_first = attempt == 1;
            if level_first {
                debug!(target: TARGET, cid = %w.cid, error = %e, "no peer has it yet; it moves to the retry lane");
            } else {
                warn!(
                    target: TARGET,
                    cid = %w.cid,
                    kind = w.kind.as_str(),
                    token = %w.token_id,
                    height = w.height,
                    tx = %w.tx,
                    attempts = attempt,
                    error = %e,
                    "still not replicated; retrying later (`pmr blob pin {}` once a holder is back)",
                    w.cid
                );
            }
            Outcome::Retry
        }
        Err(e) => {
            warn!(target: TARGET, cid = %w.cid, token = %w.token_id, height = w.height, error = %e, "this blob can never be replicated; giving up");
            Outcome::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes};
    use pmr_blob::ids::{DAG_CBOR, RAW};
    use pmr_execution::Log;

    fn on_chain(cid: &Cid) -> PMR::Cid {
        PMR::Cid::from_cid_bytes(&cid.to_bytes()).expect("a blake3 CIDv1")
    }

    fn minted(root: PMR::Cid, envelope: PMR::Cid) -> Log {
        let e = PMR::RecordMinted {
            tokenId: U256::from(7),
            owner: Address::repeat_byte(1),
            ephemeralX: B256::repeat_byte(2),
            ephemeralPrefix: 2,
            viewTag: 3,
            sealedType: 4,
            root,
            envelope,
            keyCommitment: B256::repeat_byte(9),
        };
        let d = e.encode_log_data();
        Log {
            address: PMR_ADDRESS,
            topics: d.topics().to_vec(),
            data: d.data,
        }
    }

    fn receipt(logs: Vec<Log>, success: bool) -> Receipt {
        Receipt {
            tx_hash: B256::repeat_byte(0xaa),
            success,
            logs,
            ..Receipt::default()
        }
    }

    #[test]
    fn minted_and_appended_events_name_root_and_envelope() {
        let root = pmr_blob::ids::block_cid(DAG_CBOR, b"manifest");
        let env = pmr_blob::ids::block_cid(RAW, b"envelope");
        let appended = {
            let e = PMR::RecordVersionAppended {
                tokenId: U256::from(7),
                version: 1,
                by: Address::repeat_byte(2),
                root: on_chain(&root),
                envelope: on_chain(&env),
                keyCommitment: B256::repeat_byte(9),
            };
            let d = e.encode_log_data();
            Log {
                address: PMR_ADDRESS,
                topics: d.topics().to_vec(),
                data: d.data,
            }
        };
        let got = wanted_blobs(
            5,
            &[receipt(
                vec![minted(on_chain(&root), on_chain(&env)), appended],
                true,
            )],
        );
        let kinds: Vec<(Cid, BlobKind)> = got.iter().map(|w| (w.cid, w.kind)).collect();
        let versions: Vec<u32> = got.iter().map(|w| w.version).collect();
        assert_eq!(versions, vec![0, 0, 1, 1]);
        assert!(got.iter().all(|w| w.key_commitment == B256::repeat_byte(9)));
        assert_eq!(
            kinds,
            vec![
                (root, BlobKind::RecordRoot),
                (env, BlobKind::ShareEnvelope),
                (root, BlobKind::RecordRoot),
                (env, BlobKind::ShareEnvelope)
            ]
        );
        assert!(got
            .iter()
            .all(|w| w.height == 5 && w.token_id == U256::from(7)));
    }

    #[test]
    fn bad_cids_foreign_logs_and_failed_receipts_are_skipped() {
        let good = on_chain(&pmr_blob::ids::block_cid(DAG_CBOR, b"manifest"));
        // Codecs the content store does not serve (dag-pb, and one the contract would refuse).
        for codec in [0x70u8, 0x80] {
            let bad = PMR::Cid {
                codec,
                digest: good.digest,
            };
            let got = wanted_blobs(1, &[receipt(vec![minted(bad, good.clone())], true)]);
            assert_eq!(
                got.len(),
                1,
                "only the good envelope beside codec {codec:#x}"
            );
            assert_eq!(got[0].kind, BlobKind::ShareEnvelope);
        }
        // Another contract's identical event, a reverted receipt, a truncated log: nothing.
        let mut foreign = minted(good.clone(), good.clone());
        foreign.address = Address::repeat_byte(0x42);
        let mut truncated = minted(good.clone(), good.clone());
        truncated.data = truncated.data.slice(..10);
        let no_topics = Log {
            address: PMR_ADDRESS,
            topics: vec![],
            data: Bytes::new(),
        };
        let receipts = [
            receipt(vec![foreign, truncated, no_topics], true),
            receipt(vec![minted(good.clone(), good)], false),
        ];
        assert!(wanted_blobs(1, &receipts).is_empty());
    }
}
