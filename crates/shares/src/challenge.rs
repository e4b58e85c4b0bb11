//! The release challenge a grantee signs to ask a custodian for its share.
//!
//! The grantee signs [`ReleaseChallenge::signing_hash`] with its secp256k1 Ethereum key as an
//! EIP-191 `personal_sign` message (the 32 hash bytes are the message), so any Ethereum wallet or
//! `alloy` signer (`Signer::sign_message(hash.as_slice())`) can produce the signature. The
//! custodian recovers the signer and checks it is the named grantee; freshness of `issued_at_ms`
//! and replay of `nonce` are the node's to check (it keeps the nonces it has seen).

use alloy_primitives::{eip191_hash_message, keccak256, Address, Signature, B256, U256};
use k256::ecdsa::SigningKey;
use rand_core::{CryptoRng, RngCore};

use crate::ShareError;

/// Domain prefix hashed in front of the challenge bytes.
pub const CHALLENGE_DOMAIN: &[u8] = b"PMR share release challenge";
/// Encoding version of [`ReleaseChallenge::to_bytes`].
pub const CHALLENGE_VERSION: u8 = 2;
/// Length of [`ReleaseChallenge::to_bytes`].
pub const CHALLENGE_LEN: usize = 1 + 8 + 20 + 32 + 20 + 32 + 8 + 32;

/// What a grantee signs to obtain custodian `custodian`'s share of token `token_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReleaseChallenge {
    /// Chain id of the network.
    pub chain_id: u64,
    /// Address of the custodian asked.
    pub custodian: Address,
    /// The record token.
    pub token_id: U256,
    /// The grantee's Ethereum address (the expected signer).
    pub grantee: Address,
    /// Fresh random nonce (the node rejects a nonce it has seen).
    pub nonce: B256,
    /// When the challenge was made, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// The X25519 public key the share is to be sealed to, for a record's one-time owner
    /// (which has no encryption key on-chain: nothing links it to its patient's); zero for a
    /// grantee, whose share is sealed to its published key.
    pub reply_key: B256,
}

impl ReleaseChallenge {
    /// A challenge with a fresh random nonce.
    pub fn new<R: RngCore + CryptoRng>(
        chain_id: u64,
        custodian: Address,
        token_id: U256,
        grantee: Address,
        issued_at_ms: u64,
        rng: &mut R,
    ) -> Self {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        ReleaseChallenge {
            chain_id,
            custodian,
            token_id,
            grantee,
            nonce: B256::from(nonce),
            issued_at_ms,
            reply_key: B256::ZERO,
        }
    }

    /// This challenge asking for the share sealed to `key` (a one-time owner's request).
    pub fn with_reply_key(self, key: B256) -> Self {
        Self {
            reply_key: key,
            ..self
        }
    }

