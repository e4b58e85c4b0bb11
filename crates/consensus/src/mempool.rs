//! The mempool: transactions admitted at the door and waiting for a block.
//!
//! Bounded by count and bytes; a full pool answers "try later" instead of growing. Duplicates are
//! refused, each sender's transactions are kept in nonce order, and a proposal takes, for every
//! sender, the run of consecutive nonces that starts at the sender's committed nonce.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use parking_lot::Mutex;
use pmr_primitives::{Address, SignedTx, B256};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Mempool bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Most transactions held at once.
    pub max_txs: usize,
    /// Most bytes of encoded transactions held at once.
    pub max_bytes: usize,
    /// Most pending transactions per sender.
    pub max_per_sender: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 100_000,
            max_bytes: 128 * 1024 * 1024,
            max_per_sender: 4096,
        }
    }
}

/// Why the pool refused a transaction it was otherwise willing to consider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A transaction with this hash is already pending.
    #[error("transaction {0} is already pending")]
    Duplicate(B256),
    /// The sender already has another transaction pending with this nonce; the pool does not
    /// replace it.
    #[error("sender {sender} already has pending transaction {existing} with nonce {nonce}")]
    NonceTaken {
        /// The transaction's sender.
        sender: Address,
        /// The nonce both transactions use.
        nonce: u64,
        /// Hash of the pending transaction that holds the nonce.
        existing: B256,
    },
    /// The pool is at its transaction or byte limit; retry once blocks have drained it.
    #[error("mempool is full ({count} transactions, {bytes} bytes): try again later")]
    Full {
        /// Transactions pending when it refused.
        count: usize,
        /// Bytes of transactions pending when it refused.
        bytes: usize,
    },
    /// The sender already has `max_per_sender` transactions pending; retry once some commit.
    #[error("sender {0} has too many pending transactions: wait for some to commit")]
    SenderFull(Address),
}

struct Entry {
    tx: SignedTx,
    seq: u64,
    admitted_at: Instant,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<B256, Entry>,
    by_sender: HashMap<Address, BTreeMap<u64, B256>>,
    bytes: usize,
    next_seq: u64,
    /// Recently evicted transactions and why, for `GetTransaction`.
    evicted: HashMap<B256, String>,
    evicted_order: VecDeque<B256>,
}

const EVICTED_MEMORY: usize = 10_000;

