//! Light-client checks: what anyone holding the genesis can verify about a committed block
//! without running a node. A commit certificate is valid when validators holding more than
//! two thirds of the voting power signed a precommit for exactly that block at that height and
//! round; a receipt is in a block when its Merkle proof leads to the header's receipts root and
//! the header hashes to the certified block hash.

use malachitebft_app_channel::app::types::core::{NilOrVal, Round, ValidatorSet as _, VoteType};
use malachitebft_signing_ed25519::Signature;
use pmr_execution::{verify_receipt, Receipt};
use pmr_primitives::{
    AuditProof, Block, Genesis, Header, MerkleProof, ProofEntry, AUDIT_PROOF_VERSION, B256, U256,
};

use crate::context::{Address, BlockHash, Height, ValidatorSet, Vote};
use crate::schedule::ValidatorSchedule;
use crate::signing::vote_sign_bytes;

/// Why a certificate or an inclusion proof does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The certificate decides another block than the one checked.
    #[error("the certificate is for block {certified}, not {expected}")]
    WrongBlock {
        /// The block hash the certificate decides.
        certified: B256,
        /// The block hash it was checked against.
        expected: B256,
    },
    /// The certificate is for another height than the one checked.
    #[error("the certificate is for height {certified}, not {expected}")]
    WrongHeight {
        /// The certificate's height.
        certified: u64,
        /// The height it was checked against.
        expected: u64,
    },
    /// A signature names an address (shown in hex) that is not in the validator set.
    #[error("signer {0} is not a validator of this network")]
    UnknownSigner(String),
    /// One validator's signature appears twice.
    #[error("validator {0} signed twice")]
    DuplicateSigner(String),
    /// A signature is not 64 bytes or does not verify as that validator's precommit for this block,
    /// height and round.
    #[error("the signature of validator {0} does not verify")]
    BadSignature(String),
    /// The signers together hold two thirds of the voting power or less.
    #[error("signers hold {signed} of {total} voting power; more than two thirds is needed")]
    NotEnoughPower {
        /// Voting power of the signers.
        signed: u128,
        /// Voting power of the whole validator set.
        total: u128,
    },
    /// The Merkle proof does not lead from the receipt, at its own index, to the header's receipts
    /// root.
    #[error("the receipt's Merkle proof does not lead to the header's receipts root")]
    BadReceiptProof,
    /// A proven validator-set change does not hold.
    #[error("validator-set change: {0}")]
    BadSetChange(String),
    /// The receipt bytes are not exactly one RLP-encoded receipt.
    #[error("the receipt does not decode: {0}")]
    MalformedReceipt(String),
    /// The receipt belongs to another transaction.
    #[error("the receipt is for transaction {got}, not {expected}")]
    WrongTransaction {
        /// The receipt's transaction.
        got: B256,
        /// The transaction asked about.
        expected: B256,
    },
    /// No validator set can be built from the genesis: a validator's consensus key is malformed.
    #[error("the genesis validator set is invalid: {0}")]
    BadGenesis(String),
    /// The header given is not that of the block the certificate decides.
    #[error("the header does not hash to the certified block hash")]
    HeaderMismatch,
}

/// One signature of a commit certificate, as the gRPC API returns it.
#[derive(Clone, Debug)]
pub struct CommitSignature {
    /// The validator's 20-byte address.
    pub validator: Vec<u8>,
    /// ed25519 signature over the validator's precommit.
    pub signature: Vec<u8>,
}

/// A commit certificate: the precommits that decided `block_hash` at `height` in `round`.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The decided height.
    pub height: u64,
    /// The round the precommits were cast in.
    pub round: u32,
    /// The hash of the decided block.
    pub block_hash: B256,
    /// One precommit signature per signing validator.
    pub signatures: Vec<CommitSignature>,
}

