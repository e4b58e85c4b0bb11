//! Binary wire and WAL encoding of every message the engine exchanges or persists.
//!
//! A small, strict format: fixed-width big-endian integers, `u32` length prefixes, one tag byte
//! per enum. Decoding never allocates more than the input holds, rejects unknown tags, and
//! rejects trailing bytes, so a hostile peer cannot make a node allocate or accept garbage.

use std::ops::RangeInclusive;

use bytes::Bytes;
use malachitebft_app_channel::app::consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, NilOrVal, PolkaCertificate, PolkaSignature,
    Round, RoundCertificate, RoundCertificateType, RoundSignature, SignedMessage, ValidatorProof,
    Validity, VoteType,
};
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_signing_ed25519::Signature;
use malachitebft_sync::{self as sync, RawDecidedValue};
use pmr_primitives::B256;

use crate::context::{Address, BlockHash, Height, PmrContext, Proposal, ProposalPart, Vote};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("unknown tag {tag} for {what}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("{what} has {len} items, over the limit of {max}")]
    TooMany {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Most entries a list in a message may have (votes of a validator set, values of a sync batch).
const MAX_ITEMS: usize = 100_000;

/// Writes the format.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn fixed(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.0)
    }
}

/// Reads the format.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn fixed<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// A list length, bounded both by [`MAX_ITEMS`] and by what the input can still hold.
    pub(crate) fn len(
        &mut self,
        what: &'static str,
        min_item_size: usize,
    ) -> Result<usize, CodecError> {
        let n = self.u32(what)? as usize;
        if n > MAX_ITEMS {
            return Err(CodecError::TooMany {
                what,
                len: n,
                max: MAX_ITEMS,
            });
        }
        if n.saturating_mul(min_item_size.max(1)) > self.buf.len() {
            return Err(CodecError::Truncated(what));
        }
        Ok(n)
    }
    pub(crate) fn end(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.buf.len()))
        }
    }
}

// ---- primitives -------------------------------------------------------------------------

fn put_round(w: &mut Writer, r: Round) {
    w.u64(r.as_i64() as u64);
}

fn get_round(r: &mut Reader<'_>) -> Result<Round, CodecError> {
    let v = r.u64("round")? as i64;
    match v {
        -1 => Ok(Round::Nil),
        v if (0..=u32::MAX as i64).contains(&v) => Ok(Round::new(v as u32)),
        _ => Err(CodecError::Invalid("round")),
    }
}

fn put_height(w: &mut Writer, h: Height) {
    w.u64(h.0);
}

fn get_height(r: &mut Reader<'_>) -> Result<Height, CodecError> {
    Ok(Height(r.u64("height")?))
}

fn put_address(w: &mut Writer, a: &Address) {
    w.fixed(a.as_bytes());
}

fn get_address(r: &mut Reader<'_>) -> Result<Address, CodecError> {
    let b: [u8; 20] = r.fixed("address")?;
    Address::from_slice(&b).ok_or(CodecError::Invalid("address"))
}

fn put_hash(w: &mut Writer, h: &BlockHash) {
    w.fixed(h.0.as_slice());
}

fn get_hash(r: &mut Reader<'_>) -> Result<BlockHash, CodecError> {
    Ok(BlockHash(B256::from(r.fixed::<32>("block hash")?)))
}

fn put_sig(w: &mut Writer, s: &Signature) {
    w.fixed(&s.to_bytes());
}

fn get_sig(r: &mut Reader<'_>) -> Result<Signature, CodecError> {
    Ok(Signature::from_bytes(r.fixed::<64>("signature")?))
}

fn put_nil_or_val(w: &mut Writer, v: &NilOrVal<BlockHash>) {
    match v {
        NilOrVal::Nil => w.u8(0),
        NilOrVal::Val(h) => {
            w.u8(1);
            put_hash(w, h);
        }
    }
}

fn get_nil_or_val(r: &mut Reader<'_>) -> Result<NilOrVal<BlockHash>, CodecError> {
    match r.u8("nil-or-value")? {
        0 => Ok(NilOrVal::Nil),
        1 => Ok(NilOrVal::Val(get_hash(r)?)),
        tag => Err(CodecError::BadTag {
            what: "nil-or-value",
            tag,
        }),
    }
}

