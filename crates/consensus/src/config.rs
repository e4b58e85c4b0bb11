//! Consensus configuration: networking, timeouts, block limits, mempool bounds.

use std::time::Duration;

use libp2p::Multiaddr;
use malachitebft_app_channel::app::types::core::LinearTimeouts;
use serde::{Deserialize, Serialize};

use crate::mempool::MempoolConfig;

/// A peer this node connects to and accepts connections from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// A name for logs.
    pub name: String,
    /// The peer's libp2p id (derived from its ed25519 key).
    pub peer_id: String,
    /// Its consensus p2p address, e.g. `/ip4/127.0.0.1/tcp/26656`.
    pub p2p: Multiaddr,
    /// Its transaction gossip address.
    pub gossip: Multiaddr,
    /// Its content (bitswap) address, e.g. `/ip4/127.0.0.1/tcp/26658`. Without it the peer may
    /// still connect to this node's content network, but is never dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Multiaddr>,
    /// For a validator whose p2p identity is a separate network key: the hex of its consensus
    /// public key. Proposal parts are accepted only from the proposer's p2p identity, which
    /// is otherwise the one derived from its consensus key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
}

/// Tendermint round timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// How long a validator waits for the round's proposal before it prevotes nil, in round 0.
    #[serde(with = "humantime_serde")]
    pub propose: Duration,
    /// How much the propose timeout grows with each further round.
    #[serde(with = "humantime_serde")]
    pub propose_delta: Duration,
    /// How long a validator waits, once more than 2/3 of the power has prevoted without agreeing on
    /// one value, before it precommits nil.
    #[serde(with = "humantime_serde")]
    pub prevote: Duration,
    /// How much the prevote timeout grows with each further round.
    #[serde(with = "humantime_serde")]
    pub prevote_delta: Duration,
    /// How long a validator waits, once more than 2/3 of the power has precommitted without
    /// deciding, before it moves to the next round.
    #[serde(with = "humantime_serde")]
    pub precommit: Duration,
    /// How much the precommit timeout grows with each further round.
    #[serde(with = "humantime_serde")]
    pub precommit_delta: Duration,
    /// How long after entering a round a validator starts resending its latest votes, so lost
    /// messages cannot stall the round; grows each round by the three deltas together.
    #[serde(with = "humantime_serde")]
    pub rebroadcast: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            propose: Duration::from_secs(3),
            propose_delta: Duration::from_millis(500),
            prevote: Duration::from_secs(1),
            prevote_delta: Duration::from_millis(500),
            precommit: Duration::from_secs(1),
            precommit_delta: Duration::from_millis(500),
            rebroadcast: Duration::from_secs(5),
        }
    }
}

impl TimeoutConfig {
    /// The engine's form of these timeouts, with every per-round timeout capped at 60 s.
    pub fn to_linear(self) -> LinearTimeouts {
        LinearTimeouts {
            propose: self.propose,
            propose_delta: self.propose_delta,
            prevote: self.prevote,
            prevote_delta: self.prevote_delta,
            precommit: self.precommit,
            precommit_delta: self.precommit_delta,
            rebroadcast: self.rebroadcast,
            max_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything consensus needs from the node's configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// Where the consensus p2p layer listens.
    pub p2p_listen: Multiaddr,
    /// Where transaction gossip listens.
    pub gossip_listen: Multiaddr,
    /// The other members of the network. Connections from anyone else are refused.
    pub peers: Vec<PeerConfig>,
    /// Tendermint round timeouts.
    pub timeouts: TimeoutConfig,
    /// With an empty mempool, a proposer waits this long after the last block before it proposes
    /// an empty one; a transaction arriving earlier is proposed at once.
    #[serde(with = "humantime_serde")]
    pub empty_block_interval: Duration,
    /// Most transactions in a block. Every validator executes a proposal before it votes, so a
    /// full block must execute well within the propose timeout; on a 2-core machine running
    /// four validators 3,000 simple transactions take about 1 s.
    pub max_block_txs: usize,
    /// Most bytes of transactions in a block.
    pub max_block_bytes: usize,
    /// Largest encoded transaction accepted.
    pub max_tx_bytes: usize,
    /// Size of the `Data` parts a proposal is streamed in.
    pub part_size: usize,
    /// How far in the future a proposed block's timestamp may be.
    #[serde(with = "humantime_serde")]
    pub max_clock_drift: Duration,
    /// Bounds of the transaction pool: count, bytes and per sender.
    pub mempool: MempoolConfig,
    /// Value sync: lagging nodes fetch decided blocks from peers.
    pub sync_enabled: bool,
    /// Most simultaneous p2p connections from one IP address (all nodes of a local testnet
    /// share 127.0.0.1).
    pub max_connections_per_ip: usize,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            p2p_listen: "/ip4/0.0.0.0/tcp/26656".parse().expect("valid multiaddr"),
            gossip_listen: "/ip4/0.0.0.0/tcp/26657".parse().expect("valid multiaddr"),
            peers: Vec::new(),
            timeouts: TimeoutConfig::default(),
            empty_block_interval: Duration::from_secs(1),
            max_block_txs: 3_000,
            max_block_bytes: 8 * 1024 * 1024,
            max_tx_bytes: 128 * 1024,
            part_size: 256 * 1024,
            max_clock_drift: Duration::from_secs(2),
            mempool: MempoolConfig::default(),
            sync_enabled: true,
            max_connections_per_ip: 64,
        }
    }
}
