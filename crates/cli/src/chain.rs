//! `pmr status`, `pmr block`, `pmr evidence`: what a node knows of the chain; `pmr backup`.

use std::fmt;

use clap::Subcommand;
use eyre::Result;
use pmr_client::proto as pb;
use serde::Serialize;

use crate::args::NodeArgs;
use crate::{hex0x, Output};

#[derive(Subcommand)]
pub(crate) enum ChainCommand {
    /// Show a node's status: chain, height, latest block, validators, peers.
    Status {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Misbehavior evidence a node recorded: validators that signed two different proposals,
    /// prevotes or precommits for one height and round (e.g. two processes with one key).
    Evidence {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// The node's operators: an online backup of the node's database (chain, state, blobs at
    /// one instant; the node keeps running), written on the node's machine in
    /// HOME/data/backups/NAME. Restore it with `pmr restore --home HOME --from PATH` on the
    /// stopped node. Keys are not in it: keep HOME/keys backed up separately.
    Backup {
        /// Name of the backup: 1 to 64 of A-Z a-z 0-9 . _ -
        #[arg(long)]
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a committed block with its commit certificate.
    Block {
        /// Height of the block.
        height: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
}

impl ChainCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            ChainCommand::Status { node } => {
                out.show(&StatusView::from(&node.connect().await?.status().await?))
            }
            ChainCommand::Evidence { node } => {
                let all = node.connect().await?.evidence().await?;
                out.show(&EvidenceView(
                    all.iter().map(EquivocationView::from).collect(),
                ))
            }
            ChainCommand::Backup { name, node } => {
                let b = node.connect().await?.create_backup(&name).await?;
                out.show(&BackupView {
                    path: b.path,
                    height: b.height,
                    state_root: hex0x(&b.state_root),
                })
            }
            ChainCommand::Block { height, node } => out.show(&BlockView::from(
                &node.connect().await?.block(height).await?,
            )),
        }
    }
}

/// `pmr backup`.
#[derive(Serialize)]
struct BackupView {
    path: String,
    height: u64,
    state_root: String,
}

impl fmt::Display for BackupView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "backup      {} (on the node's machine)", self.path)?;
        write!(
            f,
            "holds       height {}, state root {}",
            self.height, self.state_root
        )
    }
}

#[derive(Serialize)]
struct ValidatorView {
    name: String,
    address: String,
    voting_power: u64,
}

#[derive(Serialize)]
struct PeerView {
    peer_id: String,
    address: String,
}

/// `pmr status`.
#[derive(Serialize)]
struct StatusView {
    chain_id: u64,
    node: String,
    height: u64,
    latest_hash: String,
    latest_timestamp_ms: u64,
    genesis_hash: String,
    state_root: String,
    syncing: bool,
    mempool_size: u64,
    validator_address: Option<String>,
    validators: Vec<ValidatorView>,
    peers: Vec<PeerView>,
}

impl From<&pb::GetStatusResponse> for StatusView {
    fn from(s: &pb::GetStatusResponse) -> Self {
        StatusView {
            chain_id: s.chain_id,
            node: s.node_name.clone(),
            height: s.height,
            latest_hash: hex0x(&s.latest_hash),
            latest_timestamp_ms: s.latest_timestamp_ms,
            genesis_hash: hex0x(&s.genesis_hash),
            state_root: hex0x(&s.state_root),
            syncing: s.syncing,
            mempool_size: s.mempool_size,
            validator_address: (!s.validator_address.is_empty())
                .then(|| hex0x(&s.validator_address)),
            validators: s
                .validators
                .iter()
                .map(|v| ValidatorView {
                    name: v.name.clone(),
                    address: hex0x(&v.address),
                    voting_power: v.voting_power,
                })
                .collect(),
            peers: s
                .peers
                .iter()
                .map(|p| PeerView {
                    peer_id: p.peer_id.clone(),
                    address: p.address.clone(),
                })
                .collect(),
        }
    }
}

