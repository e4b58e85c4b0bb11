//! The ledger as the rest of the node sees it: submit transactions, read the committed chain,
//! follow new blocks. The gRPC layer talks only to this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use malachitebft_app_channel::app::types::core::ExtendedCommitCertificate;
use malachitebft_app_channel::NetworkRequest;
use parking_lot::RwLock;
use pmr_execution::{Executor, TxRejection};
use pmr_primitives::{Block, Genesis, SignedTx, TxError, TxLimits, B256};
use tokio::sync::{broadcast, mpsc, OnceCell};
use tracing::debug;

use crate::chain::{ChainError, ChainStore, TxLocation};
use crate::context::{Address, PmrContext, ValidatorSet};
use crate::evidence::Equivocation;
use crate::schedule::ValidatorSchedule;

const EVIDENCE_PREFIX: &[u8] = b"evidence/";
use crate::gossip::TxGossip;
use crate::mempool::{Mempool, PoolError};
use crate::metrics::ConsensusMetrics;

/// A block as committed, with what proves it.
#[derive(Clone, Debug)]
pub struct CommittedBlock {
    /// The block, decoded.
    pub block: Block,
    /// The block's hash: the value consensus decided.
    pub hash: B256,
    /// The block's encoding as stored and streamed, to serve without re-encoding.
    pub encoded: Bytes,
    /// The precommits that decided it, with any signatures added at finalization.
    pub certificate: ExtendedCommitCertificate<PmrContext>,
}

/// The tip of the committed chain.
#[derive(Clone, Debug, Default)]
pub struct Tip {
    /// Height of the last committed block, 0 before the first.
    pub height: u64,
    /// Its hash; the genesis hash at height 0.
    pub hash: B256,
    /// Its timestamp in milliseconds since the Unix epoch; the genesis time at height 0.
    pub timestamp_ms: u64,
    /// The state root after it executed; the genesis state root at height 0.
    pub state_root: B256,
}

/// Why a submitted transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The bytes are not an acceptable signed transaction: size, encoding, type, chain id or
    /// signature.
    #[error(transparent)]
    Invalid(#[from] TxError),
    /// The transaction is well formed but the committed state refuses it (sender not permitted,
    /// nonce, gas).
    #[error("transaction rejected: {0}")]
    Rejected(#[from] TxRejection),
    /// The transaction is already in a committed block; resubmitting it changes nothing.
    #[error("transaction {hash} is already committed at height {height}")]
    AlreadyCommitted {
        /// The transaction's hash.
        hash: B256,
        /// Height of the block that includes it.
        height: u64,
    },
    /// The mempool refused it: a duplicate, a nonce already pending, or no room.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Reading the transaction index failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The sender is not permitted in this node's state, but that state may be behind the
    /// network's (the node is catching up, or has not committed a block since it started), so
    /// the refusal may be stale: the client should retry or use another node.
    #[error(
        "{account} is not on the permission list in this node's state at height {height}, but \
         the node is catching up with the network; retry shortly or submit to another node"
    )]
    CatchingUp {
        /// The sender that is not permitted.
        account: pmr_primitives::Address,
        /// This node's committed height when it refused.
        height: u64,
    },
}

/// What admission reports.
#[derive(Clone, Copy, Debug)]
pub struct Admitted {
    /// The transaction's hash, by which clients look it up.
    pub hash: B256,
    /// Transactions pending in this node's mempool once it was added.
    pub mempool_size: usize,
}

/// A connected consensus peer.
#[derive(Clone, Debug)]
pub struct PeerView {
    /// The peer's libp2p id.
    pub peer_id: String,
    /// The name the peer announces for itself.
    pub moniker: String,
    /// The peer's multiaddr, as the p2p layer sees the connection.
    pub address: String,
}

/// Shared state of a running node's ledger.
pub struct Ledger {
    /// This node's name, for logs and status.
    pub moniker: String,
    /// The genesis this node was started with.
    pub genesis: Genesis,
    /// Hash of `genesis`: the tip's hash before the first block, and the chain the database is
    /// bound to.
    pub genesis_hash: B256,
    /// The chain id and size limit every submitted transaction is checked against.
    pub limits: TxLimits,
    /// The committed chain on disk.
    pub chain: ChainStore,
    /// Executes blocks and checks transactions against the committed state.
    pub executor: Arc<Executor>,
    /// Admitted transactions waiting for a block.
    pub mempool: Arc<Mempool>,
    /// The validator set of every height, from the governance history on chain.
    pub schedule: Arc<ValidatorSchedule>,
    /// This node's consensus address: it votes at the heights whose set holds it.
    pub validator_address: Option<Address>,
    /// Consensus metrics, updated as transactions are admitted and blocks commit.
    pub metrics: ConsensusMetrics,
    pub(crate) gossip: OnceCell<TxGossip>,
    pub(crate) net_requests: OnceCell<mpsc::Sender<NetworkRequest>>,
    tip: RwLock<Tip>,
    syncing: RwLock<Option<Instant>>,
    /// Whether this process has committed a block other than by value sync (see
    /// [`Ledger::may_be_behind`]).
    caught_up: AtomicBool,
    blocks: broadcast::Sender<Arc<CommittedBlock>>,
}

