//! The Raft log in RocksDB, with group commit.
//!
//! Every write to the log goes through one dedicated writer thread, in order: appends,
//! truncations, purges and the committed id. `append` puts the entries into an in-memory tail
//! cache (so they are readable when it returns, as openraft requires), queues them and returns
//! at once; the writer takes everything queued, writes it as one synced RocksDB batch, and
//! only then tells openraft the entries are durable. Under load many appends share one fsync;
//! alone, an append costs one write and one fsync, with no blocking-pool hop on the way.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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

/// The log half of a [`crate::Store`]. Cheap to clone: clones share the database, the
/// writer thread and the tail cache.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<DB>,
    writer: Arc<LogWriter>,
    tail: Arc<Mutex<TailCache>>,
}

/// Encoded entries: (big-endian index, record).
type EncodedEntries = Vec<([u8; 8], Vec<u8>)>;

/// Work for the writer thread, done in the order queued.
enum LogJob {
    Append {
        entries: EncodedEntries,
        flushed: LogFlushed<TypeConfig>,
    },
    Committed(Vec<u8>),
    /// Deletes `[from, to)` (after recording `purged`, for a purge), synced.
    Delete {
        from: u64,
        to: u64,
        purged: Option<Vec<u8>>,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The newest entries of the log, kept in memory: every replication stream reads each entry
/// it sends, and serving those reads from here spares a RocksDB iterator, a decode and a
/// blocking-pool hop per follower per entry.
///
/// Invariant: every entry of the log is on disk or here (or both). The cache therefore keeps
/// an entry until the writer has written it, whatever its size limit says, and a read takes
/// what lies below the cache from RocksDB and the rest from here.
#[derive(Debug, Default)]
struct TailCache {
    entries: VecDeque<Entry>,
    /// The encoded size of each entry in `entries`, and their sum.
    sizes: VecDeque<usize>,
    bytes: usize,
    /// One past the last index the writer has written to RocksDB (shared with the writer).
    written_end: Arc<AtomicU64>,
}

/// Enough for a follower a few seconds behind under full load of small writes.
const TAIL_CACHE_ENTRIES: usize = 8192;
/// And at most this much of them: entries batch up to hundreds of commands of up to tens of
/// KiB each, and 8192 of those would hold gigabytes for a follower that lags.
const TAIL_CACHE_BYTES: usize = 32 << 20;

impl TailCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    /// Adds `new` entries, each with its encoded size.
    fn append(&mut self, new: impl IntoIterator<Item = (Entry, usize)>) {
        let mut new = new.into_iter().peekable();
        let Some((first, _)) = new.peek() else { return };
        let contiguous = self
            .entries
            .back()
            .is_some_and(|last| last.log_id.index + 1 == first.log_id.index);
        if !contiguous {
            self.entries.clear();
            self.sizes.clear();
            self.bytes = 0;
        }
        for (entry, size) in new {
            self.entries.push_back(entry);
            self.sizes.push_back(size);
            self.bytes += size;
        }
        let written_end = self.written_end.load(Ordering::Acquire);
        while (self.entries.len() > TAIL_CACHE_ENTRIES || self.bytes > TAIL_CACHE_BYTES)
            && self
                .entries
                .front()
                .is_some_and(|e| e.log_id.index < written_end)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        self.entries.pop_front();
        self.bytes = self
            .bytes
            .saturating_sub(self.sizes.pop_front().unwrap_or(0));
    }

    /// Drops entries at and after `index`.
    fn truncate(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            self.entries.pop_back();
            self.bytes = self
                .bytes
                .saturating_sub(self.sizes.pop_back().unwrap_or(0));
        }
    }

    /// Drops entries at and before `index`.
    fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            self.pop_front();
        }
    }

    /// The cached part of `[start, end)`: the index it starts at (what lies below it must
    /// come from disk) and its entries.
    fn get(&self, start: u64, end: Option<u64>) -> (Option<u64>, Vec<Entry>) {
        let Some(first) = self.first_index() else {
            return (None, Vec::new());
        };
        let from = start.max(first);
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        let entries = self
            .entries
            .iter()
            .skip(skip)
            .take_while(|e| end.is_none_or(|end| e.log_id.index < end))
            .cloned()
            .collect();
        (Some(from), entries)
    }
}

/// The writer thread; the last [`LogStore`] clone to go stops it and waits for it, so that the
/// database is closed when the store is dropped and can be opened again at once.
struct LogWriter {
    jobs: Option<mpsc::Sender<LogJob>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").finish_non_exhaustive()
    }
}

