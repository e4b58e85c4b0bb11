//! RocksDB blockstore: blocks in [`Column::Blobs`] keyed by CID bytes, pinned roots in
//! [`Column::Pins`]. Every read re-hashes the block; a block that no longer matches its CID is
//! deleted (so it can be fetched again) and reported as corrupt.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use pmr_storage::{Column, Durability, Store};
use tokio::sync::{broadcast, RwLock};

use crate::error::ContentError;
use pmr_blob::dag::Block;
use pmr_blob::ids::{verify_block, DAG_CBOR, MAX_BLOCK_SIZE, RAW};
use pmr_blob::manifest::Manifest;
use pmr_blob::BlobError;

/// Deepest manifest tree accepted (4096^3 leaves of 256 KiB is far beyond any size limit).
pub const MAX_DEPTH: usize = 4;

/// What garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blocks deleted.
    pub removed_blocks: u64,
    /// Bytes deleted.
    pub removed_bytes: u64,
    /// Blocks kept because a pinned root reaches them.
    pub kept_blocks: u64,
}

/// The local state of a record's DAG.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalDag {
    /// Every block of the DAG is stored here.
    pub complete: bool,
    /// Record size from the root manifest, if the root is stored.
    pub size: Option<u64>,
    /// Blocks of the DAG stored here.
    pub blocks_present: u64,
    /// Blocks of the DAG known to be missing (under stored manifests).
    pub blocks_missing: u64,
}

/// The content store's view of the node database.
#[derive(Clone)]
pub struct BlockStore {
    store: Store,
    gc_lock: Arc<RwLock<()>>,
    new_blocks: broadcast::Sender<Cid>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore")
            .field("store", &self.store)
            .finish()
    }
}

impl BlockStore {
    /// A blockstore over the node's database.
    pub fn new(store: Store) -> Self {
        let (new_blocks, _) = broadcast::channel(4096);
        Self {
            store,
            gc_lock: Arc::new(RwLock::new(())),
            new_blocks,
        }
    }

    /// The underlying database.
    pub fn database(&self) -> &Store {
        &self.store
    }

    /// CIDs of blocks as they are stored (used to serve peers waiting for them).
    pub fn subscribe(&self) -> broadcast::Receiver<Cid> {
        self.new_blocks.subscribe()
    }

    /// Held by writers of unpinned blocks that are about to be pinned; GC takes it exclusively.
    pub(crate) fn gc_lock(&self) -> &Arc<RwLock<()>> {
        &self.gc_lock
    }

