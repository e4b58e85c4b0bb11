//! Arguments several commands share: which nodes to talk to and how, and whose key signs.

use std::path::{Path, PathBuf};

use clap::Args;
use eyre::{bail, eyre, Context, Result};
use pmr_client::dev_account::load_dev_account;
use pmr_client::{ConnectOptions, Identity, Network, PmrClient, Wallet};
use pmr_primitives::Genesis;

/// The development testnet's gRPC endpoints (`pmr dev`).
pub(crate) const DEV_RPC: &str =
    "https://127.0.0.1:26602,https://127.0.0.1:26612,https://127.0.0.1:26622,https://127.0.0.1:26632";
/// Where `pmr dev` leaves the CA certificate, the genesis and the accounts.
const DEV_HOME: &str = ".pmr-dev";

/// How to reach nodes: the network's CA, and the account calls are made as.
#[derive(Args, Clone)]
pub(crate) struct ConnArgs {
    /// The network's CA certificate (PEM) that nodes' certificates must chain to.
    #[arg(long, env = "PMR_CA", default_value = ".pmr-dev/ca.pem")]
    pub(crate) ca: PathBuf,
    /// Talk plaintext http:// instead of TLS: anyone on the path can then read every answer and
    /// rewrite the keys record shares are sealed to. For a node of your own on this machine.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// The account to call as (a keystore or a development account file); commands that sign
    /// with --key call as that key's account unless this is given.
    #[arg(long = "account", id = "call_as", env = "PMR_ACCOUNT")]
    pub(crate) account: Option<PathBuf>,
}

impl ConnArgs {
    /// Connection options, calling as `signer` unless `--account` names another account.
    pub(crate) fn options(&self, signer: Option<&Wallet>) -> Result<ConnectOptions> {
        let ca_pem = match std::fs::read(&self.ca) {
            Ok(ca) => Some(ca),
            Err(_) if self.insecure => None,
            Err(e) => bail!(
                "cannot read the network's CA certificate {}: {e} (pass --ca FILE or set PMR_CA; \
                 `pmr dev` writes {DEV_HOME}/ca.pem)",
                self.ca.display()
            ),
        };
        let account = match &self.account {
            Some(path) => Some(load_signer(path, None)?.wallet().clone()),
            None => signer.cloned(),
        };
        Ok(ConnectOptions {
            ca_pem,
            account,
            insecure: self.insecure,
        })
    }

    /// The URL as it is given, or with the scheme this connection uses.
    fn url(&self, url: &str) -> String {
        match (url.contains("://"), self.insecure) {
            (true, _) => url.to_string(),
            (false, true) => format!("http://{url}"),
            (false, false) => format!("https://{url}"),
        }
    }
}

/// One node to talk to.
#[derive(Args, Clone)]
pub(crate) struct NodeArgs {
    /// gRPC endpoint of a node.
    #[arg(long, env = "PMR_RPC", default_value = "https://127.0.0.1:26602")]
    pub(crate) rpc: String,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

impl NodeArgs {
    /// A client of the node, calling as `--account` (if given).
    pub(crate) async fn connect(&self) -> Result<PmrClient> {
        let opts = self.conn.options(None)?;
        Ok(PmrClient::connect(self.conn.url(&self.rpc), &opts).await?)
    }
}

/// Nodes of a network to talk to.
#[derive(Args, Clone)]
pub(crate) struct NetArgs {
    /// gRPC endpoints, comma separated: transactions go to the first that answers, share
    /// releases to every custodian among them.
    #[arg(long, env = "PMR_RPC", value_delimiter = ',', default_value = DEV_RPC)]
    pub(crate) rpc: Vec<String>,
    /// The network's genesis file: custodian keys are checked against it, and every node must
    /// run its chain.
    #[arg(long, env = "PMR_GENESIS", default_value = ".pmr-dev/genesis.json")]
    pub(crate) genesis: PathBuf,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

impl NetArgs {
    /// Clients of the nodes, calling as `signer` (or `--account`).
    pub(crate) async fn connect(&self, signer: Option<&Wallet>) -> Result<Network> {
        let opts = self.conn.options(signer)?;
        let genesis = match Genesis::load(&self.genesis) {
            Ok(g) => Some(g),
            Err(_) if !self.genesis.exists() => None,
            Err(e) => return Err(e.into()),
        };
        let urls: Vec<String> = self.rpc.iter().map(|u| self.conn.url(u)).collect();
        Ok(Network::connect(&urls, &opts, genesis).await?)
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

/// Signing material loaded from a key file.
pub(crate) enum Signer {
    Identity(Identity),
    Plain(Wallet),
}

impl Signer {
    pub(crate) fn wallet(&self) -> &Wallet {
        match self {
            Signer::Identity(i) => i.wallet(),
            Signer::Plain(w) => w,
        }
    }
}

/// Loads a keystore (with its passphrase) or a plain development account file.
pub(crate) fn load_signer(path: &Path, passphrase_file: Option<&Path>) -> Result<Signer> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read key file {}", path.display()))?;
    if text.contains("\"ciphertext\"") {
        let pass = passphrase(passphrase_file)?;
        Ok(Signer::Identity(Identity::load(path, &pass)?))
    } else {
        Ok(Signer::Plain(load_dev_account(path)?))
    }
}

impl KeyArgs {
    /// Loads `--key`.
    pub(crate) fn load(&self) -> Result<Signer> {
        load_signer(&self.key, self.passphrase_file.as_deref())
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
        Ok(self.load()?.wallet().clone())
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
