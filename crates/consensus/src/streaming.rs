//! Reassembly of streamed proposals.
//!
//! A proposal arrives as a stream: `Init`, the block bytes in `Data` chunks, the proposer's
//! signature in `Fin`, then the stream's end marker. Messages may arrive out of order; a stream
//! completes once every sequence number up to its end marker is present.
//!
//! Memory is bounded per publisher, so one member cannot crowd out another: the caller admits
//! a stream only from the proposer of the height and round its id names ([`parse_stream_id`]),
//! and each publisher holds at most [`MAX_STREAMS_PER_PEER`] streams and twice a stream's byte
//! limit in all; every message, `Init` and `Fin` included, is charged [`PART_OVERHEAD`] bytes
//! beyond its data. Past its quota a publisher loses its own oldest stream, never another's.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::Round;
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_signing_ed25519::Signature;

use crate::context::{Address, Height, ProposalPart};

/// Streams one publisher may hold in progress at once; its oldest is dropped beyond this.
pub const MAX_STREAMS_PER_PEER: usize = 4;

/// Bytes charged for each message besides its data (its map entry, sequence and framing).
pub const PART_OVERHEAD: usize = 256;

/// The id of the stream carrying the proposal of `height` and `round`.
pub fn stream_id(height: u64, round: Round) -> StreamId {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&round.as_u32().unwrap_or(0).to_be_bytes());
    StreamId::new(b.into())
}

/// The height and round a stream id names, if it is one [`stream_id`] makes.
pub fn parse_stream_id(id: &StreamId) -> Option<(u64, Round)> {
    let b = id.to_bytes();
    if b.len() != 12 {
        return None;
    }
    let height = u64::from_be_bytes(b[..8].try_into().ok()?);
    let round = u32::from_be_bytes(b[8..].try_into().ok()?);
    Some((height, Round::new(round)))
}

/// A fully received stream, not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledProposal {
    /// Height from the `Init` part.
    pub height: Height,
    /// Round from the `Init` part.
    pub round: Round,
    /// Proof-of-lock round from the `Init` part.
    pub pol_round: Round,
    /// Proposer named by the `Init` part; not yet checked against the signature.
    pub proposer: Address,
    /// The `Data` parts concatenated: the encoded block.
    pub block_bytes: Bytes,
    /// The proposer's signature from the `Fin` part, over
    /// [`crate::signing::proposal_parts_sign_bytes`].
    pub signature: Signature,
}

#[derive(Default)]
struct Stream {
    messages: BTreeMap<u64, StreamContent<ProposalPart>>,
    fin_sequence: Option<u64>,
    /// Data bytes plus [`PART_OVERHEAD`] per message received.
    charged: usize,
    data: usize,
}

/// Why a stream was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The parts add up to more than a stream may carry; the stream is dropped.
    #[error("stream exceeds {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The parts are not `Init`, then `Data`, then `Fin`; names the defect.
    #[error("malformed stream: {0}")]
    Malformed(&'static str),
}

#[derive(Default)]
struct Publisher {
    /// Its streams, oldest first.
    order: VecDeque<StreamId>,
    charged: usize,
}

/// Streams in progress, keyed by publisher and stream id.
pub struct PartStreams {
    max_bytes: usize,
    streams: HashMap<(PeerId, StreamId), Stream>,
    publishers: HashMap<PeerId, Publisher>,
}

