//! What validators sign, and the engine's signer and verifier.
//!
//! Every signed byte string starts with a domain tag and the chain id, so a signature made for
//! one message kind or one chain can never be replayed as another.

use async_trait::async_trait;
use malachitebft_app_channel::app::types::core::{
    NilOrVal, Round, SignedMessage, ValidatorProof, VoteExtensionScope, VoteType,
};
use malachitebft_app_channel::{Signer, Verifier};
use malachitebft_signing::{Error as SigningError, VerificationResult};
use malachitebft_signing_ed25519::{PrivateKey, PublicKey, Signature};

use crate::context::{Address, BlockHash, Height, PmrContext, Proposal, Vote};

fn round_bytes(round: Round) -> [u8; 8] {
    round.as_i64().to_be_bytes()
}

fn prefix(tag: &[u8], chain_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(tag);
    out.extend_from_slice(&chain_id.to_be_bytes());
    out
}

fn push_nil_or_val(out: &mut Vec<u8>, value: &NilOrVal<BlockHash>) {
    match value {
        NilOrVal::Nil => out.push(0),
        NilOrVal::Val(h) => {
            out.push(1);
            out.extend_from_slice(h.0.as_slice());
        }
    }
}

/// The bytes a validator signs for a vote (the extension is signed separately).
pub fn vote_sign_bytes(chain_id: u64, vote: &Vote) -> Vec<u8> {
    let mut out = prefix(b"pmr/vote/v1", chain_id);
    out.push(match vote.vote_type {
        VoteType::Prevote => 1,
        VoteType::Precommit => 2,
    });
    out.extend_from_slice(&vote.height.0.to_be_bytes());
    out.extend_from_slice(&round_bytes(vote.round));
    push_nil_or_val(&mut out, &vote.value);
    out.extend_from_slice(vote.validator.as_bytes());
    out
}

/// The bytes a proposer signs for a proposal.
pub fn proposal_sign_bytes(chain_id: u64, p: &Proposal) -> Vec<u8> {
    let mut out = prefix(b"pmr/proposal/v1", chain_id);
    out.extend_from_slice(&p.height.0.to_be_bytes());
    out.extend_from_slice(&round_bytes(p.round));
    out.extend_from_slice(p.value.0.as_slice());
    out.extend_from_slice(&round_bytes(p.pol_round));
    out.extend_from_slice(p.proposer.as_bytes());
    out
}

/// The bytes a proposer signs in the `Fin` part of a streamed proposal: they bind the stream's
/// `Init` fields to the hash of the block its `Data` parts carry.
pub fn proposal_parts_sign_bytes(
    chain_id: u64,
    height: Height,
    round: Round,
    pol_round: Round,
    proposer: &Address,
    block_hash: &BlockHash,
) -> Vec<u8> {
    let mut out = prefix(b"pmr/parts/v1", chain_id);
    out.extend_from_slice(&height.0.to_be_bytes());
    out.extend_from_slice(&round_bytes(round));
    out.extend_from_slice(&round_bytes(pol_round));
    out.extend_from_slice(proposer.as_bytes());
    out.extend_from_slice(block_hash.0.as_slice());
    out
}

fn extension_sign_bytes(
    chain_id: u64,
    scope: &VoteExtensionScope<PmrContext>,
    extension: &[u8],
) -> Vec<u8> {
    let mut out = prefix(b"pmr/extension/v1", chain_id);
    out.extend_from_slice(&scope.height.0.to_be_bytes());
    out.extend_from_slice(&round_bytes(scope.round));
    out.extend_from_slice(scope.value_id.0.as_slice());
    out.extend_from_slice(scope.validator_address.as_bytes());
    out.extend_from_slice(extension);
    out
}

/// Verifies consensus signatures of any validator. Holds no key.
#[derive(Clone, Debug)]
pub struct PmrVerifier {
    /// The chain every signature is bound to; a signature made for another chain does not verify.
    pub chain_id: u64,
}

impl PmrVerifier {
    fn check(msg: &[u8], signature: &Signature, public_key: &PublicKey) -> VerificationResult {
        VerificationResult::from_bool(public_key.verify(msg, signature).is_ok())
    }
}

