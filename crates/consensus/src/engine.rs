//! Starting a node's consensus: the malachite engine, the application loop, transaction gossip.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use bytesize::ByteSize;
use libp2p::{Multiaddr, PeerId};
use malachitebft_app_channel::app::config::{
    ConsensusConfig as EngineConsensusConfig, NodeConfig, P2pConfig, ValuePayload, ValueSyncConfig,
};
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::app::types::PeerId as MalachitePeerId;
use malachitebft_app_channel::{
    ConsensusContext, EngineBuilder, EngineHandle, NetworkContext, NetworkIdentity, RequestContext,
    Signer, SyncContext, WalContext,
};
use malachitebft_signing_ed25519::{PrivateKey, PublicKey};
use pmr_execution::Executor;
use pmr_primitives::{Genesis, TxLimits};
use pmr_storage::Store;
use tokio::task::JoinHandle;
use tracing::{error, info, Instrument};

use crate::app::App;
use crate::chain::ChainStore;
use crate::codec::PmrCodec;
use crate::config::{ConsensusConfig, PeerConfig};
use crate::context::{Address, PmrContext, Validator, ValidatorSet};
use crate::error::ConsensusError;
use crate::gossip::{self, GossipConfig};
use crate::ledger::Ledger;
use crate::mempool::Mempool;
use crate::metrics::ConsensusMetrics;
use crate::schedule::ValidatorSchedule;
use crate::signing::{PmrSigner, PmrVerifier};

/// The libp2p identity of a node key. A node's peer id is derived from its ed25519 key, so a
/// validator's peer id follows from the genesis validator set.
pub fn network_keypair(key: &PrivateKey) -> Keypair {
    Keypair::ed25519_from_bytes(key.inner().to_bytes()).expect("32-byte ed25519 secret")
}

/// The peer id of an ed25519 public key.
pub fn peer_id_of(public_key: &[u8; 32]) -> Result<PeerId, ConsensusError> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(public_key)
        .map_err(|e| ConsensusError::Genesis(format!("bad ed25519 key: {e}")))?;
    Ok(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// The validator each p2p identity may propose for: every known validator's key-derived
/// identity, and a configured peer that names the validator key it speaks for (which may join
/// the set later).
pub(crate) fn proposer_peers(
    sets: &[(u64, ValidatorSet)],
    peers: &[(PeerId, PeerConfig)],
) -> Result<HashMap<MalachitePeerId, Address>, ConsensusError> {
    let mut map = HashMap::new();
    for (_, set) in sets {
        for v in set.validators() {
            map.insert(malachite_peer_id(v.public_key.as_bytes())?, v.address);
        }
    }
    for (id, p) in peers {
        let Some(key) = &p.validator else { continue };
        let bytes: [u8; 32] = hex::decode(key.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                ConsensusError::Engine(format!(
                    "peer `{}` speaks for validator {key}, which is not a 32-byte hex key",
                    p.name
                ))
            })?;
        let public_key = PublicKey::from_bytes(bytes).map_err(|e| {
            ConsensusError::Engine(format!("peer `{}`: validator key {key}: {e}", p.name))
        })?;
        let id = MalachitePeerId::from_bytes(&id.to_bytes())
            .map_err(|e| ConsensusError::Engine(format!("peer id {id}: {e}")))?;
        map.insert(id, Address::from_public_key(&public_key));
    }
    Ok(map)
}

/// The engine's peer id of the node whose key is `public_key`.
pub(crate) fn malachite_peer_id(public_key: &[u8; 32]) -> Result<MalachitePeerId, ConsensusError> {
    let id = peer_id_of(public_key)?;
    MalachitePeerId::from_bytes(&id.to_bytes())
        .map_err(|e| ConsensusError::Engine(format!("peer id {id}: {e}")))
}