impl PartStreams {
    /// No streams yet; each stream may carry at most `max_bytes` (data and overhead), each
    /// publisher twice that.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            streams: HashMap::new(),
            publishers: HashMap::new(),
        }
    }

    /// Bytes charged to every stream in progress.
    pub fn charged(&self) -> usize {
        self.publishers.values().map(|p| p.charged).sum()
    }

    /// Streams in progress.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is in progress.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Adds a message the caller admitted; returns the assembled proposal when the stream is
    /// complete.
    pub fn insert(
        &mut self,
        publisher: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Result<Option<AssembledProposal>, StreamError> {
        let key = (publisher, msg.stream_id.clone());
        let cost = PART_OVERHEAD
            + match &msg.content {
                StreamContent::Data(ProposalPart::Data(d)) => d.len(),
                _ => 0,
            };
        if !self.streams.contains_key(&key) {
            let usage = self.publishers.entry(publisher).or_default();
            if usage.order.len() >= MAX_STREAMS_PER_PEER {
                if let Some(oldest) = usage.order.front().cloned() {
                    self.remove(&(publisher, oldest));
                }
            }
            self.publishers
                .entry(publisher)
                .or_default()
                .order
                .push_back(msg.stream_id.clone());
            self.streams.insert(key.clone(), Stream::default());
        }
        // Over the publisher's total: its older streams go first, then this one.
        loop {
            let usage = &self.publishers[&publisher];
            if usage.charged + cost <= 2 * self.max_bytes {
                break;
            }
            match usage.order.iter().find(|id| **id != key.1).cloned() {
                Some(older) => {
                    self.remove(&(publisher, older));
                }
                None => break,
            }
        }
        let stream = self
            .streams
            .get_mut(&key)
            .ok_or(StreamError::Malformed("vanished"))?;
        if stream.charged + cost > self.max_bytes {
            self.remove(&key);
            return Err(StreamError::TooLarge {
                max: self.max_bytes,
            });
        }
        if let StreamContent::Data(ProposalPart::Data(d)) = &msg.content {
            stream.data += d.len();
        }
        if msg.content.is_fin() {
            stream.fin_sequence = Some(msg.sequence);
        }
        if let Some(old) = stream.messages.insert(msg.sequence, msg.content) {
            // A repeated sequence number replaces the part; its charge stays (conservative).
            drop(old);
        }
        stream.charged += cost;
        if let Some(usage) = self.publishers.get_mut(&publisher) {
            usage.charged += cost;
        }
        let complete = stream
            .fin_sequence
            .is_some_and(|fin| stream.messages.len() as u64 == fin + 1);
        if !complete {
            return Ok(None);
        }
        let stream = self
            .remove(&key)
            .ok_or(StreamError::Malformed("vanished"))?;
        assemble(stream).map(Some)
    }

    /// Drops every stream whose id does not satisfy `keep` (e.g. those of decided heights).
    pub fn retain(&mut self, mut keep: impl FnMut(&StreamId) -> bool) {
        let gone: Vec<_> = self
            .streams
            .keys()
            .filter(|(_, id)| !keep(id))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &(PeerId, StreamId)) -> Option<Stream> {
        let stream = self.streams.remove(key)?;
        if let Some(usage) = self.publishers.get_mut(&key.0) {
            usage.order.retain(|id| *id != key.1);
            usage.charged = usage.charged.saturating_sub(stream.charged);
            if usage.order.is_empty() {
                self.publishers.remove(&key.0);
            }
        }
        Some(stream)
    }
}

fn assemble(stream: Stream) -> Result<AssembledProposal, StreamError> {
    let mut parts = stream.messages.into_values();
    let Some(StreamContent::Data(ProposalPart::Init {
        height,
        round,
        pol_round,
        proposer,
    })) = parts.next()
    else {
        return Err(StreamError::Malformed("first message is not Init"));
    };
    let mut data = BytesMut::with_capacity(stream.data);
    let mut signature = None;
    for part in parts {
        match part {
            StreamContent::Data(ProposalPart::Data(d)) if signature.is_none() => {
                data.extend_from_slice(&d)
            }
            StreamContent::Data(ProposalPart::Fin { signature: s }) if signature.is_none() => {
                signature = Some(s)
            }
            StreamContent::Fin if signature.is_some() => {}
            _ => return Err(StreamError::Malformed("parts out of order")),
        }
    }
    Ok(AssembledProposal {
        height,
        round,
        pol_round,
        proposer,
        block_bytes: data.freeze(),
        signature: signature.ok_or(StreamError::Malformed("no Fin part"))?,
    })
}

