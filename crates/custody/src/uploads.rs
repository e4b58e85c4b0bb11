//! Uploads and what becomes of them. A hospital's upload is pinned as soon as it lands, and
//! counts against that hospital's quota until a committed record names it; an upload no
//! committed record names within the time to live is unpinned and collected. A blob a
//! committed record names is never collected here.
//!
//! Kept in the `Meta` column: `uploads/pending/<root>` → `account (20) ‖ size (8) ‖ at_ms (8)`,
//! `uploads/account/<account>` → pending bytes (8), and `uploads/named/<root>` (empty) for
//! roots a committed record named.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use parking_lot::Mutex;
use pmr_blob::Cid;
use pmr_content::ContentNode;
use pmr_storage::{Column, Durability, Store};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::error::CustodyError;

const PENDING: &[u8] = b"uploads/pending/";
const ACCOUNT: &[u8] = b"uploads/account/";
const NAMED: &[u8] = b"uploads/named/";
const TARGET: &str = "pmr::uploads";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How uploads are bounded.
#[derive(Clone, Debug)]
pub struct UploadPolicy {
    /// Bytes one account may have uploaded that no committed record names yet.
    pub quota: u64,
    /// How long an upload may wait for a committed record to name it.
    pub ttl: Duration,
    /// How often expired uploads are collected.
    pub collect_every: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            quota: 1 << 30,
            ttl: Duration::from_secs(24 * 3600),
            collect_every: Duration::from_secs(300),
        }
    }
}

/// The uploads of one node.
#[derive(Clone)]
pub struct Uploads {
    store: Store,
    policy: UploadPolicy,
    /// Serializes the read-modify-writes of the account totals.
    lock: Arc<Mutex<()>>,
}

impl Uploads {
    /// Uploads kept in `store` under `policy`.
    pub fn new(store: Store, policy: UploadPolicy) -> Self {
        Self {
            store,
            policy,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &UploadPolicy {
        &self.policy
    }

    fn account_key(account: Address) -> Vec<u8> {
        [ACCOUNT, account.as_slice()].concat()
    }

    /// Bytes `account` has uploaded that no committed record names yet.
    pub fn pending(&self, account: Address) -> Result<u64, CustodyError> {
        Ok(self
            .store
            .get(Column::Meta, &Self::account_key(account))?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Whether `account` may start another upload.
    pub fn admit(&self, account: Address) -> Result<(), CustodyError> {
        let pending = self.pending(account)?;
        if pending >= self.policy.quota {
            return Err(CustodyError::Busy(format!(
                "{account} has {pending} bytes uploaded that no committed record names yet, its \
                 quota is {}: mint records for them, or wait until unused uploads expire \
                 ({} s after upload)",
                self.policy.quota,
                self.policy.ttl.as_secs()
            )));
        }
        Ok(())
    }

    /// Books `root` (`size` bytes) as uploaded by `account`, unless a committed record already
    /// names it.
    pub fn record(&self, account: Address, root: &Cid, size: u64) -> Result<(), CustodyError> {
        let r = root.to_bytes();
        let _g = self.lock.lock();
        if self
            .store
            .get(Column::Meta, &[NAMED, &r].concat())?
            .is_some()
            || self
                .store
                .get(Column::Meta, &[PENDING, &r].concat())?
                .is_some()
        {
            return Ok(());
        }
        let total = self.pending(account)? + size;
        let mut entry = account.to_vec();
        entry.extend_from_slice(&size.to_be_bytes());
        entry.extend_from_slice(&now_ms().to_be_bytes());
        let mut batch = self.store.batch();
        batch.put(Column::Meta, &[PENDING, &r].concat(), &entry);
        batch.put(
            Column::Meta,
            &Self::account_key(account),
            &total.to_be_bytes(),
        );
        batch.commit(Durability::Sync)?;
        Ok(())
    }

    /// A committed record names `root`: it no longer counts against its uploader and is never
    /// collected here.
    pub fn named(&self, root: &Cid) -> Result<(), CustodyError> {
        let r = root.to_bytes();
        let _g = self.lock.lock();
        let mut batch = self.store.batch();
        batch.put(Column::Meta, &[NAMED, &r].concat(), &[]);
        if let Some(entry) = self.store.get(Column::Meta, &[PENDING, &r].concat())? {
            batch.delete(Column::Meta, &[PENDING, &r].concat());
            self.release(&entry, &mut batch)?;
        }
        batch.commit(Durability::Buffered)?;
        Ok(())
    }

    /// Takes a pending entry's bytes off its account's total, in `batch`.
    fn release(
        &self,
        entry: &[u8],
        batch: &mut pmr_storage::Batch<'_>,
    ) -> Result<(), CustodyError> {
        let (Some(account), Some(size)) = (
            entry.get(..20).map(Address::from_slice),
            entry
                .get(20..28)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
        ) else {
            return Err(CustodyError::internal("corrupt upload entry"));
        };
        let left = self.pending(account)?.saturating_sub(size);
        if left == 0 {
            batch.delete(Column::Meta, &Self::account_key(account));
        } else {
            batch.put(
                Column::Meta,
                &Self::account_key(account),
                &left.to_be_bytes(),
            );
        }
        Ok(())
    }

    /// Uploads older than the time to live that no committed record names, as of `now_ms`.
    fn expired(&self, now: u64) -> Result<Vec<pmr_storage::KeyValue>, CustodyError> {
        let ttl = self.policy.ttl.as_millis() as u64;
        Ok(self
            .store
            .scan_prefix(Column::Meta, PENDING)?
            .into_iter()
            .filter(|(_, v)| {
                v.get(28..36)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .is_some_and(|at| at + ttl <= now)
            })
            .collect())
    }

    /// Unpins every expired upload and collects what no pin reaches any more; returns the
    /// uploads dropped and the bytes freed.
    pub async fn collect(&self, content: &ContentNode) -> Result<(usize, u64), CustodyError> {
        let expired = self.expired(now_ms())?;
        for (key, entry) in &expired {
            let Ok(root) = Cid::try_from(&key[PENDING.len()..]) else {
                continue;
            };
            content.unpin(root).await.map_err(CustodyError::internal)?;
            let _g = self.lock.lock();
            let mut batch = self.store.batch();
            batch.delete(Column::Meta, key);
            self.release(entry, &mut batch)?;
            batch.commit(Durability::Buffered)?;
        }
        let freed = if expired.is_empty() {
            0
        } else {
            content
                .gc()
                .await
                .map_err(CustodyError::internal)?
                .removed_bytes
        };
        Ok((expired.len(), freed))
    }

    /// Collects expired uploads every `collect_every`. Abort the handle to stop it.
    pub fn spawn_collector(&self, content: ContentNode) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.policy.collect_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.collect(&content).await {
                    Ok((0, _)) => {}
                    Ok((n, freed)) => {
                        info!(target: TARGET, uploads = n, freed, "collected uploads no committed record named in time")
                    }
                    Err(e) => warn!(target: TARGET, error = %e, "cannot collect expired uploads"),
                }
            }
        })
    }
}
