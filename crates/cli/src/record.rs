//! `pmr record create|update|list|open` and `pmr access grant|revoke`: a record's life.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, U256};
use clap::Subcommand;
use eyre::{eyre, Context, Result};
use pmr_client::scan_cache::{self, ScanState};
use pmr_client::secret_file::write_secret_file;
use pmr_client::{RecordSummary, RecordVersion};
use serde::Serialize;

use crate::args::{KeyArgs, NetArgs};
use crate::identity::TxDone;
use crate::Output;

#[derive(Subcommand)]
pub(crate) enum RecordCommands {
    /// Medical records: create, update, list, open.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Patients: grant and revoke access to their records.
    #[command(subcommand)]
    Access(AccessCommand),
}

#[derive(Subcommand)]
pub(crate) enum RecordCommand {
    /// A hospital creates a record: encrypt FILE locally with a fresh key, upload the
    /// ciphertext, split the key to the patient and the custodians, mint the token.
    Create {
        /// The patient's account.
        #[arg(long)]
        patient: Address,
        /// Record type code (e.g. a LOINC-derived code agreed by the network).
        #[arg(long = "type")]
        record_type: u32,
        /// The record's contents (any bytes: FHIR JSON, PDF, DICOM...).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The minting hospital makes a new version of a record under a fresh key (grants made
    /// before it do not cover it), its essential share sealed to the patient.
    Update {
        /// The record's token.
        #[arg(long)]
        token: U256,
        /// The record's patient: the chain does not say whose record it is (its owner is a
        /// one-time address); the hospital that minted it knows.
        #[arg(long)]
        patient: Address,
        /// The new version's contents.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The patient's records. Each record is owned by a one-time address nobody else can link
    /// to the patient; the patient's viewing key finds them among the announcements minted
    /// since its last scan (remembered, sealed, in KEY.scan next to the key file). A record's
    /// hospital and version count are as the scan that found it read them (--rescan reads
    /// every announcement again): the node is never asked about one record in particular.
    List {
        #[command(flatten)]
        key: KeyArgs,
        /// Scan every announcement again, from the first token.
        #[arg(long)]
        rescan: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// A grantee (or the owner) opens a record: collect custodian shares, reconstruct and check
    /// the key, fetch, decrypt, write the original bytes to -o FILE (mode 0600).
    Open {
        /// The record's token.
        #[arg(long)]
        token: U256,
        /// Where to write the plaintext (a new file).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum AccessCommand {
    /// The patient grants an account access to a record's latest version.
    Grant {
        /// The record's token.
        #[arg(long)]
        token: U256,
        /// The grantee's account.
        #[arg(long)]
        to: Address,
        /// How long (e.g. `7d`, `12h`) or until when (unix seconds).
        #[arg(long, default_value = "30d")]
        expires: String,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The patient revokes a grant: custodians stop releasing shares to it.
    Revoke {
        /// The record's token.
        #[arg(long)]
        token: U256,
        /// The grantee's account.
        #[arg(long)]
        to: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// `7d`, `12h` (from now) or unix seconds.
fn parse_expiry(s: &str) -> Result<u64> {
    if let Ok(at) = s.parse::<u64>() {
        return Ok(at);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        eyre!("--expires `{s}` is neither a duration (7d, 12h) nor unix seconds: {e}")
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(now + d.as_secs().max(1))
}

/// Where `pmr record list` keeps its sealed scan state for the key file `key`.
fn scan_cache_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".scan");
    PathBuf::from(name)
}

fn read_input(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).wrap_err_with(|| format!("cannot read {}", file.display()))
}

/// `pmr record create|update`.
#[derive(Serialize)]
struct Made {
    #[serde(flatten)]
    v: RecordVersion,
    #[serde(skip)]
    created: bool,
}

impl fmt::Display for Made {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.v;
        match self.created {
            true => write!(
                f,
                "token {} version 0 minted at height {} (root {}, envelope {})",
                v.token_id, v.height, v.root_cid, v.envelope_cid
            ),
            false => write!(
                f,
                "token {} version {} committed at height {} (fresh key; root {})",
                v.token_id, v.version, v.height, v.root_cid
            ),
        }
    }
}

/// `pmr record list`.
#[derive(Serialize)]
#[serde(transparent)]
struct Listed {
    records: Vec<RecordSummary>,
    #[serde(skip)]
    owner: Address,
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.records.is_empty() {
            return write!(f, "{} has no records", self.owner);
        }
        let lines: Vec<String> = self
            .records
            .iter()
            .map(|r| {
                format!(
                    "token {}  type {}  versions {}  hospital {}  one-time owner {}",
                    r.token_id, r.record_type, r.versions, r.hospital, r.owner
                )
            })
            .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// `pmr record open`.
#[derive(Serialize)]
struct OpenedView {
    token: U256,
    version: u32,
    bytes: usize,
    custodians: Vec<u16>,
    out: PathBuf,
}

impl fmt::Display for OpenedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} bytes of token {} version {} to {} (shares from custodians {:?})",
            self.bytes,
            self.token,
            self.version,
            self.out.display(),
            self.custodians
        )
    }
}

impl RecordCommands {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            RecordCommands::Record(c) => c.run(out).await,
            RecordCommands::Access(c) => c.run(out).await,
        }
    }
}

