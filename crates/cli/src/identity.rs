//! `pmr identity|admin|patient`: identities and who may do what on the network.

use std::fmt;
use std::path::PathBuf;

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolCall;
use clap::Subcommand;
use eyre::{Context, Result};
use pmr_client::records::Committed;
use pmr_client::{Identity, PMR};
use serde::Serialize;

use crate::args::{passphrase, KeyArgs, NetArgs};
use crate::Output;

#[derive(Subcommand)]
pub(crate) enum IdentityCommands {
    /// Identities: passphrase-encrypted keystores of hospitals, patients and doctors.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Network administration by a council of threshold 1 (a development network's admin):
    /// hospitals, custodians, permissions. A council of higher threshold uses `pmr gov`.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Hospitals: register patients.
    #[command(subcommand)]
    Patient(PatientCommand),
}

#[derive(Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create a new identity keystore (account key + X25519 key), encrypted with the passphrase.
    New {
        /// Where to write it (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// File holding the passphrase (default: the PMR_PASSPHRASE variable).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Show an identity's address, encryption key and, given a national health ID, the
    /// pseudonym commitment a hospital registers (only the identity's holder can compute it).
    Show {
        #[command(flatten)]
        key: KeyArgs,
        /// ABHA number (14 digits, dashes allowed) or ABHA address (name@abdm).
        #[arg(long)]
        national_id: Option<String>,
        /// The network's genesis (its chain id is in the registration signature printed with
        /// --national-id).
        #[arg(long, env = "PMR_GENESIS", default_value = ".pmr-dev/genesis.json")]
        genesis: PathBuf,
    },
    /// Publish this identity's encryption key on-chain (grantees must, before a grant).
    RegisterKey {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Give an account the HOSPITAL role.
    RegisterHospital {
        /// The hospital's account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Make an operator account a share custodian (CUSTODIAN role and the key shares of every
    /// record made from now on).
    AddCustodian {
        /// The custodian's operator account.
        account: Address,
        /// Its X25519 custody key (`custody_key` of its `pmr keys show`).
        #[arg(long)]
        custody_key: B256,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Put an account on (or, with --revoke, take it off) the permission list.
    Permit {
        /// The account.
        account: Address,
        /// Take the account off the list.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum PatientCommand {
    /// A hospital registers a patient: address, pseudonym commitment, encryption key, stealth
    /// meta-address and the patient's signature over them, as the patient's `pmr identity
    /// show --national-id` prints them (a hospital cannot register an account that did not
    /// sign, nor set anyone's keys).
    Register {
        /// The patient's account.
        #[arg(long)]
        patient: Address,
        /// The patient's pseudonym commitment.
        #[arg(long)]
        commitment: B256,
        /// The patient's X25519 encryption key.
        #[arg(long)]
        encryption_key: B256,
        /// The patient's stealth meta-address (`st:eth:0x` and 132 hex digits), from which each
        /// of its records gets a one-time owner.
        #[arg(long, value_parser = parse_meta_address)]
        meta_address: alloy_primitives::Bytes,
        /// The patient's registration signature (hex).
        #[arg(long)]
        signature: alloy_primitives::Bytes,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// A committed transaction, and what it did.
#[derive(Serialize)]
pub(crate) struct TxDone {
    tx: B256,
    height: u64,
    #[serde(skip)]
    what: String,
}

impl TxDone {
    pub(crate) fn new(what: impl Into<String>, done: &Committed) -> Self {
        Self {
            tx: done.tx,
            height: done.height,
            what: what.into(),
        }
    }
}

impl fmt::Display for TxDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, height, tx) = (&self.what, self.height, self.tx);
        write!(f, "{what}: committed at height {height} (tx {tx})")
    }
}

/// Signs `call` with `--key`, commits it and prints the outcome.
async fn send_as(
    key: &KeyArgs,
    net: &NetArgs,
    out: Output,
    what: &str,
    call: impl SolCall,
) -> Result<()> {
    let signer = key.wallet()?;
    let done = net
        .connect(Some(&signer))
        .await?
        .send(&signer, call)
        .await?;
    out.show(&TxDone::new(what, &done))
}

/// `pmr identity show`.
#[derive(Serialize)]
struct IdentityView {
    address: Address,
    encryption_key: B256,
    /// The ERC-5564 meta-address records are minted under (one-time owners derive from it).
    stealth_meta_address: String,
    pseudonym_commitment: Option<B256>,
    /// The patient's signature over address, encryption key, commitment and meta-address, for
    /// the hospital that registers it.
    registration_signature: Option<alloy_primitives::Bytes>,
}

/// `st:eth:0x…` (or bare hex) as the 66 bytes of a stealth meta-address.
fn parse_meta_address(s: &str) -> Result<alloy_primitives::Bytes, String> {
    let hex = s.strip_prefix("st:eth:").unwrap_or(s);
    let bytes = alloy_primitives::hex::decode(hex).map_err(|e| format!("not hex: {e}"))?;
    pmr_privacy::StealthMetaAddress::from_bytes(&bytes).map_err(|e| e.to_string())?;
    Ok(bytes.into())
}

impl fmt::Display for IdentityView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "address         {}", self.address)?;
        writeln!(f, "encryption key  {}", self.encryption_key)?;
        write!(f, "meta-address    {}", self.stealth_meta_address)?;
        if let Some(c) = self.pseudonym_commitment {
            write!(f, "\ncommitment      {c}")?;
        }
        if let Some(s) = &self.registration_signature {
            write!(f, "\nsignature       {s}")?;
        }
        Ok(())
    }
}

