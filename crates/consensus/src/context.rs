//! The PMR consensus context: the concrete types malachite runs Tendermint over.
//!
//! A consensus value is a block hash. The block itself travels as streamed proposal parts (and
//! as raw bytes in value sync); votes and proposals only carry its hash.

use std::fmt;

use malachitebft_app_channel::app::types::core::{
    self as mt, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType,
};
use malachitebft_signing_ed25519::{Ed25519, PublicKey};
use pmr_primitives::{ValidatorAddress, B256};

/// A block height as malachite sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mt::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0 + n)
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address (see [`ValidatorAddress`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub ValidatorAddress);

impl Address {
    /// The address of an ed25519 consensus key: the last 20 bytes of its keccak256 hash.
    pub fn from_public_key(pk: &PublicKey) -> Self {
        Self(ValidatorAddress::from_public_key(pk.as_bytes()))
    }

    /// The 20 address bytes, as they are signed and encoded.
    pub fn as_bytes(&self) -> &[u8] {
        self.0 .0.as_slice()
    }

    /// An address from exactly 20 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 20] = bytes.try_into().ok()?;
        Some(Self(ValidatorAddress(arr.into())))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mt::Address for Address {}

/// The consensus value: the hash of a proposed block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHash(pub B256);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form for logs.
        write!(f, "{}", &self.0.to_string()[..12])
    }
}

impl mt::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

/// A member of the validator set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// The address derived from `public_key`; the set is sorted by it.
    pub address: Address,
    /// The ed25519 consensus key its votes and proposals are verified with.
    pub public_key: PublicKey,
    /// Weight of its votes; a decision needs more than 2/3 of the set's total.
    pub voting_power: u64,
    /// Human name from genesis, for logs and status.
    pub name: String,
}

impl mt::Validator<PmrContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> u64 {
        self.voting_power
    }
}

/// The validator set, sorted by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Builds a set; validators are sorted by address so every node indexes them alike.
    pub fn new(mut validators: Vec<Validator>) -> Self {
        validators.sort_by_key(|a| a.address);
        Self { validators }
    }

    /// The validators in address order: a validator's position here is its index for the engine and
    /// for proposer selection.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
}

impl mt::ValidatorSet<PmrContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> u64 {
        self.validators.iter().map(|v| v.voting_power).sum()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| &self.validators[i])
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// A proposal for a block hash at a height and round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height the block is proposed for.
    pub height: Height,
    /// Round of the proposal.
    pub round: Round,
    /// Hash of the proposed block; the block itself travels as [`ProposalPart`]s.
    pub value: BlockHash,
    /// Proof-of-lock round: the round in which more than 2/3 prevoted this value, when the proposer
    /// re-proposes it; `Round::Nil` for a new value.
    pub pol_round: Round,
    /// Address of the validator that proposes and signs it.
    pub proposer: Address,
}

impl mt::Proposal<PmrContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockHash {
        &self.value
    }

    fn take_value(self) -> BlockHash {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height voted at.
    pub height: Height,
    /// Round voted in.
    pub round: Round,
    /// The block hash voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// Address of the validator that signs the vote.
    pub validator: Address,
    /// A signed vote extension; this application never extends its votes.
    pub extension: Option<SignedExtension<PmrContext>>,
}

impl mt::Vote<PmrContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<PmrContext>> {
        self.extension.as_ref()
    }

    fn take_extension(&mut self) -> Option<SignedExtension<PmrContext>> {
        self.extension.take()
    }

    fn extend(self, extension: SignedExtension<PmrContext>) -> Self {
        Self {
            extension: Some(extension),
            ..self
        }
    }
}

/// A piece of a streamed proposal: `Init`, then the block bytes in `Data` chunks, then `Fin`
/// with the proposer's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalPart {
    /// Opens the stream with the proposal's fields other than its value.
    Init {
        /// Height of the proposal.
        height: Height,
        /// Round of the proposal.
        round: Round,
        /// Proof-of-lock round of the proposal (see [`Proposal::pol_round`]).
        pol_round: Round,
        /// Address of the proposer, whose signature closes the stream in `Fin`.
        proposer: Address,
    },
    /// A chunk of the encoded block, at most `part_size` bytes; the chunks in sequence order make
    /// the whole block.
    Data(bytes::Bytes),
    /// Closes the block data with the proposer's signature over the `Init` fields and the block's
    /// hash.
    Fin {
        /// ed25519 signature by the proposer over [`crate::signing::proposal_parts_sign_bytes`].
        signature: malachitebft_signing_ed25519::Signature,
    },
}

impl mt::ProposalPart<PmrContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init { .. })
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin { .. })
    }
}

/// The context handed to the engine.
#[derive(Clone, Debug, Default)]
pub struct PmrContext;

impl PmrContext {
    /// Round-robin over the address-sorted validator set, offset by height and round.
    pub fn proposer_index(count: usize, height: Height, round: Round) -> usize {
        let r = round.as_u32().unwrap_or(0) as u64;
        ((height.0.saturating_sub(1) + r) % count as u64) as usize
    }
}

impl mt::Context for PmrContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = bytes::Bytes;
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let idx = Self::proposer_index(validator_set.validators.len(), height, round);
        &validator_set.validators[idx]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }
}
