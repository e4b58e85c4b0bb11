//! The committed chain on disk: blocks, their hashes, commit certificates, the transaction
//! index, and undecided proposals kept for crash recovery of a round.

use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, Round,
};
use pmr_primitives::{Block, B256};
use pmr_storage::{Batch, Column, Durability, StorageError, Store};

use crate::codec::{decode_certificate, encode_certificate};
use crate::context::PmrContext;

const META_HEIGHT: &[u8] = b"chain/height";
const META_GENESIS: &[u8] = b"chain/genesis";

/// Why a base block (state sync) was not installed.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The block does not decode or is not a block.
    #[error("the base block: {0}")]
    Block(String),
    /// The certificate does not decide this block with the network's validators.
    #[error("the base block's commit certificate: {0}")]
    Certificate(#[from] crate::verify::VerifyError),
    /// The store holds blocks already.
    #[error("this node already holds blocks up to height {0}: state sync starts from an empty data directory")]
    NotEmpty(u64),
    /// The database failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl From<StorageError> for BaseError {
    fn from(e: StorageError) -> Self {
        Self::Chain(ChainError::Storage(e))
    }
}

/// Errors of the chain store.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored record does not decode: the data directory is damaged.
    #[error("stored {what} at height {height} is corrupt: {reason}")]
    Corrupt {
        /// The kind of record: block, certificate or undecided proposal.
        what: &'static str,
        /// The height it is stored under.
        height: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was bound to another genesis when it was first opened.
    #[error(
        "this data directory belongs to another chain (genesis {stored}), not to the configured \
         genesis {configured}: point --home at a fresh directory or at this chain's data"
    )]
    WrongGenesis {
        /// The genesis hash the database is bound to.
        stored: B256,
        /// The genesis hash this node was started with.
        configured: B256,
    },
}

fn hkey(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

fn undecided_key(height: u64, round: Round, hash: &B256) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&(round.as_i64() as u64).to_be_bytes());
    k.extend_from_slice(hash.as_slice());
    k
}

/// Where a committed transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// Height of the block that includes the transaction.
    pub height: u64,
    /// Position of the transaction in that block, from 0.
    pub index: u32,
}

/// A proposal this node built or received, not yet decided.
#[derive(Clone, Debug)]
pub struct UndecidedProposal {
    /// Height the block is proposed for.
    pub height: u64,
    /// Round of the proposal.
    pub round: Round,
    /// Hash of `block`: the value consensus votes on.
    pub hash: B256,
    /// The proposed block, decoded.
    pub block: Block,
    /// The encoded block (as streamed), to restream or serve without re-encoding.
    pub bytes: bytes::Bytes,
}

/// The chain's column families, typed.
#[derive(Clone, Debug)]
pub struct ChainStore {
    store: Store,
}

impl ChainStore {
    /// Opens the chain in `store`, binding a fresh database to `genesis_hash` or checking that an
    /// existing one belongs to it.
    pub fn open(store: Store, genesis_hash: B256) -> Result<Self, ChainError> {
        match store.get(Column::Meta, META_GENESIS)? {
            Some(stored) if stored.as_slice() != genesis_hash.as_slice() => {
                return Err(ChainError::WrongGenesis {
                    stored: B256::from_slice(&stored),
                    configured: genesis_hash,
                })
            }
            Some(_) => {}
            None => store.put(
                Column::Meta,
                META_GENESIS,
                genesis_hash.as_slice(),
                Durability::Sync,
            )?,
        }
        Ok(Self { store })
    }

    /// The underlying database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Height of the last committed block, 0 before the first.
    pub fn height(&self) -> Result<u64, ChainError> {
        Ok(self
            .store
            .get(Column::Meta, META_HEIGHT)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The encoded block committed at `height`, exactly as stored and streamed (not decoded).
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.store.get(Column::Blocks, &hkey(height))?)
    }

    /// The block committed at `height`, decoded and checked; one that does not decode is
    /// [`ChainError::Corrupt`].
    pub fn block(&self, height: u64) -> Result<Option<Block>, ChainError> {
        let Some(bytes) = self.block_bytes(height)? else {
            return Ok(None);
        };
        Block::decode_checked(&bytes)
            .map(Some)
            .map_err(|e| ChainError::Corrupt {
                what: "block",
                height,
                reason: e.to_string(),
            })
    }

