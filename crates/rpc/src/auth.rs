//! Sessions: an on-chain account signs a node's challenge and gets a token, which later calls
//! carry as `authorization: Bearer <token>`.
//!
//! Nothing is stored per session. A challenge is `issued_at_ms (8) ‖ random (16) ‖ tag (16)`
//! and a token is `v1.<account hex>.<expires_at_ms>.<tag hex>`, each tag a keyed BLAKE3 of the
//! rest under the node's session key (derived from its node key, so sessions survive a
//! restart and no other node can mint them). Only challenges already used are remembered,
//! until they expire, so a signed login cannot be replayed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use parking_lot::Mutex;
use pmr_primitives::session::{verify_login, LoginError};
use rand::RngCore;

/// How long a challenge can be used after it was issued.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Bytes of a challenge.
pub const CHALLENGE_LEN: usize = 40;
/// Used challenges remembered at most (each needed a valid login signature to get here).
const MAX_USED: usize = 100_000;

/// Why a caller is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The call carries no `authorization` metadata.
    #[error(
        "this call needs a session: log in with AuthService.Login and send \
         `authorization: Bearer <token>` (the pmr CLI does with --account or --key, the SDK with ConnectOptions::account)"
    )]
    Missing,
    /// The token is not one this node issued, or was altered.
    #[error("the session token is not valid at this node: {0}; log in again")]
    BadToken(&'static str),
    /// The token's lifetime has passed.
    #[error("the session expired at {0} (unix ms); log in again")]
    Expired(u64),
    /// The challenge is not this node's, too old, or already used.
    #[error("bad login challenge: {0}; ask GetChallenge for a new one")]
    BadChallenge(&'static str),
    /// The signature does not prove the account.
    #[error(transparent)]
    Signature(#[from] LoginError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Issues and checks the sessions of one node.
pub struct Sessions {
    key: [u8; 32],
    chain_id: u64,
    used: Mutex<HashMap<[u8; CHALLENGE_LEN], u64>>,
}

impl Sessions {
    /// Sessions keyed by `secret` (the node's own key material) for `chain_id`.
    pub fn new(secret: &[u8], chain_id: u64) -> Self {
        Self {
            key: blake3::derive_key("pmr rpc session key v1", secret),
            chain_id,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The chain sessions are for.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn tag(&self, kind: &[u8], parts: &[&[u8]]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(kind);
        for p in parts {
            h.update(p);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// A new challenge.
    pub fn challenge(&self) -> [u8; CHALLENGE_LEN] {
        self.challenge_at(now_ms())
    }

    fn challenge_at(&self, now: u64) -> [u8; CHALLENGE_LEN] {
        let mut c = [0u8; CHALLENGE_LEN];
        c[..8].copy_from_slice(&now.to_be_bytes());
        rand::rngs::OsRng.fill_bytes(&mut c[8..24]);
        let tag = self.tag(b"challenge", &[&c[..24]]);
        c[24..].copy_from_slice(&tag);
        c
    }

    /// Checks a login (the challenge is this node's, fresh and unused; the signature is the
    /// account's) and returns a token and its expiry (unix ms).
    pub fn login(
        &self,
        account: Address,
        challenge: &[u8],
        signature: &[u8],
    ) -> Result<(String, u64), AuthError> {
        self.login_at(account, challenge, signature, now_ms())
    }

    fn login_at(
        &self,
        account: Address,
        challenge: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<(String, u64), AuthError> {
        let c: [u8; CHALLENGE_LEN] = challenge
            .try_into()
            .map_err(|_| AuthError::BadChallenge("not 40 bytes"))?;
        if self.tag(b"challenge", &[&c[..24]]) != c[24..] {
            return Err(AuthError::BadChallenge("not issued by this node"));
        }
        let issued = u64::from_be_bytes(c[..8].try_into().unwrap_or_default());
        let ttl = CHALLENGE_TTL.as_millis() as u64;
        if now > issued + ttl || issued > now + ttl {
            return Err(AuthError::BadChallenge("expired"));
        }
        verify_login(self.chain_id, &c, account, signature)?;
        {
            let mut used = self.used.lock();
            if used.len() >= MAX_USED {
                used.retain(|_, at| *at + ttl >= now);
            }
            if used.len() >= MAX_USED {
                return Err(AuthError::BadChallenge(
                    "too many logins at once; retry shortly",
                ));
            }
            if used.insert(c, issued).is_some() {
                return Err(AuthError::BadChallenge("already used"));
            }
        }
        let expires = now + SESSION_TTL.as_millis() as u64;
        let tag = self.tag(b"token", &[account.as_slice(), &expires.to_be_bytes()]);
        let token = format!(
            "v1.{}.{expires}.{}",
            hex::encode(account.as_slice()),
            hex::encode(tag)
        );
        Ok((token, expires))
    }

    /// The account a token was issued to, if it is this node's and has not expired.
    pub fn verify(&self, token: &str) -> Result<Address, AuthError> {
        self.verify_at(token, now_ms())
    }

    fn verify_at(&self, token: &str, now: u64) -> Result<Address, AuthError> {
        let mut parts = token.trim().split('.');
        let (Some("v1"), Some(account), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::BadToken("not a PMR session token"));
        };
        let account: [u8; 20] = hex::decode(account)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuthError::BadToken("malformed account"))?;
        let expires: u64 = expires
            .parse()
            .map_err(|_| AuthError::BadToken("malformed expiry"))?;
        let want = self.tag(b"token", &[&account, &expires.to_be_bytes()]);
        if hex::decode(tag).ok().as_deref() != Some(&want[..]) {
            return Err(AuthError::BadToken("its tag does not match"));
        }
        if now >= expires {
            return Err(AuthError::Expired(expires));
        }
        Ok(Address::from(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_contract::Wallet;
    use pmr_primitives::session::login_message;

    fn sign(w: &Wallet, chain: u64, c: &[u8]) -> Vec<u8> {
        w.sign_message(login_message(chain, c, w.address()).as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_signed_challenge_buys_a_token_once_and_nothing_else_does() {
        let s = Sessions::new(b"node key", 7);
        let w = Wallet::random();
        let c = s.challenge_at(1_000);
        let (token, expires) = s
            .login_at(w.address(), &c, &sign(&w, 7, &c), 2_000)
            .unwrap();
        assert_eq!(expires, 2_000 + SESSION_TTL.as_millis() as u64);
        assert_eq!(s.verify_at(&token, 3_000), Ok(w.address()));
        // Replayed, expired, from another chain, another node, another signer: refused.
        let replay = s.login_at(w.address(), &c, &sign(&w, 7, &c), 2_500);
        assert_eq!(replay, Err(AuthError::BadChallenge("already used")));
        let old = s.challenge_at(1_000);
        let late = s.login_at(w.address(), &old, &sign(&w, 7, &old), 70_000);
        assert_eq!(late, Err(AuthError::BadChallenge("expired")));
        let c2 = s.challenge_at(1_000);
        let other_chain = s.login_at(w.address(), &c2, &sign(&w, 8, &c2), 2_000);
        assert!(
            matches!(other_chain, Err(AuthError::Signature(_))),
            "{other_chain:?}"
        );
        let elsewhere = Sessions::new(b"another node", 7).challenge_at(1_000);
        let foreign = s.login_at(w.address(), &elsewhere, &sign(&w, 7, &elsewhere), 2_000);
        assert_eq!(
            foreign,
            Err(AuthError::BadChallenge("not issued by this node"))
        );
        let mallory = Wallet::random();
        let c3 = s.challenge_at(1_000);
        let stolen = s.login_at(w.address(), &c3, &sign(&mallory, 7, &c3), 2_000);
        assert!(matches!(
            stolen,
            Err(AuthError::Signature(LoginError::WrongSigner { .. }))
        ));
        // A token expires, and cannot be altered or carried to another node.
        assert_eq!(
            s.verify_at(&token, expires),
            Err(AuthError::Expired(expires))
        );
        let forged = token.replace(&hex::encode(w.address()), &hex::encode(mallory.address()));
        assert!(matches!(
            s.verify_at(&forged, 3_000),
            Err(AuthError::BadToken(_))
        ));
        let other = Sessions::new(b"another node", 7);
        assert!(matches!(
            other.verify_at(&token, 3_000),
            Err(AuthError::BadToken(_))
        ));
        assert!(matches!(
            s.verify_at("v1.zz", 3_000),
            Err(AuthError::BadToken(_))
        ));
    }
}
