//! Votes and signed consensus messages (votes and proposals as gossiped), and the
//! validator proof of the network handshake.

use malachitebft_app_channel::app::consensus::SignedConsensusMsg;
use malachitebft_app_channel::app::types::core::{
    NilOrVal, SignedMessage, ValidatorProof, VoteType,
};

use super::primitives::*;
use super::proposal::*;
use super::*;
use crate::context::{BlockHash, PmrContext, Vote};

pub(super) fn put_nil_or_val(w: &mut Writer, v: &NilOrVal<BlockHash>) {
    match v {
        NilOrVal::Nil => w.u8(0),
        NilOrVal::Val(h) => {
            w.u8(1);
            put_hash(w, h);
        }
    }
}

pub(super) fn get_nil_or_val(r: &mut Reader<'_>) -> Result<NilOrVal<BlockHash>, CodecError> {
    match r.u8("nil-or-value")? {
        0 => Ok(NilOrVal::Nil),
        1 => Ok(NilOrVal::Val(get_hash(r)?)),
        tag => Err(CodecError::BadTag {
            what: "nil-or-value",
            tag,
        }),
    }
}

pub(super) fn put_vote_type(w: &mut Writer, t: VoteType) {
    w.u8(match t {
        VoteType::Prevote => 1,
        VoteType::Precommit => 2,
    });
}

pub(super) fn get_vote_type(r: &mut Reader<'_>) -> Result<VoteType, CodecError> {
    match r.u8("vote type")? {
        1 => Ok(VoteType::Prevote),
        2 => Ok(VoteType::Precommit),
        tag => Err(CodecError::BadTag {
            what: "vote type",
            tag,
        }),
    }
}

type SignedExtension = SignedMessage<PmrContext, Bytes>;

pub(super) fn put_opt_extension(w: &mut Writer, e: Option<&SignedExtension>) {
    match e {
        None => w.u8(0),
        Some(e) => {
            w.u8(1);
            w.bytes(&e.message);
            put_sig(w, &e.signature);
        }
    }
}

pub(super) fn get_opt_extension(r: &mut Reader<'_>) -> Result<Option<SignedExtension>, CodecError> {
    match r.u8("extension")? {
        0 => Ok(None),
        1 => {
            let msg = Bytes::copy_from_slice(r.bytes("extension")?);
            let sig = get_sig(r)?;
            Ok(Some(SignedMessage::new(msg, sig)))
        }
        tag => Err(CodecError::BadTag {
            what: "extension",
            tag,
        }),
    }
}

// ---- votes and proposals ----------------------------------------------------------------

pub(super) fn put_vote(w: &mut Writer, v: &Vote) {
    put_vote_type(w, v.vote_type);
    put_height(w, v.height);
    put_round(w, v.round);
    put_nil_or_val(w, &v.value);
    put_address(w, &v.validator);
    put_opt_extension(w, v.extension.as_ref());
}

pub(super) fn get_vote(r: &mut Reader<'_>) -> Result<Vote, CodecError> {
    Ok(Vote {
        vote_type: get_vote_type(r)?,
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_nil_or_val(r)?,
        validator: get_address(r)?,
        extension: get_opt_extension(r)?,
    })
}

pub(super) fn put_signed_vote(w: &mut Writer, v: &SignedMessage<PmrContext, Vote>) {
    put_vote(w, &v.message);
    put_sig(w, &v.signature);
}

pub(super) fn get_signed_vote(
    r: &mut Reader<'_>,
) -> Result<SignedMessage<PmrContext, Vote>, CodecError> {
    let vote = get_vote(r)?;
    Ok(SignedMessage::new(vote, get_sig(r)?))
}

codec_impl!(
    SignedConsensusMsg<PmrContext>,
    |w, v| {
        match v {
            SignedConsensusMsg::Vote(vote) => {
                w.u8(1);
                put_signed_vote(w, vote);
            }
            SignedConsensusMsg::Proposal(p) => {
                w.u8(2);
                put_proposal(w, &p.message);
                put_sig(w, &p.signature);
            }
        }
    },
    |r| {
        match r.u8("consensus message")? {
            1 => Ok(SignedConsensusMsg::Vote(get_signed_vote(r)?)),
            2 => {
                let p = get_proposal(r)?;
                Ok(SignedConsensusMsg::Proposal(SignedMessage::new(
                    p,
                    get_sig(r)?,
                )))
            }
            tag => Err(CodecError::BadTag {
                what: "consensus message",
                tag,
            }),
        }
    }
);

codec_impl!(
    ValidatorProof<PmrContext>,
    |w, v| {
        w.bytes(&v.public_key);
        w.bytes(&v.peer_id);
        put_sig(w, &v.signature);
    },
    |r| {
        let public_key = r.bytes("public key")?.to_vec();
        let peer_id = r.bytes("peer id")?.to_vec();
        Ok(ValidatorProof::new(public_key, peer_id, get_sig(r)?))
    }
);
