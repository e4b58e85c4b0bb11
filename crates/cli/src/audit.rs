//! `pmr audit` and `pmr verify-proof`: a record's history, and its proof checked offline.

use std::fmt;
use std::path::PathBuf;

use alloy_primitives::U256;
use clap::Subcommand;
use eyre::{Context, Result};
use pmr_client::AuditEvent;
use pmr_consensus::verify_audit_proof;
use pmr_contract::describe_token_event;
use pmr_primitives::{AuditProof, Genesis};
use serde::Serialize;

use crate::args::NetArgs;
use crate::Output;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Every event of a record (mint, versions, grants, revokes, share releases) with its block
    /// height; --proof FILE also exports what proves them.
    Audit {
        /// The record's token.
        #[arg(long)]
        token: U256,
        /// Write the events' receipts, Merkle proofs, blocks and commit certificates here.
        #[arg(long)]
        proof: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Check an audit proof file offline against a genesis file: every receipt is in a block
    /// that more than 2/3 of the genesis validators signed.
    VerifyProof {
        /// The proof file (`pmr audit --proof`).
        file: PathBuf,
        /// The token the proof must be about.
        #[arg(long)]
        token: U256,
        /// The network's genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
}

/// `pmr audit`.
#[derive(Serialize)]
#[serde(transparent)]
struct Audit {
    events: Vec<AuditEvent>,
    #[serde(skip)]
    token: U256,
    #[serde(skip)]
    proof: Option<PathBuf>,
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = self
            .events
            .iter()
            .map(|e| {
                format!(
                    "height {:>6}  {:<9} {}  (tx {})",
                    e.height, e.kind, e.detail, e.tx
                )
            })
            .collect();
        if lines.is_empty() {
            lines.push(format!("no events for token {}", self.token));
        }
        if let Some(p) = &self.proof {
            let (p, token) = (p.display(), self.token);
            lines.push(format!(
                "proof written to {p} (check it offline: pmr verify-proof {p} --token {token} \
                 --genesis GENESIS)"
            ));
        }
        write!(f, "{}", lines.join("\n"))
    }
}

/// `pmr verify-proof`: the events proven, each as (height, kind, detail).
#[derive(Serialize)]
struct Verified {
    verified: bool,
    events: Vec<(u64, &'static str, String)>,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "verified: {} events, each in a block certified by the genesis validators",
            self.events.len()
        )?;
        for (h, kind, detail) in &self.events {
            write!(f, "\nheight {h:>6}  {kind:<9} {detail}")?;
        }
        Ok(())
    }
}

impl AuditCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            AuditCommand::Audit { token, proof, net } => {
                let network = net.connect(None).await?;
                let events = network.audit(token).await?;
                if let Some(path) = &proof {
                    let file = network.audit_proof(token, &events).await?;
                    std::fs::write(path, serde_json::to_vec_pretty(&file)?)
                        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
                }
                out.show(&Audit {
                    events,
                    token,
                    proof,
                })
            }
            AuditCommand::VerifyProof {
                file,
                token,
                genesis,
            } => {
                let genesis = Genesis::load(&genesis)?;
                let bytes = std::fs::read(&file)
                    .wrap_err_with(|| format!("cannot read {}", file.display()))?;
                let proof: AuditProof =
                    serde_json::from_slice(&bytes).wrap_err("not a PMR audit proof file")?;
                let mut events = Vec::new();
                for (height, receipt) in verify_audit_proof(&proof, &genesis, token)? {
                    for log in &receipt.logs {
                        if let Some((kind, detail)) =
                            describe_token_event(log.address, &log.topics, &log.data, token)
                        {
                            events.push((height, kind, detail));
                        }
                    }
                }
                out.show(&Verified {
                    verified: true,
                    events,
                })
            }
        }
    }
}