impl IdentityCommands {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            IdentityCommands::Identity(IdentityCommand::New {
                out: path,
                passphrase_file,
            }) => {
                let id = Identity::generate();
                id.save(&path, &passphrase(passphrase_file.as_deref())?)?;
                println!("{}", id.address());
                eprintln!(
                    "identity written to {} (encrypted; encryption key {})",
                    path.display(),
                    id.encryption_key()
                );
                Ok(())
            }
            IdentityCommands::Identity(IdentityCommand::Show {
                key,
                national_id,
                genesis,
            }) => {
                let id = key.identity()?;
                let meta = id
                    .stealth_keys()
                    .map_err(|e| eyre::eyre!("{e}"))?
                    .meta_address();
                let (pseudonym_commitment, registration_signature) = match national_id {
                    Some(raw) => {
                        let nid = pmr_privacy::NationalId::parse(&raw)
                            .wrap_err("not a valid national health ID")?;
                        let c = B256::from(
                            pmr_privacy::PseudonymCommitment::compute(&id.pseudonym_secret(), &nid)
                                .to_bytes(),
                        );
                        let chain_id = pmr_primitives::Genesis::load(&genesis)
                            .wrap_err_with(|| {
                                format!(
                                    "the registration signature names the network: cannot read \
                                     its genesis {} (--genesis FILE or PMR_GENESIS)",
                                    genesis.display()
                                )
                            })?
                            .chain_id;
                        let sig = pmr_contract::sign_encryption_key(
                            id.wallet(),
                            chain_id,
                            id.encryption_key(),
                            pmr_contract::PatientKeys {
                                pseudonym_commitment: c,
                                meta_address: &meta.to_bytes(),
                            },
                        )?;
                        (Some(c), Some(sig))
                    }
                    None => (None, None),
                };
                out.show(&IdentityView {
                    address: id.address(),
                    encryption_key: id.encryption_key(),
                    stealth_meta_address: meta.to_text(),
                    pseudonym_commitment,
                    registration_signature,
                })
            }
            IdentityCommands::Identity(IdentityCommand::RegisterKey { key, net }) => {
                let id = key.identity()?;
                let network = net.connect(Some(id.wallet())).await?;
                // A patient's key is signed with its pseudonym commitment and meta-address.
                let commitment = network
                    .view_agreed(PMR::pseudonymCommitmentOfCall {
                        patient: id.address(),
                    })
                    .await?;
                let meta = network
                    .view_agreed(PMR::stealthMetaAddressOfCall {
                        patient: id.address(),
                    })
                    .await?;
                let call = PMR::setEncryptionKeyCall {
                    encryptionKey: id.encryption_key(),
                    signature: pmr_contract::sign_encryption_key(
                        id.wallet(),
                        network.chain_id(),
                        id.encryption_key(),
                        pmr_contract::PatientKeys {
                            pseudonym_commitment: commitment,
                            meta_address: &meta,
                        },
                    )?,
                };
                let done = network.send(id.wallet(), call).await?;
                out.show(&TxDone::new("encryption key registered", &done))
            }
            IdentityCommands::Admin(AdminCommand::RegisterHospital { account, key, net }) => {
                let call = PMR::registerHospitalCall { hospital: account };
                send_as(&key, &net, out, "hospital registered", call).await
            }
            IdentityCommands::Admin(AdminCommand::AddCustodian {
                account,
                custody_key,
                key,
                net,
            }) => {
                let call = PMR::addCustodianCall {
                    custodian: account,
                    custodyKey: custody_key,
                };
                send_as(&key, &net, out, "custodian added", call).await
            }
            IdentityCommands::Admin(AdminCommand::Permit {
                account,
                revoke,
                key,
                net,
            }) => {
                let call = PMR::setPermittedCall {
                    account,
                    permitted: !revoke,
                };
                let what = if revoke {
                    "permission removed"
                } else {
                    "permitted"
                };
                send_as(&key, &net, out, what, call).await
            }
            IdentityCommands::Patient(PatientCommand::Register {
                patient,
                commitment,
                encryption_key,
                meta_address,
                signature,
                key,
                net,
            }) => {
                let call = PMR::registerPatientCall {
                    patient,
                    pseudonymCommitment: commitment,
                    encryptionKey: encryption_key,
                    stealthMetaAddress: meta_address,
                    signature,
                };
                send_as(&key, &net, out, "patient registered", call).await
            }
        }
    }
}