    /// The height at which the block with hash `hash` was committed, if it was.
    pub fn height_of(&self, hash: &B256) -> Result<Option<u64>, ChainError> {
        Ok(self
            .store
            .get(Column::BlockHashes, hash.as_slice())?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes)))
    }

    /// The commit certificate of the block at `height`; one that does not decode is
    /// [`ChainError::Corrupt`].
    pub fn certificate(
        &self,
        height: u64,
    ) -> Result<Option<ExtendedCommitCertificate<PmrContext>>, ChainError> {
        let Some(bytes) = self.store.get(Column::Certificates, &hkey(height))? else {
            return Ok(None);
        };
        decode_certificate(&bytes)
            .map(Some)
            .map_err(|e| ChainError::Corrupt {
                what: "certificate",
                height,
                reason: e.to_string(),
            })
    }

    /// Where the transaction with hash `tx_hash` was committed; `None` if it is not.
    pub fn tx_location(&self, tx_hash: &B256) -> Result<Option<TxLocation>, ChainError> {
        Ok(self
            .store
            .get(Column::TxIndex, tx_hash.as_slice())?
            .and_then(|v| {
                let v: [u8; 12] = v.try_into().ok()?;
                Some(TxLocation {
                    height: u64::from_be_bytes(v[..8].try_into().ok()?),
                    index: u32::from_be_bytes(v[8..].try_into().ok()?),
                })
            }))
    }

    /// About how many bytes [`ChainStore::stage_block`] adds to a write batch: the block, its
    /// tx index (hash, location and framing: ~56 bytes a transaction) and its certificate.
    pub fn stage_bytes(block: &Block, block_bytes: &[u8]) -> usize {
        block_bytes.len() + block.txs.len() * 56 + 16 * 1024
    }

    /// Stages a decided block, its certificate and its transaction index into `batch`; the
    /// caller adds the execution results and commits the batch atomically.
    pub fn stage_block(
        &self,
        batch: &mut Batch<'_>,
        block: &Block,
        block_bytes: &[u8],
        certificate: &ExtendedCommitCertificate<PmrContext>,
    ) {
        self.stage(batch, block, block_bytes, certificate, true)
    }

    fn stage(
        &self,
        batch: &mut Batch<'_>,
        block: &Block,
        block_bytes: &[u8],
        certificate: &ExtendedCommitCertificate<PmrContext>,
        index_txs: bool,
    ) {
        let height = block.header.height;
        let hash = block.hash();
        batch.put(Column::Blocks, &hkey(height), block_bytes);
        batch.put(Column::BlockHashes, hash.as_slice(), &hkey(height));
        batch.put(
            Column::Certificates,
            &hkey(height),
            &encode_certificate(certificate),
        );
        for (index, tx_hash) in block.tx_hashes().iter().enumerate().filter(|_| index_txs) {
            let mut loc = [0u8; 12];
            loc[..8].copy_from_slice(&height.to_be_bytes());
            loc[8..].copy_from_slice(&(index as u32).to_be_bytes());
            batch.put(Column::TxIndex, tx_hash.as_slice(), &loc);
        }
        batch.put(Column::Meta, META_HEIGHT, &hkey(height));
        // Proposals of this height (and any older) are no longer needed for recovery. Keys
        // start with the big-endian height, so they are the first keys of the column.
        let mut stale = Vec::new();
        let scan = self.store.for_each_from(Column::Undecided, &[], |k, _| {
            match k.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(h) if u64::from_be_bytes(h) <= height => {
                    stale.push(k.to_vec());
                    true
                }
                _ => false,
            }
        });
        if let Err(e) = scan {
            tracing::warn!(target: "pmr::consensus", error = %e, "cannot prune undecided proposals");
        }
        for k in stale {
            batch.delete(Column::Undecided, &k);
        }
    }

    /// Makes `block` (encoded as `block_bytes`, decided by `certificate`) the first block this
    /// store holds: the base a node joining by state sync starts from (the blocks below it
    /// stay with the peers that keep them). The certificate must be one the network's
    /// `validators` signed for exactly this block, checked here; the store must hold no block
    /// yet. Written durably with the block's transaction index; the caller imports the state
    /// of that height beside it.
    pub fn install_base(
        &self,
        chain_id: u64,
        validators: &crate::context::ValidatorSet,
        block_bytes: &[u8],
        certificate: &crate::verify::Certificate,
    ) -> Result<Block, BaseError> {
        let block =
            Block::decode_checked(block_bytes).map_err(|e| BaseError::Block(e.to_string()))?;
        let height = block.header.height;
        if height == 0 {
            return Err(BaseError::Block(
                "height 0 is the genesis, not a block".into(),
            ));
        }
        let hash = block.hash();
        crate::verify::verify_certificate(chain_id, validators, certificate, height, hash)?;
        match self.height()? {
            0 => {}
            held => return Err(BaseError::NotEmpty(held)),
        }
        let mut commit_signatures = Vec::with_capacity(certificate.signatures.len());
        for s in &certificate.signatures {
            // Each one was checked above: a known validator's address, a 64-byte signature.
            let address = crate::context::Address::from_slice(&s.validator)
                .ok_or_else(|| BaseError::Block("a signer address is not 20 bytes".into()))?;
            let bytes: [u8; 64] = s
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| BaseError::Block("a signature is not 64 bytes".into()))?;
            commit_signatures.push(ExtendedCommitSignature::new(
                address,
                malachitebft_signing_ed25519::Signature::from_bytes(bytes),
                None,
            ));
        }
        let extended = ExtendedCommitCertificate {
            height: crate::context::Height(height),
            round: Round::new(certificate.round),
            value_id: crate::context::BlockHash(hash),
            commit_signatures,
        };
        let mut batch = self
            .store
            .batch_with_capacity(Self::stage_bytes(&block, block_bytes));
        // Its transactions are not indexed: their receipts are not on this node (the snapshot
        // holds state, not receipts), so they are looked up at the peers, as older ones are.
        self.stage(&mut batch, &block, block_bytes, &extended, false);
        batch.commit(Durability::Sync)?;
        Ok(block)
    }

    /// Replaces the stored certificate of a committed height (finalization may add signatures).
    pub fn update_certificate(
        &self,
        certificate: &ExtendedCommitCertificate<PmrContext>,
    ) -> Result<(), ChainError> {
        self.store.put(
            Column::Certificates,
            &hkey(certificate.height.0),
            &encode_certificate(certificate),
            Durability::Buffered,
        )?;
        Ok(())
    }

    /// Persists an undecided proposal. Our own proposals are written with
    /// [`Durability::Sync`] so a restarted proposer re-proposes the very same block.
    pub fn put_undecided(
        &self,
        p: &UndecidedProposal,
        durability: Durability,
    ) -> Result<(), ChainError> {
        self.store.put(
            Column::Undecided,
            &undecided_key(p.height, p.round, &p.hash),
            &p.bytes,
            durability,
        )?;
        Ok(())
    }

    /// Undecided proposals of one height and round.
    pub fn undecided(
        &self,
        height: u64,
        round: Round,
    ) -> Result<Vec<UndecidedProposal>, ChainError> {
        let mut prefix = Vec::with_capacity(16);
        prefix.extend_from_slice(&height.to_be_bytes());
        prefix.extend_from_slice(&(round.as_i64() as u64).to_be_bytes());
        self.decode_undecided(self.store.scan_prefix(Column::Undecided, &prefix)?)
    }

    /// An undecided proposal of `height` with block hash `hash`, in any round.
    pub fn undecided_by_hash(
        &self,
        height: u64,
        hash: &B256,
    ) -> Result<Option<UndecidedProposal>, ChainError> {
        let all = self.decode_undecided(
            self.store
                .scan_prefix(Column::Undecided, &height.to_be_bytes())?,
        )?;
        Ok(all.into_iter().find(|p| &p.hash == hash))
    }

    fn decode_undecided(
        &self,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<UndecidedProposal>, ChainError> {
        rows.into_iter()
            .map(|(k, v)| {
                let height = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
                let corrupt = |reason: String| ChainError::Corrupt {
                    what: "undecided proposal",
                    height,
                    reason,
                };
                if k.len() != 48 {
                    return Err(corrupt(format!("key of {} bytes", k.len())));
                }
                let round_raw = i64::from_be_bytes(k[8..16].try_into().unwrap_or_default());
                let round = u32::try_from(round_raw)
                    .map(Round::new)
                    .map_err(|_| corrupt(format!("round {round_raw}")))?;
                let block = Block::decode_checked(&v).map_err(|e| corrupt(e.to_string()))?;
                Ok(UndecidedProposal {
                    height,
                    round,
                    hash: block.hash(),
                    block,
                    bytes: v.into(),
                })
            })
            .collect()
    }
}