/// The validator set of a genesis.
pub fn validator_set(genesis: &Genesis) -> Result<ValidatorSet, ConsensusError> {
    let mut validators = Vec::new();
    for v in &genesis.validators {
        let key = v
            .consensus_key_bytes()
            .map_err(|e| ConsensusError::Genesis(e.to_string()))?;
        let public_key = PublicKey::from_bytes(key)
            .map_err(|e| ConsensusError::Genesis(format!("validator {}: {e}", v.name)))?;
        validators.push(Validator {
            address: Address::from_public_key(&public_key),
            public_key,
            voting_power: v.voting_power,
            name: v.name.clone(),
        });
    }
    Ok(ValidatorSet::new(validators))
}

/// What [`start`] needs.
pub struct StartParams {
    /// Name in logs and status.
    pub moniker: String,
    /// The engine's write-ahead log lives under `home/wal`.
    pub home: PathBuf,
    /// The chain's genesis; the validator set is read from it.
    pub genesis: Genesis,
    /// This node's ed25519 key: for a validator, its consensus key.
    pub node_key: PrivateKey,
    /// The libp2p identity (by default [`network_keypair`] of the node key).
    pub network_key: Keypair,
    /// Consensus settings from the node's configuration file.
    pub config: ConsensusConfig,
    /// The node's database; the committed chain lives in its column families.
    pub store: Store,
    /// Executes blocks and checks transactions against the node's state.
    pub executor: Arc<Executor>,
    /// Where consensus reports its metrics; the caller registers them for export.
    pub metrics: ConsensusMetrics,
}

/// A running consensus part.
pub struct ConsensusNode {
    /// The ledger the rest of the node (gRPC) uses: submit transactions, read the chain, follow new
    /// blocks.
    pub ledger: Arc<Ledger>,
    /// Ends with an error when the node must halt (state divergence) or the engine died.
    pub app: JoinHandle<Result<(), ConsensusError>>,
    engine: EngineHandle,
}

impl ConsensusNode {
    /// Stops the engine and the application loop.
    pub async fn shutdown(self) {
        let _ = self.engine.actor.kill_and_wait(None).await;
        self.app.abort();
        self.engine.handle.abort();
    }
}

/// The engine's settings for a node with these peers (shared with [`crate::flood`], which
/// must speak the same protocol).
pub(crate) fn engine_config(
    moniker: &str,
    config: &ConsensusConfig,
    peers: &[(PeerId, PeerConfig)],
) -> EngineConfig {
    EngineConfig {
        moniker: moniker.to_string(),
        consensus: EngineConsensusConfig {
            enabled: true,
            p2p: P2pConfig {
                listen_addr: config.p2p_listen.clone(),
                persistent_peers: peers
                    .iter()
                    .map(|(id, p)| with_peer_id(&p.p2p, *id))
                    .collect(),
                persistent_peers_only: true,
                pubsub_max_size: ByteSize::mib(8),
                rpc_max_size: ByteSize::mib(64),
                discovery: malachitebft_app_channel::app::config::DiscoveryConfig {
                    enabled: false,
                    max_connections_per_ip: config.max_connections_per_ip,
                    ..Default::default()
                },
                ..Default::default()
            },
            value_payload: ValuePayload::ProposalAndParts,
            ..Default::default()
        },
        sync: ValueSyncConfig {
            enabled: config.sync_enabled,
            max_response_size: ByteSize::mib(64),
            // Blocks per request (the engine trims a response to `max_response_size`). The
            // default of 5, with 5 requests in flight, let a node that lost its disk sync only
            // ~25 blocks per round of requests (about 8 blocks/s on the test machine).
            batch_size: 50,
            ..Default::default()
        },
    }
}

