//! Replication: every node fetches and pins the blobs that committed blocks name.
//!
//! A committed `RecordMinted` or `RecordVersionAppended` event of the PMR contract carries a
//! record's root CID and its share envelope's CID (binary CIDv1). The replicator follows the
//! committed chain (the ledger's block subscription only wakes it; it reads receipts by height,
//! so a lagging subscription loses nothing), and hands each CID to a bounded pool of background
//! fetches (`ContentNode::fetch_and_pin`) with bounded retries. It never touches the consensus
//! path: a slow or failing fetch only delays the next fetch.
//!
//! Progress survives restarts: `content/replicated_height` in the `Meta` column is the height
//! through which every named blob was settled (pinned, or given up after its retries), so a
//! node killed mid-fetch starts those heights again.

use std::collections::{BTreeMap, HashMap};
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
use tracing::{debug, info, warn};

use crate::custody::Custody;

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

/// How the replicator retries.
#[derive(Clone, Copy, Debug)]
pub struct ReplicatePolicy {
    /// Fetches running at once.
    pub concurrency: usize,
    /// Attempts per blob before giving up (each bounded by the content store's not-found
    /// timeout).
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each failure.
    pub backoff: Duration,
}

impl Default for ReplicatePolicy {
    fn default() -> Self {
        Self {
            concurrency: 4,
            attempts: 4,
            backoff: Duration::from_secs(2),
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

/// Starts the replicator. Abort the handle to stop it (running fetches stop with it).
pub fn spawn(
    ledger: Arc<Ledger>,
    content: ContentNode,
    custody: Custody,
    store: Store,
    policy: ReplicatePolicy,
) -> JoinHandle<()> {
    tokio::spawn(run(ledger, content, custody, store, policy))
}

async fn run(
    ledger: Arc<Ledger>,
    content: ContentNode,
    custody: Custody,
    store: Store,
    policy: ReplicatePolicy,
) {
    // Subscribe before reading the tip, so no commit slips between the two.
    let mut blocks = ledger.subscribe();
    let mut settled = load_cursor(&store);
    let mut next = settled + 1;
    let mut jobs: JoinSet<()> = JoinSet::new();
    let mut job_height: HashMap<tokio::task::Id, u64> = HashMap::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    info!(target: TARGET, from = next, "replicating blobs named by committed blocks");

    loop {
        let tip = ledger.tip().height;
        while next <= tip {
            let receipts = match ledger.executor.receipts(next) {
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
                while jobs.len() >= policy.concurrency.max(1) {
                    let res = jobs.join_next_with_id().await.map(|r| r.map(|(id, ())| id));
                    finish(res, &mut job_height, &mut open);
                }
                let id = jobs
                    .spawn(replicate_one(content.clone(), custody.clone(), w, policy))
                    .id();
                job_height.insert(id, next);
                *open.entry(next).or_default() += 1;
            }
            next += 1;
        }
        let through = open.keys().next().map_or(next - 1, |h| h - 1);
        if through > settled {
            match store.put(
                Column::Meta,
                CURSOR_KEY,
                &through.to_be_bytes(),
                Durability::Buffered,
            ) {
                Ok(()) => settled = through,
                Err(e) => warn!(target: TARGET, error = %e, "cannot store the replication cursor"),
            }
        }
        tokio::select! {
            r = blocks.recv() => match r {
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => debug!(target: TARGET, skipped = n, "block notifications lagged; reading receipts by height"),
                Err(RecvError::Closed) => return,
            },
            res = jobs.join_next_with_id(), if !jobs.is_empty() => {
                finish(res.map(|r| r.map(|(id, ())| id)), &mut job_height, &mut open);
            }
        }
    }
}

type JobResult = Option<Result<tokio::task::Id, tokio::task::JoinError>>;

/// Books a finished fetch against its height.
fn finish(
    res: JobResult,
    job_height: &mut HashMap<tokio::task::Id, u64>,
    open: &mut BTreeMap<u64, usize>,
) {
    let id = match res {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            if e.is_panic() {
                warn!(target: TARGET, error = %e, "a replication fetch panicked");
            }
            e.id()
        }
        None => return,
    };
    if let Some(h) = job_height.remove(&id) {
        if let Some(n) = open.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                open.remove(&h);
            }
        }
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

async fn replicate_one(content: ContentNode, custody: Custody, w: Wanted, policy: ReplicatePolicy) {
    let attempts = policy.attempts.max(1);
    let mut backoff = policy.backoff;
    for attempt in 1..=attempts {
        match content.fetch_and_pin(w.cid).await {
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
                return;
            }
            Err(ContentError::Shutdown) => return,
            Err(e) if retryable(&e) && attempt < attempts => {
                debug!(target: TARGET, cid = %w.cid, attempt, error = %e, "fetch failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => {
                warn!(
                    target: TARGET,
                    cid = %w.cid,
                    kind = w.kind.as_str(),
                    token = %w.token_id,
                    height = w.height,
                    tx = %w.tx,
                    attempts = attempt,
                    error = %e,
                    "replication failed; once a node holding it is reachable, pin it with `pmr blob pin {}`",
                    w.cid
                );
                return;
            }
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
            patient: Address::repeat_byte(1),
            hospital: Address::repeat_byte(2),
            recordType: 3,
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
