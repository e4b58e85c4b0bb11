use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options};

use crate::{Column, StorageError};

type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Whether a write must reach stable storage before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the write-ahead log: the write survives power loss.
    Sync,
    /// Leave the write in the OS page cache: it survives a process crash, not a power loss.
    Buffered,
}

/// A handle to the node's database. Cheap to clone; all clones share one RocksDB instance.
#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

/// Memtable size of [`Column::Storage`] (see `Store::open`).
const STORAGE_MEMTABLE_BYTES: usize = 8 << 20;

impl Store {
    /// Opens (or creates) the database at `path` with every [`Column`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let (opts, cfs) = Self::options();
        let db =
            Db::open_cf_descriptors(&opts, path, cfs).map_err(|source| StorageError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Opens the existing database at `path` for reading only (no background work, no writes:
    /// a backup stays as it was made). Every write fails.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let (mut opts, cfs) = Self::options();
        opts.create_if_missing(false);
        let db = Db::open_cf_descriptors_read_only(&opts, path, cfs, false).map_err(|source| {
            StorageError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    fn options() -> (Options, Vec<ColumnFamilyDescriptor>) {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(DBCompressionType::Lz4);
        // RocksDB recovers to the last consistent point of its WAL after a crash, dropping a torn
        // tail instead of refusing to open.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let cfs = Column::ALL.iter().map(|c| {
            let mut o = Options::default();
            if *c == Column::Blobs {
                // Ciphertext does not compress. Record blocks (up to 256 KiB each) go to blob
                // files at flush, so compaction moves only their keys instead of rewriting
                // every block at each level. Deleted blocks' space comes back when compaction
                // relocates the live blobs of the oldest blob files (blob GC, default cutoff).
                o.set_compression_type(DBCompressionType::None);
                o.set_enable_blob_files(true);
                o.set_min_blob_size(4096);
                o.set_blob_file_size(256 * 1024 * 1024);
                o.set_blob_compression_type(DBCompressionType::None);
                o.set_enable_blob_gc(true);
            } else {
                o.set_compression_type(DBCompressionType::Lz4);
            }
            if *c == Column::Storage {
                // Every block inserts its thousands of changed slots into this column's
                // memtable, a skiplist, on the committing thread; each insert is a walk of
                // cache misses down the skiplist. Small memtables keep that walk in cache:
                // 8 MiB instead of the default 64 MiB cut the commit of a block of 2,000
                // mints from ~5.6 to ~3.9 µs per mint (mint_profile). More of them (flushed in
                // the background) absorb a burst.
                o.set_write_buffer_size(STORAGE_MEMTABLE_BYTES);
                o.set_max_write_buffer_number(4);
            }
            ColumnFamilyDescriptor::new(c.name(), o)
        });
        (opts, cfs.collect())
    }

    fn cf(&self, column: Column) -> Arc<rocksdb::BoundColumnFamily<'_>> {
        // Every column is created by `open`, so the handle always exists.
        self.db
            .cf_handle(column.name())
            .expect("column families are created at open")
    }

    /// Reads one value.
    pub fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(&self.cf(column), key)
            .map_err(|source| StorageError::Io {
                op: "read",
                column: column.name(),
                source,
            })
    }