/// The p2p identity the engine announces: a validator's carries a proof, signed with its
/// consensus key, that this peer id speaks for it.
pub(crate) async fn network_identity(
    moniker: &str,
    keypair: Keypair,
    validator: Option<&PmrSigner>,
) -> Result<NetworkIdentity, ConsensusError> {
    let Some(signer) = validator else {
        return Ok(NetworkIdentity::new(moniker.to_string(), keypair, None));
    };
    let public_key = signer.public_key();
    let proof = signer
        .sign_validator_proof(
            public_key.as_bytes().to_vec(),
            keypair.public().to_peer_id().to_bytes(),
        )
        .await
        .map_err(|e| ConsensusError::Engine(format!("validator proof: {e:?}")))?;
    let proof_bytes = PmrCodec
        .encode(&proof)
        .map_err(|e| ConsensusError::Engine(e.to_string()))?;
    Ok(NetworkIdentity::new_validator(
        moniker.to_string(),
        keypair,
        Address::from_public_key(&public_key).to_string(),
        proof_bytes,
    ))
}

/// The peers of `config` other than this node itself, with their parsed ids.
pub(crate) fn parse_peers(
    config: &ConsensusConfig,
    me: PeerId,
) -> Result<Vec<(PeerId, PeerConfig)>, ConsensusError> {
    let mut peers = Vec::new();
    for p in &config.peers {
        let id = PeerId::from_str(&p.peer_id).map_err(|e| {
            ConsensusError::Engine(format!("peer `{}` has an invalid peer_id: {e}", p.name))
        })?;
        if id != me {
            peers.push((id, p.clone()));
        }
    }
    Ok(peers)
}

#[derive(Clone)]
pub(crate) struct EngineConfig {
    moniker: String,
    pub(crate) consensus: EngineConsensusConfig,
    pub(crate) sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &EngineConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut EngineConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &ValueSyncConfig {
        &self.sync
    }
    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.sync
    }
}

/// Bytes of the consensus WAL's header (version `u32`, sequence `u64`), written and synced when
/// the file is created, before any entry.
pub const WAL_HEADER_BYTES: u64 = 12;

/// A crash while the engine was creating its WAL can leave a file shorter than the header; the
/// engine then refuses to start ("Invalid WAL version"). Such a file holds no entry, so it is
/// removed (the engine creates a fresh one). A torn tail after the header is the engine's own
/// business: it drops partial entries when it opens the log.
fn repair_torn_wal_header(path: &std::path::Path) -> Result<(), ConsensusError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() < WAL_HEADER_BYTES => {
            tracing::warn!(target: "pmr::consensus", path = %path.display(), bytes = m.len(), "the consensus WAL is shorter than its header (a crash while it was created); starting a new one");
            std::fs::remove_file(path).map_err(|e| {
                ConsensusError::Engine(format!(
                    "cannot remove the torn WAL {}: {e}",
                    path.display()
                ))
            })
        }
        _ => Ok(()),
    }
}

fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    addr.clone().with(libp2p::multiaddr::Protocol::P2p(peer))
}

