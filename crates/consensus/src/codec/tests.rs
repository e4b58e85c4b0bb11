//! Round trips and hostile inputs of every codec.

use bytes::Bytes;
use malachitebft_app_channel::app::consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, NilOrVal, PolkaCertificate, PolkaSignature,
    Round, RoundCertificate, RoundCertificateType, RoundSignature, SignedMessage, ValidatorProof,
    Validity, VoteType,
};
use malachitebft_signing_ed25519::Signature;
use malachitebft_sync::{self as sync, RawDecidedValue};
use pmr_primitives::B256;

use super::primitives::{put_hash, put_height, put_round};
use super::*;
use crate::context::{Address, BlockHash, Height, PmrContext, Proposal, ProposalPart, Vote};
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