impl Drop for LogWriter {
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
        let writer_db = db.clone();
        let tail = TailCache::default();
        let written_end = tail.written_end.clone();
        // A plain thread, not a tokio task: it spends its life in fsync.
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(&writer_db, &queue, &written_end))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        let writer = Arc::new(LogWriter {
            jobs: Some(jobs),
            handle: Some(handle),
        });
        Ok(Self {
            db,
            writer,
            tail: Arc::new(Mutex::new(tail)),
        })
    }

    fn queue(&self, job: LogJob) -> Result<(), StoreError> {
        self.writer
            .jobs
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)
    }

    /// Deletes `[from, to)` through the writer, after everything queued before.
    async fn delete(&self, from: u64, to: u64, purged: Option<Vec<u8>>) -> Result<(), StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.queue(LogJob::Delete {
            from,
            to,
            purged,
            done,
        })?;
        outcome.await.map_err(|_| StoreError::WriterGone)?
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, TailCache> {
        // The cache holds no invariant a panic elsewhere could break half-way.
        self.tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
}

fn write_loop(db: &DB, jobs: &mpsc::Receiver<LogJob>, written_end: &AtomicU64) {
    while let Ok(first) = jobs.recv() {
        let mut pending = Pending::default();
        for job in std::iter::once(first).chain(jobs.try_iter()) {
            match job {
                LogJob::Append { entries, flushed } => {
                    pending.appends.push((entries, flushed));
                }
                LogJob::Committed(value) => pending.committed = Some(value),
                LogJob::Delete {
                    from,
                    to,
                    purged,
                    done,
                } => {
                    // Keep the order: what was queued before the delete lands before it.
                    pending.write(db, written_end);
                    let outcome = delete_range(db, from, to, purged);
                    if outcome.is_ok() && to == u64::MAX {
                        // A truncation: entries from `from` on must be written again.
                        written_end.fetch_min(from, Ordering::AcqRel);
                    }
                    let _ = done.send(outcome);
                }
            }
        }
        pending.write(db, written_end);
    }
}

/// Writes gathered for one RocksDB batch.
#[derive(Default)]
struct Pending {
    appends: Vec<(EncodedEntries, LogFlushed<TypeConfig>)>,
    committed: Option<Vec<u8>>,
}

impl Pending {
    /// Writes everything gathered in one batch, synced when it holds entries, and reports
    /// the outcome to each append.
    fn write(&mut self, db: &DB, written_end: &AtomicU64) {
        if self.appends.is_empty() && self.committed.is_none() {
            return;
        }
        let appends = std::mem::take(&mut self.appends);
        let committed = self.committed.take();
        let result = (|| {
            let mut batch = WriteBatch::default();
            let log = cf(db, CF_LOG)?;
            for (entries, _) in &appends {
                for (key, value) in entries {
                    batch.put_cf(log, key, value);
                }
            }
            if let Some(value) = &committed {
                batch.put_cf(cf(db, CF_LOG_META)?, META_COMMITTED, value);
            }
            // The committed id alone need not be durable: a stale one is safe.
            let sync = !appends.is_empty();
            let mut opts = WriteOptions::default();
            opts.set_sync(sync);
            let started = Instant::now();
            db.write_opt(batch, &opts)
                .map_err(StoreError::db("append log entries"))?;
            if sync {
                record_fsync(started);
                metrics::histogram!("mpc_raft_log_group_commit_entries")
                    .record(appends.len() as f64);
            }
            Ok::<(), StoreError>(())
        })();
        if result.is_ok() {
            let last = appends
                .iter()
                .filter_map(|(entries, _)| entries.last())
                .map(|(key, _)| u64::from_be_bytes(*key))
                .max();
            if let Some(last) = last {
                written_end.fetch_max(last.saturating_add(1), Ordering::AcqRel);
            }
        }
        for (_, flushed) in appends {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            flushed.log_io_completed(outcome);
        }
    }
}

