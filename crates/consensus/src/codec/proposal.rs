//! Proposals, the parts a proposal is streamed in, and proposed values.

use malachitebft_app_channel::app::consensus::ProposedValue;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::Validity;

use super::primitives::*;
use super::*;
use crate::context::{PmrContext, Proposal, ProposalPart};

pub(super) fn put_proposal(w: &mut Writer, p: &Proposal) {
    put_height(w, p.height);
    put_round(w, p.round);
    put_hash(w, &p.value);
    put_round(w, p.pol_round);
    put_address(w, &p.proposer);
}

pub(super) fn get_proposal(r: &mut Reader<'_>) -> Result<Proposal, CodecError> {
    Ok(Proposal {
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_hash(r)?,
        pol_round: get_round(r)?,
        proposer: get_address(r)?,
    })
}

pub(super) fn put_part(w: &mut Writer, p: &ProposalPart) {
    match p {
        ProposalPart::Init {
            height,
            round,
            pol_round,
            proposer,
        } => {
            w.u8(1);
            put_height(w, *height);
            put_round(w, *round);
            put_round(w, *pol_round);
            put_address(w, proposer);
        }
        ProposalPart::Data(data) => {
            w.u8(2);
            w.bytes(data);
        }
        ProposalPart::Fin { signature } => {
            w.u8(3);
            put_sig(w, signature);
        }
    }
}

pub(super) fn get_part(r: &mut Reader<'_>) -> Result<ProposalPart, CodecError> {
    match r.u8("proposal part")? {
        1 => Ok(ProposalPart::Init {
            height: get_height(r)?,
            round: get_round(r)?,
            pol_round: get_round(r)?,
            proposer: get_address(r)?,
        }),
        2 => Ok(ProposalPart::Data(Bytes::copy_from_slice(
            r.bytes("proposal data")?,
        ))),
        3 => Ok(ProposalPart::Fin {
            signature: get_sig(r)?,
        }),
        tag => Err(CodecError::BadTag {
            what: "proposal part",
            tag,
        }),
    }
}

codec_impl!(ProposalPart, |w, v| { put_part(w, v) }, |r| { get_part(r) });

codec_impl!(
    StreamMessage<ProposalPart>,
    |w, v| {
        w.bytes(&v.stream_id.to_bytes());
        w.u64(v.sequence);
        match &v.content {
            StreamContent::Data(part) => {
                w.u8(1);
                put_part(w, part);
            }
            StreamContent::Fin => w.u8(2),
        }
    },
    |r| {
        let stream_id = StreamId::new(Bytes::copy_from_slice(r.bytes("stream id")?));
        let sequence = r.u64("sequence")?;
        let content = match r.u8("stream content")? {
            1 => StreamContent::Data(get_part(r)?),
            2 => StreamContent::Fin,
            tag => {
                return Err(CodecError::BadTag {
                    what: "stream content",
                    tag,
                })
            }
        };
        Ok(StreamMessage::new(stream_id, sequence, content))
    }
);

codec_impl!(
    ProposedValue<PmrContext>,
    |w, v| {
        put_height(w, v.height);
        put_round(w, v.round);
        put_round(w, v.valid_round);
        put_address(w, &v.proposer);
        put_hash(w, &v.value);
        w.u8(u8::from(v.validity.is_valid()));
    },
    |r| {
        Ok(ProposedValue {
            height: get_height(r)?,
            round: get_round(r)?,
            valid_round: get_round(r)?,
            proposer: get_address(r)?,
            value: get_hash(r)?,
            validity: match r.u8("validity")? {
                0 => Validity::Invalid,
                1 => Validity::Valid,
                tag => {
                    return Err(CodecError::BadTag {
                        what: "validity",
                        tag,
                    })
                }
            },
        })
    }
);
