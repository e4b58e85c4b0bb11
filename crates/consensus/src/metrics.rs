//! Consensus metrics, exported by the node in Prometheus format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Metrics of the consensus part of a node. Cheap to clone (shared atomics).
#[derive(Clone, Debug)]
pub struct ConsensusMetrics {
    /// Last committed height (`pmr_height`).
    pub height: Gauge,
    /// Round the engine is in at the current height (`pmr_round`).
    pub round: Gauge,
    /// Blocks this node has committed since it started (`pmr_blocks_committed`).
    pub blocks_committed: Counter,
    /// Transactions in the blocks this node has committed (`pmr_txs_committed`).
    pub txs_committed: Counter,
    /// Transactions dropped from the mempool while building a proposal because they can never be
    /// included (`pmr_txs_evicted`).
    pub txs_evicted: Counter,
    /// Equivocations (double votes or proposals) this node has seen evidence of.
    pub equivocations: Counter,
    /// Transactions pending in the mempool, updated on admission and on commit
    /// (`pmr_mempool_size`).
    pub mempool_size: Gauge,
    /// Seconds from a transaction's admission at this node to its commit.
    pub commit_latency: Histogram,
    /// Seconds from a block's proposal (built or received) to its commit.
    pub block_latency: Histogram,
    /// Proposal parts refused unbuffered: from a peer that is not the proposer of the height
    /// and round they name, or for a height outside the window (`pmr_proposal_parts_refused`).
    pub proposal_parts_refused: Counter,
    /// Proposal streams dropped for exceeding a limit or being malformed
    /// (`pmr_proposal_streams_dropped`).
    pub proposal_streams_dropped: Counter,
    /// Bytes charged to proposal streams in progress (`pmr_proposal_stream_bytes`).
    pub proposal_stream_bytes: Gauge,
}

impl Default for ConsensusMetrics {
    fn default() -> Self {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Self {
            height: Gauge::default(),
            round: Gauge::default(),
            blocks_committed: Counter::default(),
            txs_committed: Counter::default(),
            txs_evicted: Counter::default(),
            equivocations: Counter::default(),
            mempool_size: Gauge::default(),
            commit_latency: Histogram::new(buckets),
            block_latency: Histogram::new(buckets),
            proposal_parts_refused: Counter::default(),
            proposal_streams_dropped: Counter::default(),
            proposal_stream_bytes: Gauge::default(),
        }
    }
}

impl ConsensusMetrics {
    /// Registers every metric under the `pmr` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("pmr_height", "Last committed height", self.height.clone());
        registry.register("pmr_round", "Current consensus round", self.round.clone());
        registry.register(
            "pmr_blocks_committed",
            "Blocks committed by this node",
            self.blocks_committed.clone(),
        );
        registry.register(
            "pmr_txs_committed",
            "Transactions committed",
            self.txs_committed.clone(),
        );
        registry.register(
            "pmr_txs_evicted",
            "Transactions evicted from the mempool as invalid",
            self.txs_evicted.clone(),
        );
        registry.register(
            "pmr_equivocations",
            "Misbehavior evidence seen: validators that signed twice",
            self.equivocations.clone(),
        );
        registry.register(
            "pmr_mempool_size",
            "Transactions in the mempool",
            self.mempool_size.clone(),
        );
        registry.register(
            "pmr_commit_latency_seconds",
            "From admission at this node to commit",
            self.commit_latency.clone(),
        );
        registry.register(
            "pmr_block_latency_seconds",
            "From proposal to commit of a block",
            self.block_latency.clone(),
        );
        registry.register(
            "pmr_proposal_parts_refused",
            "Proposal parts refused unbuffered: not from the round's proposer, or out of window",
            self.proposal_parts_refused.clone(),
        );
        registry.register(
            "pmr_proposal_streams_dropped",
            "Proposal streams dropped as too large or malformed",
            self.proposal_streams_dropped.clone(),
        );
        registry.register(
            "pmr_proposal_stream_bytes",
            "Bytes held by proposal streams in progress",
            self.proposal_stream_bytes.clone(),
        );
    }
}
