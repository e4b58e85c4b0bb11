//! `testnet.json`: what `pmr testnet init` created.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::HarnessError;

/// File name of the manifest in a testnet directory.
pub const MANIFEST_FILE: &str = "testnet.json";

/// One node of a testnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The node's name (e.g. `node0`).
    pub name: String,
    /// Home directory, relative to the testnet directory.
    pub home: PathBuf,
    /// gRPC endpoint, e.g. `https://127.0.0.1:26602`.
    pub rpc: String,
    /// Prometheus endpoint.
    pub metrics: String,
    /// Whether the node is a validator in the genesis.
    pub validator: bool,
}

/// A testnet directory's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The chain id of the testnet's genesis.
    pub chain_id: u64,
    /// The nodes, in index order.
    pub nodes: Vec<NodeEntry>,
    /// Development accounts (private key files), relative to the testnet directory.
    pub accounts: Vec<(String, PathBuf)>,
    /// The testnet CA's certificate (clients pin it), relative to the testnet directory.
    #[serde(default = "default_ca")]
    pub ca: PathBuf,
}

fn default_ca() -> PathBuf {
    PathBuf::from("ca.pem")
}

impl Manifest {
    /// Reads `testnet.json` from the testnet directory `dir`.
    pub fn load(dir: &Path) -> Result<Self, HarnessError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::Manifest {
            path: path.clone(),
            reason: format!(
                "{e} (run `pmr testnet init --home {}` first)",
                dir.display()
            ),
        })?;
        serde_json::from_str(&text).map_err(|e| HarnessError::Manifest {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `testnet.json` into `dir`, replacing any existing one.
    pub fn save(&self, dir: &Path) -> Result<(), HarnessError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| HarnessError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| HarnessError::Manifest {
            path,
            reason: e.to_string(),
        })
    }
}
