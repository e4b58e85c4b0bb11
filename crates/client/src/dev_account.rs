//! Development account files: a secp256k1 key in plain JSON (mode 0600), for local testnets
//! only (`pmr testnet init` writes `accounts/admin.json`, `accounts/hospital.json`).

use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use pmr_contract::{Wallet, WalletError};
use serde::{Deserialize, Serialize};

use crate::secret_file::{read_secret_file, write_secret_file, SecretFileError};

/// Why an account file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AccountFileError {
    /// The file itself.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// Not an account file.
    #[error("{} is not an account key file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not a secp256k1 secret.
    #[error(transparent)]
    Key(#[from] WalletError),
}

#[derive(Serialize, Deserialize)]
struct AccountKeyFile {
    r#type: String,
    address: Address,
    secret: String,
    note: String,
}

/// Creates a new random account and writes its file.
pub fn generate_dev_account(path: &Path) -> Result<Wallet, AccountFileError> {
    let wallet = Wallet::random();
    let file = AccountKeyFile {
        r#type: "secp256k1".into(),
        address: wallet.address(),
        secret: wallet.to_hex(),
        note: "development key, stored unencrypted: never use it on a real network".into(),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| AccountFileError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_secret_file(path, json.as_bytes())?;
    Ok(wallet)
}

/// Loads an account file.
pub fn load_dev_account(path: &Path) -> Result<Wallet, AccountFileError> {
    let bytes = read_secret_file(path)?;
    let file: AccountKeyFile =
        serde_json::from_slice(&bytes).map_err(|e| AccountFileError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Wallet::from_hex(&file.secret)?)
}