    /// Whether a key is present.
    pub fn contains(&self, column: Column, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self
            .db
            .get_pinned_cf(&self.cf(column), key)
            .map_err(|source| StorageError::Io {
                op: "read",
                column: column.name(),
                source,
            })?
            .is_some())
    }

    /// Writes one value on its own (not atomic with anything else).
    pub fn put(
        &self,
        column: Column,
        key: &[u8],
        value: &[u8],
        durability: Durability,
    ) -> Result<(), StorageError> {
        let mut batch = self.batch();
        batch.put(column, key, value);
        batch.commit(durability)
    }

    /// Starts an atomic batch of writes.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            inner: rocksdb::WriteBatch::default(),
        }
    }

    /// Starts an atomic batch with room for about `bytes` of keys and values, allocated once:
    /// a large batch grown from empty is copied at every doubling and touches fresh pages
    /// each time (a tenth of a block commit's time before this).
    pub fn batch_with_capacity(&self, bytes: usize) -> Batch<'_> {
        Batch {
            store: self,
            inner: rocksdb::WriteBatch::with_capacity_bytes(bytes),
        }
    }

    /// All `(key, value)` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        column: Column,
        prefix: &[u8],
    ) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            &self.cf(column),
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|source| StorageError::Io {
                op: "scan",
                column: column.name(),
                source,
            })?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Visits keys (and values) in `[from, ..)` order until `f` returns `false`.
    pub fn for_each_from(
        &self,
        column: Column,
        from: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let iter = self.db.iterator_cf(
            &self.cf(column),
            IteratorMode::From(from, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|source| StorageError::Io {
                op: "scan",
                column: column.name(),
                source,
            })?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// The last `(key, value)` of a column in key order.
    pub fn last(&self, column: Column) -> Result<Option<KeyValue>, StorageError> {
        let mut iter = self.db.iterator_cf(&self.cf(column), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(Ok((k, v))) => Ok(Some((k.into_vec(), v.into_vec()))),
            Some(Err(source)) => Err(StorageError::Io {
                op: "scan",
                column: column.name(),
                source,
            }),
        }
    }

    /// Approximate on-disk size of live data in a column, in bytes.
    pub fn approximate_size(&self, column: Column) -> u64 {
        self.db
            .property_int_value_cf(&self.cf(column), "rocksdb.estimate-live-data-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Writes a consistent copy of the whole database, as of one instant, to `dir` (which must
    /// not exist), while the store stays in use: a RocksDB checkpoint (table files hard-linked
    /// when `dir` is on the same filesystem, copied otherwise). `dir` opens as a store.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(StorageError::Checkpoint)?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(StorageError::Checkpoint)
    }
}

/// A set of writes applied atomically by [`Batch::commit`]. Dropping a batch discards it.
pub struct Batch<'a> {
    store: &'a Store,
    inner: rocksdb::WriteBatch,
}

impl Batch<'_> {
    /// Adds a put.
    pub fn put(&mut self, column: Column, key: &[u8], value: &[u8]) {
        self.inner.put_cf(&self.store.cf(column), key, value);
    }

    /// Adds a delete.
    pub fn delete(&mut self, column: Column, key: &[u8]) {
        self.inner.delete_cf(&self.store.cf(column), key);
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Applies every write, or none.
    pub fn commit(self, durability: Durability) -> Result<(), StorageError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(durability == Durability::Sync);
        self.store
            .db
            .write_opt(self.inner, &opts)
            .map_err(StorageError::Commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_atomic_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let mut b = store.batch();
            b.put(Column::Blocks, b"k1", b"v1");
            b.put(Column::Receipts, b"k1", b"r1");
            assert_eq!(b.len(), 2);
            b.commit(Durability::Sync).expect("commit");
            let mut dropped = store.batch();
            dropped.put(Column::Blocks, b"k2", b"never");
            drop(dropped);
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.get(Column::Blocks, b"k1").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(
            store.get(Column::Receipts, b"k1").unwrap().as_deref(),
            Some(&b"r1"[..])
        );
        assert!(!store.contains(Column::Blocks, b"k2").unwrap());
        // Columns are separate key spaces.
        assert!(!store.contains(Column::Accounts, b"k1").unwrap());
    }

    #[test]
    fn scan_prefix_stops_at_prefix_end_and_last_is_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for k in [&b"a1"[..], b"a2", b"b1", b"a0"] {
            store.put(Column::Meta, k, k, Durability::Buffered).unwrap();
        }
        let keys: Vec<_> = store
            .scan_prefix(Column::Meta, b"a")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a0".to_vec(), b"a1".to_vec(), b"a2".to_vec()]);
        assert_eq!(store.last(Column::Meta).unwrap().unwrap().0, b"b1".to_vec());
        assert!(store.last(Column::Code).unwrap().is_none());
    }

    #[test]
    fn second_open_of_same_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        let err = Store::open(dir.path()).expect_err("lock held");
        assert!(err.to_string().contains("another `pmr` process"), "{err}");
    }
}
