//! Arguments several commands share: which nodes to talk to, and whose key signs.

use std::path::{Path, PathBuf};

use clap::Args;
use eyre::{bail, eyre, Context, Result};
use pmr_client::{Identity, Network, PmrClient, Wallet};

/// The development testnet's gRPC endpoints (`pmr dev`).
pub(crate) const DEV_RPC: &str =
    "http://127.0.0.1:26602,http://127.0.0.1:26612,http://127.0.0.1:26622,http://127.0.0.1:26632";

/// One node to talk to.
#[derive(Args, Clone)]
pub(crate) struct NodeArgs {
    /// gRPC endpoint of a node.
    #[arg(long, env = "PMR_RPC", default_value = "http://127.0.0.1:26602")]
    pub(crate) rpc: String,
}

impl NodeArgs {
    pub(crate) async fn connect(&self) -> Result<PmrClient> {
        Ok(PmrClient::connect(&self.rpc).await?)
    }
}

/// Nodes of a network to talk to.
#[derive(Args, Clone)]
pub(crate) struct NetArgs {
    /// gRPC endpoints, comma separated: transactions go to the first that answers, share
    /// releases to every custodian among them.
    #[arg(long, env = "PMR_RPC", value_delimiter = ',', default_value = DEV_RPC)]
    pub(crate) rpc: Vec<String>,
}

impl NetArgs {
    pub(crate) async fn connect(&self) -> Result<Network> {
        Ok(Network::connect(&self.rpc).await?)
    }
}

/// Whose key signs.
#[derive(Args, Clone)]
pub(crate) struct KeyArgs {
    /// Identity keystore (`pmr identity new`), or a plain development account file
    /// (`.pmr-dev/accounts/*.json`) for commands that only sign transactions.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// File holding the keystore passphrase (default: the PMR_PASSPHRASE variable).
    #[arg(long)]
    pub(crate) passphrase_file: Option<PathBuf>,
}

/// Signing material loaded from `--key`.
pub(crate) enum Signer {
    Identity(Identity),
    Plain(Wallet),
}

impl KeyArgs {
    /// Loads `--key`: a keystore (with its passphrase) or a plain development account file.
    pub(crate) fn load(&self) -> Result<Signer> {
        let text = std::fs::read_to_string(&self.key)
            .wrap_err_with(|| format!("cannot read key file {}", self.key.display()))?;
        if text.contains("\"ciphertext\"") {
            let pass = passphrase(self.passphrase_file.as_deref())?;
            Ok(Signer::Identity(Identity::load(&self.key, &pass)?))
        } else {
            Ok(Signer::Plain(pmr_client::dev_account::load_dev_account(
                &self.key,
            )?))
        }
    }

    /// Loads `--key`, which must be an identity keystore (it opens shares).
    pub(crate) fn identity(&self) -> Result<Identity> {
        match self.load()? {
            Signer::Identity(i) => Ok(i),
            Signer::Plain(_) => bail!(
                "{} is a plain development account: this command needs an identity keystore \
                 with an encryption key (`pmr identity new`)",
                self.key.display()
            ),
        }
    }

    /// Loads `--key`'s account.
    pub(crate) fn wallet(&self) -> Result<Wallet> {
        Ok(match self.load()? {
            Signer::Identity(i) => i.wallet().clone(),
            Signer::Plain(w) => w,
        })
    }
}

/// The passphrase in `file`, or else in the PMR_PASSPHRASE variable.
pub(crate) fn passphrase(file: Option<&Path>) -> Result<String> {
    match file {
        Some(f) => Ok(std::fs::read_to_string(f)
            .wrap_err_with(|| format!("cannot read passphrase file {}", f.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string()),
        None => std::env::var("PMR_PASSPHRASE")
            .map_err(|_| eyre!("no passphrase: set PMR_PASSPHRASE or pass --passphrase-file FILE")),
    }
}
