//! The application side of the engine: answers every message malachite sends.
//!
//! Proposals are built from the mempool and executed before they are proposed; received
//! proposals are executed before this node votes for them; a decided block is committed with
//! its state changes, receipts and commit certificate in one atomic, fsynced write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app_channel::app::streaming::{StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{
    CommitCertificate, ExtendedCommitCertificate, LinearTimeouts, Round, ValidatorSet as _,
    Validity, VoteExtensions,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{LocallyProposedValue, PeerId, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use pmr_execution::{BlockEnv, ExecutedBlock};
use pmr_primitives::{Block, Bytes as PBytes, Header, SignedTx, B256};
use pmr_storage::Durability;
use rayon::prelude::*;
use tracing::{debug, error, info, warn};

use crate::chain::{ChainStore, UndecidedProposal};
use crate::config::ConsensusConfig;
use crate::context::{Address, BlockHash, Height, PmrContext, ProposalPart};
use crate::error::ConsensusError;
use crate::ledger::{CommittedBlock, Ledger};
use crate::schedule::ValidatorSchedule;
use crate::signing::{proposal_parts_sign_bytes, PmrSigner};
use crate::streaming::{
    parse_stream_id, stream_id, stream_messages, AssembledProposal, PartStreams,
};

/// Proposals for future heights held until their height starts.
const MAX_FUTURE_PROPOSALS: usize = 32;

/// Heights beyond the current one whose proposal parts are buffered (a node a little behind
/// still collects the next proposals; one further behind catches up by value sync).
const PART_HEIGHT_WINDOW: u64 = 4;

// The proposer of a buffered height must be known exactly: the set of height h is fixed once
// block h - VALIDATOR_CHANGE_DELAY is committed, and parts reach at most the current height
// (the tip's next) plus the window.
const _: () = assert!(PART_HEIGHT_WINDOW < pmr_contract::VALIDATOR_CHANGE_DELAY);

/// Rounds beyond the current one (of the current height; beyond round 0 of a later height)
/// whose proposal parts are buffered. A node that falls further behind in rounds moves on with
/// the votes and gets the value of the round it reaches from that round's proposer.
const PART_ROUND_WINDOW: i64 = 2;

/// At most one warning per this interval about refused proposal parts (a flood must not
/// become a flood of log lines); the metric counts every one.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A proposal this node executed, waiting for a decision.
struct Candidate {
    block: Block,
    bytes: Bytes,
    executed: ExecutedBlock,
    seen_at: Instant,
}

pub(crate) struct App {
    ctx: PmrContext,
    ledger: Arc<Ledger>,
    signer: Option<Arc<PmrSigner>>,
    timeouts: LinearTimeouts,
    cfg: ConsensusConfig,
    chain_id: u64,
    height: u64,
    round: Round,
    streams: PartStreams,
    /// The validator each p2p identity speaks for: the one derived from its consensus key, or
    /// the one a configured peer names.
    proposer_peers: HashMap<PeerId, Address>,
    last_refusal_log: Option<Instant>,
    /// The (height, round) of every proposal received whole, from this height on: a proposer
    /// sends one proposal per round, so another stream for it is refused before it costs an
    /// execution.
    completed: HashSet<(u64, Round)>,
    candidates: HashMap<B256, Candidate>,
    future: BTreeMap<u64, Vec<AssembledProposal>>,
    last_commit_at: Instant,
    /// The highest height whose block this node received by value sync.
    last_synced: u64,
    /// Set when a decided block's commit failed: `Finalized` then restarts the height.
    commit_failed: bool,
    /// Test failpoint (`PMR_TEST_FAILPOINT=abort-mid-commit@H`): the process aborts in the
    /// commit of height `H`, with the block executed and its batch staged but not written.
    abort_mid_commit: Option<u64>,
}

/// The environment variable of the crash tests' failpoint.
const FAILPOINT_ENV: &str = "PMR_TEST_FAILPOINT";

/// The height of an `abort-mid-commit@H` failpoint in `value`.
fn abort_mid_commit(value: Option<&str>) -> Option<u64> {
    value?.strip_prefix("abort-mid-commit@")?.parse().ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl App {
    pub(crate) fn new(
        ledger: Arc<Ledger>,
        signer: Option<Arc<PmrSigner>>,
        cfg: ConsensusConfig,
        proposer_peers: HashMap<PeerId, Address>,
    ) -> Self {
        let chain_id = ledger.genesis.chain_id;
        Self {
            ctx: PmrContext,
            timeouts: cfg.timeouts.to_linear(),
            streams: PartStreams::new(cfg.max_block_bytes + 1024 * 1024),
            proposer_peers,
            last_refusal_log: None,
            completed: HashSet::new(),
            ledger,
            signer,
            cfg,
            chain_id,
            height: 0,
            round: Round::Nil,
            candidates: HashMap::new(),
            future: BTreeMap::new(),
            last_commit_at: Instant::now(),
            last_synced: 0,
            commit_failed: false,
            abort_mid_commit: {
                let value = std::env::var(FAILPOINT_ENV).ok();
                let at = abort_mid_commit(value.as_deref());
                if let Some(value) = &value {
                    warn!(target: "pmr::consensus", %value, parsed = ?at, "{FAILPOINT_ENV} is set: this process will abort on purpose (crash tests only)");
                }
                at
            },
        }
    }

    /// What the engine needs to run `height`: its validator set, from the chain's history.
    fn params(&self, height: u64) -> HeightParams<PmrContext> {
        HeightParams::new(self.ledger.schedule.at(height), self.timeouts, None)
    }

    fn my_address(&self) -> Option<Address> {
        self.signer.as_ref().map(|s| s.address())
    }

    /// Runs until the engine stops (Ok) or the node must halt (Err).
    pub(crate) async fn run(
        mut self,
        channels: &mut Channels<PmrContext>,
    ) -> Result<(), ConsensusError> {
        while let Some(msg) = channels.consensus.recv().await {
            self.handle(msg, channels).await?;
        }
        Err(ConsensusError::EngineStopped)
    }

    async fn handle(
        &mut self,
        msg: AppMsg<PmrContext>,
        channels: &mut Channels<PmrContext>,
    ) -> Result<(), ConsensusError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let start = self.ledger.chain.height()? + 1;
                self.height = start;
                info!(target: "pmr::consensus", height = start, "consensus ready");
                let _ = reply.send((Height(start), self.params(start)));
            }
            AppMsg::StartedRound {
                height,
                round,
                proposer,
                role,
                reply_value,
            } => {
                debug!(target: "pmr::consensus", %height, %round, %proposer, ?role, "started round");
                self.height = height.0;
                self.round = round;
                self.ledger.metrics.round.set(round.as_i64());
                self.admit_future_proposals(height.0);
                let current = height.0;
                self.streams
                    .retain(|id| parse_stream_id(id).is_some_and(|(h, _)| h >= current));
                self.completed.retain(|(h, _)| *h >= current);
                self.ledger
                    .metrics
                    .proposal_stream_bytes
                    .set(self.streams.charged() as i64);
                let values = self
                    .ledger
                    .chain
                    .undecided(height.0, round)?
                    .into_iter()
                    .filter_map(|p| self.revalidate_stored(p))
                    .collect();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                let (hash, bytes, pol_round) =
                    self.value_to_propose(height.0, round, timeout).await?;
                let _ = reply.send(LocallyProposedValue::new(height, round, BlockHash(hash)));
                self.publish_parts(channels, height.0, round, pol_round, hash, &bytes)
                    .await;
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let publisher: PeerId = published_by.unwrap_or(from);
                let value = self.on_part(publisher, part);
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                self.commit_failed = false;
                if let Err(e) = self.commit(certificate, extensions) {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    error!(target: "pmr::consensus", error = %e, "commit failed; the height will restart");
                    self.commit_failed = true;
                }
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate,
                extensions,
                evidence,
                reply,
            } => {
                let height = certificate.height.0;
                if !evidence.is_empty() {
                    let records = crate::evidence::from_engine(&evidence);
                    for e in &records {
                        warn!(target: "pmr::consensus", height = e.height, round = e.round, validator = %e.validator, kind = e.kind.as_str(), "misbehavior evidence: a validator signed two different messages");
                    }
                    self.ledger.record_evidence(&records);
                }
                let next = if self.commit_failed || self.ledger.chain.height()? < height {
                    Next::Restart(Height(height), self.params(height))
                } else {
                    let full = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                        certificate,
                        extensions,
                    );
                    if let Some(stored) = self.ledger.chain.certificate(height)? {
                        if full.commit_signatures.len() > stored.commit_signatures.len() {
                            self.ledger.chain.update_certificate(&full)?;
                        }
                    }
                    Next::Start(Height(height + 1), self.params(height + 1))
                };
                let _ = reply.send(next);
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                // A node that joined by state sync holds blocks from its base on.
                let base = self.ledger.executor.base_height().max(1);
                let _ = reply.send(Height(base));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let tip = self.ledger.chain.height()?;
                let mut values = Vec::new();
                let end = range.end().0.min(tip);
                for h in range.start().0..=end {
                    let (Some(bytes), Some(cert)) = (
                        self.ledger.chain.block_bytes(h)?,
                        self.ledger.chain.certificate(h)?,
                    ) else {
                        break;
                    };
                    values.push(RawDecidedValue::new(bytes.into(), cert));
                }
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = match Block::decode_checked(&value_bytes) {
                    Ok(block) if block.header.height == height.0 => {
                        self.ledger.mark_syncing();
                        self.last_synced = self.last_synced.max(height.0);
                        let hash = block.hash();
                        self.ledger.chain.put_undecided(
                            &UndecidedProposal {
                                height: height.0,
                                round,
                                hash,
                                block,
                                bytes: value_bytes,
                            },
                            Durability::Buffered,
                        )?;
                        SyncedValueOutcome::Verdict(ProposedValue {
                            height,
                            round,
                            valid_round: Round::Nil,
                            proposer,
                            value: BlockHash(hash),
                            validity: Validity::Valid,
                        })
                    }
                    Ok(block) => {
                        warn!(target: "pmr::sync", expected = %height, got = block.header.height, "synced block for the wrong height");
                        SyncedValueOutcome::PeerFault
                    }
                    Err(e) => {
                        warn!(target: "pmr::sync", %height, error = %e, "undecodable synced block");
                        SyncedValueOutcome::PeerFault
                    }
                };
                let _ = reply.send(outcome);
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                address,
                value_id,
            } => {
                if Some(address) != self.my_address() {
                    return Ok(());
                }
                if let Some(p) = self.ledger.chain.undecided_by_hash(height.0, &value_id.0)? {
                    self.publish_parts(channels, height.0, round, valid_round, p.hash, &p.bytes)
                        .await;
                }
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                let _ = reply.send(extensions.into_iter().map(|(a, _)| (a, Ok(()))).collect());
            }
        }
        Ok(())
    }

    // ---- proposing ----------------------------------------------------------------------

    /// The value for `height`/`round`: the one already built for it (after a restart), or a
    /// new block from the mempool.
    async fn value_to_propose(
        &mut self,
        height: u64,
        round: Round,
        timeout: Duration,
    ) -> Result<(B256, Bytes, Round), ConsensusError> {
        let me = self.my_address();
        if let Some(p) = self
            .ledger
            .chain
            .undecided(height, round)?
            .into_iter()
            .find(|p| Some(Address(p.block.header.proposer)) == me)
        {
            info!(target: "pmr::consensus", height, %round, "re-proposing the block built before a restart");
            return Ok((p.hash, p.bytes, Round::Nil));
        }
        let candidates = self.wait_for_transactions(height, timeout).await;
        let parent = self.ledger.tip();
        let proposer = me.ok_or(ConsensusError::NotAValidator)?;
        let env = BlockEnv {
            height,
            timestamp_ms: now_ms().max(parent.timestamp_ms + 1),
            proposer: proposer.0,
        };
        let executor = self.ledger.executor.clone();
        let built = tokio::task::block_in_place(|| executor.build_block(&env, candidates))?;
        for (hash, reason) in &built.rejected {
            // A transaction that may become valid (a nonce gap, a full block) stays pending.
            if !reason.is_retryable() {
                self.ledger.mempool.evict(hash, reason.to_string());
                self.ledger.metrics.txs_evicted.inc();
            }
        }
        let txs: Vec<PBytes> = built.included.iter().map(|t| t.raw().clone()).collect();
        let header = Header {
            height,
            parent_hash: parent.hash,
            timestamp_ms: env.timestamp_ms,
            proposer: proposer.0,
            tx_root: Block::compute_tx_root(&txs),
            state_root: built.executed.state_root,
            receipts_root: built.executed.receipts_root,
            gas_used: built.executed.gas_used,
        };
        let block = Block { header, txs };
        let hash = block.hash();
        let bytes = Bytes::from(block.encode_to_vec());
        // Durable before it is proposed: after a crash this node re-proposes this block rather
        // than a different one for the same round.
        self.ledger.chain.put_undecided(
            &UndecidedProposal {
                height,
                round,
                hash,
                block: block.clone(),
                bytes: bytes.clone(),
            },
            Durability::Sync,
        )?;
        info!(target: "pmr::consensus", height, %round, txs = block.txs.len(), hash = %hash, "proposing block");
        self.candidates.insert(
            hash,
            Candidate {
                block,
                bytes: bytes.clone(),
                executed: built.executed,
                seen_at: Instant::now(),
            },
        );
        Ok((hash, bytes, Round::Nil))
    }

    /// Ready transactions, waiting for the first one to arrive if there are none yet: at most
    /// until `empty_block_interval` after the last commit (then the block is empty), and never
    /// past half the proposal timeout.
    async fn wait_for_transactions(&self, height: u64, timeout: Duration) -> Vec<SignedTx> {
        let start = Instant::now();
        // A node that received the previous block by sync is catching up: the network has most
        // likely decided this height already and its block arrives by sync too, so waiting here
        // would only hold that back (a node proposing every n-th height would sync n blocks per
        // empty-block interval).
        let deadline = if height > 1 && self.last_synced == height - 1 {
            start
        } else {
            (self.last_commit_at + self.cfg.empty_block_interval)
                .min(start + timeout / 2)
                .max(start)
        };
        loop {
            let added = self.ledger.mempool.added();
            tokio::pin!(added);
            added.as_mut().enable();
            let executor = &self.ledger.executor;
            let txs =
                self.ledger
                    .mempool
                    .reap(self.cfg.max_block_txs, self.cfg.max_block_bytes, |a| {
                        executor.nonce(a).unwrap_or(0)
                    });
            if !txs.is_empty() || Instant::now() >= deadline {
                return txs;
            }
            tokio::select! {
                _ = &mut added => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    async fn publish_parts(
        &self,
        channels: &mut Channels<PmrContext>,
        height: u64,
        round: Round,
        pol_round: Round,
        hash: B256,
        bytes: &Bytes,
    ) {
        let Some(signer) = &self.signer else { return };
        let proposer = signer.address();
        let signature = signer.sign_bytes(&proposal_parts_sign_bytes(
            self.chain_id,
            Height(height),
            round,
            pol_round,
            &proposer,
            &BlockHash(hash),
        ));
        let init = ProposalPart::Init {
            height: Height(height),
            round,
            pol_round,
            proposer,
        };
        for msg in stream_messages(
            stream_id(height, round),
            init,
            bytes,
            self.cfg.part_size,
            signature,
        ) {
            if channels
                .network
                .send(NetworkMsg::PublishProposalPart(msg))
                .await
                .is_err()
            {
                warn!(target: "pmr::consensus", "network channel closed while streaming a proposal");
                return;
            }
        }
    }

    // ---- validating ---------------------------------------------------------------------

    /// A proposal part, buffered only when its publisher is the proposer of the height and
    /// round its stream names and that height is current or just ahead.
    fn on_part(
        &mut self,
        publisher: PeerId,
        part: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<PmrContext>> {
        let named = match self.admit_part(publisher, &part.stream_id) {
            Ok(named) => named,
            Err(reason) => {
                self.ledger.metrics.proposal_parts_refused.inc();
                let quiet = self
                    .last_refusal_log
                    .is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY);
                if !quiet {
                    self.last_refusal_log = Some(Instant::now());
                    warn!(target: "pmr::consensus", peer = %publisher, reason, "refused proposal parts (counted in pmr_proposal_parts_refused; logged at most every 10 s)");
                }
                return None;
            }
        };
        let result = self.streams.insert(publisher, part);
        self.ledger
            .metrics
            .proposal_stream_bytes
            .set(self.streams.charged() as i64);
        match result {
            Ok(Some(p)) if (p.height.0, p.round) == named => {
                self.completed.insert(named);
                self.on_assembled(p)
            }
            Ok(Some(p)) => {
                self.ledger.metrics.proposal_streams_dropped.inc();
                warn!(target: "pmr::consensus", peer = %publisher, height = %p.height, round = %p.round, "proposal stream's Init names another height or round than its stream");
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.ledger.metrics.proposal_streams_dropped.inc();
                warn!(target: "pmr::consensus", peer = %publisher, error = %e, "dropped proposal stream");
                None
            }
        }
    }

    /// The height and round a part's stream names, if its publisher may send it.
    fn admit_part(&self, publisher: PeerId, id: &StreamId) -> Result<(u64, Round), &'static str> {
        let (height, round) = parse_stream_id(id).ok_or("stream id names no height and round")?;
        let speaks_for = self.proposer_peers.get(&publisher).copied();
        let proposer = self.ctx_proposer(Height(height), round).map(|p| p.address);
        admit(
            (height, round),
            (self.height, self.round),
            &self.completed,
            speaks_for,
            proposer,
        )?;
        Ok((height, round))
    }

    fn on_assembled(&mut self, p: AssembledProposal) -> Option<ProposedValue<PmrContext>> {
        if p.height.0 < self.height {
            return None;
        }
        if p.height.0 > self.height {
            let held: usize = self.future.values().map(Vec::len).sum();
            let waiting = self.future.entry(p.height.0).or_default();
            // One per round: its proposer sends one.
            if held < MAX_FUTURE_PROPOSALS && !waiting.iter().any(|w| w.round == p.round) {
                waiting.push(p);
            }
            return None;
        }
        self.validate_assembled(p)
    }

    fn admit_future_proposals(&mut self, height: u64) {
        self.future = self.future.split_off(&height);
        if let Some(ps) = self.future.remove(&height) {
            for p in ps {
                // Stored as undecided when valid, so `StartedRound`'s reply includes it.
                let _ = self.validate_assembled(p);
            }
        }
    }

    /// Checks a fully received proposal: signed by the round's proposer, a well-formed block
    /// extending our tip, and executing to exactly the roots its header claims.
    fn validate_assembled(&mut self, p: AssembledProposal) -> Option<ProposedValue<PmrContext>> {
        let (expected_addr, public_key) = self
            .ctx_proposer(p.height, p.round)
            .map(|v| (v.address, v.public_key))?;
        if p.proposer != expected_addr {
            warn!(target: "pmr::consensus", height = %p.height, round = %p.round, got = %p.proposer, expected = %expected_addr, "proposal from the wrong proposer");
            return None;
        }
        let block = match Block::decode_checked(&p.block_bytes) {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "pmr::consensus", height = %p.height, error = %e, "undecodable proposed block");
                return None;
            }
        };
        let hash = block.hash();
        let sign_bytes = proposal_parts_sign_bytes(
            self.chain_id,
            p.height,
            p.round,
            p.pol_round,
            &p.proposer,
            &BlockHash(hash),
        );
        if public_key.verify(&sign_bytes, &p.signature).is_err() {
            warn!(target: "pmr::consensus", height = %p.height, proposer = %p.proposer, "proposal stream signature invalid");
            return None;
        }
        let validity = match self.check_block(&block, p.block_bytes.clone()) {
            Ok(()) => Validity::Valid,
            Err(reason) => {
                warn!(target: "pmr::consensus", height = %p.height, round = %p.round, %hash, %reason, "voting against invalid proposal");
                Validity::Invalid
            }
        };
        if validity.is_valid() {
            let stored = self.ledger.chain.put_undecided(
                &UndecidedProposal {
                    height: p.height.0,
                    round: p.round,
                    hash,
                    block,
                    bytes: p.block_bytes,
                },
                Durability::Buffered,
            );
            if let Err(e) = stored {
                error!(target: "pmr::consensus", error = %e, "cannot store proposal");
            }
        }
        Some(ProposedValue {
            height: p.height,
            round: p.round,
            valid_round: p.pol_round,
            proposer: p.proposer,
            value: BlockHash(hash),
            validity,
        })
    }

    fn ctx_proposer(&self, height: Height, round: Round) -> Option<crate::context::Validator> {
        let validators = self.ledger.schedule.at(height.0);
        if validators.count() == 0 || round.is_nil() {
            return None;
        }
        use malachitebft_app_channel::app::types::core::Context as _;
        Some(self.ctx.select_proposer(&validators, height, round).clone())
    }

    /// Proposals stored before a restart are offered again only if they still validate.
    fn revalidate_stored(&mut self, p: UndecidedProposal) -> Option<ProposedValue<PmrContext>> {
        let proposer = Address(p.block.header.proposer);
        let valid = self.candidates.contains_key(&p.hash)
            || self.check_block(&p.block, p.bytes.clone()).is_ok();
        valid.then_some(ProposedValue {
            height: Height(p.height),
            round: p.round,
            valid_round: Round::Nil,
            proposer,
            value: BlockHash(p.hash),
            validity: Validity::Valid,
        })
    }

    /// Header checks and execution; on success the executed block is kept for the commit.
    fn check_block(&mut self, block: &Block, bytes: Bytes) -> Result<(), String> {
        let tip = self.ledger.tip();
        let h = &block.header;
        if h.height != tip.height + 1 {
            return Err(format!(
                "height {} does not follow tip {}",
                h.height, tip.height
            ));
        }
        if h.parent_hash != tip.hash {
            return Err(format!(
                "parent {} is not our tip {}",
                h.parent_hash, tip.hash
            ));
        }
        if h.timestamp_ms <= tip.timestamp_ms {
            return Err("timestamp not after the parent's".into());
        }
        let drift = self.cfg.max_clock_drift.as_millis() as u64;
        if h.timestamp_ms > now_ms() + drift {
            return Err(format!(
                "timestamp {} is more than {drift} ms in the future",
                h.timestamp_ms
            ));
        }
        if self
            .ledger
            .schedule
            .at(h.height)
            .get_by_address(&Address(h.proposer))
            .is_none()
        {
            return Err(format!("proposer {} is not a validator", h.proposer));
        }
        if block.txs.len() > self.cfg.max_block_txs {
            return Err(format!("{} transactions, over the limit", block.txs.len()));
        }
        let txs = decode_txs(&block.txs, &self.ledger.limits, &self.ledger.mempool)?;
        let env = BlockEnv {
            height: h.height,
            timestamp_ms: h.timestamp_ms,
            proposer: h.proposer,
        };
        let executor = self.ledger.executor.clone();
        let executed = tokio::task::block_in_place(|| executor.execute_block(&env, &txs))
            .map_err(|e| e.to_string())?;
        roots_match(h, &executed)?;
        self.candidates.insert(
            block.hash(),
            Candidate {
                block: block.clone(),
                bytes,
                executed,
                seen_at: Instant::now(),
            },
        );
        Ok(())
    }

    // ---- committing ---------------------------------------------------------------------

    fn commit(
        &mut self,
        certificate: CommitCertificate<PmrContext>,
        extensions: VoteExtensions<PmrContext>,
    ) -> Result<(), ConsensusError> {
        let height = certificate.height.0;
        let hash = certificate.value_id.0;
        let committed_height = self.ledger.chain.height()?;
        if height <= committed_height {
            debug!(target: "pmr::consensus", height, "decision for an already committed height");
            return Ok(());
        }
        let candidate = match self.candidates.remove(&hash) {
            Some(c) => c,
            None => self.execute_decided(height, &hash)?,
        };
        roots_match(&candidate.block.header, &candidate.executed)
            .map_err(|detail| ConsensusError::Divergence { height, detail })?;
        let certificate = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
            certificate,
            extensions,
        );
        let store = self.ledger.chain.store().clone();
        let capacity = ChainStore::stage_bytes(&candidate.block, &candidate.bytes)
            + candidate.executed.batch_bytes();
        let mut batch = store.batch_with_capacity(capacity);
        self.ledger
            .chain
            .stage_block(&mut batch, &candidate.block, &candidate.bytes, &certificate);
        self.ledger
            .executor
            .write_to_batch(&candidate.executed, &mut batch);
        if self.abort_mid_commit == Some(height) {
            error!(target: "pmr::consensus", height, "failpoint abort-mid-commit: aborting with the block executed and its batch not written");
            std::process::abort();
        }
        batch.commit(Durability::Sync)?;
        self.ledger.executor.mark_committed(&candidate.executed);
        if ValidatorSchedule::changed_by(&candidate.executed.receipts) {
            // A node that cannot read the sets would run later heights with a stale set: it
            // stops instead (and says why again at its next start).
            self.ledger
                .schedule
                .reload(&self.ledger.executor)
                .map_err(|e| ConsensusError::Divergence {
                    height,
                    detail: format!("cannot read the validator sets block {height} changed: {e}"),
                })?;
            let sets = self.ledger.schedule.entries();
            for (_, set) in &sets {
                for v in set.validators() {
                    if let Ok(id) = crate::engine::malachite_peer_id(v.public_key.as_bytes()) {
                        self.proposer_peers.entry(id).or_insert(v.address);
                    }
                }
            }
        }

        let executor = &self.ledger.executor;
        let tx_hashes = candidate.block.tx_hashes();
        let waited = self
            .ledger
            .mempool
            .remove_committed(&tx_hashes, |a| executor.nonce(a).unwrap_or(0));
        let m = &self.ledger.metrics;
        for w in waited {
            m.commit_latency.observe(w.as_secs_f64());
        }
        m.block_latency
            .observe(candidate.seen_at.elapsed().as_secs_f64());
        m.blocks_committed.inc();
        m.txs_committed.inc_by(tx_hashes.len() as u64);
        info!(target: "pmr::consensus", height, txs = tx_hashes.len(), hash = %hash, round = %certificate.round, "committed block");
        self.ledger.set_tip(Arc::new(CommittedBlock {
            hash,
            block: candidate.block,
            encoded: candidate.bytes,
            certificate,
        }));
        self.candidates.clear();
        self.last_commit_at = Instant::now();
        Ok(())
    }

    /// A decided block this node has not executed yet (it arrived by sync, or before a
    /// restart): execute it now. The network decided it, so a failure here means this node
    /// disagrees with the network, and it must stop.
    fn execute_decided(&mut self, height: u64, hash: &B256) -> Result<Candidate, ConsensusError> {
        let p = self.ledger.chain.undecided_by_hash(height, hash)?.ok_or(
            ConsensusError::MissingDecidedBlock {
                height,
                hash: *hash,
            },
        )?;
        let tip = self.ledger.tip();
        let divergence = |detail: String| ConsensusError::Divergence { height, detail };
        if p.block.header.parent_hash != tip.hash {
            return Err(divergence(format!(
                "decided block's parent {} is not this node's tip {} at height {}",
                p.block.header.parent_hash, tip.hash, tip.height
            )));
        }
        let txs = decode_txs(&p.block.txs, &self.ledger.limits, &self.ledger.mempool)
            .map_err(divergence)?;
        let h = &p.block.header;
        let env = BlockEnv {
            height,
            timestamp_ms: h.timestamp_ms,
            proposer: h.proposer,
        };
        let executor = self.ledger.executor.clone();
        let executed = tokio::task::block_in_place(|| executor.execute_block(&env, &txs))
            .map_err(|e| divergence(format!("decided block does not execute here: {e}")))?;
        Ok(Candidate {
            block: p.block,
            bytes: p.bytes,
            executed,
            seen_at: Instant::now(),
        })
    }
}