fn put_vote_type(w: &mut Writer, t: VoteType) {
    w.u8(match t {
        VoteType::Prevote => 1,
        VoteType::Precommit => 2,
    });
}

fn get_vote_type(r: &mut Reader<'_>) -> Result<VoteType, CodecError> {
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

fn put_opt_extension(w: &mut Writer, e: Option<&SignedExtension>) {
    match e {
        None => w.u8(0),
        Some(e) => {
            w.u8(1);
            w.bytes(&e.message);
            put_sig(w, &e.signature);
        }
    }
}

fn get_opt_extension(r: &mut Reader<'_>) -> Result<Option<SignedExtension>, CodecError> {
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

fn put_vote(w: &mut Writer, v: &Vote) {
    put_vote_type(w, v.vote_type);
    put_height(w, v.height);
    put_round(w, v.round);
    put_nil_or_val(w, &v.value);
    put_address(w, &v.validator);
    put_opt_extension(w, v.extension.as_ref());
}

fn get_vote(r: &mut Reader<'_>) -> Result<Vote, CodecError> {
    Ok(Vote {
        vote_type: get_vote_type(r)?,
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_nil_or_val(r)?,
        validator: get_address(r)?,
        extension: get_opt_extension(r)?,
    })
}

fn put_signed_vote(w: &mut Writer, v: &SignedMessage<PmrContext, Vote>) {
    put_vote(w, &v.message);
    put_sig(w, &v.signature);
}

fn get_signed_vote(r: &mut Reader<'_>) -> Result<SignedMessage<PmrContext, Vote>, CodecError> {
    let vote = get_vote(r)?;
    Ok(SignedMessage::new(vote, get_sig(r)?))
}

fn put_proposal(w: &mut Writer, p: &Proposal) {
    put_height(w, p.height);
    put_round(w, p.round);
    put_hash(w, &p.value);
    put_round(w, p.pol_round);
    put_address(w, &p.proposer);
}

fn get_proposal(r: &mut Reader<'_>) -> Result<Proposal, CodecError> {
    Ok(Proposal {
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_hash(r)?,
        pol_round: get_round(r)?,
        proposer: get_address(r)?,
    })
}

fn put_polka(w: &mut Writer, c: &PolkaCertificate<PmrContext>) {
    put_height(w, c.height);
    put_round(w, c.round);
    put_hash(w, &c.value_id);
    w.len(c.polka_signatures.len());
    for s in &c.polka_signatures {
        put_address(w, &s.address);
        put_sig(w, &s.signature);
    }
}

fn get_polka(r: &mut Reader<'_>) -> Result<PolkaCertificate<PmrContext>, CodecError> {
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

fn put_round_cert(w: &mut Writer, c: &RoundCertificate<PmrContext>) {
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

fn get_round_cert(r: &mut Reader<'_>) -> Result<RoundCertificate<PmrContext>, CodecError> {
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

fn put_ext_cert(w: &mut Writer, c: &ExtendedCommitCertificate<PmrContext>) {
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

fn get_ext_cert(r: &mut Reader<'_>) -> Result<ExtendedCommitCertificate<PmrContext>, CodecError> {
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

fn put_part(w: &mut Writer, p: &ProposalPart) {
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

fn get_part(r: &mut Reader<'_>) -> Result<ProposalPart, CodecError> {
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

// ---- the codec --------------------------------------------------------------------------

/// The codec handed to the engine for the network, the WAL and value sync.
#[derive(Clone, Copy, Debug, Default)]
pub struct PmrCodec;

fn decode_all<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let mut r = Reader::new(bytes);
    let v = f(&mut r)?;
    r.end()?;
    Ok(v)
}

fn encode_with(f: impl FnOnce(&mut Writer)) -> Result<Bytes, CodecError> {
    let mut w = Writer::default();
    f(&mut w);
    Ok(w.finish())
}

macro_rules! codec_impl {
    ($ty:ty, |$w:ident, $v:ident| $enc:block, |$r:ident| $dec:block) => {
        impl Codec<$ty> for PmrCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$ty, CodecError> {
                decode_all(&bytes, |$r| $dec)
            }

            fn encode(&self, $v: &$ty) -> Result<Bytes, CodecError> {
                encode_with(|$w| $enc)
            }
        }
    };
}

codec_impl!(ProposalPart, |w, v| { put_part(w, v) }, |r| { get_part(r) });

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

codec_impl!(
    PolkaCertificate<PmrContext>,
    |w, v| { put_polka(w, v) },
    |r| { get_polka(r) }
);

codec_impl!(
    sync::Status<PmrContext>,
    |w, v| {
        w.bytes(&v.peer_id.to_bytes());
        put_height(w, v.tip_height);
        put_height(w, v.history_min_height);
    },
    |r| {
        let peer_id =
            PeerId::from_bytes(r.bytes("peer id")?).map_err(|_| CodecError::Invalid("peer id"))?;
        Ok(sync::Status {
            peer_id,
            tip_height: get_height(r)?,
            history_min_height: get_height(r)?,
        })
    }
);

codec_impl!(
    sync::Request<PmrContext>,
    |w, v| {
        let sync::Request::ValueRequest(req) = v;
        put_height(w, *req.range.start());
        put_height(w, *req.range.end());
    },
    |r| {
        let start = get_height(r)?;
        let end = get_height(r)?;
        let range: RangeInclusive<Height> = start..=end;
        Ok(sync::Request::ValueRequest(sync::ValueRequest::new(range)))
    }
);

fn put_response(w: &mut Writer, v: &sync::Response<PmrContext>) {
    let sync::Response::ValueResponse(resp) = v;
    put_height(w, resp.start_height);
    w.len(resp.values.len());
    for value in &resp.values {
        w.bytes(&value.value_bytes);
        put_ext_cert(w, &value.certificate);
    }
}

codec_impl!(
    sync::Response<PmrContext>,
    |w, v| { put_response(w, v) },
    |r| {
        let start_height = get_height(r)?;
        let n = r.len("sync values", 4 + 8 + 8 + 32 + 4)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value_bytes = Bytes::copy_from_slice(r.bytes("value bytes")?);
            let certificate = get_ext_cert(r)?;
            values.push(RawDecidedValue::new(value_bytes, certificate));
        }
        Ok(sync::Response::ValueResponse(sync::ValueResponse::new(
            start_height,
            values,
        )))
    }
);

impl HasEncodedLen<sync::Response<PmrContext>> for PmrCodec {
    fn encoded_len(&self, msg: &sync::Response<PmrContext>) -> Result<usize, CodecError> {
        let mut w = Writer::default();
        put_response(&mut w, msg);
        Ok(w.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_signing_ed25519::PrivateKey;
    use proptest::prelude::*;

    fn sig(b: u8) -> Signature {
        PrivateKey::from([b; 32]).sign(b"x")
    }

    fn addr(b: u8) -> Address {
        Address::from_slice(&[b; 20]).unwrap()
    }

    fn round_trip<T>(v: &T)
    where
        PmrCodec: Codec<T>,
        T: PartialEq + std::fmt::Debug,
        <PmrCodec as Codec<T>>::Error: std::fmt::Debug,
    {
        let bytes = PmrCodec.encode(v).unwrap();
        let back: T = PmrCodec.decode(bytes.clone()).unwrap();
        assert_eq!(&back, v);
        // Every strict prefix fails, and so does any trailing byte.
        for cut in 0..bytes.len() {
            assert!(<PmrCodec as Codec<T>>::decode(&PmrCodec, bytes.slice(..cut)).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(<PmrCodec as Codec<T>>::decode(&PmrCodec, longer.into()).is_err());
    }

    proptest! {
        #[test]
        fn votes_round_trip(h in 0u64..u64::MAX, r in proptest::option::of(0u32..1000), nil in any::<bool>(),
                            ext in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), b in any::<u8>()) {
            let vote = Vote {
                vote_type: if nil { VoteType::Prevote } else { VoteType::Precommit },
                height: Height(h),
                round: r.map(Round::new).unwrap_or(Round::Nil),
                value: if nil { NilOrVal::Nil } else { NilOrVal::Val(BlockHash(B256::repeat_byte(b))) },
                validator: addr(b),
                extension: ext.map(|e| SignedMessage::new(Bytes::from(e), sig(b))),
            };
            round_trip(&SignedConsensusMsg::<PmrContext>::Vote(SignedMessage::new(vote.clone(), sig(1))));
            round_trip(&LivenessMsg::<PmrContext>::Vote(SignedMessage::new(vote, sig(2))));
        }

        #[test]
        fn parts_round_trip(data in proptest::collection::vec(any::<u8>(), 0..600), seq in any::<u64>()) {
            let parts = [
                ProposalPart::Init { height: Height(5), round: Round::new(1), pol_round: Round::Nil, proposer: addr(3) },
                ProposalPart::Data(Bytes::from(data)),
                ProposalPart::Fin { signature: sig(4) },
            ];
            for p in parts {
                round_trip(&p);
                round_trip(&StreamMessage::new(StreamId::new(Bytes::from_static(b"sid")), seq, StreamContent::Data(p)));
            }
            round_trip(&StreamMessage::<ProposalPart>::new(StreamId::new(Bytes::new()), seq, StreamContent::Fin));
        }
    }

    #[test]
    fn certificates_sync_and_wal_types_round_trip() {
        let cert = ExtendedCommitCertificate::<PmrContext> {
            height: Height(9),
            round: Round::new(2),
            value_id: BlockHash(B256::repeat_byte(7)),
            commit_signatures: vec![
                ExtendedCommitSignature::new(addr(1), sig(1), None),
                ExtendedCommitSignature::new(
                    addr(2),
                    sig(2),
                    Some(SignedMessage::new(Bytes::from_static(b"e"), sig(3))),
                ),
            ],
        };
        assert_eq!(
            decode_certificate(&encode_certificate(&cert)).unwrap(),
            cert
        );
        round_trip(&sync::Response::<PmrContext>::ValueResponse(
            sync::ValueResponse::new(
                Height(9),
                vec![RawDecidedValue::new(
                    Bytes::from_static(b"block"),
                    cert.clone(),
                )],
            ),
        ));
        round_trip(&sync::Request::<PmrContext>::ValueRequest(
            sync::ValueRequest::new(Height(3)..=Height(8)),
        ));
        round_trip(&sync::Status::<PmrContext> {
            peer_id: crate::test_peer_id(),
            tip_height: Height(10),
            history_min_height: Height(1),
        });
        round_trip(&ProposedValue::<PmrContext> {
            height: Height(4),
            round: Round::new(0),
            valid_round: Round::Nil,
            proposer: addr(5),
            value: BlockHash(B256::repeat_byte(1)),
            validity: Validity::Invalid,
        });
        round_trip(&PolkaCertificate::<PmrContext> {
            height: Height(4),
            round: Round::new(3),
            value_id: BlockHash(B256::repeat_byte(1)),
            polka_signatures: vec![PolkaSignature::new(addr(1), sig(1))],
        });
        round_trip(&LivenessMsg::<PmrContext>::SkipRoundCertificate(
            RoundCertificate {
                height: Height(4),
                round: Round::new(3),
                cert_type: RoundCertificateType::Skip,
                round_signatures: vec![RoundSignature {
                    vote_type: VoteType::Prevote,
                    value_id: NilOrVal::Nil,
                    address: addr(2),
                    signature: sig(2),
                }],
            },
        ));
        round_trip(&ValidatorProof::<PmrContext>::new(
            vec![1; 32],
            vec![2; 38],
            sig(9),
        ));
        round_trip(&SignedConsensusMsg::<PmrContext>::Proposal(
            SignedMessage::new(
                Proposal {
                    height: Height(1),
                    round: Round::new(0),
                    value: BlockHash(B256::repeat_byte(3)),
                    pol_round: Round::Nil,
                    proposer: addr(4),
                },
                sig(5),
            ),
        ));
    }

    #[test]
    fn hostile_inputs_are_refused_without_allocating() {
        // A list claiming 4 billion entries with nothing behind it.
        let mut w = Writer::default();
        put_height(&mut w, Height(1));
        put_round(&mut w, Round::new(0));
        put_hash(&mut w, &BlockHash(B256::ZERO));
        w.u32(u32::MAX);
        assert!(matches!(
            decode_certificate(&w.finish()),
            Err(CodecError::TooMany { .. })
        ));
        // Unknown tags.
        assert!(matches!(
            <PmrCodec as Codec<ProposalPart>>::decode(&PmrCodec, Bytes::from_static(&[9])),
            Err(CodecError::BadTag { .. })
        ));
        // A round that is neither nil nor a u32.
        let mut w = Writer::default();
        w.u8(1);
        put_height(&mut w, Height(1));
        w.u64(1 << 40);
        assert!(<PmrCodec as Codec<ProposalPart>>::decode(&PmrCodec, w.finish()).is_err());
    }
}
