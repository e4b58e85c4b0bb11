//! The node's key files (mode 0600, refused when others can read them): its ed25519 node key,
//! an optional separate network key, and its custodian keystore (operator account and X25519
//! custody key), encrypted at rest under the node's key passphrase.

use std::path::Path;

use eyre::{bail, Context, Result};
use pmr_client::dev_account::{generate_dev_account, load_dev_account};
use pmr_client::secret_file::{read_secret_file, write_secret_file};
use pmr_client::Identity;
use pmr_consensus::PrivateKey;
use pmr_contract::Wallet;
use pmr_primitives::Address;
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

/// The passphrase of the node's custodian keystore: the PMR_KEY_PASSPHRASE variable, else the
/// file the config names (mode 0600), else none.
pub fn key_passphrase(home: &Home, file: Option<&Path>) -> Result<Option<String>> {
    if let Ok(p) = std::env::var("PMR_KEY_PASSPHRASE") {
        return Ok(Some(p));
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let bytes = read_secret_file(&home.resolve(file))?;
    let text =
        String::from_utf8(bytes).map_err(|_| eyre::eyre!("{} is not text", file.display()))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
}

/// Creates the node's custodian keystore (operator account + custody key), encrypted under
/// `passphrase`; returns the operator address and the custody public key.
pub fn generate_custodian(path: &Path, passphrase: &str) -> Result<(Address, X25519PublicKey)> {
    let id = Identity::generate();
    id.save(path, passphrase)?;
    Ok((id.address(), id.x25519_public()))
}

/// The operator address and custody public key of a custodian keystore (no passphrase).
pub fn custodian_public(path: &Path) -> Result<(Address, X25519PublicKey)> {
    Ok(Identity::peek_public(path)?)
}

/// Creates a secp256k1 account key file (plaintext: local testnets only).
pub fn generate_account(path: &Path) -> Result<Wallet> {
    Ok(generate_dev_account(path)?)
}

/// Loads a secp256k1 account key file.
pub fn load_account(path: &Path) -> Result<Wallet> {
    Ok(load_dev_account(path)?)
}

/// The custody key and operator account of the node in `home`, from its custodian keystore
/// when it has one (`pmr-custody` decides whether the node is a custodian and refuses a
/// mismatch). The keystore needs its passphrase; a node without one cannot start.
pub fn load_custodian_keys(
    home: &Home,
    passphrase_file: Option<&Path>,
) -> Result<(Option<X25519Secret>, Option<Wallet>)> {
    let path = home.custodian_keystore();
    if !path.exists() {
        return Ok((None, None));
    }
    read_secret_file(&path)?;
    let passphrase = key_passphrase(home, passphrase_file)?.ok_or_else(|| {
        eyre::eyre!(
            "{} is encrypted: give its passphrase in PMR_KEY_PASSPHRASE or in the file \
             `key_passphrase_file` of config.toml names",
            path.display()
        )
    })?;
    let id = Identity::load(&path, &passphrase)?;
    Ok((Some(id.x25519().clone()), Some(id.wallet().clone())))
}
