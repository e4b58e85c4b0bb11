//! Signing in to a node: the message an account signs (EIP-191 `personal_sign`) to exchange a
//! node's login challenge for a session token. The text names its purpose, the chain, the
//! account and the node's challenge, so a signature made for one node cannot log in at
//! another, nor be mistaken for a transaction.

use alloy_primitives::{eip191_hash_message, Address, Signature};

/// First line of every login message.
pub const LOGIN_DOMAIN: &str = "PMR login v1";

/// Why a login signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Not 65 bytes `r ‖ s ‖ v` with `v` in {0, 1, 27, 28}, or a high-s signature.
    #[error("malformed login signature: {0}")]
    Malformed(String),
    /// The signature recovers to another account than the one claimed.
    #[error("the login is signed by {recovered}, not by {claimed}")]
    WrongSigner {
        /// The account the request names.
        claimed: Address,
        /// The account the signature recovers to.
        recovered: Address,
    },
}

/// The text `account` signs to log in at a node of `chain_id` that issued `challenge`.
pub fn login_message(chain_id: u64, challenge: &[u8], account: Address) -> String {
    format!(
        "{LOGIN_DOMAIN}\nchain {chain_id}\naccount {account}\nchallenge {}",
        alloy_primitives::hex::encode(challenge)
    )
}

/// Checks that `signature` is `account`'s EIP-191 signature of [`login_message`].
pub fn verify_login(
    chain_id: u64,
    challenge: &[u8],
    account: Address,
    signature: &[u8],
) -> Result<(), LoginError> {
    let raw: &[u8; 65] = signature
        .try_into()
        .map_err(|_| LoginError::Malformed(format!("{} bytes; expected 65", signature.len())))?;
    if !matches!(raw[64], 0 | 1 | 27 | 28) {
        return Err(LoginError::Malformed(format!("v = {}", raw[64])));
    }
    let sig = Signature::from_raw_array(raw).map_err(|e| LoginError::Malformed(e.to_string()))?;
    if sig.normalize_s().is_some() {
        return Err(LoginError::Malformed("high-s signature".into()));
    }
    let digest = eip191_hash_message(login_message(chain_id, challenge, account));
    let recovered = sig
        .recover_address_from_prehash(&digest)
        .map_err(|e| LoginError::Malformed(e.to_string()))?;
    if recovered != account {
        return Err(LoginError::WrongSigner {
            claimed: account,
            recovered,
        });
    }
    Ok(())
}
