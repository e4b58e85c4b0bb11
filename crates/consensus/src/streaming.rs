//! Reassembly of streamed proposals.
//!
//! A proposal arrives as a stream: `Init`, the block bytes in `Data` chunks, the proposer's
//! signature in `Fin`, then the stream's end marker. Messages may arrive out of order; a stream
//! completes once every sequence number up to its end marker is present. Memory is bounded: at
//! most [`MAX_STREAMS`] streams in progress, each at most `max_bytes` of data.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::Round;
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_signing_ed25519::Signature;

use crate::context::{Address, Height, ProposalPart};

/// Streams held in progress at once; the oldest is dropped beyond this.
pub const MAX_STREAMS: usize = 64;

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
    bytes: usize,
}

/// Why a stream was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The `Data` parts add up to more than a stream may carry; the stream is dropped.
    #[error("stream exceeds {max} bytes of block data")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The parts are not `Init`, then `Data`, then `Fin`; names the defect.
    #[error("malformed stream: {0}")]
    Malformed(&'static str),
}

/// Streams in progress, keyed by publisher and stream id.
pub struct PartStreams {
    max_bytes: usize,
    streams: HashMap<(PeerId, StreamId), Stream>,
    order: VecDeque<(PeerId, StreamId)>,
}

impl PartStreams {
    /// No streams yet; each stream may carry at most `max_bytes` of block data.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            streams: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Adds a message; returns the assembled proposal when the stream is complete.
    pub fn insert(
        &mut self,
        publisher: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Result<Option<AssembledProposal>, StreamError> {
        let key = (publisher, msg.stream_id.clone());
        if !self.streams.contains_key(&key) {
            if self.order.len() >= MAX_STREAMS {
                if let Some(old) = self.order.pop_front() {
                    self.streams.remove(&old);
                }
            }
            self.order.push_back(key.clone());
        }
        let stream = self.streams.entry(key.clone()).or_default();
        if let StreamContent::Data(ProposalPart::Data(d)) = &msg.content {
            stream.bytes += d.len();
            if stream.bytes > self.max_bytes {
                self.remove(&key);
                return Err(StreamError::TooLarge {
                    max: self.max_bytes,
                });
            }
        }
        if msg.content.is_fin() {
            stream.fin_sequence = Some(msg.sequence);
        }
        stream.messages.insert(msg.sequence, msg.content);
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

    fn remove(&mut self, key: &(PeerId, StreamId)) -> Option<Stream> {
        self.order.retain(|k| k != key);
        self.streams.remove(key)
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
    let mut data = BytesMut::with_capacity(stream.bytes);
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
    fn number_of_streams_is_bounded() {
        let mut streams = PartStreams::new(1 << 20);
        let peer = crate::test_peer_id();
        for i in 0..(MAX_STREAMS as u64 * 3) {
            let sid = StreamId::new(Bytes::from(i.to_be_bytes().to_vec()));
            streams
                .insert(
                    peer,
                    StreamMessage::new(sid, 0, StreamContent::Data(init())),
                )
                .unwrap();
        }
        assert!(streams.streams.len() <= MAX_STREAMS);
        assert_eq!(streams.order.len(), streams.streams.len());
    }
}
