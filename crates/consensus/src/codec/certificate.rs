//! Certificates: polka and round certificates (liveness messages), and the commit certificate
//! stored with every block.

use malachitebft_app_channel::app::consensus::LivenessMsg;
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, PolkaSignature,
    RoundCertificate, RoundCertificateType, RoundSignature,
};

use super::primitives::*;
use super::vote::*;
use super::*;
use crate::context::PmrContext;

pub(super) fn put_polka(w: &mut Writer, c: &PolkaCertificate<PmrContext>) {
    put_height(w, c.height);
    put_round(w, c.round);
    put_hash(w, &c.value_id);
    w.len(c.polka_signatures.len());
    for s in &c.polka_signatures {
        put_address(w, &s.address);
        put_sig(w, &s.signature);
    }
}

pub(super) fn get_polka(r: &mut Reader<'_>) -> Result<PolkaCertificate<PmrContext>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let value_id = get_hash(r)?;
    let n = r.len("polka signatures", 84)?;
    let mut polka_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let address = get_address(r)?;
        polka_signatures.push(PolkaSignature::new(address, get_sig(r)?));
    }
    Ok(PolkaCertificate {
        height,
        round,
        value_id,
        polka_signatures,
    })
}

pub(super) fn put_round_cert(w: &mut Writer, c: &RoundCertificate<PmrContext>) {
    put_height(w, c.height);
    put_round(w, c.round);
    w.u8(match c.cert_type {
        RoundCertificateType::Skip => 1,
        RoundCertificateType::Precommit => 2,
    });
    w.len(c.round_signatures.len());
    for s in &c.round_signatures {
        put_vote_type(w, s.vote_type);
        put_nil_or_val(w, &s.value_id);
        put_address(w, &s.address);
        put_sig(w, &s.signature);
    }
}

pub(super) fn get_round_cert(
    r: &mut Reader<'_>,
) -> Result<RoundCertificate<PmrContext>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let cert_type = match r.u8("round certificate type")? {
        1 => RoundCertificateType::Skip,
        2 => RoundCertificateType::Precommit,
        tag => {
            return Err(CodecError::BadTag {
                what: "round certificate type",
                tag,
            })
        }
    };
    let n = r.len("round signatures", 86)?;
    let mut round_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let vote_type = get_vote_type(r)?;
        let value_id = get_nil_or_val(r)?;
        let address = get_address(r)?;
        let signature = get_sig(r)?;
        round_signatures.push(RoundSignature {
            vote_type,
            value_id,
            address,
            signature,
        });
    }
    Ok(RoundCertificate {
        height,
        round,
        cert_type,
        round_signatures,
    })
}

/// Encodes a commit certificate (with optional vote extensions) as stored beside each block.
pub fn encode_certificate(c: &ExtendedCommitCertificate<PmrContext>) -> Bytes {
    let mut w = Writer::default();
    put_ext_cert(&mut w, c);
    w.finish()
}

/// Decodes [`encode_certificate`] output.
pub fn decode_certificate(
    bytes: &[u8],
) -> Result<ExtendedCommitCertificate<PmrContext>, CodecError> {
    let mut r = Reader::new(bytes);
    let c = get_ext_cert(&mut r)?;
    r.end()?;
    Ok(c)
}

pub(super) fn put_ext_cert(w: &mut Writer, c: &ExtendedCommitCertificate<PmrContext>) {
    put_height(w, c.height);
    put_round(w, c.round);
    put_hash(w, &c.value_id);
    w.len(c.commit_signatures.len());
    for s in &c.commit_signatures {
        put_address(w, &s.address);
        put_sig(w, &s.signature);
        put_opt_extension(w, s.extension.as_ref());
    }
}

pub(super) fn get_ext_cert(
    r: &mut Reader<'_>,
) -> Result<ExtendedCommitCertificate<PmrContext>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let value_id = get_hash(r)?;
    let n = r.len("commit signatures", 85)?;
    let mut commit_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let address = get_address(r)?;
        let signature = get_sig(r)?;
        let extension = get_opt_extension(r)?;
        commit_signatures.push(ExtendedCommitSignature::new(address, signature, extension));
    }
    Ok(ExtendedCommitCertificate {
        height,
        round,
        value_id,
        commit_signatures,
    })
}

// ---- proposal parts ---------------------------------------------------------------------

codec_impl!(
    LivenessMsg<PmrContext>,
    |w, v| {
        match v {
            LivenessMsg::Vote(vote) => {
                w.u8(1);
                put_signed_vote(w, vote);
            }
            LivenessMsg::PolkaCertificate(c) => {
                w.u8(2);
                put_polka(w, c);
            }
            LivenessMsg::SkipRoundCertificate(c) => {
                w.u8(3);
                put_round_cert(w, c);
            }
        }
    },
    |r| {
        match r.u8("liveness message")? {
            1 => Ok(LivenessMsg::Vote(get_signed_vote(r)?)),
            2 => Ok(LivenessMsg::PolkaCertificate(get_polka(r)?)),
            3 => Ok(LivenessMsg::SkipRoundCertificate(get_round_cert(r)?)),
            tag => Err(CodecError::BadTag {
                what: "liveness message",
                tag,
            }),
        }
    }
);

codec_impl!(
    PolkaCertificate<PmrContext>,
    |w, v| { put_polka(w, v) },
    |r| { get_polka(r) }
);
