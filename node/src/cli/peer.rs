//! `pmr peer`: the other nodes this node dials and lets in (`[[consensus.peers]]` of its
//! config), added from each operator's public key listing (`pmr keys show --output json`) and
//! the addresses that operator announces, the last step of the genesis ceremony before the
//! network starts (see `docs/operators.md`).

use std::fmt;
use std::path::PathBuf;

use clap::Subcommand;
use eyre::{bail, Result};
use libp2p::{Multiaddr, PeerId};
use pmr_consensus::PeerConfig;
use serde::{Deserialize, Serialize};

use super::Output;
use crate::config::{Home, NodeConfig};

#[derive(Subcommand)]
pub(crate) enum PeerCommand {
    /// Add a peer to this node's config from its operator's public key listing and the
    /// addresses it announces. Run on a stopped node; it takes effect at the next start.
    Add {
        /// This node's home.
        #[arg(long)]
        home: PathBuf,
        /// The peer operator's `pmr keys show --output json` output.
        #[arg(long)]
        keys: PathBuf,
        /// The peer's name in this node's logs (default: the listing's file name).
        #[arg(long)]
        name: Option<String>,
        /// The peer's consensus p2p address, e.g. `/dns4/node-b.example/tcp/26656`.
        #[arg(long)]
        p2p: Multiaddr,
        /// The peer's transaction gossip address.
        #[arg(long)]
        gossip: Multiaddr,
        /// The peer's content (record blocks) address; without it the peer is never dialled
        /// for content, though it may still connect.
        #[arg(long)]
        content: Option<Multiaddr>,
    },
    /// List the peers in this node's config.
    List {
        /// This node's home.
        #[arg(long)]
        home: PathBuf,
    },
}

/// The fields of `pmr keys show --output json` a peer entry needs.
#[derive(Deserialize)]
struct Listing {
    peer_id: String,
    consensus_key: String,
    separate_network_key: bool,
}

#[derive(Serialize)]
struct Peers(Vec<PeerConfig>);

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no peers");
        }
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}  {}  p2p {}  gossip {}",
                p.name, p.peer_id, p.p2p, p.gossip
            )?;
            if let Some(c) = &p.content {
                write!(f, "  content {c}")?;
            }
        }
        Ok(())
    }
}

impl PeerCommand {
    pub(crate) fn run(self, out: Output) -> Result<()> {
        match self {
            PeerCommand::Add {
                home,
                keys,
                name,
                p2p,
                gossip,
                content,
            } => {
                let home = Home::new(home);
                let path = home.config();
                let mut cfg = NodeConfig::load(&path)?;
                let listing: Listing = super::genesis::read_listing(&keys)?;
                let peer_id: PeerId = listing.peer_id.parse().map_err(|e| {
                    eyre::eyre!("{}: peer_id {}: {e}", keys.display(), listing.peer_id)
                })?;
                let own = crate::keys::load_node_key(&home.node_key())?;
                let own_id = crate::keys::network_identity(&home, &own)?
                    .public()
                    .to_peer_id();
                if peer_id == own_id {
                    bail!("{} lists this node itself", keys.display());
                }
                let name = name.unwrap_or_else(|| {
                    keys.file_stem()
                        .map_or("peer".into(), |s| s.to_string_lossy().into_owned())
                });
                if let Some(p) = cfg
                    .consensus
                    .peers
                    .iter()
                    .find(|p| p.name == name || p.peer_id == listing.peer_id)
                {
                    bail!(
                        "{} is already a peer (name {}, peer id {}): edit config.toml to change it",
                        name,
                        p.name,
                        p.peer_id
                    );
                }
                let peer = PeerConfig {
                    name: name.clone(),
                    peer_id: peer_id.to_string(),
                    p2p,
                    gossip,
                    content,
                    // A validator with a separate p2p identity is known by its consensus key.
                    validator: listing
                        .separate_network_key
                        .then_some(listing.consensus_key),
                };
                cfg.consensus.peers.push(peer);
                cfg.save(&path)?;
                println!("peer {name} ({peer_id}) added to {}", path.display());
                Ok(())
            }
            PeerCommand::List { home } => {
                let cfg = NodeConfig::load(&Home::new(home).config())?;
                out.show(&Peers(cfg.consensus.peers))
            }
        }
    }
}
