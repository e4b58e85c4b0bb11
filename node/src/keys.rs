//! Key files: JSON, created with mode 0600, refused when readable by others.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use eyre::{bail, Context, Result};
use pmr_consensus::PrivateKey;
use pmr_shares::{X25519PublicKey, X25519Secret};
use serde::{Deserialize, Serialize};

/// A 32-byte key file: the node's ed25519 key (its p2p identity and, for a validator, its
/// consensus key) or its X25519 custody key.
#[derive(Serialize, Deserialize)]
struct NodeKeyFile {
    /// `ed25519`.
    r#type: String,
    /// Hex of the 32-byte secret.
    secret: String,
    /// Hex of the public key, for reference.
    public_key: String,
}

/// Writes `contents` to a new file readable only by its owner.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).wrap_err_with(|| {
        format!(
            "cannot create key file {} (does it exist already?)",
            path.display()
        )
    })?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .wrap_err_with(|| format!("cannot read key file {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key file {} has permissions {:o}; it must be readable by its owner only: chmod 600 {}",
                path.display(),
                mode,
                path.display()
            );
        }
    }
    std::fs::read(path).wrap_err_with(|| format!("cannot read key file {}", path.display()))
}

/// Writes a 32-byte key file of `kind`.
fn write_key32(path: &Path, kind: &str, secret: &[u8; 32], public: &[u8; 32]) -> Result<()> {
    let file = NodeKeyFile {
        r#type: kind.into(),
        secret: hex::encode(secret),
        public_key: hex::encode(public),
    };
    write_secret_file(path, serde_json::to_string_pretty(&file)?.as_bytes())
}

/// Reads the secret of a 32-byte key file of `kind`.
fn read_key32(path: &Path, kind: &str) -> Result<[u8; 32]> {
    let bytes = read_secret_file(path)?;
    let file: NodeKeyFile = serde_json::from_slice(&bytes)
        .wrap_err_with(|| format!("key file {} is not a {kind} key file", path.display()))?;
    if file.r#type != kind {
        bail!(
            "key file {} holds a {} key, expected {kind}",
            path.display(),
            file.r#type
        );
    }
    hex::decode(&file.secret)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| eyre::eyre!("key file {} has a malformed secret", path.display()))
}

/// Creates a new random node key file.
pub fn generate_node_key(path: &Path) -> Result<PrivateKey> {
    let key = PrivateKey::generate(rand::rngs::OsRng);
    write_key32(
        path,
        "ed25519",
        &key.inner().to_bytes(),
        key.public_key().as_bytes(),
    )?;
    Ok(key)
}

/// Loads a node key file.
pub fn load_node_key(path: &Path) -> Result<PrivateKey> {
    Ok(PrivateKey::from(read_key32(path, "ed25519")?))
}

/// The libp2p identity of the node in `home`: `keys/network_key.json` when present (a node
/// whose p2p identity is not its validator key, e.g. a sentry or a rotated identity; its
/// peers must list its peer id), otherwise the one derived from the node key.
pub fn network_identity(
    home: &crate::config::Home,
    node_key: &PrivateKey,
) -> Result<libp2p::identity::Keypair> {
    let path = home.network_key();
    if path.exists() {
        let key = load_node_key(&path)?;
        tracing::info!(target: "pmr::node", file = %path.display(), "p2p identity from a separate network key");
        Ok(pmr_consensus::network_keypair(&key))
    } else {
        Ok(pmr_consensus::network_keypair(node_key))
    }
}

/// Creates a new random X25519 custody key file (the key custodian shares are sealed to);
/// returns its public key.
pub fn generate_custody_key(path: &Path) -> Result<X25519PublicKey> {
    let secret = X25519Secret::random_from_rng(rand::rngs::OsRng);
    let public = X25519PublicKey::from(&secret);
    write_key32(path, "x25519", &secret.to_bytes(), public.as_bytes())?;
    Ok(public)
}

/// Loads an X25519 custody key file.
pub fn load_custody_key(path: &Path) -> Result<X25519Secret> {
    Ok(X25519Secret::from(read_key32(path, "x25519")?))
}

/// The custody key and operator account of the node in `home`, each when its file exists
/// (`pmr-custody` decides whether the node is a custodian and refuses a mismatch).
pub fn load_custodian_keys(
    home: &crate::config::Home,
) -> Result<(Option<X25519Secret>, Option<pmr_contract::Wallet>)> {
    let custody = home
        .custody_key()
        .exists()
        .then(|| load_custody_key(&home.custody_key()))
        .transpose()?;
    let operator = home
        .operator_key()
        .exists()
        .then(|| crate::testnet::load_account(&home.operator_key()))
        .transpose()?;
    Ok((custody, operator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node_key.json");
        let key = generate_node_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(load_node_key(&path).unwrap().public_key(), key.public_key());
        // Never overwritten.
        assert!(generate_node_key(&path).is_err());
        // A custody key round-trips; the two kinds are not confused.
        let custody = dir.path().join("keys/custody_key.json");
        let public = generate_custody_key(&custody).unwrap();
        assert_eq!(
            X25519PublicKey::from(&load_custody_key(&custody).unwrap()),
            public
        );
        let err = match load_custody_key(&path) {
            Ok(_) => panic!("a node key loaded as a custody key"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("expected x25519"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_node_key(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
