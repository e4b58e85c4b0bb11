//! The node's content store: a [`ContentNode`] on the node's own libp2p identity, sharing its
//! RocksDB, with the network's validators and configured peers as its peers.

use std::collections::HashSet;
use std::str::FromStr;

use eyre::{bail, Context, Result};
use pmr_consensus::{peer_id_of, ConsensusConfig};
use pmr_content::{ContentConfig, ContentNode, Keypair, PeerId, PeerSpec};
use pmr_primitives::Genesis;
use pmr_storage::Store;
use tracing::info;

use crate::config::ContentSettings;

/// The content peers: every configured peer (dialled at its `content` address when it has
/// one) and every genesis validator, minus this node.
pub(crate) fn peers(
    consensus: &ConsensusConfig,
    genesis: &Genesis,
    me: PeerId,
) -> Result<Vec<PeerSpec>> {
    let mut seen = HashSet::from([me]);
    let mut out = Vec::new();
    for p in &consensus.peers {
        let peer_id = PeerId::from_str(&p.peer_id).map_err(|e| {
            eyre::eyre!(
                "peer `{}` has an invalid peer_id `{}`: {e}",
                p.name,
                p.peer_id
            )
        })?;
        if seen.insert(peer_id) {
            out.push(PeerSpec {
                peer_id,
                addrs: p.content.iter().cloned().collect(),
            });
        }
    }
    for v in &genesis.validators {
        let key = v.consensus_key_bytes()?;
        let peer_id = peer_id_of(&key)?;
        if seen.insert(peer_id) {
            out.push(PeerSpec {
                peer_id,
                addrs: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Starts the content network on `settings.listen`.
pub(crate) async fn start(
    settings: &ContentSettings,
    keypair: Keypair,
    peers: Vec<PeerSpec>,
    store: Store,
) -> Result<ContentNode> {
    if settings.max_record_size == 0 {
        bail!("[content] max_record_size is 0, which refuses every record; remove the key for the 2 GiB default");
    }
    let dialled = peers.iter().filter(|p| !p.addrs.is_empty()).count();
    let mut cfg = ContentConfig::new(keypair, settings.listen.clone());
    cfg.peers = peers;
    cfg.max_record_size = settings.max_record_size;
    let node = ContentNode::spawn(cfg, store).await.wrap_err_with(|| {
        format!(
            "cannot start the content network on {} (port taken? set `listen` in [content])",
            settings.listen
        )
    })?;
    info!(
        target: "pmr::content",
        peer_id = %node.peer_id(),
        listen = ?node.listen_addrs(),
        dialled,
        max_record_size = settings.max_record_size,
        replicate = settings.replicate,
        "content store started"
    );
    Ok(node)
}
