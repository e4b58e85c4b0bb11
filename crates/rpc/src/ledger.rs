//! `pmr.v1.LedgerService`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use pmr_consensus::Ledger;
use pmr_primitives::Address;
use pmr_primitives::{Bytes, SignedTx};
use pmr_proto::v1 as pb;
use pmr_proto::v1::ledger_service_server::LedgerService;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::access::Caller;
use crate::convert;
use crate::disk::DiskFloor;
use crate::status::{internal, submit_status};

/// Bounds on what one caller may take of the ledger service.
#[derive(Clone, Debug)]
pub struct LedgerLimits {
    /// Block streams open at once on this node.
    pub max_streams: usize,
    /// Block streams open at once per account.
    pub max_streams_per_account: usize,
    /// Blocks buffered per stream for its reader.
    pub stream_buffer: usize,
    /// A stream whose reader takes no block for this long is closed.
    pub slow_reader: Duration,
    /// Transactions an account may submit per second (and twice as many at once).
    pub submit_per_second: u32,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            max_streams: 64,
            max_streams_per_account: 8,
            stream_buffer: 4,
            slow_reader: Duration::from_secs(30),
            submit_per_second: 10_000,
        }
    }
}

/// The ledger service over a running node's [`Ledger`].
#[derive(Clone)]
pub struct LedgerApi {
    ledger: Arc<Ledger>,
    disk: Arc<DiskFloor>,
    limits: LedgerLimits,
    streams: Arc<Semaphore>,
    streams_of: Arc<Mutex<HashMap<Address, usize>>>,
    submissions: Arc<DefaultKeyedRateLimiter<Address>>,
    backup_running: Arc<tokio::sync::Mutex<()>>,
    /// Held while a state snapshot is written and streamed: one at a time.
    snapshot_running: Arc<tokio::sync::Mutex<()>>,
}

/// Backups kept on the node's disk at most (see `create_backup`).
const MAX_BACKUPS: usize = 16;