    /// Reads a block and checks it against its CID.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, ContentError> {
        let Some(data) = self.store.get(Column::Blobs, &cid.to_bytes())? else {
            return Ok(None);
        };
        if let Err(e) = verify_block(cid, &data) {
            if matches!(e, BlobError::CorruptBlock { .. }) {
                tracing::warn!(target: "pmr::content", %cid, "corrupt block on disk, deleting it");
                let mut b = self.store.batch();
                b.delete(Column::Blobs, &cid.to_bytes());
                b.commit(Durability::Buffered)?;
            }
            return Err(e.into());
        }
        Ok(Some(Bytes::from(data)))
    }

    /// Whether a block is stored (not re-hashed).
    pub fn has(&self, cid: &Cid) -> Result<bool, ContentError> {
        Ok(self.store.contains(Column::Blobs, &cid.to_bytes())?)
    }

    /// Verifies and stores one block.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), ContentError> {
        verify_block(cid, data)?;
        self.store
            .put(Column::Blobs, &cid.to_bytes(), data, Durability::Buffered)?;
        let _ = self.new_blocks.send(*cid);
        Ok(())
    }

    /// Stores blocks this node computed itself (their CIDs are already their hashes).
    pub(crate) fn put_computed(&self, blocks: &[Block]) -> Result<(), ContentError> {
        let mut b = self.store.batch();
        for (cid, data) in blocks {
            b.put(Column::Blobs, &cid.to_bytes(), data);
        }
        b.commit(Durability::Buffered)?;
        for (cid, _) in blocks {
            let _ = self.new_blocks.send(*cid);
        }
        Ok(())
    }

    /// Deletes blocks.
    pub(crate) fn remove_many(&self, cids: &[Cid]) -> Result<(), ContentError> {
        let mut b = self.store.batch();
        for cid in cids {
            b.delete(Column::Blobs, &cid.to_bytes());
        }
        b.commit(Durability::Buffered)?;
        Ok(())
    }

    /// Records `root` as pinned (fsynced, so the DAG written before it survives a crash).
    pub(crate) fn set_pin(&self, root: &Cid, size: u64) -> Result<(), ContentError> {
        self.store.put(
            Column::Pins,
            &root.to_bytes(),
            &size.to_le_bytes(),
            Durability::Sync,
        )?;
        Ok(())
    }

    /// Removes a pin; returns whether it existed.
    pub(crate) fn remove_pin(&self, root: &Cid) -> Result<bool, ContentError> {
        let key = root.to_bytes();
        let existed = self.store.contains(Column::Pins, &key)?;
        let mut b = self.store.batch();
        b.delete(Column::Pins, &key);
        b.commit(Durability::Sync)?;
        Ok(existed)
    }

    /// Whether `root` is pinned.
    pub fn is_pinned(&self, root: &Cid) -> Result<bool, ContentError> {
        Ok(self.store.contains(Column::Pins, &root.to_bytes())?)
    }

    /// Every pinned root with its record size.
    pub fn pins(&self) -> Result<Vec<(Cid, u64)>, ContentError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.store.for_each_from(Column::Pins, &[], |k, v| {
            match (Cid::try_from(k), <[u8; 8]>::try_from(v)) {
                (Ok(cid), Ok(size)) => out.push((cid, u64::from_le_bytes(size))),
                _ => bad = Some(k.len()),
            }
            true
        })?;
        if let Some(len) = bad {
            tracing::warn!(target: "pmr::content", key_len = len, "skipped a malformed pin entry");
        }
        Ok(out)
    }

    /// Walks the locally stored part of a DAG, calling `visit` for every CID reached
    /// (present or not). Manifests are decoded and checked; leaves are only looked up.
    pub fn walk(
        &self,
        root: &Cid,
        mut visit: impl FnMut(&Cid, bool),
    ) -> Result<LocalDag, ContentError> {
        let mut st = LocalDag {
            complete: true,
            ..LocalDag::default()
        };
        if root.codec() != DAG_CBOR {
            return Err(ContentError::BadDag {
                root: *root,
                reason: "a record root must be a dag-cbor manifest".into(),
            });
        }
        let mut stack = vec![(*root, 0usize, None::<u64>)];
        while let Some((cid, depth, expect)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(ContentError::BadDag {
                    root: *root,
                    reason: format!("deeper than {MAX_DEPTH} levels"),
                });
            }
            if cid.codec() == RAW {
                let present = self.has(&cid)?;
                visit(&cid, present);
                if present {
                    st.blocks_present += 1;
                } else {
                    st.blocks_missing += 1;
                    st.complete = false;
                }
                continue;
            }
            match self.get(&cid) {
                Ok(Some(data)) => {
                    visit(&cid, true);
                    st.blocks_present += 1;
                    let m = Manifest::decode(&cid, &data)?;
                    if let Some(e) = expect {
                        if e != m.size {
                            return Err(ContentError::BadDag {
                                root: *root,
                                reason: format!(
                                    "manifest {cid} has size {} but its parent says {e}",
                                    m.size
                                ),
                            });
                        }
                    }
                    if cid == *root {
                        st.size = Some(m.size);
                    }
                    for l in m.links.iter().rev() {
                        if l.cid.codec() == RAW && l.size > MAX_BLOCK_SIZE as u64 {
                            return Err(ContentError::BadDag {
                                root: *root,
                                reason: format!("leaf {} is larger than 256 KiB", l.cid),
                            });
                        }
                        stack.push((l.cid, depth + 1, Some(l.size)));
                    }
                }
                Ok(None) | Err(ContentError::Blob(BlobError::CorruptBlock { .. })) => {
                    visit(&cid, false);
                    st.blocks_missing += 1;
                    st.complete = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(st)
    }

    /// Deletes every block no pinned root reaches. Waits for uploads and fetches in progress.
    pub async fn gc(&self) -> Result<GcReport, ContentError> {
        let _guard = self.gc_lock.write().await;
        let mut live: HashSet<Vec<u8>> = HashSet::new();
        for (root, _) in self.pins()? {
            self.walk(&root, |cid, present| {
                if present {
                    live.insert(cid.to_bytes());
                }
            })?;
        }
        let mut report = GcReport::default();
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        self.store.for_each_from(Column::Blobs, &[], |k, v| {
            if live.contains(k) {
                report.kept_blocks += 1;
            } else {
                report.removed_blocks += 1;
                report.removed_bytes += v.len() as u64;
                doomed.push(k.to_vec());
            }
            true
        })?;
        for chunk in doomed.chunks(1024) {
            let mut b = self.store.batch();
            for k in chunk {
                b.delete(Column::Blobs, k);
            }
            b.commit(Durability::Buffered)?;
        }
        tracing::info!(target: "pmr::content", removed = report.removed_blocks, bytes = report.removed_bytes, kept = report.kept_blocks, "garbage collection done");
        Ok(report)
    }
}

fn to_bs_err(e: ContentError) -> blockstore::Error {
    match e {
        ContentError::Blob(BlobError::CorruptBlock { .. }) => {
            blockstore::Error::StoredDataError(e.to_string())
        }
        other => blockstore::Error::FatalDatabaseError(other.to_string()),
    }
}

fn generic_cid<const S: usize>(cid: &cid::CidGeneric<S>) -> Result<Cid, blockstore::Error> {
    Cid::try_from(cid.to_bytes().as_slice()).map_err(|_| blockstore::Error::CidTooLarge)
}

/// The `blockstore` trait (used by beetswap), over the same RocksDB columns. Reads and writes
/// are verified against the CID: only blake3 CIDs are accepted.
impl blockstore::Blockstore for BlockStore {
    async fn get<const S: usize>(
        &self,
        cid: &cid::CidGeneric<S>,
    ) -> blockstore::Result<Option<Vec<u8>>> {
        let cid = generic_cid(cid)?;
        BlockStore::get(self, &cid)
            .map(|o| o.map(|b| b.to_vec()))
            .map_err(to_bs_err)
    }

    async fn put_keyed<const S: usize>(
        &self,
        cid: &cid::CidGeneric<S>,
        data: &[u8],
    ) -> blockstore::Result<()> {
        let cid = generic_cid(cid)?;
        if data.len() > 4 * MAX_BLOCK_SIZE {
            return Err(blockstore::Error::ValueTooLarge);
        }
        BlockStore::put(self, &cid, data).map_err(to_bs_err)
    }

    async fn remove<const S: usize>(&self, cid: &cid::CidGeneric<S>) -> blockstore::Result<()> {
        let cid = generic_cid(cid)?;
        self.remove_many(&[cid]).map_err(to_bs_err)
    }

    async fn has<const S: usize>(&self, cid: &cid::CidGeneric<S>) -> blockstore::Result<bool> {
        let cid = generic_cid(cid)?;
        BlockStore::has(self, &cid).map_err(to_bs_err)
    }

    async fn close(self) -> blockstore::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_blob::dag::build_dag;
    use pmr_blob::ids::block_cid;

    fn open() -> (tempfile::TempDir, BlockStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, BlockStore::new(store))
    }

    #[test]
    fn corrupt_block_on_disk_is_detected_and_deleted() {
        let (_d, bs) = open();
        let cid = block_cid(RAW, b"payload");
        bs.put(&cid, b"payload").expect("put");
        assert!(bs.put(&cid, b"other").is_err(), "put verifies");
        bs.database()
            .put(
                Column::Blobs,
                &cid.to_bytes(),
                b"evil",
                Durability::Buffered,
            )
            .expect("raw write");
        assert!(matches!(
            bs.get(&cid),
            Err(ContentError::Blob(BlobError::CorruptBlock { .. }))
        ));
        assert!(!bs.has(&cid).expect("has"), "corrupt block removed");
    }

    #[tokio::test]
    async fn gc_keeps_pinned_dags_only() {
        let (_d, bs) = open();
        let a: Vec<u8> = (0..600_000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..300_000u32).map(|i| (i / 3) as u8).collect();
        let (ra, sa, ba) = build_dag(&a, u64::MAX).expect("a");
        let (rb, _, bb) = build_dag(&b, u64::MAX).expect("b");
        // Blocks are content-addressed, so equal chunks are one stored block: `a` repeats
        // every 256 bytes, so its first two 256 KiB leaves are identical.
        let distinct = |blocks: &[Block]| blocks.iter().map(|(c, _)| *c).collect::<HashSet<_>>();
        let (da, db) = (distinct(&ba), distinct(&bb));
        assert_eq!(
            (ba.len(), da.len()),
            (4, 3),
            "3 leaves (2 equal) + 1 manifest"
        );
        assert_eq!((bb.len(), db.len()), (3, 3), "2 leaves + 1 manifest");
        assert!(da.is_disjoint(&db));
        bs.put_computed(&ba).expect("put a");
        bs.put_computed(&bb).expect("put b");
        bs.set_pin(&ra, sa).expect("pin");
        let st = bs.walk(&ra, |_, _| {}).expect("walk");
        assert!(st.complete);
        assert_eq!(st.size, Some(600_000));
        let report = bs.gc().await.expect("gc");
        assert_eq!(report.removed_blocks, db.len() as u64);
        assert_eq!(report.kept_blocks, da.len() as u64);
        assert!(bs.walk(&ra, |_, _| {}).expect("walk").complete);
        let gone = bs.walk(&rb, |_, _| {}).expect("walk b");
        assert!(!gone.complete);
        assert_eq!(gone.size, None);
        assert!(bs.remove_pin(&ra).expect("unpin"));
        assert_eq!(bs.gc().await.expect("gc").removed_blocks, da.len() as u64);
    }
}
