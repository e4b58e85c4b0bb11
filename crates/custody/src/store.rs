//! What a custodian keeps in the `shares` column of its RocksDB, under three key prefixes:
//!
//! - `c ‖ token (32) ‖ version (4)`: the [`CustodyRecord`] of a record version (JSON);
//! - `r ‖ token (32)`: how many releases this node committed for a token (u64 big-endian);
//! - `n ‖ issued_at_ms (8) ‖ nonce (32)`: a release challenge's nonce, once used. Keys sort by
//!   time, so nonces older than the freshness window (which no challenge can reuse: it would be
//!   refused as stale) are pruned in key order.

use alloy_primitives::{B256, U256};
use pmr_storage::{Column, Durability, Store};

use crate::error::CustodyError;
use crate::record::CustodyRecord;

const CUSTODY_PREFIX: u8 = b'c';
const NONCE_PREFIX: u8 = b'n';
const RELEASES_PREFIX: u8 = b'r';
/// Stale nonces pruned per recorded nonce, at most.
const PRUNE_BATCH: usize = 1024;

fn key_with(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn custody_key(token: U256, version: u32) -> Vec<u8> {
    key_with(
        CUSTODY_PREFIX,
        &[&token.to_be_bytes::<32>(), &version.to_be_bytes()],
    )
}

fn releases_key(token: U256) -> Vec<u8> {
    key_with(RELEASES_PREFIX, &[&token.to_be_bytes::<32>()])
}

/// The custodian's records, release counts and used nonces.
pub(crate) struct CustodyStore {
    store: Store,
    /// Serializes the read-modify-writes (release counts, nonce check-and-record).
    lock: std::sync::Mutex<()>,
}

impl CustodyStore {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// The stored custody record of `token` version `version`.
    pub(crate) fn record(
        &self,
        token: U256,
        version: u32,
    ) -> Result<Option<CustodyRecord>, CustodyError> {
        match self
            .store
            .get(Column::Shares, &custody_key(token, version))?
        {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| {
                CustodyError::internal(format!("corrupt custody record: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Every custody record of `token`, by version.
    pub(crate) fn records(&self, token: U256) -> Result<Vec<CustodyRecord>, CustodyError> {
        let prefix = key_with(CUSTODY_PREFIX, &[&token.to_be_bytes::<32>()]);
        self.store
            .scan_prefix(Column::Shares, &prefix)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| CustodyError::internal(format!("corrupt custody record: {e}")))
            })
            .collect()
    }

    /// Stores a custody record durably (fsynced).
    pub(crate) fn put_record(&self, token: U256, rec: &CustodyRecord) -> Result<(), CustodyError> {
        let bytes = serde_json::to_vec(rec).map_err(CustodyError::internal)?;
        self.store.put(
            Column::Shares,
            &custody_key(token, rec.version),
            &bytes,
            Durability::Sync,
        )?;
        Ok(())
    }

    /// Number of releases this node committed for `token`.
    pub(crate) fn releases(&self, token: U256) -> Result<u64, CustodyError> {
        Ok(self
            .store
            .get(Column::Shares, &releases_key(token))?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Counts one more committed release of `token`.
    pub(crate) fn count_release(&self, token: U256) -> Result<(), CustodyError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.releases(token)? + 1;
        self.store.put(
            Column::Shares,
            &releases_key(token),
            &n.to_be_bytes(),
            Durability::Buffered,
        )?;
        Ok(())
    }

    /// Records `nonce` (of a request made at `issued_at_ms`) as used, durably; refuses one seen
    /// before. Nonces issued before `prune_before_ms` are deleted in the same batch (a bounded
    /// number per call). Blocking: call it off the async workers.
    pub(crate) fn consume_nonce(
        &self,
        nonce: B256,
        issued_at_ms: u64,
        prune_before_ms: u64,
    ) -> Result<(), CustodyError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = key_with(
            NONCE_PREFIX,
            &[&issued_at_ms.to_be_bytes(), nonce.as_slice()],
        );
        if self.store.get(Column::Shares, &key)?.is_some() {
            return Err(CustodyError::Replay(nonce));
        }
        let mut stale = Vec::new();
        self.store
            .for_each_from(Column::Shares, &[NONCE_PREFIX], |k, _| {
                let at = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                match (k.first(), at) {
                    (Some(&NONCE_PREFIX), Some(at)) if at < prune_before_ms => {
                        stale.push(k.to_vec());
                        stale.len() < PRUNE_BATCH
                    }
                    _ => false,
                }
            })?;
        let mut batch = self.store.batch();
        for k in &stale {
            batch.delete(Column::Shares, k);
        }
        batch.put(Column::Shares, &key, &[]);
        batch.commit(Durability::Sync)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_used_once_and_stale_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = CustodyStore::new(Store::open(dir.path()).unwrap());
        let (old, new) = (B256::repeat_byte(1), B256::repeat_byte(2));
        s.consume_nonce(old, 1_000, 0).unwrap();
        assert!(matches!(
            s.consume_nonce(old, 1_000, 0),
            Err(CustodyError::Replay(n)) if n == old
        ));
        // Recording a newer nonce prunes the one issued before the cutoff: it is accepted again
        // by the store (the freshness check, not the store, refuses such a stale challenge).
        s.consume_nonce(new, 9_000, 5_000).unwrap();
        s.consume_nonce(old, 1_000, 0).unwrap();
        assert!(s.consume_nonce(new, 9_000, 0).is_err());
    }

    #[test]
    fn release_counts_add_up_per_token() {
        let dir = tempfile::tempdir().unwrap();
        let s = CustodyStore::new(Store::open(dir.path()).unwrap());
        let (a, b) = (U256::from(1), U256::from(2));
        for _ in 0..3 {
            s.count_release(a).unwrap();
        }
        s.count_release(b).unwrap();
        assert_eq!((s.releases(a).unwrap(), s.releases(b).unwrap()), (3, 1));
        assert_eq!(s.releases(U256::from(3)).unwrap(), 0);
    }
}