    /// Canonical bytes: `version (1) ‖ chain_id (8 BE) ‖ custodian (20) ‖ token_id (32 BE) ‖
    /// grantee (20) ‖ nonce (32) ‖ issued_at_ms (8 BE) ‖ reply_key (32)`.
    pub fn to_bytes(&self) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        out[0] = CHALLENGE_VERSION;
        out[1..9].copy_from_slice(&self.chain_id.to_be_bytes());
        out[9..29].copy_from_slice(self.custodian.as_slice());
        out[29..61].copy_from_slice(&self.token_id.to_be_bytes::<32>());
        out[61..81].copy_from_slice(self.grantee.as_slice());
        out[81..113].copy_from_slice(self.nonce.as_slice());
        out[113..121].copy_from_slice(&self.issued_at_ms.to_be_bytes());
        out[121..].copy_from_slice(self.reply_key.as_slice());
        out
    }

    /// Parses [`Self::to_bytes`]; exactly [`CHALLENGE_LEN`] bytes of a known version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShareError> {
        let b: &[u8; CHALLENGE_LEN] = bytes.try_into().map_err(|_| {
            ShareError::BadChallenge(format!(
                "{} bytes; a version {CHALLENGE_VERSION} challenge is {CHALLENGE_LEN} bytes",
                bytes.len()
            ))
        })?;
        if b[0] != CHALLENGE_VERSION {
            return Err(ShareError::BadChallenge(format!(
                "unknown version {}; this build reads version {CHALLENGE_VERSION}",
                b[0]
            )));
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(a)
        };
        Ok(ReleaseChallenge {
            chain_id: u64_at(1),
            custodian: Address::from_slice(&b[9..29]),
            token_id: U256::from_be_slice(&b[29..61]),
            grantee: Address::from_slice(&b[61..81]),
            nonce: B256::from_slice(&b[81..113]),
            issued_at_ms: u64_at(113),
            reply_key: B256::from_slice(&b[121..153]),
        })
    }

    /// `keccak256(CHALLENGE_DOMAIN ‖ to_bytes())`: the 32 bytes the grantee personal-signs.
    pub fn signing_hash(&self) -> B256 {
        let mut buf = Vec::with_capacity(CHALLENGE_DOMAIN.len() + CHALLENGE_LEN);
        buf.extend_from_slice(CHALLENGE_DOMAIN);
        buf.extend_from_slice(&self.to_bytes());
        keccak256(buf)
    }

    /// The EIP-191 digest actually signed: `keccak256("\x19Ethereum Signed Message:\n32" ‖
    /// signing_hash)`.
    pub fn eip191_digest(&self) -> B256 {
        eip191_hash_message(self.signing_hash())
    }

    /// Signs as the grantee would (EIP-191 over the signing hash); 65 bytes `r ‖ s ‖ v`, `v` ∈
    /// {27, 28}. For CLIs and tests holding a raw secp256k1 key.
    pub fn sign(&self, key: &SigningKey) -> Result<[u8; 65], ShareError> {
        sign_digest(key, &self.eip191_digest())
    }

    /// Recovers the signer of `signature` (65 bytes `r ‖ s ‖ v`, `v` ∈ {0, 1, 27, 28}) and
    /// checks it is [`Self::grantee`]. High-s (malleable) signatures are refused.
    pub fn verify(&self, signature: &[u8]) -> Result<Address, ShareError> {
        let recovered = recover_signer(signature, &self.eip191_digest())?;
        if recovered != self.grantee {
            return Err(ShareError::SignerMismatch {
                expected: self.grantee,
                recovered,
            });
        }
        Ok(recovered)
    }

    /// Checks `issued_at_ms` against `now_ms`: at most `max_age_ms` old and at most
    /// `max_future_skew_ms` in the future.
    pub fn check_fresh(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_future_skew_ms: u64,
    ) -> Result<(), ShareError> {
        check_fresh(self.issued_at_ms, now_ms, max_age_ms, max_future_skew_ms)
    }
}

/// Signs `digest` (an EIP-191 digest) with `key`: 65 bytes `r ‖ s ‖ v`, `v` ∈ {27, 28}.
pub(crate) fn sign_digest(key: &SigningKey, digest: &B256) -> Result<[u8; 65], ShareError> {
    let (sig, recid) = key
        .sign_prehash_recoverable(digest.as_slice())
        .map_err(|e| ShareError::BadSignature(format!("signing failed: {e}")))?;
    let sig = Signature::from_signature_and_parity(sig, recid.is_y_odd());
    // k256 signatures are low-s already; normalize defensively (flips the parity with s).
    Ok(sig.normalized_s().as_bytes())
}

/// Recovers the address that signed `digest`: 65 bytes `r ‖ s ‖ v`, `v` ∈ {0, 1, 27, 28};
/// high-s (malleable) signatures are refused.
pub(crate) fn recover_signer(signature: &[u8], digest: &B256) -> Result<Address, ShareError> {
    let raw: &[u8; 65] = signature.try_into().map_err(|_| {
        ShareError::BadSignature(format!(
            "{} bytes; expected 65 (r ‖ s ‖ v)",
            signature.len()
        ))
    })?;
    if !matches!(raw[64], 0 | 1 | 27 | 28) {
        return Err(ShareError::BadSignature(format!(
            "v = {}; expected 0, 1, 27 or 28",
            raw[64]
        )));
    }
    let sig =
        Signature::from_raw_array(raw).map_err(|e| ShareError::BadSignature(e.to_string()))?;
    if sig.normalize_s().is_some() {
        return Err(ShareError::BadSignature(
            "high-s signature (malleable); sign with a low-s signer".into(),
        ));
    }
    sig.recover_address_from_prehash(digest)
        .map_err(|e| ShareError::BadSignature(format!("does not recover: {e}")))
}

/// `issued_at_ms` is at most `max_age_ms` before `now_ms` and at most `max_future_skew_ms` after.
pub(crate) fn check_fresh(
    issued_at_ms: u64,
    now_ms: u64,
    max_age_ms: u64,
    max_future_skew_ms: u64,
) -> Result<(), ShareError> {
    if issued_at_ms > now_ms {
        let ahead_ms = issued_at_ms - now_ms;
        if ahead_ms > max_future_skew_ms {
            return Err(ShareError::ChallengeFromFuture {
                ahead_ms,
                max_skew_ms: max_future_skew_ms,
            });
        }
        return Ok(());
    }
    let age_ms = now_ms - issued_at_ms;
    if age_ms > max_age_ms {
        return Err(ShareError::ChallengeExpired { age_ms, max_age_ms });
    }
    Ok(())
}