/// Checks that `cert` decides `block_hash` at `height`: every signer is a distinct validator of
/// `validators` with a valid precommit signature, and together they hold more than two thirds
/// of the voting power. Returns the signed voting power.
pub fn verify_certificate(
    chain_id: u64,
    validators: &ValidatorSet,
    cert: &Certificate,
    height: u64,
    block_hash: B256,
) -> Result<u128, VerifyError> {
    if cert.block_hash != block_hash {
        return Err(VerifyError::WrongBlock {
            certified: cert.block_hash,
            expected: block_hash,
        });
    }
    if cert.height != height {
        return Err(VerifyError::WrongHeight {
            certified: cert.height,
            expected: height,
        });
    }
    // u128: voting powers come from the genesis and their sum must not wrap.
    let total: u128 = validators
        .validators()
        .iter()
        .map(|v| u128::from(v.voting_power))
        .sum();
    let mut seen = std::collections::HashSet::new();
    let mut signed = 0u128;
    for s in &cert.signatures {
        let shown = format!("0x{}", hex_of(&s.validator));
        let address = Address::from_slice(&s.validator)
            .ok_or_else(|| VerifyError::UnknownSigner(shown.clone()))?;
        let validator = validators
            .get_by_address(&address)
            .ok_or_else(|| VerifyError::UnknownSigner(shown.clone()))?;
        if !seen.insert(address) {
            return Err(VerifyError::DuplicateSigner(shown));
        }
        let bytes: [u8; 64] = s
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::BadSignature(shown.clone()))?;
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: Height(height),
            round: Round::new(cert.round),
            value: NilOrVal::Val(BlockHash(block_hash)),
            validator: address,
            extension: None,
        };
        validator
            .public_key
            .verify(
                &vote_sign_bytes(chain_id, &vote),
                &Signature::from_bytes(bytes),
            )
            .map_err(|_| VerifyError::BadSignature(shown))?;
        signed += u128::from(validator.voting_power);
    }
    if signed * 3 <= total * 2 {
        return Err(VerifyError::NotEnoughPower { signed, total });
    }
    Ok(signed)
}

/// Checks that `receipt_encoded` is the receipt of transaction `tx_hash` at the position its
/// proof names, in the block whose `header` the certificate decides, against the validator set
/// of `genesis`. Returns the decoded receipt.
pub fn verify_receipt_inclusion(
    genesis: &Genesis,
    tx_hash: B256,
    receipt_encoded: &[u8],
    proof: &MerkleProof,
    header: &Header,
    cert: &Certificate,
) -> Result<Receipt, VerifyError> {
    let validators = crate::engine::validator_set(genesis)
        .map_err(|e| VerifyError::BadGenesis(e.to_string()))?;
    verify_receipt_in_certified_block(
        genesis.chain_id,
        &validators,
        tx_hash,
        receipt_encoded,
        proof,
        header,
        cert,
    )
}