impl LedgerApi {
    /// Serves `ledger` within `limits`, refusing new transactions when `disk` is low.
    pub fn new(ledger: Arc<Ledger>, limits: LedgerLimits, disk: Arc<DiskFloor>) -> Self {
        let rate = NonZeroU32::new(limits.submit_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        Self {
            ledger,
            disk,
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            streams_of: Arc::new(Mutex::new(HashMap::new())),
            submissions: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            backup_running: Arc::new(tokio::sync::Mutex::new(())),
            snapshot_running: Arc::new(tokio::sync::Mutex::new(())),
            limits,
        }
    }

    /// Takes one of the node's block streams for `caller`, within both caps.
    fn open_stream(&self, caller: Option<Caller>) -> Result<StreamSlot, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node serves {} block streams already: close one or retry later",
                self.limits.max_streams
            ))
        })?;
        let account = caller.map(|c| c.0).unwrap_or_default();
        let mut open = self.streams_of.lock();
        let n = open.entry(account).or_default();
        if *n >= self.limits.max_streams_per_account {
            return Err(Status::resource_exhausted(format!(
                "{account} has {} block streams open, the most one account may: close one first",
                self.limits.max_streams_per_account
            )));
        }
        *n += 1;
        Ok(StreamSlot {
            account,
            open: self.streams_of.clone(),
            _permit: permit,
        })
    }

    fn block_at(&self, height: u64) -> Result<pb::BlockWithCertificate, Status> {
        match self.ledger.committed_block(height).map_err(internal)? {
            Some(b) => Ok(convert::block(&b)),
            None if height < self.ledger.executor.base_height() => {
                Err(below_base(height, self.ledger.executor.base_height()))
            }
            None => Err(Status::not_found(format!(
                "no block at height {height} (the chain is at height {})",
                self.ledger.tip().height
            ))),
        }
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<pb::BlockWithCertificate, Status>> + Send>>;

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn submit_transaction(
        &self,
        request: Request<pb::SubmitTransactionRequest>,
    ) -> Result<Response<pb::SubmitTransactionResponse>, Status> {
        if let Some(Caller(account)) = request.extensions().get::<Caller>().copied() {
            if self.submissions.check_key(&account).is_err() {
                return Err(Status::resource_exhausted(format!(
                    "{account} submits faster than the {} transactions a second this node \
                     takes from one account: slow down",
                    self.limits.submit_per_second
                )));
            }
        }
        self.disk.check("new transactions")?;
        let raw = Bytes::from(request.into_inner().raw);
        let ledger = self.ledger.clone();
        // Signature recovery is CPU work: keep it off the async workers.
        let admitted = tokio::task::spawn_blocking(move || ledger.submit(raw.into()))
            .await
            .map_err(internal)?
            .map_err(submit_status)?;
        Ok(Response::new(pb::SubmitTransactionResponse {
            tx_hash: admitted.hash.to_vec(),
            mempool_size: admitted.mempool_size as u64,
        }))
    }

    async fn get_block(
        &self,
        request: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        let height = match request.into_inner().selector {
            Some(pb::get_block_request::Selector::Height(h)) => h,
            Some(pb::get_block_request::Selector::Hash(hash)) => {
                let hash = convert::b256(&hash, "block hash")?;
                self.ledger
                    .chain
                    .height_of(&hash)
                    .map_err(internal)?
                    .ok_or_else(|| Status::not_found(format!("no committed block {hash}")))?
            }
            None => return Err(Status::invalid_argument("give a height or a hash")),
        };
        Ok(Response::new(pb::GetBlockResponse {
            block: Some(self.block_at(height)?),
        }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let hash = convert::b256(&request.into_inner().hash, "transaction hash")?;
        if let Some(loc) = self.ledger.tx_location(&hash).map_err(internal)? {
            let block = self
                .ledger
                .chain
                .block(loc.height)
                .map_err(internal)?
                .ok_or_else(|| internal("indexed block missing"))?;
            let raw = block
                .txs
                .get(loc.index as usize)
                .cloned()
                .ok_or_else(|| internal("indexed transaction missing"))?;
            let tx = SignedTx::decode(raw, &self.ledger.limits).map_err(internal)?;
            return Ok(Response::new(pb::GetTransactionResponse {
                hash: hash.to_vec(),
                raw: tx.raw().to_vec(),
                sender: tx.sender().to_vec(),
                nonce: tx.nonce(),
                height: Some(loc.height),
                index: Some(loc.index),
                block_hash: block.hash().to_vec(),
                pending: false,
            }));
        }
        if let Some(tx) = self.ledger.mempool.get(&hash) {
            return Ok(Response::new(pb::GetTransactionResponse {
                hash: hash.to_vec(),
                raw: tx.raw().to_vec(),
                sender: tx.sender().to_vec(),
                nonce: tx.nonce(),
                height: None,
                index: None,
                block_hash: Vec::new(),
                pending: true,
            }));
        }
        match self.ledger.mempool.eviction_reason(&hash) {
            Some(reason) => Err(Status::not_found(format!(
                "transaction {hash} was dropped from the mempool: {reason}"
            ))),
            None => Err(Status::not_found(format!(
                "transaction {hash} is neither committed nor pending on this node"
            ))),
        }
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let tip = self.ledger.tip();
        if request.extensions().get::<Caller>().is_none() {
            // Without a session: what identifies the chain and its progress, nothing about
            // the node's peers, its validator identity or its load.
            return Ok(Response::new(pb::GetStatusResponse {
                chain_id: self.ledger.genesis.chain_id,
                node_name: self.ledger.moniker.clone(),
                height: tip.height,
                latest_hash: tip.hash.to_vec(),
                latest_timestamp_ms: tip.timestamp_ms,
                genesis_hash: self.ledger.genesis_hash.to_vec(),
                syncing: self.ledger.is_syncing(),
                state_root: tip.state_root.to_vec(),
                ..Default::default()
            }));
        }
        let validators = self
            .ledger
            .validators()
            .validators()
            .iter()
            .map(|v| pb::Validator {
                name: v.name.clone(),
                address: v.address.as_bytes().to_vec(),
                public_key: v.public_key.as_bytes().to_vec(),
                voting_power: v.voting_power,
            })
            .collect();
        let peers = self
            .ledger
            .peers()
            .await
            .into_iter()
            .map(|p| pb::Peer {
                peer_id: p.peer_id,
                address: p.address,
            })
            .collect();
        Ok(Response::new(pb::GetStatusResponse {
            chain_id: self.ledger.genesis.chain_id,
            node_name: self.ledger.moniker.clone(),
            height: tip.height,
            latest_hash: tip.hash.to_vec(),
            latest_timestamp_ms: tip.timestamp_ms,
            genesis_hash: self.ledger.genesis_hash.to_vec(),
            validators,
            peers,
            syncing: self.ledger.is_syncing(),
            mempool_size: self.ledger.mempool.len() as u64,
            validator_address: self
                .ledger
                .validator_address
                .map(|a| a.as_bytes().to_vec())
                .unwrap_or_default(),
            state_root: tip.state_root.to_vec(),
        }))
    }

    async fn create_backup(
        &self,
        request: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<pb::CreateBackupResponse>, Status> {
        let name = request.into_inner().name;
        let valid = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(Status::invalid_argument(format!(
                "backup name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (not starting with a dot)"
            )));
        }
        self.disk.check("backups")?;
        // One backup at a time; a caller that finds one running retries.
        let _running = self.backup_running.try_lock().map_err(|_| {
            Status::unavailable("a backup of this node is being written: retry when it is done")
        })?;
        let store = self.ledger.chain.store().clone();
        let backups = beside_db(&store, "backups");
        // A checkpoint keeps table files alive after the database compacts them away: old
        // backups must be moved off the machine and deleted, not piled up here.
        let kept = std::fs::read_dir(&backups).map_or(0, |d| d.count());
        if kept >= MAX_BACKUPS {
            return Err(Status::resource_exhausted(format!(
                "{kept} backups are kept in {} already (at most {MAX_BACKUPS}): move old ones off \
                 the machine and delete them",
                backups.display()
            )));
        }
        let dir = backups.join(&name);
        if dir.exists() {
            return Err(Status::already_exists(format!(
                "a backup named {name} exists at {}",
                dir.display()
            )));
        }
        let genesis_hash = self.ledger.genesis_hash;
        let (height, state_root) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || -> Result<(u64, pmr_primitives::B256), String> {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                store.checkpoint(&dir).map_err(|e| e.to_string())?;
                // What the backup holds, read from the backup itself.
                let copy = pmr_storage::Store::open_read_only(&dir).map_err(|e| e.to_string())?;
                let chain = pmr_consensus::ChainStore::open(copy, genesis_hash)
                    .map_err(|e| e.to_string())?;
                let height = chain.height().map_err(|e| e.to_string())?;
                let root = chain
                    .block(height)
                    .map_err(|e| e.to_string())?
                    .map(|b| b.header.state_root)
                    .unwrap_or_default();
                Ok((height, root))
            }
        })
        .await
        .map_err(internal)?
        .map_err(|e| Status::internal(format!("backup {name}: {e}")))?;
        tracing::info!(target: "pmr::rpc", %name, height, path = %dir.display(), "online backup written");
        Ok(Response::new(pb::CreateBackupResponse {
            path: dir.display().to_string(),
            height,
            state_root: state_root.to_vec(),
        }))
    }

    type GetStateSnapshotStream =
        Pin<Box<dyn Stream<Item = Result<pb::StateSnapshotChunk, Status>> + Send>>;

    async fn get_state_snapshot(
        &self,
        _request: Request<pb::GetStateSnapshotRequest>,
    ) -> Result<Response<Self::GetStateSnapshotStream>, Status> {
        self.disk.check("state snapshots")?;
        let running = self
            .snapshot_running
            .clone()
            .try_lock_owned()
            .map_err(|_| {
                Status::unavailable("a state snapshot of this node is being written: retry later")
            })?;
        let store = self.ledger.chain.store().clone();
        let dir = beside_db(&store, "snapshots");
        let (tx, rx) = mpsc::channel(4);
        // The response starts at once; the snapshot is written and streamed by a task of its
        // own, which holds the one-at-a-time lock until it is done or the reader is gone, and
        // deletes what it wrote on every way out.
        tokio::spawn(async move {
            let _running = running;
            let exported = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || export_state(&store, &dir)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            let result = match exported {
                Ok((file, info)) => {
                    tracing::info!(target: "pmr::rpc", height = info.height, entries = info.counts.total(), "state snapshot written; streaming it");
                    stream_file(&file, &info, &tx)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let _ = tx
                    .send(Err(Status::internal(format!("state snapshot: {e}"))))
                    .await;
            }
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(target: "pmr::rpc", error = %e, path = %dir.display(), "cannot delete a state snapshot");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_evidence(
        &self,
        request: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<pb::GetEvidenceResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let records = self
            .ledger
            .evidence(req.from_height, limit)
            .map_err(|e| Status::internal(e.to_string()))?;
        let value = |v: Option<pmr_primitives::B256>| v.map(|h| h.to_vec()).unwrap_or_default();
        let evidence = records
            .into_iter()
            .map(|e| pb::Equivocation {
                height: e.height,
                round: e.round,
                validator: e.validator.0.to_vec(),
                kind: e.kind.as_str().to_string(),
                first_value: value(e.values[0]),
                second_value: value(e.values[1]),
                first_signed: e.signed[0].to_vec(),
                second_signed: e.signed[1].to_vec(),
            })
            .collect();
        Ok(Response::new(pb::GetEvidenceResponse { evidence }))
    }

    type StreamBlocksStream = BlockStream;

    async fn stream_blocks(
        &self,
        request: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<BlockStream>, Status> {
        let slot = self.open_stream(request.extensions().get::<Caller>().copied())?;
        let from = request.into_inner().from_height;
        // Subscribe before reading the tip so no block falls between history and live.
        let mut live = self.ledger.subscribe();
        let mut next = if from == 0 {
            self.ledger.tip().height + 1
        } else {
            from
        };
        let (tx, rx) = mpsc::channel(self.limits.stream_buffer.max(1));
        let api = self.clone();
        let slow = self.limits.slow_reader;
        // A reader that takes nothing for `slow` loses its stream, with a status saying where
        // to resume; only `stream_buffer` blocks wait for it meanwhile.
        let dropped: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        let verdict = dropped.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let send = |item: Result<pb::BlockWithCertificate, Status>, at: u64| {
                let tx = tx.clone();
                let verdict = verdict.clone();
                async move {
                    match tokio::time::timeout(slow, tx.send(item)).await {
                        Ok(Ok(())) => true,
                        Ok(Err(_)) => false,
                        Err(_) => {
                            *verdict.lock() = Some(Status::resource_exhausted(format!(
                                "the stream was closed: its reader took no block for {}s; \
                                 reconnect from height {at}",
                                slow.as_secs()
                            )));
                            false
                        }
                    }
                }
            };
            loop {
                // Catch up from the store to the current tip.
                let tip = api.ledger.tip().height;
                while next <= tip {
                    if !send(api.block_at(next), next).await {
                        return;
                    }
                    next += 1;
                }
                match live.recv().await {
                    Ok(b) if b.block.header.height == next => {
                        if !send(Ok(convert::block(&b)), next).await {
                            return;
                        }
                        next += 1;
                    }
                    // Older than wanted, or a gap: the loop fills gaps from the store.
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let stream = ReceiverStream::new(rx).chain(futures::stream::poll_fn(move |_| {
            std::task::Poll::Ready(dropped.lock().take().map(Err))
        }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_transaction_receipt(
        &self,
        request: Request<pb::GetTransactionReceiptRequest>,
    ) -> Result<Response<pb::GetTransactionReceiptResponse>, Status> {
        let hash = convert::b256(&request.into_inner().tx_hash, "transaction hash")?;
        let loc = self
            .ledger
            .tx_location(&hash)
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found(format!("transaction {hash} is not committed (yet)"))
            })?;
        let receipts = self.receipts_of(loc.height)?;
        Ok(Response::new(self.receipt_response(
            &receipts,
            loc.height,
            loc.index as usize,
        )?))
    }

    async fn get_validator_set_changes(
        &self,
        request: Request<pb::GetValidatorSetChangesRequest>,
    ) -> Result<Response<pb::GetValidatorSetChangesResponse>, Status> {
        /// A page stops once its blocks pass this many bytes.
        const PAGE_BYTES: usize = 16 << 20;
        let from = request.into_inner().from as usize;
        let base = self.ledger.executor.base_height();
        let all = self.ledger.schedule.entries();
        let total = all.len().saturating_sub(1);
        let mut changes = Vec::new();
        let mut bytes = 0;
        for (effective, _) in all.into_iter().skip(1 + from) {
            let height = effective - pmr_contract::VALIDATOR_CHANGE_DELAY;
            if height <= base {
                return Err(Status::failed_precondition(format!(
                    "this node joined from a snapshot at height {base} and holds no blocks \
                     before it: ask a node that keeps the whole chain"
                )));
            }
            let receipts = self.receipts_of(height)?;
            let index = receipts
                .iter()
                .position(|r| pmr_consensus::ValidatorSchedule::changed_by(std::slice::from_ref(r)))
                .ok_or_else(|| {
                    internal(format!(
                        "block {height} changed the validator set but no receipt of it says so"
                    ))
                })?;
            let change = self.receipt_response(&receipts, height, index)?;
            let size = prost::Message::encoded_len(&change);
            if !changes.is_empty() && bytes + size > PAGE_BYTES {
                break;
            }
            bytes += size;
            changes.push(change);
        }
        Ok(Response::new(pb::GetValidatorSetChangesResponse {
            total: total as u32,
            changes,
        }))
    }

    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        let req = request.into_inner();
        let from = if req.from.is_empty() {
            pmr_primitives::Address::ZERO
        } else {
            convert::address(&req.from, "from")?
        };
        let to = convert::address(&req.to, "to")?;
        let height = req.height.unwrap_or_else(|| self.ledger.tip().height);
        self.check_height(height)?;
        let ledger = self.ledger.clone();
        let out = tokio::task::spawn_blocking(move || {
            ledger
                .executor
                .call(Some(height), from, to, Bytes::from(req.data))
        })
        .await
        .map_err(internal)?
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::CallResponse {
            success: out.success,
            output: out.output.to_vec(),
            gas_used: out.gas_used,
            height,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let req = request.into_inner();
        let addr = convert::address(&req.address, "address")?;
        let height = req.height.unwrap_or_else(|| self.ledger.tip().height);
        self.check_height(height)?;
        let view = self
            .ledger
            .executor
            .account(Some(height), addr)
            .map_err(internal)?;
        Ok(Response::new(pb::GetAccountResponse {
            nonce: view.nonce,
            balance: view.balance.to_be_bytes::<32>().to_vec(),
            code_hash: view.code_hash.to_vec(),
            height,
        }))
    }
}

impl LedgerApi {
    /// The receipts of committed block `height`.
    fn receipts_of(&self, height: u64) -> Result<Vec<pmr_execution::Receipt>, Status> {
        self.ledger
            .executor
            .receipts(height)
            .map_err(internal)?
            .ok_or_else(|| internal("receipts of a committed block are missing"))
    }

    /// Receipt `index` of block `height` (whose receipts are `receipts`), with its Merkle proof
    /// and its block.
    fn receipt_response(
        &self,
        receipts: &[pmr_execution::Receipt],
        height: u64,
        index: usize,
    ) -> Result<pb::GetTransactionReceiptResponse, Status> {
        let r = receipts
            .get(index)
            .ok_or_else(|| internal("receipt index out of range"))?;
        let proof = pmr_execution::receipt_proof(receipts, index)
            .ok_or_else(|| internal("cannot build receipt proof"))?;
        // `r.hash()`, the receipt's Merkle leaf, is BLAKE3 of exactly these bytes.
        let encoded = alloy_rlp::encode(r);
        Ok(pb::GetTransactionReceiptResponse {
            receipt: Some(pb::Receipt {
                tx_hash: r.tx_hash.to_vec(),
                index: r.index as u32,
                success: r.success,
                gas_used: r.gas_used,
                cumulative_gas_used: r.cumulative_gas_used,
                logs: r
                    .logs
                    .iter()
                    .map(|l| pb::Log {
                        address: l.address.to_vec(),
                        topics: l.topics.iter().map(|t| t.to_vec()).collect(),
                        data: l.data.to_vec(),
                    })
                    .collect(),
                output: r.output.to_vec(),
                contract_address: r.contract_address.map(|a| a.to_vec()).unwrap_or_default(),
                encoded: encoded.to_vec(),
            }),
            height,
            proof: Some(convert::proof(&proof)),
            block: Some(self.block_at(height)?),
        })
    }

    fn check_height(&self, height: u64) -> Result<(), Status> {
        let tip = self.ledger.tip().height;
        if height > tip {
            return Err(Status::out_of_range(format!(
                "height {height} is not committed yet (the chain is at {tip})"
            )));
        }
        let base = self.ledger.executor.base_height();
        if height < base {
            return Err(below_base(height, base));
        }
        Ok(())
    }
}

/// One open block stream: released (on both counts) when the stream's task ends.
struct StreamSlot {
    account: Address,
    open: Arc<Mutex<HashMap<Address, usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}

/// `name` in the node's data directory, beside its database.
fn beside_db(store: &pmr_storage::Store, name: &str) -> std::path::PathBuf {
    store.path().parent().unwrap_or(store.path()).join(name)
}

/// Largest piece of a state snapshot in one message.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// A reader that takes no chunk for this long is dropped (and the lock released).
const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The state at one instant: a checkpoint of the database in `dir` (the node keeps
/// committing), exported to `dir/state.snapshot` (mode 0600: it holds the whole state), the
/// checkpoint then deleted. On an error nothing is left in `dir`.
fn export_state(
    store: &pmr_storage::Store,
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, pmr_execution::SnapshotInfo), String> {
    if dir.exists() {
        // A snapshot a crash left behind.
        std::fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let export = || -> Result<(std::path::PathBuf, pmr_execution::SnapshotInfo), String> {
        let checkpoint = dir.join("checkpoint");
        store.checkpoint(&checkpoint).map_err(|e| e.to_string())?;
        let copy = pmr_storage::Store::open_read_only(&checkpoint).map_err(|e| e.to_string())?;
        let file = dir.join("state.snapshot");
        let info = pmr_execution::export_snapshot(&copy, &file).map_err(|e| e.to_string())?;
        drop(copy);
        std::fs::remove_dir_all(&checkpoint).map_err(|e| e.to_string())?;
        Ok((file, info))
    };
    export().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(dir);
    })
}

/// Sends the snapshot at `path` as chunks naming `info`'s height and root, until done, the
/// reader is gone, or it takes nothing for [`SNAPSHOT_SEND_TIMEOUT`].
async fn stream_file(
    path: &std::path::Path,
    info: &pmr_execution::SnapshotInfo,
    tx: &mpsc::Sender<Result<pb::StateSnapshotChunk, Status>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let total_bytes = file.metadata().await?.len();
    loop {
        let mut data = Vec::with_capacity(SNAPSHOT_CHUNK);
        while data.len() < SNAPSHOT_CHUNK {
            let want = (SNAPSHOT_CHUNK - data.len()) as u64;
            if (&mut file).take(want).read_to_end(&mut data).await? == 0 {
                break;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk = pb::StateSnapshotChunk {
            height: info.height,
            state_root: info.state_root.to_vec(),
            total_bytes,
            data,
        };
        match tokio::time::timeout(SNAPSHOT_SEND_TIMEOUT, tx.send(Ok(chunk))).await {
            Ok(Ok(())) => {}
            // The reader went away, or stopped reading.
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
}

/// `NOT_FOUND` for a height below the first this node holds (it joined by state sync).
fn below_base(height: u64, base: u64) -> Status {
    Status::not_found(format!(
        "height {height} is not on this node: it joined from a snapshot of height {base} and \
         holds blocks and state from there on; ask a node that keeps every height"
    ))
}
