//! Where a patient's record scan stopped, so that `pmr record list` reads only the
//! announcements minted since. The file says which tokens are the patient's (exactly what the
//! one-time owners hide), so it is sealed: XChaCha20-Poly1305 under a key derived from the
//! viewing key, mode 0600. A lost laptop's cache tells its finder nothing without the key file
//! and its passphrase; a cache that does not open (another key, another chain, tampered) is
//! ignored and the scan starts over.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use pmr_privacy::ViewingKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const CONTEXT: &str = "pmr record scan cache v1";

/// A finished scan of a chain's announcements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanState {
    /// The height the last scan read at.
    pub height: u64,
    /// The last token judged.
    pub last_token: u64,
    /// The patient's tokens found so far, with their record types.
    pub found: Vec<(u64, u32)>,
}

fn cipher(key: &ViewingKey) -> XChaCha20Poly1305 {
    let k = zeroize::Zeroizing::new(blake3::derive_key(CONTEXT, &key.to_bytes()[..]));
    XChaCha20Poly1305::new((&*k).into())
}

/// The state sealed in `path` for `key` on the chain `genesis_hash`; `None` when there is no
/// file or it does not open with this key for this chain.
pub fn load(path: &Path, key: &ViewingKey, genesis_hash: &[u8]) -> Option<ScanState> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 24 {
        return None;
    }
    let (nonce, ct) = bytes.split_at(24);
    let plain = cipher(key)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: genesis_hash,
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Seals `state` into `path` (replacing it atomically, mode 0600).
pub fn save(
    path: &Path,
    key: &ViewingKey,
    genesis_hash: &[u8],
    state: &ScanState,
) -> std::io::Result<()> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(state).map_err(std::io::Error::other)?);
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher(key)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: genesis_hash,
            },
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension("scan.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&nonce)?;
        f.write_all(&ct)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_privacy::StealthKeys;

    #[test]
    fn a_cache_opens_only_with_its_key_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.scan");
        let key = StealthKeys::derive(&[1u8; 32].into()).unwrap();
        let other = StealthKeys::derive(&[2u8; 32].into()).unwrap();
        let state = ScanState {
            height: 9,
            last_token: 40,
            found: vec![(3, 7), (31, 2)],
        };
        save(&path, key.viewing_key(), b"chain-a", &state).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&raw).contains("found"),
            "the cache is not sealed"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&path, key.viewing_key(), b"chain-a"), Some(state));
        assert_eq!(load(&path, other.viewing_key(), b"chain-a"), None);
        assert_eq!(load(&path, key.viewing_key(), b"chain-b"), None);
        let mut tampered = raw;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        std::fs::write(&path, tampered).unwrap();
        assert_eq!(load(&path, key.viewing_key(), b"chain-a"), None);
    }
}
