//! The node's key files (JSON, mode 0600, refused when others can read them): its ed25519
//! node key, an optional separate network key, its X25519 custody key, and its operator
//! account (a `pmr_client::dev_account` file).

use std::path::Path;

use eyre::{bail, Context, Result};
use pmr_client::dev_account::{generate_dev_account, load_dev_account};
use pmr_client::secret_file::{read_secret_file, write_secret_file};
use pmr_consensus::PrivateKey;
use pmr_contract::Wallet;
use pmr_shares::{X25519PublicKey, X25519Secret};
use serde::{Deserialize, Serialize};

use crate::config::Home;

/// A 32-byte key file: the node's ed25519 key (its p2p identity and, for a validator, its
/// consensus key) or its X25519 custody key.
#[derive(Serialize, Deserialize)]
struct NodeKeyFile {
    /// `ed25519` or `x25519`.
    r#type: String,
    /// Hex of the 32-byte secret.
    secret: String,
    /// Hex of the public key, for reference.
    public_key: String,
}

fn write_key32(path: &Path, kind: &str, secret: &[u8; 32], public: &[u8; 32]) -> Result<()> {
    let file = NodeKeyFile {
        r#type: kind.into(),
        secret: hex::encode(secret),
        public_key: hex::encode(public),
    };
    Ok(write_secret_file(
        path,
        serde_json::to_string_pretty(&file)?.as_bytes(),
    )?)
}

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
    let public = *key.public_key().as_bytes();
    write_key32(path, "ed25519", &key.inner().to_bytes(), &public)?;
    Ok(key)
}

/// Loads a node key file.
pub fn load_node_key(path: &Path) -> Result<PrivateKey> {
    Ok(PrivateKey::from(read_key32(path, "ed25519")?))
}

/// The libp2p identity of the node in `home`: `keys/network_key.json` when present (a node
/// whose p2p identity is not its validator key, e.g. a sentry or a rotated identity; its
/// peers must list its peer id), otherwise the one derived from the node key.
pub fn network_identity(home: &Home, node_key: &PrivateKey) -> Result<libp2p::identity::Keypair> {
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

/// Creates a secp256k1 account key file (plaintext: local testnets only).
pub fn generate_account(path: &Path) -> Result<Wallet> {
    Ok(generate_dev_account(path)?)
}

/// Loads a secp256k1 account key file.
pub fn load_account(path: &Path) -> Result<Wallet> {
    Ok(load_dev_account(path)?)
}

/// The custody key and operator account of the node in `home`, each when its file exists
/// (`pmr-custody` decides whether the node is a custodian and refuses a mismatch).
pub fn load_custodian_keys(home: &Home) -> Result<(Option<X25519Secret>, Option<Wallet>)> {
    let custody = home
        .custody_key()
        .exists()
        .then(|| load_custody_key(&home.custody_key()))
        .transpose()?;
    let operator = home
        .operator_key()
        .exists()
        .then(|| load_account(&home.operator_key()))
        .transpose()?;
    Ok((custody, operator))
}
