//! Identity keystores: one passphrase-encrypted file per identity (hospital, patient, doctor),
//! holding its secp256k1 account key (signs transactions and release challenges) and its X25519
//! key (shares are sealed to it).
//!
//! File format (JSON, version 1): the 64 secret bytes `secp256k1 ‖ x25519` encrypted with
//! XChaCha20-Poly1305 under a key derived from the passphrase with scrypt (`log_n` 15, r 8,
//! p 1 by default: ~32 MiB, ~0.1 s); the address and the X25519 public key in clear as
//! associated data, so a file whose public half was edited does not open. Secrets never touch
//! the disk unencrypted; the file is written with mode 0600 and never overwritten.

use std::path::Path;

use alloy_primitives::{Address, B256};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use pmr_shares::{X25519PublicKey, X25519Secret};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use pmr_contract::Wallet;

use crate::secret_file::{write_secret_file, SecretFileError};

/// Keystore format version.
pub const KEYSTORE_VERSION: u32 = 1;
/// scrypt cost (log2 N) of new keystores.
pub const DEFAULT_LOG_N: u8 = 15;

/// Why a keystore could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The keystore file cannot be read (missing, or not readable).
    #[error("cannot read keystore {path}: {source}")]
    Read {
        /// The keystore file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The new keystore file cannot be written; an existing file is never replaced.
    #[error("cannot write keystore: {0} (keystores are never overwritten)")]
    Write(#[from] SecretFileError),
    /// The file is not valid keystore JSON, has an unknown version, KDF or cipher, or its
    /// contents are inconsistent.
    #[error("{path} is not a PMR identity keystore: {reason}")]
    Format {
        /// The keystore file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Decryption failed: the passphrase is wrong or the file was tampered with.
    #[error("wrong passphrase for {path} (or the file was altered)")]
    WrongPassphrase {
        /// The keystore file.
        path: String,
    },
    /// An empty passphrase was given when saving a keystore.
    #[error("the passphrase is empty: set one (PMR_PASSPHRASE or --passphrase-file)")]
    EmptyPassphrase,
    /// scrypt rejected its parameters or failed to derive the key.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// An identity: an account key and an X25519 sealing key.
pub struct Identity {
    wallet: Wallet,
    x25519: X25519Secret,
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    version: u32,
    /// The account address (clear, authenticated).
    address: Address,
    /// The X25519 public key, hex (clear, authenticated).
    x25519_public: String,
    kdf: String,
    log_n: u8,
    r: u32,
    p: u32,
    /// hex
    salt: String,
    cipher: String,
    /// hex, 24 bytes
    nonce: String,
    /// hex: 64 bytes of secrets + 16 bytes of tag
    ciphertext: String,
}

impl Identity {
    /// A new random identity.
    pub fn generate() -> Self {
        Identity {
            wallet: Wallet::random(),
            x25519: X25519Secret::random_from_rng(rand::rngs::OsRng),
        }
    }

    /// The account that signs transactions and challenges.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// The account address of this identity.
    pub fn address(&self) -> Address {
        self.wallet.address()
    }

    /// The X25519 secret shares are sealed to.
    pub fn x25519(&self) -> &X25519Secret {
        &self.x25519
    }

    /// The X25519 public key others seal shares to.
    pub fn x25519_public(&self) -> X25519PublicKey {
        X25519PublicKey::from(&self.x25519)
    }

    /// The X25519 public key as the contract stores it (`encryptionKey`).
    pub fn encryption_key(&self) -> B256 {
        B256::from(self.x25519_public().to_bytes())
    }

    /// The patient's ERC-5564 spending and viewing keys, derived from the account secret (a
    /// key file holds nothing more).
    pub fn stealth_keys(&self) -> Result<pmr_privacy::StealthKeys, pmr_privacy::StealthError> {
        pmr_privacy::StealthKeys::derive(&self.wallet.secret())
    }

    /// This identity acting as a one-time owner: `wallet` signs, the X25519 secret is this
    /// identity's (the patient's shares stay sealed to it).
    pub fn acting_as(&self, wallet: Wallet) -> Identity {
        Identity {
            wallet,
            x25519: self.x25519.clone(),
        }
    }

    /// This identity's account with a fresh random X25519 key: what a one-time owner asks its
    /// custodian shares to be sealed to, so that no custodian sees the patient's published key.
    pub fn with_fresh_sealing_key(&self) -> Identity {
        Identity {
            wallet: self.wallet.clone(),
            x25519: X25519Secret::random_from_rng(rand::rngs::OsRng),
        }
    }

    /// A secret for pseudonym commitments derived from this identity (only its holder can
    /// compute or open the commitment).
    pub fn pseudonym_secret(&self) -> pmr_privacy::PatientSecret {
        let secp = Zeroizing::new(self.wallet.secret().0);
        pmr_privacy::PatientSecret::from_bytes(blake3::derive_key(
            "pmr pseudonym secret v1",
            &secp[..],
        ))
    }

    /// Writes the identity encrypted under `passphrase` to a new file (mode 0600).
    pub fn save(&self, path: &Path, passphrase: &str) -> Result<(), KeystoreError> {
        self.save_with_cost(path, passphrase, DEFAULT_LOG_N)
    }

    /// [`Self::save`] with an explicit scrypt cost (tests use a low one).
    pub fn save_with_cost(
        &self,
        path: &Path,
        passphrase: &str,
        log_n: u8,
    ) -> Result<(), KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let (r, p) = (8, 1);
        let key = derive(passphrase, &salt, log_n, r, p)?;
        let mut secrets = Zeroizing::new(Vec::with_capacity(64));
        secrets.extend_from_slice(&Zeroizing::new(self.wallet.secret().0)[..]);
        secrets.extend_from_slice(&Zeroizing::new(self.x25519.to_bytes())[..]);
        let public = hex::encode(self.x25519_public().as_bytes());
        let aad = associated_data(self.address(), &public);
        let ciphertext = XChaCha20Poly1305::new((&*key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secrets,
                    aad: &aad,
                },
            )
            .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
        let file = KeystoreFile {
            version: KEYSTORE_VERSION,
            address: self.address(),
            x25519_public: public,
            kdf: "scrypt".into(),
            log_n,
            r,
            p,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| KeystoreError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(write_secret_file(path, json.as_bytes())?)
    }

    /// The address in a keystore file, without the passphrase.
    pub fn peek_address(path: &Path) -> Result<Address, KeystoreError> {
        Ok(read_file(path)?.address)
    }

    /// The address and the X25519 public key in a keystore file, without the passphrase.
    pub fn peek_public(path: &Path) -> Result<(Address, X25519PublicKey), KeystoreError> {
        let file = read_file(path)?;
        let public: [u8; 32] = hex::decode(&file.x25519_public)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeystoreError::Format {
                path: path.display().to_string(),
                reason: "the X25519 public key is not 32 bytes of hex".into(),
            })?;
        Ok((file.address, X25519PublicKey::from(public)))
    }

    /// Opens a keystore with its passphrase.
    pub fn load(path: &Path, passphrase: &str) -> Result<Self, KeystoreError> {
        let file = read_file(path)?;
        let p = path.display().to_string();
        let format = |reason: &str| KeystoreError::Format {
            path: p.clone(),
            reason: reason.into(),
        };
        if file.version != KEYSTORE_VERSION {
            return Err(format(&format!(
                "version {}; this build reads version {KEYSTORE_VERSION}",
                file.version
            )));
        }
        if file.kdf != "scrypt" || file.cipher != "xchacha20poly1305" {
            return Err(format("unknown kdf or cipher"));
        }
        if file.log_n > 18 || file.r > 8 || file.p > 4 {
            return Err(format("scrypt parameters out of range"));
        }
        let salt = hex::decode(&file.salt).map_err(|_| format("salt is not hex"))?;
        let nonce: [u8; 24] = hex::decode(&file.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| format("nonce is not 24 bytes of hex"))?;
        let ciphertext =
            hex::decode(&file.ciphertext).map_err(|_| format("ciphertext is not hex"))?;
        let key = derive(passphrase, &salt, file.log_n, file.r, file.p)?;
        let aad = associated_data(file.address, &file.x25519_public);
        let secrets = Zeroizing::new(
            XChaCha20Poly1305::new((&*key).into())
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassphrase { path: p.clone() })?,
        );
        if secrets.len() != 64 {
            return Err(format("secret payload is not 64 bytes"));
        }
        let wallet = Wallet::from_bytes(&B256::from_slice(&secrets[..32]))
            .map_err(|e| format(&e.to_string()))?;
        let mut x = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(&secrets[32..]);
        let identity = Identity {
            wallet,
            x25519: X25519Secret::from(*x),
        };
        if identity.address() != file.address
            || hex::encode(identity.x25519_public().as_bytes()) != file.x25519_public
        {
            return Err(format("the public keys do not match the secrets"));
        }
        Ok(identity)
    }
}

fn read_file(path: &Path) -> Result<KeystoreFile, KeystoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeystoreError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| KeystoreError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn associated_data(address: Address, x25519_public: &str) -> Vec<u8> {
    let mut aad = b"pmr keystore v1".to_vec();
    aad.extend_from_slice(address.as_slice());
    aad.extend_from_slice(x25519_public.as_bytes());
    aad
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, &mut key[..])
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_passphrase_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doctor.json");
        let id = Identity::generate();
        id.save_with_cost(&path, "correct horse", 10).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&id.wallet().to_hex()), "secret in clear");
        let back = Identity::load(&path, "correct horse").unwrap();
        assert_eq!(back.address(), id.address());
        assert_eq!(back.x25519_public(), id.x25519_public());
        assert_eq!(Identity::peek_address(&path).unwrap(), id.address());
        assert!(matches!(
            Identity::load(&path, "wrong"),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        // Never overwritten; empty passphrases refused.
        assert!(matches!(
            id.save_with_cost(&path, "x", 10),
            Err(KeystoreError::Write { .. })
        ));
        assert!(matches!(
            id.save_with_cost(&dir.path().join("b.json"), "", 10),
            Err(KeystoreError::EmptyPassphrase)
        ));
        // The public half is authenticated.
        let other = Identity::generate();
        let edited = text.replace(
            &hex::encode(id.x25519_public().as_bytes()),
            &hex::encode(other.x25519_public().as_bytes()),
        );
        let p2 = dir.path().join("edited.json");
        std::fs::write(&p2, edited).unwrap();
        assert!(matches!(
            Identity::load(&p2, "correct horse"),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