/// Deletes `[from, to)` of the log, after recording `purged` as the last purged id, synced.
fn delete_range(db: &DB, from: u64, to: u64, purged: Option<Vec<u8>>) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    if let Some(value) = purged {
        batch.put_cf(cf(db, CF_LOG_META)?, META_LAST_PURGED, value);
    }
    batch.delete_range_cf(cf(db, CF_LOG)?, from.to_be_bytes(), to.to_be_bytes());
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    let started = Instant::now();
    db.write_opt(batch, &opts)
        .map_err(StoreError::db("delete log entries"))?;
    record_fsync(started);
    Ok(())
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
        let (cached_from, cached) = self.tail().get(start, end);
        let disk_end = match (cached_from, end) {
            (Some(from), Some(end)) => Some(from.min(end)),
            (Some(from), None) => Some(from),
            (None, end) => end,
        };
        if disk_end.is_some_and(|disk_end| disk_end <= start) {
            return Ok(cached);
        }
        let db = self.db.clone();
        let mut entries = blocking(move || Self::read_range(&db, start, disk_end))
            .await
            .map_err(read_err)?;
        // Nothing on disk below the cache means the log starts there. A disk part that stops
        // short of the cache would leave a hole: return only the contiguous prefix then.
        let joins = match (entries.last(), cached.first()) {
            (Some(last), Some(first)) => last.log_id.index + 1 == first.log_id.index,
            _ => true,
        };
        if joins {
            entries.extend(cached);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        // Queued entries are part of the log although the writer may not have written them.
        let cached_last = self.tail().entries.back().map(|e| e.log_id);
        blocking(move || {
            let last_purged_log_id: Option<LogId<NodeId>> =
                Self::read_meta(&db, META_LAST_PURGED, "last purged log id")?;
            let on_disk = Self::last_entry_id(&db)?;
            let last_log_id = cached_last.max(on_disk).or(last_purged_log_id);
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
        // Queued, not awaited, not synced: the committed id only spares re-applying entries
        // after a restart, and a stale one is safe.
        let value = encode("committed log id", &committed).map_err(write_err)?;
        self.queue(LogJob::Committed(value)).map_err(write_err)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = encode("log entry", entry).map_err(write_err)?;
            encoded.push((entry.log_id.index.to_be_bytes(), bytes));
        }
        self.tail().append(
            entries
                .into_iter()
                .zip(encoded.iter().map(|(_, b)| b.len())),
        );
        self.queue(LogJob::Append {
            entries: encoded,
            flushed: callback,
        })
        .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail().truncate(log_id.index);
        self.delete(log_id.index, u64::MAX, None)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail().purge(log_id.index);
        // The purge point and the deletion land in one atomic batch: never a hole.
        let purged = encode("last purged log id", &log_id).map_err(write_err)?;
        self.delete(0, log_id.index.saturating_add(1), Some(purged))
            .await
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// A blank entry at `index` with the size of a small one.
    fn small(index: u64) -> (Entry, usize) {
        (blank(index), 64)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn the_cache_keeps_entries_the_writer_has_not_written() {
        let mut tail = TailCache::default();
        let over = TAIL_CACHE_ENTRIES as u64 + 100;
        tail.append((1..=over).map(small));
        // Nothing written yet: nothing may go, whatever the size limit.
        assert_eq!(tail.first_index(), Some(1));

        tail.written_end.store(51, Ordering::Release);
        tail.append([small(over + 1)]);
        assert_eq!(
            tail.first_index(),
            Some(51),
            "only written entries are evicted"
        );
        tail.written_end.store(over + 2, Ordering::Release);
        tail.append([small(over + 2)]);
        assert_eq!(tail.entries.len(), TAIL_CACHE_ENTRIES);
    }

    #[test]
    fn the_cache_holds_large_entries_up_to_its_byte_bound() {
        let mut tail = TailCache::default();
        let large = TAIL_CACHE_BYTES / 10;
        tail.written_end.store(u64::MAX, Ordering::Release);
        tail.append((1..=100).map(|i| (blank(i), large)));
        assert_eq!(
            tail.entries.len(),
            10,
            "the byte bound, not the entry bound"
        );
        assert_eq!(tail.first_index(), Some(91));
        assert_eq!(tail.bytes, 10 * large);

        tail.truncate(95);
        tail.purge(92);
        assert_eq!(indexes(&tail.get(0, None).1), [93, 94]);
        assert_eq!(tail.bytes, 2 * large);
        assert_eq!(tail.sizes.len(), 2);
    }

    #[test]
    fn a_read_below_the_cache_is_split_at_its_first_entry() {
        let mut tail = TailCache::default();
        tail.append((10..=20).map(small));
        let (from, cached) = tail.get(5, Some(15));
        assert_eq!(from, Some(10));
        assert_eq!(indexes(&cached), [10, 11, 12, 13, 14]);
        let (from, cached) = tail.get(12, None);
        assert_eq!(from, Some(12));
        assert_eq!(indexes(&cached), (12..=20).collect::<Vec<_>>());
        assert_eq!(TailCache::default().get(1, Some(3)), (None, Vec::new()));

        tail.truncate(18);
        tail.purge(11);
        assert_eq!(indexes(&tail.get(0, None).1), [12, 13, 14, 15, 16, 17]);
    }
}