impl Inner {
    fn remove(&mut self, hash: &B256) -> Option<Entry> {
        let entry = self.by_hash.remove(hash)?;
        self.bytes -= entry.tx.size();
        let sender = entry.tx.sender();
        if let Some(nonces) = self.by_sender.get_mut(&sender) {
            nonces.remove(&entry.tx.nonce());
            if nonces.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        Some(entry)
    }

    fn remember_eviction(&mut self, hash: B256, reason: String) {
        if self.evicted.insert(hash, reason).is_none() {
            self.evicted_order.push_back(hash);
            if self.evicted_order.len() > EVICTED_MEMORY {
                if let Some(old) = self.evicted_order.pop_front() {
                    self.evicted.remove(&old);
                }
            }
        }
    }
}

/// A thread-safe mempool.
pub struct Mempool {
    cfg: MempoolConfig,
    inner: Mutex<Inner>,
    /// Woken whenever a transaction is added.
    added: Notify,
}

impl Mempool {
    /// An empty pool bounded by `cfg`.
    pub fn new(cfg: MempoolConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner::default()),
            added: Notify::new(),
        }
    }

    /// Adds an already validated transaction.
    pub fn insert(&self, tx: SignedTx) -> Result<usize, PoolError> {
        let hash = tx.hash();
        let mut inner = self.inner.lock();
        if inner.by_hash.contains_key(&hash) {
            return Err(PoolError::Duplicate(hash));
        }
        let sender = tx.sender();
        let nonce = tx.nonce();
        if let Some(existing) = inner.by_sender.get(&sender).and_then(|n| n.get(&nonce)) {
            return Err(PoolError::NonceTaken {
                sender,
                nonce,
                existing: *existing,
            });
        }
        if inner.by_hash.len() >= self.cfg.max_txs || inner.bytes + tx.size() > self.cfg.max_bytes {
            return Err(PoolError::Full {
                count: inner.by_hash.len(),
                bytes: inner.bytes,
            });
        }
        if inner
            .by_sender
            .get(&sender)
            .is_some_and(|n| n.len() >= self.cfg.max_per_sender)
        {
            return Err(PoolError::SenderFull(sender));
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += tx.size();
        inner
            .by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, hash);
        inner.by_hash.insert(
            hash,
            Entry {
                tx,
                seq,
                admitted_at: Instant::now(),
            },
        );
        inner.evicted.remove(&hash);
        let len = inner.by_hash.len();
        drop(inner);
        self.added.notify_waiters();
        Ok(len)
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.inner.lock().by_hash.len()
    }

    /// Whether no transaction is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of pending transactions.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Whether a transaction with this hash is pending.
    pub fn contains(&self, hash: &B256) -> bool {
        self.inner.lock().by_hash.contains_key(hash)
    }

    /// A pending transaction by hash; `None` once it is committed or evicted.
    pub fn get(&self, hash: &B256) -> Option<SignedTx> {
        self.inner.lock().by_hash.get(hash).map(|e| e.tx.clone())
    }

    /// Why a transaction was evicted, if it was recently.
    pub fn eviction_reason(&self, hash: &B256) -> Option<String> {
        self.inner.lock().evicted.get(hash).cloned()
    }

    /// Waits until a transaction is added (returns at once if `!self.is_empty()` is what the
    /// caller wants to check: call [`Mempool::is_empty`] after creating the future).
    pub fn added(&self) -> tokio::sync::futures::Notified<'_> {
        self.added.notified()
    }

    /// Transactions ready for a block, in arrival order across senders and nonce order within
    /// each: for each sender the run of consecutive nonces starting at `committed_nonce(sender)`.
    pub fn reap(
        &self,
        max_txs: usize,
        max_bytes: usize,
        committed_nonce: impl Fn(Address) -> u64,
    ) -> Vec<SignedTx> {
        let inner = self.inner.lock();
        // Per sender: the ready run, as (seq, hash) in nonce order.
        let mut runs: Vec<VecDeque<(u64, B256)>> = Vec::new();
        for (sender, nonces) in &inner.by_sender {
            let first = committed_nonce(*sender);
            let mut run = VecDeque::new();
            for (expected, (nonce, hash)) in (first..).zip(nonces.range(first..)) {
                if *nonce != expected {
                    break;
                }
                if let Some(e) = inner.by_hash.get(hash) {
                    run.push_back((e.seq, *hash));
                }
            }
            if !run.is_empty() {
                runs.push(run);
            }
        }
        // Merge the runs by the arrival of their next transaction.
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.front().map(|(seq, _)| Reverse((*seq, i))))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(Reverse((_, i))) = heap.pop() {
            let Some((_, hash)) = runs[i].pop_front() else {
                continue;
            };
            let Some(entry) = inner.by_hash.get(&hash) else {
                continue;
            };
            if out.len() >= max_txs || bytes + entry.tx.size() > max_bytes {
                break;
            }
            bytes += entry.tx.size();
            out.push(entry.tx.clone());
            if let Some((seq, _)) = runs[i].front() {
                heap.push(Reverse((*seq, i)));
            }
        }
        out
    }

    /// Drops transactions that a committed block included, and every pending transaction whose
    /// nonce the committed state has moved past. Returns how long each included transaction
    /// that was pending here had waited since admission.
    pub fn remove_committed(
        &self,
        included: &[B256],
        committed_nonce: impl Fn(Address) -> u64,
    ) -> Vec<Duration> {
        let mut inner = self.inner.lock();
        let waited: Vec<Duration> = included
            .iter()
            .filter_map(|hash| inner.remove(hash).map(|e| e.admitted_at.elapsed()))
            .collect();
        let stale: Vec<B256> = inner
            .by_sender
            .iter()
            .flat_map(|(sender, nonces)| {
                let floor = committed_nonce(*sender);
                nonces.range(..floor).map(|(_, h)| *h).collect::<Vec<_>>()
            })
            .collect();
        for hash in stale {
            inner.remove(&hash);
            inner.remember_eviction(hash, "nonce already used by a committed transaction".into());
        }
        waited
    }

    /// Removes a transaction that can never be included, remembering why.
    pub fn evict(&self, hash: &B256, reason: String) {
        let mut inner = self.inner.lock();
        if inner.remove(hash).is_some() {
            inner.remember_eviction(*hash, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use pmr_primitives::{Bytes, TxLimits};

    const LIMITS: TxLimits = TxLimits {
        chain_id: 1,
        max_tx_bytes: 1 << 16,
    };

    fn tx(key: u8, nonce: u64, pad: usize) -> SignedTx {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(key)).unwrap();
        let t = TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 100_000,
            to: alloy_primitives::TxKind::Call(Address::ZERO),
            input: Bytes::from(vec![0u8; pad]),
            ..Default::default()
        };
        let sig = signer.sign_hash_sync(&t.signature_hash()).unwrap();
        let raw: Bytes = TxEnvelope::from(t.into_signed(sig)).encoded_2718().into();
        SignedTx::decode(raw, &LIMITS).unwrap()
    }

    #[test]
    fn refuses_duplicates_taken_nonces_and_overflow() {
        let pool = Mempool::new(MempoolConfig {
            max_txs: 3,
            max_bytes: 1 << 20,
            max_per_sender: 2,
        });
        let a0 = tx(1, 0, 0);
        pool.insert(a0.clone()).unwrap();
        assert_eq!(
            pool.insert(a0.clone()),
            Err(PoolError::Duplicate(a0.hash()))
        );
        assert!(matches!(
            pool.insert(tx(1, 0, 5)),
            Err(PoolError::NonceTaken { nonce: 0, .. })
        ));
        pool.insert(tx(1, 1, 0)).unwrap();
        assert!(matches!(
            pool.insert(tx(1, 2, 0)),
            Err(PoolError::SenderFull(_))
        ));
        pool.insert(tx(2, 0, 0)).unwrap();
        assert!(matches!(
            pool.insert(tx(3, 0, 0)),
            Err(PoolError::Full { count: 3, .. })
        ));
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn byte_bound_applies() {
        let big = tx(1, 0, 2000);
        let pool = Mempool::new(MempoolConfig {
            max_txs: 100,
            max_bytes: big.size() + 10,
            max_per_sender: 100,
        });
        pool.insert(big).unwrap();
        assert!(matches!(
            pool.insert(tx(2, 0, 2000)),
            Err(PoolError::Full { .. })
        ));
    }

    #[test]
    fn reap_respects_nonce_runs_and_arrival_order() {
        let pool = Mempool::new(MempoolConfig::default());
        let a = PrivateKeySigner::from_bytes(&B256::repeat_byte(1))
            .unwrap()
            .address();
        // Sender A arrives out of order: 1 then 0, and has a gap at 3.
        pool.insert(tx(1, 1, 0)).unwrap();
        pool.insert(tx(2, 5, 0)).unwrap(); // B's committed nonce is 5
        pool.insert(tx(1, 0, 0)).unwrap();
        pool.insert(tx(1, 3, 0)).unwrap();
        let got = pool.reap(100, usize::MAX, |s| if s == a { 0 } else { 5 });
        let got: Vec<(bool, u64)> = got.iter().map(|t| (t.sender() == a, t.nonce())).collect();
        // Nonce order within a sender, the gap excluded; across senders, the arrival of each
        // run's next transaction: B's (second to arrive) before A's nonce 0 (third), although
        // A's nonce 1 arrived first of all.
        assert_eq!(got, vec![(false, 5), (true, 0), (true, 1)]);
        // Limits.
        assert_eq!(
            pool.reap(1, usize::MAX, |s| if s == a { 0 } else { 5 })
                .len(),
            1
        );
    }

    #[test]
    fn commit_removes_included_and_stale() {
        let pool = Mempool::new(MempoolConfig::default());
        let t0 = tx(1, 0, 0);
        let t1 = tx(1, 1, 0);
        let t2 = tx(1, 2, 0);
        for t in [&t0, &t1, &t2] {
            pool.insert(t.clone()).unwrap();
        }
        // Block included t0 only, but the committed nonce is 2 (t1's nonce was used elsewhere).
        let waited = pool.remove_committed(&[t0.hash()], |_| 2);
        assert_eq!(waited.len(), 1);
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&t2.hash()));
        assert!(pool.eviction_reason(&t1.hash()).is_some());
        assert!(pool.eviction_reason(&t0.hash()).is_none());
        pool.evict(&t2.hash(), "not permitted".into());
        assert!(pool.is_empty());
        assert_eq!(
            pool.eviction_reason(&t2.hash()).as_deref(),
            Some("not permitted")
        );
    }
}