/// Splits a proposal into stream messages: `Init`, `Data` chunks of at most `chunk` bytes,
/// `Fin`, end marker.
pub fn stream_messages(
    stream_id: StreamId,
    init: ProposalPart,
    block_bytes: &Bytes,
    chunk: usize,
    signature: Signature,
) -> Vec<StreamMessage<ProposalPart>> {
    let mut contents = vec![StreamContent::Data(init)];
    let mut offset = 0;
    while offset < block_bytes.len() {
        let end = (offset + chunk).min(block_bytes.len());
        contents.push(StreamContent::Data(ProposalPart::Data(
            block_bytes.slice(offset..end),
        )));
        offset = end;
    }
    contents.push(StreamContent::Data(ProposalPart::Fin { signature }));
    contents.push(StreamContent::Fin);
    contents
        .into_iter()
        .enumerate()
        .map(|(i, c)| StreamMessage::new(stream_id.clone(), i as u64, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_signing_ed25519::PrivateKey;

    fn init() -> ProposalPart {
        ProposalPart::Init {
            height: Height(2),
            round: Round::new(0),
            pol_round: Round::Nil,
            proposer: Address::default(),
        }
    }

    fn sig() -> Signature {
        PrivateKey::from([1; 32]).sign(b"m")
    }

    #[test]
    fn reassembles_out_of_order() {
        let data = Bytes::from(
            (0..1000u32)
                .flat_map(|i| i.to_be_bytes())
                .collect::<Vec<_>>(),
        );
        let mut msgs = stream_messages(
            StreamId::new(Bytes::from_static(b"s")),
            init(),
            &data,
            300,
            sig(),
        );
        msgs.reverse();
        let mut streams = PartStreams::new(1 << 20);
        let peer = crate::test_peer_id();
        let mut done = None;
        for m in msgs {
            if let Some(p) = streams.insert(peer, m).unwrap() {
                done = Some(p);
            }
        }
        let p = done.expect("complete");
        assert_eq!(p.block_bytes, data);
        assert_eq!(p.height, Height(2));
        assert_eq!(p.signature, sig());
    }

    #[test]
    fn oversized_and_malformed_streams_are_dropped() {
        let data = Bytes::from(vec![0u8; 5000]);
        let msgs = stream_messages(StreamId::new(Bytes::new()), init(), &data, 1000, sig());
        let mut streams = PartStreams::new(4000);
        let peer = crate::test_peer_id();
        let results: Vec<_> = msgs.into_iter().map(|m| streams.insert(peer, m)).collect();
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(StreamError::TooLarge { max: 4000 }))));
        // A stream with no Init.
        let mut streams = PartStreams::new(1 << 20);
        let sid = StreamId::new(Bytes::from_static(b"x"));
        streams
            .insert(
                peer,
                StreamMessage::new(
                    sid.clone(),
                    0,
                    StreamContent::Data(ProposalPart::Fin { signature: sig() }),
                ),
            )
            .unwrap();
        assert!(streams
            .insert(peer, StreamMessage::new(sid, 1, StreamContent::Fin))
            .is_err());
    }

    #[test]
    fn streams_are_bounded_per_publisher() {
        let mut streams = PartStreams::new(1 << 20);
        let flooder = crate::test_peer_id();
        let honest = crate::test_peer_id();
        // The honest proposer's stream is open when the flood starts.
        let mine = stream_id(5, Round::new(0));
        streams
            .insert(
                honest,
                StreamMessage::new(mine.clone(), 0, StreamContent::Data(init())),
            )
            .unwrap();
        let mut too_large = 0;
        for i in 0..200u64 {
            let sid = stream_id(5 + i % 7, Round::new(i as u32));
            streams
                .insert(
                    flooder,
                    StreamMessage::new(sid.clone(), 0, StreamContent::Data(init())),
                )
                .unwrap();
            for seq in 1..40 {
                let part = ProposalPart::Data(Bytes::from(vec![0u8; 64 * 1024]));
                let r = streams.insert(
                    flooder,
                    StreamMessage::new(sid.clone(), seq, StreamContent::Data(part)),
                );
                too_large += usize::from(matches!(r, Err(StreamError::TooLarge { .. })));
            }
        }
        assert!(too_large > 0, "a stream past its limit was never refused");
        let flood = &streams.publishers[&flooder];
        assert!(flood.order.len() <= MAX_STREAMS_PER_PEER);
        assert!(flood.charged <= 2 << 20, "{} bytes held", flood.charged);
        // The honest stream survived and still completes.
        assert!(streams.streams.contains_key(&(honest, mine.clone())));
        let data = Bytes::from(vec![1u8; 3000]);
        let mut done = None;
        for m in stream_messages(mine, init(), &data, 1000, sig())
            .into_iter()
            .skip(1)
        {
            done = streams.insert(honest, m).unwrap().or(done);
        }
        assert_eq!(done.expect("honest stream completes").block_bytes, data);
        // Charges add up and are released with the streams.
        let total: usize = streams.streams.values().map(|s| s.charged).sum();
        assert_eq!(streams.charged(), total);
        streams.retain(|_| false);
        assert_eq!((streams.charged(), streams.len()), (0, 0));
        assert!(streams.publishers.is_empty());
    }

    #[test]
    fn init_and_fin_parts_are_charged() {
        let mut streams = PartStreams::new(10 * PART_OVERHEAD);
        let peer = crate::test_peer_id();
        let sid = stream_id(1, Round::new(0));
        let mut refused = false;
        for seq in 0..20 {
            let m = StreamMessage::new(
                sid.clone(),
                seq,
                StreamContent::Data(ProposalPart::Fin { signature: sig() }),
            );
            refused |= streams.insert(peer, m).is_err();
        }
        assert!(
            refused,
            "20 data-less parts fit in a stream of 10 parts' charge"
        );
    }

    #[test]
    fn stream_ids_round_trip() {
        let id = stream_id(77, Round::new(3));
        assert_eq!(parse_stream_id(&id), Some((77, Round::new(3))));
        assert_eq!(
            parse_stream_id(&StreamId::new(Bytes::from_static(b"x"))),
            None
        );
    }
}