/// Decodes a block's transactions, recovering senders in parallel. A transaction already in
/// our mempool passed the same checks on admission, so its recovered form is reused (the hash
/// covers every byte): most of a proposal was gossiped to us before it arrived.
fn decode_txs(
    raw: &[PBytes],
    limits: &pmr_primitives::TxLimits,
    pool: &crate::mempool::Mempool,
) -> Result<Vec<SignedTx>, String> {
    raw.par_iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some(tx) = pool.get(&pmr_primitives::keccak256(r)) {
                return Ok(tx);
            }
            SignedTx::decode(r.clone(), limits).map_err(|e| format!("transaction {i}: {e}"))
        })
        .collect()
}

fn roots_match(h: &Header, executed: &ExecutedBlock) -> Result<(), String> {
    if h.state_root != executed.state_root {
        return Err(format!(
            "state root: header {} but execution gives {}",
            h.state_root, executed.state_root
        ));
    }
    if h.receipts_root != executed.receipts_root {
        return Err(format!(
            "receipts root: header {} but execution gives {}",
            h.receipts_root, executed.receipts_root
        ));
    }
    if h.gas_used != executed.gas_used {
        return Err(format!(
            "gas used: header {} but execution gives {}",
            h.gas_used, executed.gas_used
        ));
    }
    Ok(())
}

