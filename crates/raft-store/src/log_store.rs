//! The Raft log in RocksDB, with group commit.
//!
//! `append` writes the entries at once (so they are readable when it returns, as openraft
//! requires) but without syncing, then hands openraft's flush callback to a dedicated sync
//! thread. That thread syncs the write-ahead log once for everything queued while the previous
//! sync ran, and only then reports the entries durable. Under load many appends share one
//! fsync; alone, an append costs one write and one fsync, as before.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec::{decode, encode};
use crate::store::{blocking, cf, CF_LOG, CF_LOG_META};
use crate::{NodeId, StoreError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_LAST_PURGED: &[u8] = b"last_purged";

/// The log half of a [`crate::Store`]. Cheap to clone: clones share the database and the
/// sync thread.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: Arc<SyncThread>,
}

/// The sync thread; the last [`LogStore`] clone to go stops it and waits for it, so that the
/// database is closed when the store is dropped and can be opened again at once.
#[derive(Debug)]
struct SyncThread {
    jobs: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let sync_db = db.clone();
        // A plain thread, not a tokio task: it spends its life in fsync.
        let handle = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(&sync_db, &queue))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        let syncer = Arc::new(SyncThread {
            jobs: Some(jobs),
            handle: Some(handle),
        });
        Ok(Self { db, syncer })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &DB,
        key: &'static [u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        db.get_cf(cf(db, CF_LOG_META)?, key)
            .map_err(StoreError::db("read raft meta"))?
            .map(|bytes| decode(what, &bytes))
            .transpose()
    }

    fn write_meta<T: serde::Serialize>(
        db: &DB,
        key: &'static [u8],
        what: &'static str,
        value: &T,
        sync: bool,
    ) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let started = Instant::now();
        db.put_cf_opt(cf(db, CF_LOG_META)?, key, encode(what, value)?, &opts)
            .map_err(StoreError::db("write raft meta"))?;
        if sync {
            record_fsync(started);
        }
        Ok(())
    }

    fn last_entry_id(db: &DB) -> Result<Option<LogId<NodeId>>, StoreError> {
        let mut iter = db.iterator_cf(cf(db, CF_LOG)?, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(StoreError::db("read last log entry"))?;
                let entry: Entry = decode("log entry", &value)?;
                Ok(Some(entry.log_id))
            }
        }
    }

    fn read_range(db: &DB, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let from = start.to_be_bytes();
        let iter = db.iterator_cf(
            cf(db, CF_LOG)?,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(StoreError::db("read log entries"))?;
            let index = index_of(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            entries.push(decode("log entry", &value)?);
        }
        Ok(entries)
    }

    /// Deletes `[from, to)` of the log and syncs.
    fn delete_range(db: &DB, from: u64, to: u64) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(db, CF_LOG)?, from.to_be_bytes(), to.to_be_bytes());
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let started = Instant::now();
        db.write_opt(batch, &opts)
            .map_err(StoreError::db("delete log entries"))?;
        record_fsync(started);
        Ok(())
    }
}

fn sync_loop(db: &DB, jobs: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = jobs.recv() {
        // Everything queued now was written before its job was queued, so one sync covers it.
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let started = Instant::now();
        let result = db.flush_wal(true);
        record_fsync(started);
        metrics::histogram!("mpc_raft_log_group_commit_entries").record(batch.len() as f64);
        for callback in batch {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            callback.log_io_completed(outcome);
        }
    }
}

fn record_fsync(started: Instant) {
    metrics::histogram!("mpc_raft_log_fsync_seconds").record(started.elapsed().as_secs_f64());
}

fn index_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StoreError::Corrupt {
        what: "log key",
        reason: format!("{} bytes instead of 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

fn read_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = range_to_bounds(&range);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let db = self.db.clone();
        blocking(move || Self::read_range(&db, start, end))
            .await
            .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged_log_id: Option<LogId<NodeId>> =
                Self::read_meta(&db, META_LAST_PURGED, "last purged log id")?;
            let last_log_id = Self::last_entry_id(&db)?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || Self::write_meta(&db, META_VOTE, "vote", &vote, true))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Self::read_meta(&db, META_VOTE, "vote"))
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: the committed id only spares re-applying entries after a restart, and
        // a stale one is safe.
        let db = self.db.clone();
        blocking(move || {
            Self::write_meta(&db, META_COMMITTED, "committed log id", &committed, false)
        })
        .await
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            Ok(
                Self::read_meta::<Option<LogId<NodeId>>>(&db, META_COMMITTED, "committed log id")?
                    .flatten(),
            )
        })
        .await
        .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.clone();
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry).map_err(write_err)?;
            encoded.push((entry.log_id.index.to_be_bytes(), bytes));
        }
        blocking(move || {
            let log = cf(&db, CF_LOG)?;
            let mut batch = WriteBatch::default();
            for (key, value) in &encoded {
                batch.put_cf(log, key, value);
            }
            db.write(batch)
                .map_err(StoreError::db("append log entries"))
        })
        .await
        .map_err(write_err)?;
        self.syncer
            .jobs
            .as_ref()
            .ok_or(StoreError::SyncerGone)
            .and_then(|jobs| jobs.send(callback).map_err(|_| StoreError::SyncerGone))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Self::delete_range(&db, log_id.index, u64::MAX))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            // Record the purge point first: a crash between the two steps then leaves extra
            // entries below it, which is harmless, never a hole.
            Self::write_meta(&db, META_LAST_PURGED, "last purged log id", &log_id, true)?;
            Self::delete_range(&db, 0, log_id.index.saturating_add(1))
        })
        .await
        .map_err(write_err)
    }
}
