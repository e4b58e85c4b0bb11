use std::path::PathBuf;

/// Errors from the node's database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened.
    #[error(
        "cannot open the database at {path}: {source} (is another `pmr` process using this home \
         directory?)"
    )]
    Open {
        /// The database directory.
        path: PathBuf,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// A read or write failed.
    #[error("database {op} on column `{column}` failed: {source}")]
    Io {
        /// The operation: `read` or `scan`.
        op: &'static str,
        /// The column family's name.
        column: &'static str,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// An atomic batch failed to commit; none of it was applied.
    #[error("database batch commit failed, nothing was written: {0}")]
    Commit(#[source] rocksdb::Error),
    /// A checkpoint (online backup) could not be written.
    #[error("database checkpoint failed: {0}")]
    Checkpoint(#[source] rocksdb::Error),
}