/// Whether parts for `(height, round)` may be buffered by a node at `(at_height, at_round)`
/// that has received the proposals of `completed` whole, when they come from a peer speaking
/// for `speaks_for` and the round's proposer is `proposer`.
fn admit<A: PartialEq>(
    (height, round): (u64, Round),
    (at_height, at_round): (u64, Round),
    completed: &HashSet<(u64, Round)>,
    speaks_for: Option<A>,
    proposer: Option<A>,
) -> Result<(), &'static str> {
    if height < at_height {
        return Err("for a decided height");
    }
    if height > at_height + PART_HEIGHT_WINDOW {
        return Err("for a height too far ahead");
    }
    let from_round = if height == at_height {
        at_round.as_i64().max(0)
    } else {
        0
    };
    if round.as_i64() > from_round + PART_ROUND_WINDOW {
        return Err("for a round too far ahead");
    }
    if completed.contains(&(height, round)) {
        return Err("for a round whose proposal was already received");
    }
    let speaks_for = speaks_for.ok_or("from a peer that is not a validator")?;
    let proposer = proposer.ok_or("for no round")?;
    if proposer != speaks_for {
        return Err("from a validator that is not the proposer of that round");
    }
    Ok(())
}

#[cfg(test)]
mod admission_tests {
    use super::*;

