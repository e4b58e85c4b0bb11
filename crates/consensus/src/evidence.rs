//! Misbehavior evidence: a validator that signed two different proposals, prevotes or
//! precommits for one height and round (a double signer, e.g. two processes run with one key).
//!
//! The engine detects equivocation and hands the evidence over when a height is finalized;
//! the node keeps each pair durably with both signed messages (in the consensus wire
//! encoding), so anyone holding the genesis can check it again with [`Equivocation::verify`].

use bytes::Bytes;
use malachitebft_app_channel::app::consensus::SignedConsensusMsg;
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::{
    NilOrVal, SignedMessage, ValidatorSet as _, VoteType,
};
use malachitebft_app_channel::app::types::MisbehaviorEvidence;
use pmr_primitives::{ValidatorAddress, B256};
use serde::{Deserialize, Serialize};

use crate::codec::PmrCodec;
use crate::context::{PmrContext, ValidatorSet};
use crate::signing::{proposal_sign_bytes, vote_sign_bytes};

/// What was signed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EquivocationKind {
    /// Two different proposals for one height and round.
    Proposal,
    /// Two different prevotes for one height and round.
    Prevote,
    /// Two different precommits for one height and round.
    Precommit,
}

impl EquivocationKind {
    /// The lowercase name, as serialized and shown in logs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Proposal => "proposal",
            Self::Prevote => "prevote",
            Self::Precommit => "precommit",
        }
    }
}

/// Two conflicting messages signed by one validator for one height and round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// Height of both messages.
    pub height: u64,
    /// Round of both messages (as `Round::as_i64`).
    pub round: i64,
    /// The validator that signed both.
    pub validator: ValidatorAddress,
    /// What both messages are.
    pub kind: EquivocationKind,
    /// The values each message names (`None`: a vote for nil).
    pub values: [Option<B256>; 2],
    /// Both signed messages, each a `SignedConsensusMsg` in [`PmrCodec`]'s encoding.
    #[serde(with = "hex_pair")]
    pub signed: [Bytes; 2],
}

mod hex_pair {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Bytes; 2], s: S) -> Result<S::Ok, S::Error> {
        [hex::encode(&v[0]), hex::encode(&v[1])].serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[Bytes; 2], D::Error> {
        let [a, b] = <[String; 2]>::deserialize(d)?;
        let dec = |s: String| {
            hex::decode(s)
                .map(Bytes::from)
                .map_err(serde::de::Error::custom)
        };
        Ok([dec(a)?, dec(b)?])
    }
}

fn value_of(v: &NilOrVal<crate::context::BlockHash>) -> Option<B256> {
    match v {
        NilOrVal::Nil => None,
        NilOrVal::Val(h) => Some(h.0),
    }
}

fn encode(msg: SignedConsensusMsg<PmrContext>) -> Bytes {
    // Encoding our own message types into a growable buffer does not fail; if it ever did,
    // the empty half would fail `verify`.
    PmrCodec.encode(&msg).unwrap_or_default()
}

/// Flattens the engine's evidence into one record per conflicting pair.
pub fn from_engine(evidence: &MisbehaviorEvidence<PmrContext>) -> Vec<Equivocation> {
    let mut out = Vec::new();
    for (address, pairs) in evidence.proposals.iter() {
        for (a, b) in pairs {
            out.push(Equivocation {
                height: a.message.height.0,
                round: a.message.round.as_i64(),
                validator: address.0,
                kind: EquivocationKind::Proposal,
                values: [Some(a.message.value.0), Some(b.message.value.0)],
                signed: [
                    encode(SignedConsensusMsg::Proposal(a.clone())),
                    encode(SignedConsensusMsg::Proposal(b.clone())),
                ],
            });
        }
    }
    for (address, pairs) in evidence.votes.iter() {
        for (a, b) in pairs {
            out.push(Equivocation {
                height: a.message.height.0,
                round: a.message.round.as_i64(),
                validator: address.0,
                kind: match a.message.vote_type {
                    VoteType::Prevote => EquivocationKind::Prevote,
                    VoteType::Precommit => EquivocationKind::Precommit,
                },
                values: [value_of(&a.message.value), value_of(&b.message.value)],
                signed: [
                    encode(SignedConsensusMsg::Vote(a.clone())),
                    encode(SignedConsensusMsg::Vote(b.clone())),
                ],
            });
        }
    }
    out
}

/// What a signed message says, for comparing the two halves of a piece of evidence.
#[derive(PartialEq, Eq)]
struct Claim {
    kind: EquivocationKind,
    height: u64,
    round: i64,
    validator: ValidatorAddress,
    value: Option<B256>,
}

/// A decoded half: what it claims and the exact bytes its signature covers.
struct Signed {
    claim: Claim,
    sign_bytes: Vec<u8>,
}

