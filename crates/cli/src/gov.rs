//! `pmr gov`: the governance council. A member proposes a change, the members approve it, and
//! the approval that reaches the council's threshold makes the change on chain. Validator-set
//! changes take effect `VALIDATOR_CHANGE_DELAY` blocks after the block that makes them.

use std::fmt;
use std::path::PathBuf;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use clap::Subcommand;
use eyre::{bail, Context, Result};
use pmr_client::records::Committed;
use pmr_client::PMR;
use serde::Serialize;

use crate::args::{KeyArgs, NetArgs};
use crate::Output;

#[derive(Subcommand)]
pub(crate) enum GovCommand {
    /// Propose a change (and approve it as its proposer). With a council threshold of 1 it is
    /// made at once. Only council members.
    Propose {
        #[command(subcommand)]
        change: Change,
    },
    /// Approve proposal ID; the approval that reaches the threshold makes the change (and
    /// fails, changing nothing, if the change itself is refused). Only council members, once
    /// each.
    Approve {
        /// The proposal's id (`pmr gov proposals`).
        id: u64,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List proposals: what each changes, its approvals, and whether it is still open.
    Proposals {
        /// Only proposals that can still be approved.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The council: its members and how many approvals a proposal needs.
    Council {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Every validator set of the chain, with the height from which it decides.
    Validators {
        #[command(flatten)]
        net: NetArgs,
    },
}

/// A change the council can make.
#[derive(Subcommand)]
pub(crate) enum Change {
    /// Add a validator, from its operator's `pmr keys show --output json` or its key.
    AddValidator {
        /// The operator's public key listing (`pmr keys show --output json`).
        #[arg(
            long,
            conflicts_with = "consensus_key",
            required_unless_present = "consensus_key"
        )]
        keys: Option<PathBuf>,
        /// The validator's ed25519 consensus key (hex).
        #[arg(long)]
        consensus_key: Option<B256>,
        /// Weight of its votes.
        #[arg(long, default_value_t = 1)]
        power: u64,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Remove a validator.
    RemoveValidator {
        /// Its consensus key (hex).
        #[arg(long)]
        consensus_key: B256,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Change a validator's voting power.
    SetPower {
        /// Its consensus key (hex).
        #[arg(long)]
        consensus_key: B256,
        /// The new weight of its votes (not 0).
        #[arg(long)]
        power: u64,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Replace a validator's consensus key (its power is kept). The operator runs a node with
    /// the new key before the change takes effect.
    RotateKey {
        /// The current key (hex).
        #[arg(long)]
        old: B256,
        /// The new key (hex).
        #[arg(long)]
        new: B256,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Add a council member.
    AddMember {
        /// The member's account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Remove a council member (the threshold must stay reachable).
    RemoveMember {
        /// The member's account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Set how many approvals a proposal needs.
    SetThreshold {
        /// 1 to the council's size.
        threshold: u64,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Give an account the HOSPITAL role.
    RegisterHospital {
        /// The hospital's account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Make a node's operator a share custodian: the key of every record made from then on is
    /// split to it too (older records keep their custodians).
    AddCustodian {
        /// The operator's public key listing (`pmr keys show --output json`): its operator
        /// account and custody key.
        #[arg(long)]
        keys: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Set the gas limits from the next block on: the most gas one block's transactions may
    /// use together, and one transaction may reserve (at least 2,000,000, so that governance
    /// can always change them again).
    SetGasLimits {
        /// Block gas limit (at least the transaction limit, at most 8,000,000,000).
        #[arg(long)]
        block: u64,
        /// Transaction gas limit.
        #[arg(long)]
        tx: u64,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Take the HOSPITAL role from an account: it registers and mints no more.
    RemoveHospital {
        /// The hospital's account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Take the CUSTODIAN role from an operator account: no new record's key is split to it
    /// and its node releases no more shares (its index stays).
    RemoveCustodian {
        /// The custodian's operator account.
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Put an account on (or, with --revoke, take it off) the permission list.
    Permit {
        /// The account.
        account: Address,
        /// Take it off the list.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

impl Change {
    /// The contract call, and who signs it where.
    fn into_call(self) -> Result<(Bytes, KeyArgs, NetArgs)> {
        Ok(match self {
            Change::AddValidator {
                keys,
                consensus_key,
                power,
                key,
                net,
            } => {
                let consensus_key = match (keys, consensus_key) {
                    (_, Some(k)) => k,
                    (Some(path), None) => listing_key(&path)?,
                    (None, None) => bail!("give --keys or --consensus-key"),
                };
                check_ed25519(&consensus_key)?;
                if power == 0 {
                    bail!("--power must not be 0");
                }
                let call = PMR::addValidatorCall {
                    key: consensus_key,
                    power,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::RemoveValidator {
                consensus_key,
                key,
                net,
            } => {
                let call = PMR::removeValidatorCall { key: consensus_key };
                (call.abi_encode().into(), key, net)
            }
            Change::SetPower {
                consensus_key,
                power,
                key,
                net,
            } => {
                if power == 0 {
                    bail!("--power must not be 0 (remove-validator removes a validator)");
                }
                let call = PMR::setValidatorPowerCall {
                    key: consensus_key,
                    power,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::RotateKey { old, new, key, net } => {
                check_ed25519(&new)?;
                let call = PMR::rotateValidatorKeyCall {
                    oldKey: old,
                    newKey: new,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::AddMember { account, key, net } => {
                let call = PMR::addCouncilMemberCall { member: account };
                (call.abi_encode().into(), key, net)
            }
            Change::RemoveMember { account, key, net } => {
                let call = PMR::removeCouncilMemberCall { member: account };
                (call.abi_encode().into(), key, net)
            }
            Change::SetThreshold {
                threshold,
                key,
                net,
            } => {
                let call = PMR::setCouncilThresholdCall {
                    threshold: U256::from(threshold),
                };
                (call.abi_encode().into(), key, net)
            }
            Change::RegisterHospital { account, key, net } => {
                let call = PMR::registerHospitalCall { hospital: account };
                (call.abi_encode().into(), key, net)
            }
            Change::AddCustodian { keys, key, net } => {
                let (custodian, custody_key) = listing_custodian(&keys)?;
                let call = PMR::addCustodianCall {
                    custodian,
                    custodyKey: custody_key,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::SetGasLimits {
                block,
                tx,
                key,
                net,
            } => {
                let call = PMR::setGasLimitsCall {
                    blockGasLimit: block,
                    txGasLimit: tx,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::RemoveHospital { account, key, net } => {
                let call = PMR::revokeRoleCall {
                    role: keccak256("PMR_HOSPITAL"),
                    account,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::RemoveCustodian { account, key, net } => {
                let call = PMR::revokeRoleCall {
                    role: keccak256("PMR_CUSTODIAN"),
                    account,
                };
                (call.abi_encode().into(), key, net)
            }
            Change::Permit {
                account,
                revoke,
                key,
                net,
            } => {
                let call = PMR::setPermittedCall {
                    account,
                    permitted: !revoke,
                };
                (call.abi_encode().into(), key, net)
            }
        })
    }
}

/// The consensus key of an operator's public listing.
fn listing_key(path: &std::path::Path) -> Result<B256> {
    #[derive(serde::Deserialize)]
    struct Listing {
        consensus_key: String,
    }
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    let listing: Listing = serde_json::from_str(&text).wrap_err_with(|| {
        format!(
            "{} is not the output of `pmr keys show --output json`",
            path.display()
        )
    })?;
    listing
        .consensus_key
        .trim_start_matches("0x")
        .parse()
        .wrap_err_with(|| format!("{}: consensus_key is not 32 bytes of hex", path.display()))
}

/// The operator account and custody key of an operator's public listing.
fn listing_custodian(path: &std::path::Path) -> Result<(Address, B256)> {
    #[derive(serde::Deserialize)]
    struct Listing {
        operator: Option<Address>,
        custody_key: Option<String>,
    }
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    let listing: Listing = serde_json::from_str(&text).wrap_err_with(|| {
        format!(
            "{} is not the output of `pmr keys show --output json`",
            path.display()
        )
    })?;
    let (Some(operator), Some(key)) = (listing.operator, listing.custody_key) else {
        bail!(
            "{} names no operator account and custody key: was it made by `pmr keys init`?",
            path.display()
        );
    };
    let key: B256 = key
        .trim_start_matches("0x")
        .parse()
        .wrap_err_with(|| format!("{}: custody_key is not 32 bytes of hex", path.display()))?;
    Ok((operator, key))
}

/// A validator key that cannot sign would be left out of the set by every node: refuse it here.
fn check_ed25519(key: &B256) -> Result<()> {
    pmr_consensus::PublicKey::from_bytes(key.0)
        .map(|_| ())
        .map_err(|_| eyre::eyre!("{key} is not an ed25519 public key"))
}

/// What a proposal's call does, in words.
pub(crate) fn describe_call(data: &[u8]) -> String {
    macro_rules! try_decode {
        ($($call:ident => $fmt:expr),* $(,)?) => {
            $(if let Ok(c) = PMR::$call::abi_decode(data) {
                #[allow(clippy::redundant_closure_call)]
                return ($fmt)(c);
            })*
        };
    }
    try_decode!(
        addValidatorCall => |c: PMR::addValidatorCall| format!("add validator {} with power {}", c.key, c.power),
        removeValidatorCall => |c: PMR::removeValidatorCall| format!("remove validator {}", c.key),
        setValidatorPowerCall => |c: PMR::setValidatorPowerCall| format!("set the power of validator {} to {}", c.key, c.power),
        rotateValidatorKeyCall => |c: PMR::rotateValidatorKeyCall| format!("rotate validator key {} to {}", c.oldKey, c.newKey),
        addCouncilMemberCall => |c: PMR::addCouncilMemberCall| format!("add council member {}", c.member),
        removeCouncilMemberCall => |c: PMR::removeCouncilMemberCall| format!("remove council member {}", c.member),
        setCouncilThresholdCall => |c: PMR::setCouncilThresholdCall| format!("set the council threshold to {}", c.threshold),
        setGasLimitsCall => |c: PMR::setGasLimitsCall| format!("set the gas limits to {} per block, {} per transaction", c.blockGasLimit, c.txGasLimit),
        registerHospitalCall => |c: PMR::registerHospitalCall| format!("register hospital {}", c.hospital),
        addCustodianCall => |c: PMR::addCustodianCall| format!("add share custodian {} with custody key {}", c.custodian, c.custodyKey),
        setPermittedCall => |c: PMR::setPermittedCall| if c.permitted { format!("permit {}", c.account) } else { format!("take {} off the permission list", c.account) },
        revokeRoleCall => |c: PMR::revokeRoleCall| format!("revoke {} from {}", role_name(c.role), c.account),
    );
    match data.get(..4) {
        Some(selector) => format!(
            "call {} ({} bytes)",
            Bytes::copy_from_slice(selector),
            data.len()
        ),
        None => "an empty call".into(),
    }
}

/// HOSPITAL, CUSTODIAN or the role's hash.
fn role_name(role: B256) -> String {
    if role == keccak256("PMR_HOSPITAL") {
        "HOSPITAL".into()
    } else if role == keccak256("PMR_CUSTODIAN") {
        "CUSTODIAN".into()
    } else {
        role.to_string()
    }
}

/// The outcome of `propose` or `approve`.
#[derive(Serialize)]
struct Governed {
    proposal: u64,
    change: String,
    approvals: u64,
    executed: bool,
    tx: B256,
    height: u64,
}

impl fmt::Display for Governed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.executed {
            "made".to_string()
        } else {
            format!("{} approval(s), waiting for more", self.approvals)
        };
        write!(
            f,
            "proposal {}: {}: {state} (height {}, tx {})",
            self.proposal, self.change, self.height, self.tx
        )
    }
}

fn governed(done: &Committed, id: Option<u64>, change: String) -> Result<Governed> {
    let mut proposal = id;
    let mut approvals = 0;
    let mut executed = false;
    for log in &done.logs {
        let topics: Vec<B256> = log
            .topics
            .iter()
            .filter_map(|t| B256::try_from(t.as_slice()).ok())
            .collect();
        if let Ok(e) = PMR::ProposalCreated::decode_raw_log(topics.iter().copied(), &log.data) {
            proposal = Some(e.id.to());
        } else if let Ok(e) =
            PMR::ProposalApproved::decode_raw_log(topics.iter().copied(), &log.data)
        {
            approvals = e.approvals.to();
        } else if PMR::ProposalExecuted::decode_raw_log(topics.iter().copied(), &log.data).is_ok() {
            executed = true;
        }
    }
    Ok(Governed {
        proposal: proposal.ok_or_else(|| eyre::eyre!("the transaction made no proposal"))?,
        change,
        approvals,
        executed,
        tx: done.tx,
        height: done.height,
    })
}

#[derive(Serialize)]
struct ProposalView {
    id: u64,
    change: String,
    proposer: Address,
    approvals: u64,
    executed: bool,
    open: bool,
    expires_at: u64,
}

#[derive(Serialize)]
struct ProposalsView(Vec<ProposalView>);

impl fmt::Display for ProposalsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no proposals");
        }
        let mut first = true;
        for p in &self.0 {
            if !first {
                writeln!(f)?;
            }
            first = false;
            let state = if p.executed {
                "made"
            } else if p.open {
                "open"
            } else {
                "closed"
            };
            write!(
                f,
                "{:>4}  {state:<6}  {} approval(s)  {}  (by {}, open until height {})",
                p.id, p.approvals, p.change, p.proposer, p.expires_at
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct CouncilView {
    members: Vec<Address>,
    threshold: u64,
}

impl fmt::Display for CouncilView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {} members approve a change:",
            self.threshold,
            self.members.len()
        )?;
        let lines: Vec<String> = self.members.iter().map(|m| format!("  {m}")).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

#[derive(Serialize)]
struct ValidatorEntry {
    key: B256,
    power: u64,
}

#[derive(Serialize)]
struct ValidatorSetView {
    from_height: u64,
    validators: Vec<ValidatorEntry>,
}

#[derive(Serialize)]
struct ValidatorsView(Vec<ValidatorSetView>);

impl fmt::Display for ValidatorsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for set in &self.0 {
            let total: u64 = set.validators.iter().map(|v| v.power).sum();
            lines.push(format!(
                "from height {}: {} validators, total power {total}",
                set.from_height,
                set.validators.len()
            ));
            for v in &set.validators {
                lines.push(format!("  {}  power {}", v.key, v.power));
            }
        }
        write!(f, "{}", lines.join("\n"))
    }
}

impl GovCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            GovCommand::Propose { change } => {
                let (data, key, net) = change.into_call()?;
                let what = describe_call(&data);
                let signer = key.wallet()?;
                let network = net.connect(Some(&signer)).await?;
                let done = network
                    .send(&signer, PMR::proposeCall { data })
                    .await
                    .wrap_err("proposing")?;
                out.show(&governed(&done, None, what)?)
            }
            GovCommand::Approve { id, key, net } => {
                let signer = key.wallet()?;
                let network = net.connect(Some(&signer)).await?;
                let p = network
                    .view(PMR::proposalCall { id: U256::from(id) })
                    .await
                    .wrap_err_with(|| format!("reading proposal {id}"))?;
                let done = network
                    .send(&signer, PMR::approveProposalCall { id: U256::from(id) })
                    .await
                    .wrap_err_with(|| format!("approving proposal {id}"))?;
                out.show(&governed(&done, Some(id), describe_call(&p.data))?)
            }
            GovCommand::Proposals { open, net } => {
                let network = net.connect(None).await?;
                let count: u64 = network.view(PMR::proposalCountCall {}).await?.to();
                let mut all = Vec::new();
                for id in 0..count {
                    let p = network
                        .view(PMR::proposalCall { id: U256::from(id) })
                        .await?;
                    if open && !p.open {
                        continue;
                    }
                    all.push(ProposalView {
                        id,
                        change: describe_call(&p.data),
                        proposer: p.proposer,
                        approvals: p.approvals.to(),
                        executed: p.executed,
                        open: p.open,
                        expires_at: p.expiresAt.to(),
                    });
                }
                out.show(&ProposalsView(all))
            }
            GovCommand::Council { net } => {
                let network = net.connect(None).await?;
                let members = network.view_agreed(PMR::councilMembersCall {}).await?;
                let threshold = network.view_agreed(PMR::councilThresholdCall {}).await?;
                out.show(&CouncilView {
                    members,
                    threshold: threshold.to(),
                })
            }
            GovCommand::Validators { net } => {
                let network = net.connect(None).await?;
                let count: u64 = network
                    .view_agreed(PMR::validatorSetCountCall {})
                    .await?
                    .to();
                let mut history = Vec::new();
                for index in 0..count {
                    history.push(
                        network
                            .view_agreed(PMR::validatorSetAtCall {
                                index: U256::from(index),
                            })
                            .await?,
                    );
                }
                out.show(&ValidatorsView(
                    history
                        .into_iter()
                        .map(|e| ValidatorSetView {
                            from_height: e.effectiveHeight,
                            validators: e
                                .validators
                                .iter()
                                .map(|v| ValidatorEntry {
                                    key: v.key,
                                    power: v.power,
                                })
                                .collect(),
                        })
                        .collect(),
                ))
            }
        }
    }
}