/// Starts consensus for one node.
pub async fn start(params: StartParams) -> Result<ConsensusNode, ConsensusError> {
    let StartParams {
        moniker,
        home,
        genesis,
        node_key,
        network_key,
        config,
        store,
        executor,
        metrics,
    } = params;
    // Every node with a consensus key runs as a validator: the engine lets it vote at the heights
    // whose set holds its key (the genesis set, or one the council added it to later).
    let schedule = Arc::new(ValidatorSchedule::load(&genesis, &executor)?);
    let public_key = node_key.public_key();
    let my_address = Address::from_public_key(&public_key);
    let known_sets = schedule.entries();
    let is_validator = known_sets
        .iter()
        .any(|(_, set)| set.validators().iter().any(|v| v.address == my_address));
    let keypair = network_key;
    let my_peer_id = keypair.public().to_peer_id();

    let peers = parse_peers(&config, my_peer_id)?;
    let mut allowed: HashSet<PeerId> = peers.iter().map(|(id, _)| *id).collect();
    for (_, set) in &known_sets {
        for v in set.validators() {
            allowed.insert(peer_id_of(v.public_key.as_bytes())?);
        }
    }

    let engine_cfg = engine_config(&moniker, &config, &peers);

    let chain = ChainStore::open(store, genesis.hash())?;
    // A block and its state are committed in one batch, so the state is never ahead of the
    // chain, except after a state sync that stopped between importing the state and storing
    // its block.
    let (executed, chain_height) = (executor.head().0, chain.height()?);
    if executed > chain_height {
        return Err(ConsensusError::Engine(format!(
            "the execution state is at height {executed} but the chain at {chain_height}: a \
             `pmr state sync` that did not finish? Delete this node's data directory and run \
             it again"
        )));
    }
    let mempool = Arc::new(Mempool::new(config.mempool));
    let limits = TxLimits {
        chain_id: genesis.chain_id,
        max_tx_bytes: config.max_tx_bytes,
    };
    let chain_id = genesis.chain_id;
    let ledger = Arc::new(Ledger::new(
        moniker.clone(),
        genesis,
        limits,
        chain,
        executor,
        mempool,
        schedule.clone(),
        Some(my_address),
        metrics,
    )?);

    let signer = Arc::new(PmrSigner::new(node_key.clone(), chain_id));
    let span = tracing::error_span!("node", moniker = %moniker);
    let identity = network_identity(&moniker, keypair.clone(), Some(&*signer)).await?;
    let verifier = PmrVerifier { chain_id };
    let consensus_ctx = ConsensusContext::new_validator(
        my_address,
        Box::new(verifier),
        Box::new(PmrSigner::new(node_key.clone(), chain_id)),
    );
    let wal_path = home.join("wal").join("consensus.wal");
    repair_torn_wal_header(&wal_path)?;
    let (mut channels, engine) = async {
        EngineBuilder::new(PmrContext, engine_cfg)
            .with_default_wal(WalContext::new(wal_path, PmrCodec))
            .with_default_network(NetworkContext::new(identity, PmrCodec))
            .with_default_consensus(consensus_ctx)
            .with_default_sync(SyncContext::new(PmrCodec))
            .with_default_request(RequestContext::new(100))
            .build()
            .await
    }
    .instrument(span.clone())
    .await
    .map_err(|e| ConsensusError::Engine(format!("{e:#}")))?;
    let _ = ledger.net_requests.set(channels.net_requests.clone());

    let gossip_ledger = ledger.clone();
    let tx_gossip = gossip::spawn(
        GossipConfig {
            keypair,
            listen: config.gossip_listen.clone(),
            dial: peers
                .iter()
                .map(|(id, p)| (*id, p.gossip.clone()))
                .collect(),
            allowed,
        },
        move |_peer, txs| {
            let ledger = gossip_ledger.clone();
            tokio::task::spawn_blocking(move || ledger.admit_gossiped(txs));
        },
    )?;
    let _ = ledger.gossip.set(tx_gossip);

    info!(target: "pmr::consensus", %moniker, validator = is_validator, address = %my_address, peer_id = %my_peer_id, "consensus starting");
    let proposer_peers = proposer_peers(&known_sets, &peers)?;
    let app = App::new(ledger.clone(), Some(signer), config, proposer_peers);
    let app = tokio::spawn(
        async move {
            let result = app.run(&mut channels).await;
            if let Err(e) = &result {
                error!(target: "pmr::consensus", error = %e, "consensus stopped");
            }
            result
        }
        .instrument(span),
    );
    Ok(ConsensusNode {
        ledger,
        app,
        engine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_shorter_than_its_header_is_replaced_and_a_longer_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("consensus.wal");
        repair_torn_wal_header(&wal).expect("no file is fine");
        std::fs::write(&wal, [1u8, 0, 0, 0, 0, 0]).unwrap();
        repair_torn_wal_header(&wal).unwrap();
        assert!(!wal.exists(), "a torn header is removed");
        let entries = [7u8; 40];
        std::fs::write(&wal, entries).unwrap();
        repair_torn_wal_header(&wal).unwrap();
        assert_eq!(std::fs::read(&wal).unwrap(), entries, "left to the engine");
    }
}
