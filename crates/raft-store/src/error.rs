#[cfg(feature = "storage")]
use std::path::PathBuf;

/// Failures of the store itself (disk, database, encoding), as opposed to a command that the
/// state machine rejects, which is a [`crate::Rejection`] inside a normal response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[cfg(feature = "storage")]
    #[error("cannot open the RocksDB store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[cfg(feature = "storage")]
    #[error("RocksDB {op} failed: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("stored {what} cannot be decoded: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("{what} cannot be encoded: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    #[error("the blocking storage task was cancelled or panicked")]
    TaskFailed,
    #[error("cannot start the log writer thread: {0}")]
    Thread(String),
    #[error("the log writer thread is gone")]
    WriterGone,
}

impl StoreError {
    #[cfg(feature = "storage")]
    pub(crate) fn db(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Self {
        move |source| Self::Db { op, source }
    }
}