impl fmt::Display for StatusView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "node          {}", self.node)?;
        writeln!(f, "chain id      {}", self.chain_id)?;
        writeln!(f, "height        {}", self.height)?;
        writeln!(f, "latest hash   {}", self.latest_hash)?;
        writeln!(f, "state root    {}", self.state_root)?;
        writeln!(f, "syncing       {}", self.syncing)?;
        writeln!(f, "mempool       {}", self.mempool_size)?;
        writeln!(f, "validators    {}", self.validators.len())?;
        for v in &self.validators {
            writeln!(
                f,
                "  {:<10} {}  power {}",
                v.name, v.address, v.voting_power
            )?;
        }
        write!(f, "peers         {}", self.peers.len())?;
        for p in &self.peers {
            write!(f, "\n  {} {}", p.peer_id, p.address)?;
        }
        Ok(())
    }
}

/// One equivocation, as `pmr evidence` shows it.
#[derive(Serialize)]
struct EquivocationView {
    height: u64,
    round: i64,
    validator: String,
    kind: String,
    /// The block hash each message names (`nil` for a vote for nil).
    values: [String; 2],
    signed: [String; 2],
}

impl From<&pb::Equivocation> for EquivocationView {
    fn from(e: &pb::Equivocation) -> Self {
        let value = |v: &[u8]| if v.is_empty() { "nil".into() } else { hex0x(v) };
        EquivocationView {
            height: e.height,
            round: e.round,
            validator: hex0x(&e.validator),
            kind: e.kind.clone(),
            values: [value(&e.first_value), value(&e.second_value)],
            signed: [hex0x(&e.first_signed), hex0x(&e.second_signed)],
        }
    }
}

/// `pmr evidence`.
#[derive(Serialize)]
#[serde(transparent)]
struct EvidenceView(Vec<EquivocationView>);

impl fmt::Display for EvidenceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no misbehavior recorded");
        }
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|e| {
                format!(
                    "height {} round {}: validator {} signed two {}s ({} and {})",
                    e.height, e.round, e.validator, e.kind, e.values[0], e.values[1]
                )
            })
            .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

#[derive(Serialize)]
struct SignatureView {
    validator: String,
    signature: String,
}

#[derive(Serialize)]
struct CertificateView {
    round: u32,
    signatures: Vec<SignatureView>,
}

/// `pmr block`.
#[derive(Serialize)]
struct BlockView {
    hash: String,
    height: u64,
    parent_hash: String,
    timestamp_ms: u64,
    proposer: String,
    tx_root: String,
    state_root: String,
    receipts_root: String,
    gas_used: u64,
    transactions: Vec<String>,
    certificate: Option<CertificateView>,
}

impl From<&pb::BlockWithCertificate> for BlockView {
    fn from(b: &pb::BlockWithCertificate) -> Self {
        let h = b.header.clone().unwrap_or_default();
        BlockView {
            hash: hex0x(&b.hash),
            height: h.height,
            parent_hash: hex0x(&h.parent_hash),
            timestamp_ms: h.timestamp_ms,
            proposer: hex0x(&h.proposer),
            tx_root: hex0x(&h.tx_root),
            state_root: hex0x(&h.state_root),
            receipts_root: hex0x(&h.receipts_root),
            gas_used: h.gas_used,
            transactions: b.transactions.iter().map(|t| hex0x(t)).collect(),
            certificate: b.certificate.as_ref().map(|c| CertificateView {
                round: c.round,
                signatures: c
                    .signatures
                    .iter()
                    .map(|s| SignatureView {
                        validator: hex0x(&s.validator),
                        signature: hex0x(&s.signature),
                    })
                    .collect(),
            }),
        }
    }
}

impl fmt::Display for BlockView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sigs = self.certificate.as_ref().map_or(0, |c| c.signatures.len());
        writeln!(f, "height      {}", self.height)?;
        writeln!(f, "hash        {}", self.hash)?;
        writeln!(f, "parent      {}", self.parent_hash)?;
        writeln!(f, "time (ms)   {}", self.timestamp_ms)?;
        writeln!(f, "proposer    {}", self.proposer)?;
        writeln!(f, "txs         {}", self.transactions.len())?;
        writeln!(f, "state root  {}", self.state_root)?;
        writeln!(f, "gas used    {}", self.gas_used)?;
        write!(f, "commit sigs {sigs}")
    }
}