impl Ledger {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        moniker: String,
        genesis: Genesis,
        limits: TxLimits,
        chain: ChainStore,
        executor: Arc<Executor>,
        mempool: Arc<Mempool>,
        schedule: Arc<ValidatorSchedule>,
        validator_address: Option<Address>,
        metrics: ConsensusMetrics,
    ) -> Result<Self, ChainError> {
        let genesis_hash = genesis.hash();
        let height = chain.height()?;
        let tip = match chain.block(height)? {
            Some(b) => Tip {
                height,
                hash: b.hash(),
                timestamp_ms: b.header.timestamp_ms,
                state_root: b.header.state_root,
            },
            None => Tip {
                height: 0,
                hash: genesis_hash,
                timestamp_ms: genesis.genesis_time_ms,
                state_root: executor.genesis_state_root(),
            },
        };
        metrics.height.set(tip.height as i64);
        Ok(Self {
            moniker,
            genesis,
            genesis_hash,
            limits,
            chain,
            executor,
            mempool,
            schedule,
            validator_address,
            metrics,
            gossip: OnceCell::new(),
            net_requests: OnceCell::new(),
            tip: RwLock::new(tip),
            syncing: RwLock::new(None),
            caught_up: AtomicBool::new(false),
            blocks: broadcast::channel(1024).0,
        })
    }

    /// The validator set that decides the next height.
    pub fn validators(&self) -> ValidatorSet {
        self.schedule.at(self.tip().height + 1)
    }

    /// Admits a transaction submitted by a client and gossips it to the other nodes.
    pub fn submit(&self, raw: Bytes) -> Result<Admitted, SubmitError> {
        let admitted = match self.admit(raw.clone()) {
            // A permission granted in blocks this node has not executed yet reads as missing.
            Err(SubmitError::Rejected(TxRejection::NotPermitted(account)))
                if self.may_be_behind() =>
            {
                return Err(SubmitError::CatchingUp {
                    account,
                    height: self.tip().height,
                });
            }
            r => r?,
        };
        if let Some(g) = self.gossip.get() {
            g.publish(raw);
        }
        Ok(admitted)
    }

    /// Admits a transaction: decode, signature, not yet committed, permitted with a usable
    /// nonce, room in the pool. Changes nothing when it fails.
    pub(crate) fn admit(&self, raw: Bytes) -> Result<Admitted, SubmitError> {
        // Bytes already pending or committed are refused before the signature is recovered,
        // the expensive step: gossip often delivers a transaction after its block.
        // Oversized or empty input is left to decode, which refuses it without hashing it.
        let sized = !raw.is_empty() && raw.len() <= self.limits.max_tx_bytes;
        let seen = sized.then(|| pmr_primitives::keccak256(&raw));
        if let Some(seen) = seen {
            if self.mempool.contains(&seen) {
                return Err(PoolError::Duplicate(seen).into());
            }
            self.refuse_committed(seen)?;
        }
        let tx = SignedTx::decode(raw.into(), &self.limits)?;
        let hash = tx.hash();
        if seen != Some(hash) {
            self.refuse_committed(hash)?;
        }
        self.executor.check_tx(&tx)?;
        let mempool_size = self.mempool.insert(tx)?;
        self.metrics.mempool_size.set(mempool_size as i64);
        Ok(Admitted { hash, mempool_size })
    }

    fn refuse_committed(&self, hash: B256) -> Result<(), SubmitError> {
        match self.chain.tx_location(&hash)? {
            Some(loc) => Err(SubmitError::AlreadyCommitted {
                hash,
                height: loc.height,
            }),
            None => Ok(()),
        }
    }

    /// Admits transactions gossiped by a peer; failures are expected (duplicates) and dropped.
    pub(crate) fn admit_gossiped(&self, txs: Vec<Bytes>) {
        for raw in txs {
            if let Err(e) = self.admit(raw) {
                debug!(target: "pmr::mempool", error = %e, "gossiped transaction not admitted");
            }
        }
    }

    /// The last committed block's height, hash, time and state root; the genesis before the first
    /// block.
    pub fn tip(&self) -> Tip {
        self.tip.read().clone()
    }

    /// Whether the node is catching up through value sync.
    pub fn is_syncing(&self) -> bool {
        self.syncing
            .read()
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3))
    }

    /// Whether this node's state may be behind the network's: it is catching up through value
    /// sync, or it has not committed a block by consensus since it started (a node restarted
    /// after a long outage, or with its data lost, learns how far behind it is only from its
    /// peers).
    pub fn may_be_behind(&self) -> bool {
        self.is_syncing() || !self.caught_up.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_syncing(&self) {
        *self.syncing.write() = Some(Instant::now());
    }

    pub(crate) fn set_tip(&self, committed: Arc<CommittedBlock>) {
        if !self.is_syncing() {
            self.caught_up.store(true, Ordering::Relaxed);
        }
        let h = &committed.block.header;
        *self.tip.write() = Tip {
            height: h.height,
            hash: committed.hash,
            timestamp_ms: h.timestamp_ms,
            state_root: h.state_root,
        };
        self.metrics.height.set(h.height as i64);
        self.metrics.mempool_size.set(self.mempool.len() as i64);
        // No subscriber is not an error.
        let _ = self.blocks.send(committed);
    }

    /// Records misbehavior evidence (a validator that signed two different votes or proposals
    /// for one height and round) durably, so operators can act on it. Recording the same pair
    /// twice (after a restart, or with its messages in the other order) keeps one copy.
    pub(crate) fn record_evidence(&self, evidence: &[Equivocation]) {
        let store = self.chain.store();
        let mut batch = store.batch();
        let mut seen = std::collections::HashSet::new();
        for e in evidence {
            // The same pair seen in either order is one record.
            let (a, b) = if e.signed[0] <= e.signed[1] {
                (&e.signed[0], &e.signed[1])
            } else {
                (&e.signed[1], &e.signed[0])
            };
            let mut id = blake3::Hasher::new();
            id.update(&(a.len() as u64).to_be_bytes());
            id.update(a);
            id.update(b);
            let mut key = EVIDENCE_PREFIX.to_vec();
            key.extend_from_slice(&e.height.to_be_bytes());
            key.extend_from_slice(&id.finalize().as_bytes()[..8]);
            if !seen.insert(key.clone())
                || store
                    .contains(pmr_storage::Column::Meta, &key)
                    .unwrap_or(false)
            {
                continue;
            }
            self.metrics.equivocations.inc();
            match serde_json::to_vec(e) {
                Ok(v) => batch.put(pmr_storage::Column::Meta, &key, &v),
                Err(err) => {
                    tracing::error!(target: "pmr::consensus", error = %err, "cannot encode evidence")
                }
            }
        }
        if let Err(e) = batch.commit(pmr_storage::Durability::Sync) {
            tracing::error!(target: "pmr::consensus", error = %e, "cannot store misbehavior evidence");
        }
    }

    /// Misbehavior evidence recorded by this node at `from_height` and above, by height, at
    /// most `limit` records.
    pub fn evidence(
        &self,
        from_height: u64,
        limit: usize,
    ) -> Result<Vec<Equivocation>, ChainError> {
        let mut start = EVIDENCE_PREFIX.to_vec();
        start.extend_from_slice(&from_height.to_be_bytes());
        let mut out = Vec::new();
        self.chain.store().for_each_from(pmr_storage::Column::Meta, &start, |k, v| {
            if !k.starts_with(EVIDENCE_PREFIX) || out.len() >= limit {
                return false;
            }
            match serde_json::from_slice(v) {
                Ok(e) => out.push(e),
                Err(err) => {
                    tracing::warn!(target: "pmr::consensus", key = %hex::encode(k), error = %err, "skipping an unreadable evidence record");
                }
            }
            true
        })?;
        Ok(out)
    }

    /// New committed blocks as they land.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBlock>> {
        self.blocks.subscribe()
    }

    /// A committed block with its certificate.
    pub fn committed_block(&self, height: u64) -> Result<Option<CommittedBlock>, ChainError> {
        let Some(bytes) = self.chain.block_bytes(height)? else {
            return Ok(None);
        };
        let block = Block::decode_checked(&bytes).map_err(|e| ChainError::Corrupt {
            what: "block",
            height,
            reason: e.to_string(),
        })?;
        let certificate = self.chain.certificate(height)?.ok_or(ChainError::Corrupt {
            what: "certificate",
            height,
            reason: "missing".into(),
        })?;
        Ok(Some(CommittedBlock {
            hash: block.hash(),
            block,
            encoded: bytes.into(),
            certificate,
        }))
    }

    /// Where a transaction was committed (height and index); `None` if it is not committed.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<TxLocation>, ChainError> {
        self.chain.tx_location(hash)
    }

    /// Connected consensus peers, as the p2p layer reports them.
    pub async fn peers(&self) -> Vec<PeerView> {
        let Some(req) = self.net_requests.get() else {
            return Vec::new();
        };
        match NetworkRequest::dump_state(req).await {
            Ok(Some(dump)) => dump
                .peers
                .into_iter()
                .map(|(id, info)| PeerView {
                    peer_id: id.to_string(),
                    moniker: info.moniker,
                    address: info.address.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Number of connected transaction-gossip peers.
    pub fn gossip_peers(&self) -> usize {
        self.gossip.get().map(|g| g.peer_count()).unwrap_or(0)
    }
}
