//! A hostile member, for fault scenarios: it joins the consensus network under a p2p identity
//! the others let in (a validator's key, or a peer they list) and publishes proposal parts
//! nobody asked for, as fast as its byte budget allows: 48 streams at once (the next three
//! heights, sixteen rounds each), each `Init` naming that round's real proposer, then `Data`
//! chunks to all of them in turn, with no `Fin`.
//!
//! It speaks the engine's own network protocol ([`crate::engine::engine_config`]) through
//! malachite's network actor; it builds no blocks and votes on nothing. The scenario harness
//! runs it in place of a stopped validator (`action = "flood"`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use malachitebft_app_channel::app::engine::network::Msg as NetworkActorMsg;
use malachitebft_app_channel::app::metrics::SharedRegistry;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamMessage};
use malachitebft_app_channel::app::types::core::{Context as _, Round};
use malachitebft_app_channel::app::types::Keypair;
use pmr_primitives::Genesis;
use tokio::sync::watch;

use crate::codec::PmrCodec;
use crate::config::ConsensusConfig;
use crate::context::{Height, PmrContext, ProposalPart};
use crate::engine::{engine_config, network_identity, parse_peers, validator_set};
use crate::error::ConsensusError;
use crate::signing::PmrSigner;
use crate::streaming::stream_id;
use crate::PrivateKey;

/// Bytes of block data in each flooded `Data` part.
pub const FLOOD_CHUNK: usize = 64 * 1024;
/// Heights above the tip the flooder opens streams for.
const FLOOD_HEIGHTS: u64 = 3;
/// Rounds of each height it opens streams for.
const FLOOD_ROUNDS: u32 = 16;
/// `Data` parts in one flooded stream (16 MiB) before it starts over.
const FLOOD_STREAM_PARTS: u64 = 256;

/// What the flooder needs.
pub struct FloodParams {
    /// Name in the others' logs.
    pub moniker: String,
    /// Its p2p identity.
    pub keypair: Keypair,
    /// A validator's consensus key, when the flooder stands in for that validator (its network
    /// identity then carries the validator's proof, as the real node's does).
    pub validator_key: Option<PrivateKey>,
    /// Listen address and peers, as in a node's `[consensus]` table.
    pub config: ConsensusConfig,
    /// The network's genesis: the validator set whose proposers the `Init` parts name.
    pub genesis: Genesis,
    /// The network's current height, kept up to date by the caller.
    pub tip: Arc<AtomicU64>,
    /// Bytes of parts published per second.
    pub bytes_per_second: u64,
    /// Stops the flood when it turns true.
    pub stop: watch::Receiver<bool>,
}

/// What the flooder published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Parts handed to the network.
    pub parts: u64,
    /// Their data bytes.
    pub bytes: u64,
    /// Streams opened.
    pub streams: u64,
}

/// Floods until `stop`; returns what was published.
pub async fn flood(mut p: FloodParams) -> Result<FloodReport, ConsensusError> {
    let validators = validator_set(&p.genesis)?;
    let me = p.keypair.public().to_peer_id();
    let peers = parse_peers(&p.config, me)?;
    let engine = engine_config(&p.moniker, &p.config, &peers);
    let signer = p
        .validator_key
        .clone()
        .map(|k| PmrSigner::new(k, p.genesis.chain_id));
    let identity = network_identity(&p.moniker, p.keypair.clone(), signer.as_ref()).await?;
    let registry = SharedRegistry::global().with_moniker(&p.moniker);
    let network = malachitebft_app_channel::app::spawn::spawn_network_actor::<PmrContext, _>(
        &engine.consensus,
        &engine.sync,
        identity,
        &registry,
        PmrCodec,
    )
    .await
    .map_err(|e| ConsensusError::Engine(format!("flooder network: {e:#}")))?;

    let mut report = FloodReport::default();
    let ticks_per_second = 50;
    let per_tick = (p.bytes_per_second / ticks_per_second).max(FLOOD_CHUNK as u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / ticks_per_second));
    // Every stream the flooder keeps open at once, fed in turn so that all of them grow
    // together: the next sequence number of each (height, round).
    let mut next_seq: HashMap<(u64, u32), u64> = HashMap::new();
    let mut turn = 0usize;
    let chunk = Bytes::from(vec![0xAB; FLOOD_CHUNK]);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = p.stop.changed() => break,
        }
        if *p.stop.borrow() {
            break;
        }
        if p.bytes_per_second == 0 {
            continue;
        }
        let tip = p.tip.load(Ordering::Relaxed);
        let targets: Vec<(u64, u32)> = (tip + 1..=tip + FLOOD_HEIGHTS)
            .flat_map(|h| (0..FLOOD_ROUNDS).map(move |r| (h, r)))
            .collect();
        next_seq.retain(|(h, _), _| *h > tip);
        let mut spent = 0u64;
        while spent < per_tick {
            let (height, round) = targets[turn % targets.len()];
            turn = turn.wrapping_add(1);
            let id = stream_id(height, Round::new(round));
            let seq = next_seq.entry((height, round)).or_insert(0);
            if *seq == 0 {
                let proposer = PmrContext
                    .select_proposer(&validators, Height(height), Round::new(round))
                    .address;
                let init = ProposalPart::Init {
                    height: Height(height),
                    round: Round::new(round),
                    pol_round: Round::Nil,
                    proposer,
                };
                publish(&network, id.clone(), 0, StreamContent::Data(init))?;
                report.streams += 1;
                report.parts += 1;
                *seq = 1;
            }
            publish(
                &network,
                id,
                *seq,
                StreamContent::Data(ProposalPart::Data(chunk.clone())),
            )?;
            report.parts += 1;
            report.bytes += FLOOD_CHUNK as u64;
            spent += FLOOD_CHUNK as u64;
            // Past any stream's limit: start the stream over, as a new one.
            *seq = if *seq >= FLOOD_STREAM_PARTS {
                0
            } else {
                *seq + 1
            };
        }
    }
    network.stop(None);
    Ok(report)
}

fn publish(
    network: &malachitebft_app_channel::app::engine::network::NetworkRef<PmrContext>,
    id: malachitebft_app_channel::app::streaming::StreamId,
    sequence: u64,
    content: StreamContent<ProposalPart>,
) -> Result<(), ConsensusError> {
    network
        .cast(NetworkActorMsg::PublishProposalPart(StreamMessage::new(
            id, sequence, content,
        )))
        .map_err(|e| ConsensusError::Engine(format!("flooder network stopped: {e}")))
}