    #[test]
    fn the_failpoint_is_read_only_in_its_exact_form() {
        assert_eq!(abort_mid_commit(Some("abort-mid-commit@12")), Some(12));
        assert_eq!(abort_mid_commit(Some("abort-mid-commit@")), None);
        assert_eq!(abort_mid_commit(Some("abort-mid-commit@x")), None);
        assert_eq!(abort_mid_commit(Some("12")), None);
        assert_eq!(abort_mid_commit(None), None);
    }

    #[test]
    fn parts_are_admitted_only_from_the_proposer_within_the_windows_once() {
        let (v, w) = (1u8, 2u8);
        let mut done = HashSet::new();
        let r = Round::new;
        let at = (10, r(1));
        assert_eq!(admit((10, r(1)), at, &done, Some(v), Some(v)), Ok(()));
        assert_eq!(
            admit((10, r(3)), at, &done, Some(v), Some(v)),
            Ok(()),
            "two rounds ahead"
        );
        assert!(
            admit((10, r(4)), at, &done, Some(v), Some(v)).is_err(),
            "three rounds ahead"
        );
        assert!(
            admit((9, r(0)), at, &done, Some(v), Some(v)).is_err(),
            "decided"
        );
        assert_eq!(admit((14, r(2)), at, &done, Some(v), Some(v)), Ok(()));
        assert!(
            admit((14, r(3)), at, &done, Some(v), Some(v)).is_err(),
            "later height, round 3"
        );
        assert!(
            admit((15, r(0)), at, &done, Some(v), Some(v)).is_err(),
            "five heights ahead"
        );
        assert!(
            admit((10, r(1)), at, &done, Some(w), Some(v)).is_err(),
            "not the proposer"
        );
        assert!(
            admit((10, r(1)), at, &done, None::<u8>, Some(v)).is_err(),
            "not a validator"
        );
        assert_eq!(
            admit((10, r(0)), (10, Round::Nil), &done, Some(v), Some(v)),
            Ok(()),
            "before the first round starts"
        );
        done.insert((10, r(1)));
        assert_eq!(
            admit((10, r(1)), at, &done, Some(v), Some(v)),
            Err("for a round whose proposal was already received")
        );
        assert_eq!(admit((10, r(2)), at, &done, Some(v), Some(v)), Ok(()));
    }
}
