//! State sync: a new or wiped node starts from the state of a recent height, fetched from a
//! peer, instead of replaying every block from height 1.
//!
//! ```text
//!   peer:    GetStateSnapshot → snapshot of its latest height H (height and root in every chunk)
//!            GetBlock(H)      → block H with its commit certificate
//!   joiner:  the certificate is checked against the genesis validator set (more than 2/3 of
//!            the voting power signed exactly block H), the block's state root must be the
//!            snapshot's, and the snapshot's entries must give that root (import); then block
//!            H is stored as the node's first block and the node starts at H + 1, taking the
//!            blocks after H from its peers as any node that fell behind does.
//! ```
//!
//! Nothing the peer sends is trusted: a snapshot that is not the state of a block the
//! validators signed is refused and nothing is written. The validator set is the genesis's
//! (the network has no validator-set changes yet, #24 §2); once it has, the certificate must
//! be checked against the set in force at H, derived from the governance history.
//!
//! Blocks below H are not on this node: its API answers `NOT_FOUND` for them, and the peers
//! that keep every block serve them (audit proofs need them). Blobs named by records minted
//! before H are not fetched ahead: replication starts at H, and a read of an older record
//! fetches its blobs from the peers then.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eyre::{bail, eyre, Context, Result};
use pmr_client::{ConnectOptions, PmrClient};
use pmr_consensus::{ChainStore, CommitSignature, ValidatorSchedule};
use pmr_execution::{Executor, TrustedHead};
use pmr_primitives::{Genesis, B256};
use pmr_storage::{Column, Durability, Store};
use serde::Serialize;

use crate::config::{Home, NodeConfig};
use crate::keys;

/// What a state sync did.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    /// The height the node starts from (its first block).
    pub height: u64,
    /// That height's state root.
    pub state_root: B256,
    /// Entries imported (accounts, storage pages, codes).
    pub entries: u64,
    /// Bytes of snapshot fetched.
    pub snapshot_bytes: u64,
    /// Validators' voting power that signed the base block's certificate.
    pub signed_power: u128,
    /// Time from the first request to the imported state, in seconds.
    pub seconds: f64,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state of height {} imported ({} entries, {} bytes of snapshot, root {}, certificate \
             signed by voting power {}) in {:.1} s: start the node, it continues from height {}",
            self.height,
            self.entries,
            self.snapshot_bytes,
            self.state_root,
            self.signed_power,
            self.seconds,
            self.height + 1
        )
    }
}

