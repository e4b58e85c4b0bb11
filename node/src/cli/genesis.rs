//! `pmr genesis`: the genesis ceremony. A coordinator builds the genesis of a network of many
//! organizations from each operator's public key listing (`pmr keys show --output json`), never
//! a private key; every operator checks the result with one command before `pmr init`.
//!
//! ```text
//! operator i:   pmr keys init --home H --moniker NAME      (keys only; no genesis, no admin key)
//!               pmr keys show --home H --output json > NAME.json       (public: send it)
//! coordinator:  pmr genesis new --chain-id N --out draft.json
//!               pmr genesis add-validator draft.json --keys NAME.json  (each operator)
//!               pmr genesis set-admin draft.json --address A            (first council member)
//!               pmr genesis add-council draft.json --address B          (further members)
//!               pmr genesis set-threshold draft.json --threshold 2      (approvals needed)
//!               pmr genesis add-hospital draft.json --address H         (each hospital)
//!               pmr genesis finalize draft.json --out genesis.json      (prints its hash)
//! operator i:   pmr genesis verify genesis.json --hash HASH --home H
//!               pmr init --home H --genesis genesis.json                (keeps its keys)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use clap::Subcommand;
use eyre::{bail, Context, Result};
use pmr_primitives::{GasLimits, Genesis, GenesisValidator};
use serde::{Deserialize, Serialize};

use super::Output;

#[derive(Subcommand)]
pub(crate) enum GenesisCommand {
    /// Start a draft genesis (no validators, no admin yet).
    New {
        /// The chain id transactions will be signed for (not 0; pick one no other network uses).
        #[arg(long)]
        chain_id: u64,
        /// The draft file to create.
        #[arg(long)]
        out: PathBuf,
        /// Genesis time, milliseconds since the Unix epoch (default: now).
        #[arg(long)]
        genesis_time_ms: Option<u64>,
    },
    /// Add a validator from its operator's public key listing (`pmr keys show --output json`).
    AddValidator {
        /// The draft.
        draft: PathBuf,
        /// The operator's `pmr keys show --output json` output.
        #[arg(long)]
        keys: PathBuf,
        /// The validator's name in logs and status (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Weight of its votes.
        #[arg(long, default_value_t = 1)]
        power: u64,
    },
    /// Name the first member of the governance council (which holds the PMR contract's ADMIN
    /// role: see `pmr gov --help`).
    SetAdmin {
        /// The draft.
        draft: PathBuf,
        /// The first council member's account address.
        #[arg(long)]
        address: Address,
    },
    /// Add a further member to the governance council.
    AddCouncil {
        /// The draft.
        draft: PathBuf,
        /// The member's account address.
        #[arg(long)]
        address: Address,
    },
    /// Set how many council members must approve a governance proposal (default 1).
    SetThreshold {
        /// The draft.
        draft: PathBuf,
        /// Approvals needed: 1 to the council's size.
        #[arg(long)]
        threshold: u32,
    },
    /// Give an account the HOSPITAL role from the start.
    AddHospital {
        /// The draft.
        draft: PathBuf,
        /// The hospital's account address.
        #[arg(long)]
        address: Address,
    },
    /// Put an account on the permission list from the start.
    Permit {
        /// The draft.
        draft: PathBuf,
        /// The account's address.
        #[arg(long)]
        address: Address,
    },
    /// Check the draft and write the final genesis; prints the hash every operator verifies.
    Finalize {
        /// The draft.
        draft: PathBuf,
        /// The genesis file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a genesis file: well formed, its hash the one announced, and (with --home) this
    /// node's keys in it. Fails (exit status 1) otherwise.
    Verify {
        /// The genesis file.
        genesis: PathBuf,
        /// The hash the coordinator announced.
        #[arg(long)]
        hash: B256,
        /// This node's home: check that its validator and custody keys are the genesis's.
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

/// A genesis being built: a [`Genesis`] whose admin may still be zero and whose validators may
/// still be missing.
#[derive(Serialize, Deserialize)]
struct Draft(Genesis);

/// The public listing of `pmr keys show --output json`.
#[derive(Deserialize)]
struct PublicKeys {
    consensus_key: String,
    custody_key: Option<String>,
    operator: Option<Address>,
}

/// The fields `T` takes from an operator's public key listing (`pmr keys show --output json`)
/// at `path`.
pub(crate) fn read_listing<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).wrap_err_with(|| {
        format!(
            "{} is not the output of `pmr keys show --output json`",
            path.display()
        )
    })
}

fn load_draft(path: &Path) -> Result<Genesis> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read the draft {}", path.display()))?;
    let Draft(g) = serde_json::from_str(&text)
        .wrap_err_with(|| format!("{} is not a genesis draft", path.display()))?;
    Ok(g)
}

fn save_draft(path: &Path, g: Genesis) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(&Draft(g))? + "\n")
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

fn edit(path: &Path, change: impl FnOnce(&mut Genesis) -> Result<()>) -> Result<()> {
    let mut g = load_draft(path)?;
    change(&mut g)?;
    save_draft(path, g)
}

/// What `finalize` and `verify` print.
#[derive(Serialize)]
struct GenesisView {
    file: String,
    hash: B256,
    chain_id: u64,
    validators: Vec<String>,
    council: Vec<Address>,
    council_threshold: u32,
    hospitals: usize,
}