/// [`verify_receipt_inclusion`] against `validators`, the set of the header's height.
pub fn verify_receipt_in_certified_block(
    chain_id: u64,
    validators: &ValidatorSet,
    tx_hash: B256,
    receipt_encoded: &[u8],
    proof: &MerkleProof,
    header: &Header,
    cert: &Certificate,
) -> Result<Receipt, VerifyError> {
    let mut bytes = receipt_encoded;
    let receipt = <Receipt as alloy_rlp::Decodable>::decode(&mut bytes)
        .map_err(|e| VerifyError::MalformedReceipt(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(VerifyError::MalformedReceipt("trailing bytes".into()));
    }
    if receipt.tx_hash != tx_hash {
        return Err(VerifyError::WrongTransaction {
            got: receipt.tx_hash,
            expected: tx_hash,
        });
    }
    // Binds the proof's position to the receipt's own index, and hashes the canonical encoding.
    if !verify_receipt(&header.receipts_root, &receipt, proof) {
        return Err(VerifyError::BadReceiptProof);
    }
    let hash = header.hash();
    if hash != cert.block_hash {
        return Err(VerifyError::HeaderMismatch);
    }
    verify_certificate(chain_id, validators, cert, header.height, hash)?;
    Ok(receipt)
}

/// The parts of one audit-proof entry: its block, the block's certificate, the receipt's Merkle
/// proof and the receipt's bytes.
pub fn decode_proof_entry(
    e: &ProofEntry,
) -> Result<(Block, Certificate, MerkleProof, Vec<u8>), String> {
    let unhex = |what: &str, h: &str| hex::decode(h).map_err(|_| format!("{what} hex"));
    let block =
        Block::decode_checked(&unhex("block", &e.block)?).map_err(|err| format!("block: {err}"))?;
    let mut signatures = Vec::with_capacity(e.cert_signatures.len());
    for (v, sig) in &e.cert_signatures {
        signatures.push(CommitSignature {
            validator: unhex("signature", v)?,
            signature: unhex("signature", sig)?,
        });
    }
    let cert = Certificate {
        height: e.cert_height,
        round: e.cert_round,
        block_hash: e.cert_block_hash,
        signatures,
    };
    let merkle = MerkleProof {
        index: e.proof_index,
        count: e.proof_count,
        siblings: e.proof_siblings.clone(),
    };
    Ok((block, cert, merkle, unhex("receipt", &e.receipt)?))
}

/// Why an audit proof file does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditProofError {
    /// Another format version.
    #[error(
        "the proof file is format version {0}; this pmr checks version {AUDIT_PROOF_VERSION} \
         only (version 1 proved receipts with a keccak tree that chains no longer use): export \
         it again with `pmr audit --proof` from a node of a current chain"
    )]
    Version(u32),
    /// Made for another chain.
    #[error("the proof is for chain {chain_id} (genesis {genesis_hash}); this genesis is chain {genesis_chain} ({genesis})")]
    WrongChain {
        /// The proof's chain.
        chain_id: u64,
        /// The proof's genesis hash.
        genesis_hash: B256,
        /// The genesis's chain.
        genesis_chain: u64,
        /// The genesis's hash.
        genesis: B256,
    },
    /// About another token.
    #[error("the proof is for token {proof}, not token {asked}")]
    WrongToken {
        /// The proof's token.
        proof: U256,
        /// The token asked about.
        asked: U256,
    },
    /// The validator-set changes the file carries do not verify.
    #[error("the proof's validator-set changes do not verify: {0}")]
    ValidatorChanges(VerifyError),
    /// One entry does not verify.
    #[error("entry {index} (tx {tx}): {reason}")]
    Entry {
        /// The entry's position.
        index: usize,
        /// Its transaction.
        tx: B256,
        /// What is wrong.
        reason: String,
    },
}

