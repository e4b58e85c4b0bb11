//! Where a patient's record scan stopped, so that `pmr record list` reads only the
//! announcements minted since. The file says which tokens are the patient's (exactly what the
//! one-time owners hide), so it is sealed: XChaCha20-Poly1305 under a key derived from the
//! viewing key, mode 0600. A lost laptop's cache tells its finder nothing without the key file
//! and its passphrase; a cache that does not open (another key, another chain, tampered) is
//! ignored and the scan starts over. The sealed text is padded to a multiple of 4 KiB, so the
//! file's size does not tell how many records were found either.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use pmr_privacy::ViewingKey;

use crate::records::RecordSummary;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const CONTEXT: &str = "pmr record scan cache v1";
/// The sealed text is padded to a multiple of this.
const PAD: usize = 4096;

/// A finished scan of a chain's announcements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanState {
    /// The height the last scan read at.
    pub height: u64,
    /// The last token judged.
    pub last_token: u64,
    /// The patient's records found so far, as the scan that found each read it.
    pub found: Vec<RecordSummary>,
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
    let mut plain =
        zeroize::Zeroizing::new(serde_json::to_vec(state).map_err(std::io::Error::other)?);
    // JSON ignores trailing white space.
    let padded = plain.len().div_ceil(PAD) * PAD;
    plain.resize(padded, b' ');
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
    // A leftover temporary file would keep its own mode: start afresh.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
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
        let record = |t: u64| RecordSummary {
            token_id: alloy_primitives::U256::from(t),
            owner: alloy_primitives::Address::repeat_byte(t as u8),
            hospital: alloy_primitives::Address::repeat_byte(1),
            record_type: 7,
            versions: 1,
        };
        let state = ScanState {
            height: 9,
            last_token: 40,
            found: vec![record(3), record(31)],
        };
        let few = ScanState {
            found: vec![record(3)],
            ..state.clone()
        };
        save(&path, key.viewing_key(), b"chain-a", &few).unwrap();
        let one_record = std::fs::metadata(&path).unwrap().len();
        save(&path, key.viewing_key(), b"chain-a", &state).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len() as u64, one_record, "the size tells the count");
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