impl fmt::Display for GenesisView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "genesis     {}", self.file)?;
        writeln!(f, "hash        {}", self.hash)?;
        writeln!(f, "chain id    {}", self.chain_id)?;
        writeln!(f, "validators  {}", self.validators.join(", "))?;
        let council: Vec<String> = self.council.iter().map(|a| a.to_string()).collect();
        writeln!(
            f,
            "council     {} of {}: {}",
            self.council_threshold,
            council.len(),
            council.join(", ")
        )?;
        write!(f, "hospitals   {}", self.hospitals)
    }
}

fn view(file: &Path, g: &Genesis) -> GenesisView {
    GenesisView {
        file: file.display().to_string(),
        hash: g.hash(),
        chain_id: g.chain_id,
        validators: g.validators.iter().map(|v| v.name.clone()).collect(),
        council: g.council_members(),
        council_threshold: g.council_threshold,
        hospitals: g.hospitals.len(),
    }
}

impl GenesisCommand {
    pub(crate) fn run(self, out: Output) -> Result<()> {
        match self {
            GenesisCommand::New {
                chain_id,
                out: path,
                genesis_time_ms,
            } => {
                if chain_id == 0 {
                    bail!("--chain-id must not be 0");
                }
                if path.exists() {
                    bail!("{} exists: choose another --out", path.display());
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                save_draft(
                    &path,
                    Genesis {
                        chain_id,
                        genesis_time_ms: genesis_time_ms.unwrap_or(now),
                        validators: vec![],
                        admin: Address::ZERO,
                        council: Vec::new(),
                        council_threshold: 1,
                        hospitals: vec![],
                        permitted: vec![],
                        gas: GasLimits::default(),
                    },
                )?;
                println!("draft {} started", path.display());
                Ok(())
            }
            GenesisCommand::AddValidator {
                draft,
                keys,
                name,
                power,
            } => {
                let k: PublicKeys = read_listing(&keys)?;
                let name = name.unwrap_or_else(|| {
                    keys.file_stem()
                        .map_or("validator".into(), |s| s.to_string_lossy().into_owned())
                });
                edit(&draft, |g| {
                    if g.validators.iter().any(|v| v.name == name) {
                        bail!("the draft already has a validator named {name}");
                    }
                    g.validators.push(GenesisValidator {
                        name: name.clone(),
                        consensus_key: k.consensus_key,
                        custody_key: k.custody_key,
                        operator: k.operator,
                        voting_power: power,
                    });
                    // The same checks as the final genesis: bad keys and duplicates stop here.
                    g.validate().map_err(|e| eyre::eyre!("{name}: {e}"))?;
                    Ok(())
                })?;
                println!("validator {name} added");
                Ok(())
            }
            GenesisCommand::SetAdmin { draft, address } => edit(&draft, |g| {
                if address.is_zero() {
                    bail!("the admin must not be the zero address");
                }
                g.admin = address;
                Ok(())
            }),
            GenesisCommand::AddCouncil { draft, address } => edit(&draft, |g| {
                if address.is_zero() {
                    bail!("a council member must not be the zero address");
                }
                if !g.council_members().contains(&address) {
                    g.council.push(address);
                }
                Ok(())
            }),
            GenesisCommand::SetThreshold { draft, threshold } => edit(&draft, |g| {
                // Checked against the council at finalize: members may still be added.
                if threshold == 0 {
                    bail!("the threshold must be at least 1");
                }
                g.council_threshold = threshold;
                Ok(())
            }),
            GenesisCommand::AddHospital { draft, address } => edit(&draft, |g| {
                if !g.hospitals.contains(&address) {
                    g.hospitals.push(address);
                }
                Ok(())
            }),
            GenesisCommand::Permit { draft, address } => edit(&draft, |g| {
                if !g.permitted.contains(&address) {
                    g.permitted.push(address);
                }
                Ok(())
            }),
            GenesisCommand::Finalize { draft, out: path } => {
                let g = load_draft(&draft)?;
                g.validate()?;
                if g.admin.is_zero() {
                    bail!(
                        "no admin yet: pmr genesis set-admin {} --address A",
                        draft.display()
                    );
                }
                if path.exists() {
                    bail!("{} exists: choose another --out", path.display());
                }
                std::fs::write(&path, serde_json::to_string_pretty(&g)? + "\n")?;
                // What operators will load must be what was hashed.
                let loaded = Genesis::load(&path)?;
                out.show(&view(&path, &loaded))
            }
            GenesisCommand::Verify {
                genesis,
                hash,
                home,
            } => {
                let g = Genesis::load(&genesis)?;
                if g.hash() != hash {
                    bail!(
                        "{} has hash {}, not the announced {hash}: do not use it",
                        genesis.display(),
                        g.hash()
                    );
                }
                if let Some(home) = home {
                    let home = crate::Home::new(home);
                    let key = crate::keys::load_node_key(&home.node_key())?;
                    let mine = hex::encode(key.public_key().as_bytes());
                    let Some(v) = g.validators.iter().find(|v| v.consensus_key == mine) else {
                        bail!(
                            "this node's validator key {mine} is not in {}",
                            genesis.display()
                        );
                    };
                    if let Ok((operator, custody)) =
                        crate::keys::custodian_public(&home.custodian_keystore())
                    {
                        if v.operator != Some(operator)
                            || v.custody_key.as_deref() != Some(&hex::encode(custody.as_bytes()))
                        {
                            bail!(
                                "validator {} in {} does not carry this node's operator and \
                                 custody keys",
                                v.name,
                                genesis.display()
                            );
                        }
                    }
                }
                out.show(&view(&genesis, &g))
            }
        }
    }
}