#[async_trait]
impl Verifier<PmrContext> for PmrVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(Self::check(
            &vote_sign_bytes(self.chain_id, vote),
            signature,
            public_key,
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(Self::check(
            &proposal_sign_bytes(self.chain_id, proposal),
            signature,
            public_key,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<PmrContext>,
        extension: &bytes::Bytes,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(Self::check(
            &extension_sign_bytes(self.chain_id, scope, extension),
            signature,
            public_key,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<PmrContext>,
    ) -> Result<VerificationResult, SigningError> {
        let Ok(public_key) = proof.decoded_public_key() else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(Self::check(
            &proof.preimage(),
            &proof.signature,
            &public_key,
        ))
    }
}

/// Signs with this validator's ed25519 consensus key.
pub struct PmrSigner {
    key: PrivateKey,
    chain_id: u64,
}

impl PmrSigner {
    /// A signer with consensus key `key`, for chain `chain_id`.
    pub fn new(key: PrivateKey, chain_id: u64) -> Self {
        Self { key, chain_id }
    }

    /// The public half of the consensus key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The validator address of the key (see [`Address::from_public_key`]).
    pub fn address(&self) -> Address {
        Address::from_public_key(&self.key.public_key())
    }

    /// Signs arbitrary bytes (used for the `Fin` part of streamed proposals).
    pub fn sign_bytes(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }
}

#[async_trait]
impl Signer<PmrContext> for PmrSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<PmrContext, Vote>, SigningError> {
        let signature = self.key.sign(&vote_sign_bytes(self.chain_id, &vote));
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<PmrContext, Proposal>, SigningError> {
        let signature = self
            .key
            .sign(&proposal_sign_bytes(self.chain_id, &proposal));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<PmrContext>,
        extension: bytes::Bytes,
    ) -> Result<SignedMessage<PmrContext, bytes::Bytes>, SigningError> {
        let signature = self
            .key
            .sign(&extension_sign_bytes(self.chain_id, &scope, &extension));
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<PmrContext>, SigningError> {
        let preimage = ValidatorProof::<PmrContext>::signing_bytes(&public_key, &peer_id);
        Ok(ValidatorProof::new(
            public_key,
            peer_id,
            self.key.sign(&preimage),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::types::core::Context as _;

    fn key(b: u8) -> PrivateKey {
        PrivateKey::from([b; 32])
    }

    #[tokio::test]
    async fn votes_verify_only_for_their_chain_and_content() {
        let signer = PmrSigner::new(key(1), 7);
        let ctx = PmrContext;
        let vote = ctx.new_precommit(
            Height(3),
            Round::new(0),
            NilOrVal::Val(BlockHash(pmr_primitives::B256::repeat_byte(9))),
            signer.address(),
        );
        let signed = signer.sign_vote(vote.clone()).await.unwrap();
        let pk = signer.public_key();
        let ok = PmrVerifier { chain_id: 7 };
        assert!(ok
            .verify_signed_vote(&vote, &signed.signature, &pk)
            .await
            .unwrap()
            .is_valid());
        let other_chain = PmrVerifier { chain_id: 8 };
        assert!(other_chain
            .verify_signed_vote(&vote, &signed.signature, &pk)
            .await
            .unwrap()
            .is_invalid());
        let mut nil = vote.clone();
        nil.value = NilOrVal::Nil;
        assert!(ok
            .verify_signed_vote(&nil, &signed.signature, &pk)
            .await
            .unwrap()
            .is_invalid());
        // A precommit signature is not a prevote signature.
        let mut prevote = vote;
        prevote.vote_type = VoteType::Prevote;
        assert!(ok
            .verify_signed_vote(&prevote, &signed.signature, &pk)
            .await
            .unwrap()
            .is_invalid());
        // Another validator's key does not verify it.
        assert!(ok
            .verify_signed_vote(&nil, &signed.signature, &key(2).public_key())
            .await
            .unwrap()
            .is_invalid());
    }
}