impl Equivocation {
    /// Checks the evidence against the validator set of `chain_id`: both messages decode, are
    /// of the recorded kind, height, round and validator, carry valid signatures of that
    /// validator, and differ in what was signed (a different value, or for proposals the same
    /// value with a different proof-of-lock round).
    pub fn verify(&self, validators: &ValidatorSet, chain_id: u64) -> Result<(), String> {
        let validator = validators
            .get_by_address(&crate::context::Address(self.validator))
            .ok_or_else(|| format!("{} is not a validator", self.validator))?;
        let mut halves: Vec<Signed> = Vec::with_capacity(2);
        for (i, bytes) in self.signed.iter().enumerate() {
            let msg: SignedConsensusMsg<PmrContext> = PmrCodec
                .decode(bytes.clone())
                .map_err(|e| format!("message {i} does not decode: {e}"))?;
            let (claim, sign_bytes, signature) = match &msg {
                SignedConsensusMsg::Proposal(SignedMessage { message, signature }) => (
                    Claim {
                        kind: EquivocationKind::Proposal,
                        height: message.height.0,
                        round: message.round.as_i64(),
                        validator: message.proposer.0,
                        value: Some(message.value.0),
                    },
                    proposal_sign_bytes(chain_id, message),
                    signature,
                ),
                SignedConsensusMsg::Vote(SignedMessage { message, signature }) => (
                    Claim {
                        kind: match message.vote_type {
                            VoteType::Prevote => EquivocationKind::Prevote,
                            VoteType::Precommit => EquivocationKind::Precommit,
                        },
                        height: message.height.0,
                        round: message.round.as_i64(),
                        validator: message.validator.0,
                        value: value_of(&message.value),
                    },
                    vote_sign_bytes(chain_id, message),
                    signature,
                ),
            };
            validator
                .public_key
                .verify(&sign_bytes, signature)
                .map_err(|_| format!("message {i} is not signed by {}", self.validator))?;
            halves.push(Signed { claim, sign_bytes });
        }
        let expected = |value| Claim {
            kind: self.kind,
            height: self.height,
            round: self.round,
            validator: self.validator,
            value,
        };
        if halves[0].claim != expected(self.values[0])
            || halves[1].claim != expected(self.values[1])
        {
            return Err("the messages do not say what the record says".into());
        }
        if halves[0].sign_bytes == halves[1].sign_bytes {
            return Err("both messages sign the same thing: no equivocation".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{BlockHash, Height, Vote};
    use crate::signing::PmrSigner;
    use malachitebft_app_channel::app::types::core::Round;
    use malachitebft_signing_ed25519::PrivateKey;

    fn vote(signer: &PmrSigner, value: Option<B256>) -> SignedMessage<PmrContext, Vote> {
        let v = Vote {
            vote_type: VoteType::Prevote,
            height: Height(7),
            round: Round::new(1),
            value: value.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h))),
            validator: signer.address(),
            extension: None,
        };
        let signature = signer.sign_bytes(&vote_sign_bytes(4242, &v));
        SignedMessage::new(v, signature)
    }

    fn setup() -> (PmrSigner, ValidatorSet, Equivocation) {
        let key = PrivateKey::from([3; 32]);
        let signer = PmrSigner::new(key.clone(), 4242);
        let set = ValidatorSet::new(vec![crate::context::Validator {
            address: signer.address(),
            public_key: key.public_key(),
            voting_power: 1,
            name: "v".into(),
        }]);
        let (a, b) = (
            vote(&signer, Some(B256::repeat_byte(1))),
            vote(&signer, None),
        );
        let ev = Equivocation {
            height: 7,
            round: 1,
            validator: signer.address().0,
            kind: EquivocationKind::Prevote,
            values: [Some(B256::repeat_byte(1)), None],
            signed: [
                encode(SignedConsensusMsg::Vote(a)),
                encode(SignedConsensusMsg::Vote(b)),
            ],
        };
        (signer, set, ev)
    }

    #[test]
    fn a_double_vote_verifies_and_survives_json() {
        let (_, set, ev) = setup();
        ev.verify(&set, 4242).expect("valid evidence");
        let json = serde_json::to_string(&ev).unwrap();
        let back: Equivocation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
        assert!(
            ev.verify(&set, 1).is_err(),
            "signatures are bound to the chain id"
        );
    }

    #[test]
    fn two_proposals_of_one_value_with_different_lock_rounds_are_equivocation() {
        let (signer, set, _) = setup();
        let proposal = |pol: i64| {
            let p = crate::context::Proposal {
                height: Height(7),
                round: Round::new(2),
                value: BlockHash(B256::repeat_byte(9)),
                pol_round: if pol < 0 {
                    Round::Nil
                } else {
                    Round::new(pol as u32)
                },
                proposer: signer.address(),
            };
            let signature = signer.sign_bytes(&proposal_sign_bytes(4242, &p));
            encode(SignedConsensusMsg::Proposal(SignedMessage::new(
                p, signature,
            )))
        };
        let ev = Equivocation {
            height: 7,
            round: 2,
            validator: signer.address().0,
            kind: EquivocationKind::Proposal,
            values: [Some(B256::repeat_byte(9)); 2],
            signed: [proposal(-1), proposal(1)],
        };
        ev.verify(&set, 4242)
            .expect("same value, different pol_round");
        let mut twice = ev;
        twice.signed[1] = twice.signed[0].clone();
        assert!(twice.verify(&set, 4242).is_err());
    }

    #[test]
    fn forged_or_inconsistent_evidence_is_refused() {
        let (signer, set, ev) = setup();
        let mut same = ev.clone();
        same.signed[1] = same.signed[0].clone();
        same.values[1] = same.values[0];
        assert!(same.verify(&set, 4242).unwrap_err().contains("same thing"));

        let mut lying = ev.clone();
        lying.height = 8;
        assert!(lying.verify(&set, 4242).is_err());

        let other = PmrSigner::new(PrivateKey::from([4; 32]), 4242);
        let mut forged = ev.clone();
        forged.signed[1] = encode(SignedConsensusMsg::Vote({
            let mut v = vote(&other, None);
            v.message.validator = signer.address();
            v
        }));
        assert!(forged
            .verify(&set, 4242)
            .unwrap_err()
            .contains("not signed"));

        let mut garbage = ev;
        garbage.signed[0] = Bytes::from_static(b"junk");
        assert!(garbage.verify(&set, 4242).unwrap_err().contains("decode"));
    }
}