impl RecordCommand {
    async fn run(self, out: Output) -> Result<()> {
        match self {
            RecordCommand::Create {
                patient,
                record_type,
                file,
                key,
                net,
            } => {
                let hospital = key.wallet()?;
                let data = read_input(&file)?;
                eprintln!(
                    "encrypting {} ({} bytes), uploading, splitting the key, minting...",
                    file.display(),
                    data.len()
                );
                let network = net.connect(Some(&hospital)).await?;
                let v = network
                    .create_record(&hospital, patient, record_type, &data)
                    .await?;
                out.show(&Made { v, created: true })
            }
            RecordCommand::Update {
                token,
                patient,
                file,
                key,
                net,
            } => {
                let data = read_input(&file)?;
                let by = key.wallet()?;
                let v = net
                    .connect(Some(&by))
                    .await?
                    .update_record(&by, token, patient, &data)
                    .await?;
                out.show(&Made { v, created: false })
            }
            RecordCommand::List { key, rescan, net } => {
                let id = key.identity()?;
                let stealth = id.stealth_keys().map_err(|e| eyre!("{e}"))?;
                let view = stealth.viewing_key();
                let network = net.connect(Some(id.wallet())).await?;
                let genesis = network.primary().status().await?.genesis_hash;
                let cache = scan_cache_path(&key.key);
                let before = match rescan {
                    true => ScanState::default(),
                    false => scan_cache::load(&cache, view, &genesis).unwrap_or_default(),
                };
                let scanned = network.scan_records(view, before.last_token).await?;
                let mut found = before.found;
                found.extend(scanned.found);
                let state = ScanState {
                    height: scanned.height,
                    last_token: scanned.last_token,
                    found,
                };
                scan_cache::save(&cache, view, &genesis, &state)
                    .wrap_err_with(|| format!("cannot write the scan cache {}", cache.display()))?;
                eprintln!(
                    "scanned {} new announcements (tokens {}..={}) at height {}",
                    scanned.judged,
                    before.last_token + 1,
                    scanned.last_token,
                    scanned.height
                );
                out.show(&Listed {
                    records: state.found,
                    owner: id.address(),
                })
            }
            RecordCommand::Open {
                token,
                out: path,
                key,
                net,
            } => {
                let id = key.identity()?;
                let network = net.connect(Some(id.wallet())).await?;
                let opened = network.open_record(&id, token).await?;
                write_secret_file(&path, &opened.plaintext)
                    .wrap_err_with(|| format!("cannot write {}", path.display()))?;
                out.show(&OpenedView {
                    token,
                    version: opened.version,
                    bytes: opened.plaintext.len(),
                    custodians: opened.custodians,
                    out: path,
                })
            }
        }
    }
}

impl AccessCommand {
    async fn run(self, out: Output) -> Result<()> {
        match self {
            AccessCommand::Grant {
                token,
                to,
                expires,
                key,
                net,
            } => {
                let expiry = parse_expiry(&expires)?;
                let id = key.identity()?;
                let network = net.connect(Some(id.wallet())).await?;
                let done = network.grant(&id, token, to, expiry).await?;
                let what = format!("access to token {token} granted to {to} until {expiry}");
                out.show(&TxDone::new(what, &done))
            }
            AccessCommand::Revoke {
                token,
                to,
                key,
                net,
            } => {
                let id = key.identity()?;
                let network = net.connect(Some(id.wallet())).await?;
                let done = network.revoke(&id, token, to).await?;
                out.show(&TxDone::new(
                    format!("access of {to} to token {token} revoked"),
                    &done,
                ))
            }
        }
    }
}
