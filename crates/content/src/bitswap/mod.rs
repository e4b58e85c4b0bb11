//! Bitswap 1.2.0 over libp2p, written for this crate.
//!
//! - [`wire`]: the protobuf message and its length-prefixed framing (≤ 4 MiB).
//! - `net`: the libp2p swarm (TCP + noise + yamux), the allow-list, dialing and stream accept.
//! - `peer`: one task per connected peer: the server side (that peer's wantlist, bounded,
//!   answered in order with blocks, HAVE and DONT_HAVE) and the writer of every message to it.
//! - `engine`: the client side: wanted blocks, which peer is asked for which, timeouts,
//!   re-requests elsewhere and not-found reports.

pub(crate) mod engine;
pub(crate) mod msg;
pub(crate) mod net;
pub(crate) mod peer;
pub(crate) mod shared;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds and timers of the bitswap protocol. The defaults suit a LAN or a data centre.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest inbound message accepted; a longer length prefix closes the stream.
    pub max_message_size: usize,
    /// Target size of the messages this node sends (at most 4 MiB).
    pub max_outbound_message: usize,
    /// Wantlist entries kept per peer; further entries are dropped.
    pub max_wantlist_entries: usize,
    /// Blocks requested from one peer at a time (bytes in flight ≤ this × 256 KiB).
    pub max_blocks_in_flight_per_peer: usize,
    /// Blocks one fetch keeps requested at once.
    pub session_window: usize,
    /// Concurrent inbound bitswap streams per peer; more are closed.
    pub max_inbound_streams_per_peer: usize,
    /// A peer that does not answer a want in this time is asked no more for it.
    pub request_timeout: Duration,
    /// A block that no connected peer can provide for this long fails the fetch.
    pub not_found_timeout: Duration,
    /// When every peer was tried, ask them all again after this long.
    pub retry_interval: Duration,
    /// How often disconnected allowed peers are dialled again.
    pub redial_interval: Duration,
    /// A message write that takes longer drops the stream.
    pub write_timeout: Duration,
    /// How long `stat` waits for peers to say whether they hold a root.
    pub stat_probe_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: wire::MAX_MESSAGE_SIZE,
            max_outbound_message: 2 * 1024 * 1024,
            max_wantlist_entries: 4096,
            max_blocks_in_flight_per_peer: 32,
            session_window: 64,
            max_inbound_streams_per_peer: 4,
            request_timeout: Duration::from_secs(10),
            not_found_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(1),
            redial_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(30),
            stat_probe_timeout: Duration::from_secs(1),
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_outbound_message > wire::MAX_MESSAGE_SIZE
            || self.max_outbound_message < 2 * pmr_blob::ids::MAX_BLOCK_SIZE
        {
            return Err("max_outbound_message must be between 512 KiB and 4 MiB".into());
        }
        if self.max_message_size < self.max_outbound_message {
            return Err("max_message_size must be at least max_outbound_message".into());
        }
        if self.max_blocks_in_flight_per_peer == 0 || self.session_window == 0 {
            return Err("max_blocks_in_flight_per_peer and session_window must be > 0".into());
        }
        if self.max_wantlist_entries == 0 || self.max_inbound_streams_per_peer == 0 {
            return Err("max_wantlist_entries and max_inbound_streams_per_peer must be > 0".into());
        }
        Ok(())
    }
}

/// Counters of the bitswap protocol (monotonic since start).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub blocks_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub blocks_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub oversized_messages: AtomicU64,
    pub malformed_messages: AtomicU64,
    pub rejected_blocks: AtomicU64,
    pub duplicate_blocks: AtomicU64,
    pub dropped_want_entries: AtomicU64,
    pub refused_streams: AtomicU64,
    pub rerequests: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NetStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStats {
            blocks_sent: g(&self.blocks_sent),
            bytes_sent: g(&self.bytes_sent),
            blocks_received: g(&self.blocks_received),
            bytes_received: g(&self.bytes_received),
            oversized_messages: g(&self.oversized_messages),
            malformed_messages: g(&self.malformed_messages),
            rejected_blocks: g(&self.rejected_blocks),
            duplicate_blocks: g(&self.duplicate_blocks),
            dropped_want_entries: g(&self.dropped_want_entries),
            refused_streams: g(&self.refused_streams),
            rerequests: g(&self.rerequests),
            peer_wantlists: Vec::new(),
        }
    }
}

/// A snapshot of the bitswap counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Blocks served to peers.
    pub blocks_sent: u64,
    /// Block bytes served to peers.
    pub bytes_sent: u64,
    /// Wanted blocks received and stored.
    pub blocks_received: u64,
    /// Bytes of wanted blocks received.
    pub bytes_received: u64,
    /// Inbound messages refused for exceeding `max_message_size`.
    pub oversized_messages: u64,
    /// Inbound messages that were not valid bitswap protobuf.
    pub malformed_messages: u64,
    /// Received blocks refused: not matching any wanted CID, unsupported hash, too large.
    pub rejected_blocks: u64,
    /// Blocks received twice (harmless).
    pub duplicate_blocks: u64,
    /// Wantlist entries dropped because a peer's wantlist was full.
    pub dropped_want_entries: u64,
    /// Inbound streams closed because a peer had too many open.
    pub refused_streams: u64,
    /// Wants sent again to another peer after a timeout, DONT_HAVE or a bad block.
    pub rerequests: u64,
    /// Size of each connected peer's wantlist as this node holds it.
    pub peer_wantlists: Vec<(libp2p::PeerId, usize)>,
}