/// Checks an audit proof of `token` against `genesis`, offline: every entry's receipt is in a
/// block whose header hashes to a block that more than 2/3 of the validators of its height
/// signed: the genesis set, or one the file's validator-set changes prove from it (see
/// [`ValidatorSchedule::from_proofs`]).
/// Returns each entry's block height and receipt, in the file's order. It proves that each
/// receipt is in a certified block; it cannot prove that the file lists every event of the
/// token.
pub fn verify_audit_proof(
    proof: &AuditProof,
    genesis: &Genesis,
    token: U256,
) -> Result<Vec<(u64, Receipt)>, AuditProofError> {
    if proof.version != AUDIT_PROOF_VERSION {
        return Err(AuditProofError::Version(proof.version));
    }
    if proof.genesis_hash != genesis.hash() || proof.chain_id != genesis.chain_id {
        return Err(AuditProofError::WrongChain {
            chain_id: proof.chain_id,
            genesis_hash: proof.genesis_hash,
            genesis_chain: genesis.chain_id,
            genesis: genesis.hash(),
        });
    }
    if proof.token_id != token {
        return Err(AuditProofError::WrongToken {
            proof: proof.token_id,
            asked: token,
        });
    }
    let schedule = ValidatorSchedule::from_entries(genesis, &proof.validator_changes)
        .map_err(AuditProofError::ValidatorChanges)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, e) in proof.entries.iter().enumerate() {
        let bad = |reason: String| AuditProofError::Entry {
            index,
            tx: e.tx_hash,
            reason,
        };
        if !seen.insert(e.tx_hash) {
            return Err(bad("repeats this transaction".into()));
        }
        let (block, cert, merkle, receipt) = decode_proof_entry(e).map_err(bad)?;
        let receipt = verify_receipt_in_certified_block(
            genesis.chain_id,
            &schedule.at(block.header.height),
            e.tx_hash,
            &receipt,
            &merkle,
            &block.header,
            &cert,
        )
        .map_err(|err| bad(format!("does not verify: {err}")))?;
        out.push((block.header.height, receipt));
    }
    Ok(out)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Validator;
    use crate::signing::PmrSigner;
    use malachitebft_signing_ed25519::PrivateKey;

    const CHAIN: u64 = 77;

    fn keys(n: u8) -> Vec<PmrSigner> {
        (1..=n)
            .map(|i| PmrSigner::new(PrivateKey::from([i; 32]), CHAIN))
            .collect()
    }

    fn set(signers: &[PmrSigner]) -> ValidatorSet {
        ValidatorSet::new(
            signers
                .iter()
                .enumerate()
                .map(|(i, s)| Validator {
                    address: s.address(),
                    public_key: s.public_key(),
                    voting_power: 1,
                    name: format!("v{i}"),
                })
                .collect(),
        )
    }

    fn cert(signers: &[PmrSigner], height: u64, round: u32, hash: B256) -> Certificate {
        let signatures = signers
            .iter()
            .map(|s| {
                let vote = Vote {
                    vote_type: VoteType::Precommit,
                    height: Height(height),
                    round: Round::new(round),
                    value: NilOrVal::Val(BlockHash(hash)),
                    validator: s.address(),
                    extension: None,
                };
                CommitSignature {
                    validator: s.address().as_bytes().to_vec(),
                    signature: s
                        .sign_bytes(&vote_sign_bytes(CHAIN, &vote))
                        .to_bytes()
                        .to_vec(),
                }
            })
            .collect();
        Certificate {
            height,
            round,
            block_hash: hash,
            signatures,
        }
    }

    #[test]
    fn three_of_four_verify_two_do_not() {
        let k = keys(4);
        let vs = set(&k);
        let hash = B256::repeat_byte(9);
        assert_eq!(
            verify_certificate(CHAIN, &vs, &cert(&k[..3], 5, 1, hash), 5, hash),
            Ok(3)
        );
        assert_eq!(
            verify_certificate(CHAIN, &vs, &cert(&k[..2], 5, 1, hash), 5, hash),
            Err(VerifyError::NotEnoughPower {
                signed: 2,
                total: 4
            })
        );
    }

    #[test]
    fn huge_voting_powers_do_not_wrap() {
        let k = keys(4);
        let vs = ValidatorSet::new(
            k.iter()
                .map(|s| Validator {
                    address: s.address(),
                    public_key: s.public_key(),
                    voting_power: 1 << 62,
                    name: "v".into(),
                })
                .collect(),
        );
        let hash = B256::repeat_byte(9);
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &cert(&k[..1], 5, 1, hash), 5, hash),
            Err(VerifyError::NotEnoughPower { .. })
        ));
        assert!(verify_certificate(CHAIN, &vs, &cert(&k[..3], 5, 1, hash), 5, hash).is_ok());
    }

    #[test]
    fn forgeries_are_refused() {
        let k = keys(4);
        let vs = set(&k);
        let hash = B256::repeat_byte(9);
        let good = cert(&k[..3], 5, 1, hash);

        // Another block, height, round or chain: the signatures no longer match.
        let other = B256::repeat_byte(8);
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &good, 5, other),
            Err(VerifyError::WrongBlock { .. })
        ));
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &good, 6, hash),
            Err(VerifyError::WrongHeight { .. })
        ));
        let mut wrong_round = good.clone();
        wrong_round.round = 2;
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &wrong_round, 5, hash),
            Err(VerifyError::BadSignature(_))
        ));
        assert!(matches!(
            verify_certificate(CHAIN + 1, &vs, &good, 5, hash),
            Err(VerifyError::BadSignature(_))
        ));

        // A flipped bit, a repeated signer, a stranger.
        let mut flipped = good.clone();
        flipped.signatures[1].signature[10] ^= 1;
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &flipped, 5, hash),
            Err(VerifyError::BadSignature(_))
        ));
        let mut twice = cert(&k[..2], 5, 1, hash);
        twice.signatures.push(twice.signatures[0].clone());
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &twice, 5, hash),
            Err(VerifyError::DuplicateSigner(_))
        ));
        let stranger = keys(5);
        let mut outsider = cert(&k[..2], 5, 1, hash);
        outsider
            .signatures
            .extend(cert(&stranger[4..], 5, 1, hash).signatures);
        assert!(matches!(
            verify_certificate(CHAIN, &vs, &outsider, 5, hash),
            Err(VerifyError::UnknownSigner(_))
        ));
    }
}