/// Fetches a snapshot from the node at `from` (as this node's operator, over TLS with the
/// network's CA from this home), checks it against the block the network signed at its
/// height, and writes state and block into this home's empty database. The node must be
/// stopped, and must never have stored a block.
pub async fn state_sync(home: &Home, from: &str) -> Result<SyncReport> {
    let started = Instant::now();
    let config = NodeConfig::load(&home.config())?;
    let genesis = Genesis::load(&home.genesis())?;
    let (_, operator) = keys::load_custodian_keys(home, config.key_passphrase_file.as_deref())?;
    let operator = operator.ok_or_else(|| {
        eyre!(
            "this node has no operator key (keys/custodian.json): a peer gives state snapshots \
             only to the operators of the network's validators"
        )
    })?;
    let ca = std::fs::read(home.ca_cert())
        .wrap_err_with(|| format!("cannot read the network's CA {}", home.ca_cert().display()))?;

    // The database first: refused before anything is fetched if it holds anything.
    std::fs::create_dir_all(home.data())
        .wrap_err_with(|| format!("cannot create {}", home.data().display()))?;
    let store = Store::open(home.db()).map_err(|e| {
        eyre!(
            "cannot open {} ({e}): stop the node first",
            home.db().display()
        )
    })?;
    let chain = ChainStore::open(store.clone(), genesis.hash())?;
    let held = chain.height()?;
    if held != 0 {
        bail!(
            "this node already holds blocks up to height {held}: state sync starts from an \
             empty data directory (move {} aside first)",
            home.data().display()
        );
    }
    if Executor::store_holds_state(&store)? {
        bail!(
            "{} holds execution state but no block (a state sync that did not finish, or a \
             node that started once): delete {} and run the sync again",
            home.db().display(),
            home.data().display()
        );
    }
    let client = PmrClient::connect(
        from,
        &ConnectOptions {
            ca_pem: Some(ca),
            account: Some(operator),
            insecure: false,
        },
    )
    .await
    .wrap_err_with(|| format!("cannot reach {from}"))?;
    let file = snapshot_path(home);
    if file.exists() {
        std::fs::remove_file(&file)?;
    }
    // A peer names the snapshot's size up front: one that would not fit (the file, then the
    // state imported beside it, above the node's free-space floor) is refused before it fills
    // the disk, and no more than the named size is taken.
    let room = pmr_rpc::DiskFloor::new(home.data(), 0)
        .free()
        .map(|free| free.saturating_sub(config.rpc.min_free_disk));
    let (height, root, snapshot_bytes) = match fetch_snapshot(&client, &file, room).await {
        Ok(fetched) => fetched,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    };
    let result = install(&client, &store, &chain, &genesis, &file, height, root).await;
    let _ = std::fs::remove_file(&file);
    let (entries, signed_power) = result?;
    Ok(SyncReport {
        height,
        state_root: root,
        entries,
        snapshot_bytes,
        signed_power,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Streams the peer's snapshot into `file` (created 0600); returns the height and root every
/// chunk names, and its size.
async fn fetch_snapshot(
    client: &PmrClient,
    file: &std::path::Path,
    room: Option<u64>,
) -> Result<(u64, B256, u64)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut stream = client
        .state_snapshot()
        .await
        .wrap_err("the peer refused a state snapshot")?;
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .wrap_err_with(|| format!("cannot create {}", file.display()))?,
    );
    let mut named: Option<(u64, Vec<u8>, u64)> = None;
    let mut received = 0u64;
    loop {
        // The peer writes the whole snapshot before its first chunk: minutes for a large state.
        let idle = Duration::from_secs(if named.is_none() { 600 } else { 60 });
        let next = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| eyre!("the peer sent nothing for {idle:?}"))?
            .wrap_err("the snapshot stream broke")?;
        let Some(chunk) = next else { break };
        let this = (chunk.height, chunk.state_root.clone(), chunk.total_bytes);
        match &named {
            None => {
                // The file and about as much again once imported.
                if let Some(room) = room.filter(|r| chunk.total_bytes.saturating_mul(2) > *r) {
                    bail!(
                        "the peer's snapshot is {} bytes: with the state imported beside it that \
                         is more than the {room} bytes free above this node's floor \
                         (min_free_disk)",
                        chunk.total_bytes
                    );
                }
                named = Some(this)
            }
            Some(first) if *first != this => {
                bail!("the peer's snapshot chunks name different heights, roots or sizes")
            }
            Some(_) => {}
        }
        received += chunk.data.len() as u64;
        if received > chunk.total_bytes {
            bail!(
                "the peer sent more than the {} bytes it announced",
                chunk.total_bytes
            );
        }
        out.write_all(&chunk.data)?;
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    let (height, root, total) = named.ok_or_else(|| eyre!("the peer sent an empty snapshot"))?;
    if received != total {
        bail!("the snapshot stream ended after {received} of {total} bytes");
    }
    if root.len() != 32 {
        bail!("the snapshot names a state root of {} bytes", root.len());
    }
    Ok((height, B256::from_slice(&root), received))
}

/// Checks block `height` (from the peer) against the validators of its height (from the genesis
/// and the validator-set changes the peer proves) and the snapshot's root, imports the
/// snapshot, and stores the block as this node's first.
async fn install(
    client: &PmrClient,
    store: &Store,
    chain: &ChainStore,
    genesis: &Genesis,
    file: &std::path::Path,
    height: u64,
    root: B256,
) -> Result<(u64, u128)> {
    let block = client
        .block(height)
        .await
        .wrap_err_with(|| format!("cannot fetch block {height} from the peer"))?;
    let cert = block
        .certificate
        .ok_or_else(|| eyre!("the peer's block {height} has no commit certificate"))?;
    let certificate = certificate_of(&cert).ok_or_else(|| {
        eyre!(
            "the certificate names a block hash of {} bytes",
            cert.block_hash.len()
        )
    })?;
    // Who signed it: the genesis set, or the one the chain's validator-set changes lead to,
    // each change checked against the set of its own height.
    let mut entries = Vec::new();
    for change in client
        .validator_set_changes()
        .await
        .wrap_err("cannot fetch the validator-set changes from the peer")?
    {
        entries.push(pmr_client::records::proof_entry(change)?);
    }
    let schedule = ValidatorSchedule::from_entries(genesis, &entries)
        .wrap_err("the peer's validator-set changes do not verify")?;
    let validators = schedule.at(height);
    let signed_power = pmr_consensus::verify_certificate(
        genesis.chain_id,
        &validators,
        &certificate,
        height,
        certificate.block_hash,
    )?;
    let decoded = pmr_primitives::Block::decode_checked(&block.encoded)
        .map_err(|e| eyre!("the peer's block {height} does not decode: {e}"))?;
    if decoded.hash() != certificate.block_hash || decoded.header.height != height {
        bail!("the peer's block {height} is not the block its certificate decides");
    }
    if decoded.header.state_root != root {
        bail!(
            "the snapshot names state root {root}, but block {height} the validators signed \
             names {}: refused",
            decoded.header.state_root
        );
    }
    // The state: checked entry by entry against the signed root before anything is kept.
    let info = {
        let (store, genesis, file) = (store.clone(), genesis.clone(), file.to_path_buf());
        let trusted = TrustedHead {
            height,
            state_root: root,
            timestamp_ms: decoded.header.timestamp_ms,
        };
        tokio::task::spawn_blocking(move || {
            Executor::import_snapshot(&store, &genesis, &file, trusted)
        })
        .await??
    };
    // The history in the imported state must be the one the peer proved (a peer that left a
    // change out could otherwise have had the base checked against a set that no longer signs).
    {
        let (store, genesis) = (store.clone(), genesis.clone());
        let imported = tokio::task::spawn_blocking(move || -> Result<_> {
            let executor = Executor::open(store, &genesis)?;
            Ok(ValidatorSchedule::load(&genesis, &executor)?.entries())
        })
        .await??;
        let proven = schedule.entries();
        let upto = |e: &Vec<(u64, pmr_consensus::context::ValidatorSet)>| -> Vec<_> {
            e.iter()
                .filter(|(from, _)| *from <= height)
                .cloned()
                .collect()
        };
        if upto(&imported) != upto(&proven) {
            bail!(
                "the peer's validator-set changes are not the ones its snapshot's state holds \
                 ({} sets up to height {height} proven, {} in the state): refused; delete this \
                 node's data directory and sync from another peer",
                upto(&proven).len(),
                upto(&imported).len()
            );
        }
    }
    // The block, checked again against the validators as it is written.
    chain.install_base(genesis.chain_id, &validators, &block.encoded, &certificate)?;
    // Replication of record blobs starts after the base (older ones are fetched when read);
    // the replicator also starts there on its own if this write is lost.
    store.put(
        Column::Meta,
        pmr_custody::replicate::CURSOR_KEY,
        &height.to_be_bytes(),
        Durability::Sync,
    )?;
    Ok((info.counts.total(), signed_power))
}

/// A commit certificate as the gRPC API returns it, for the checks of
/// [`pmr_consensus::verify_certificate`]; `None` when its block hash is not 32 bytes.
pub fn certificate_of(
    c: &pmr_client::proto::CommitCertificate,
) -> Option<pmr_consensus::Certificate> {
    (c.block_hash.len() == 32).then(|| pmr_consensus::Certificate {
        height: c.height,
        round: c.round,
        block_hash: B256::from_slice(&c.block_hash),
        signatures: c
            .signatures
            .iter()
            .map(|s| CommitSignature {
                validator: s.validator.clone(),
                signature: s.signature.clone(),
            })
            .collect(),
    })
}

/// Where a state sync keeps the snapshot while it checks it (deleted afterwards).
pub fn snapshot_path(home: &Home) -> PathBuf {
    home.data().join("state-sync.snapshot")
}
