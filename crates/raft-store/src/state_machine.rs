//! The state machine: tables in RocksDB column families, applied in log order.
//!
//! Each `apply` call runs every entry of the batch through [`crate::apply::apply_command`]
//! against a read-your-writes overlay and commits the result, together with the new
//! `last_applied`, in one atomic RocksDB write. The write is not synced: the Raft log is the
//! durable record, and after a crash the entries past the persisted `last_applied` are simply
//! applied again. Before a snapshot lets the log be purged, the write-ahead log is synced.
//!
//! Snapshots are files in the store's `snapshots/` directory (see [`crate::snapshot_file`]):
//! one is built by streaming a consistent view of the tables into a file, and one is received
//! by spooling openraft's chunks into a file, which is then read record by record into the
//! single batch that replaces the state. A record in RocksDB names the current snapshot's file;
//! it is written in the same atomic write as the state an installed snapshot brings.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::apply::{apply_command, LogPosition, StateTxn, Table};
use crate::codec::{decode, encode};
use crate::model::SessionRecord;
use crate::snapshot_file::{
    io_err, remove_quietly, BoundedWriter, SnapshotDir, SnapshotError, SnapshotFile, TempPath,
    MAX_SNAPSHOT_BYTES,
};
use crate::snapshot_format::{encode_header, write_record, SnapshotHeader, SnapshotReader};
use crate::store::{blocking, cf, CF_SM_META, CF_SNAPSHOT};
use crate::{NodeId, NodeInfo, ProposalResponse, StoreError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<NodeId, NodeInfo>;
type Meta = SnapshotMeta<NodeId, NodeInfo>;

const META_LAST_APPLIED: &[u8] = b"last_applied";
const META_MEMBERSHIP: &[u8] = b"last_membership";
/// The current snapshot as releases before snapshot files kept it: a [`StoredSnapshot`].
/// Read once, at the first start of a newer release, and replaced by [`SNAPSHOT_FILE`].
const SNAPSHOT_CURRENT: &[u8] = b"current";
/// The current snapshot: a [`SnapshotPointer`].
const SNAPSHOT_FILE: &[u8] = b"current_file";
/// Above every key any table holds (ids are at most 64 bytes, audit keys 8).
const TABLE_KEY_END: [u8; 256] = [0xff; 256];

/// What watchers of sessions are told after a write is applied.
#[derive(Debug, Clone)]
pub enum SessionUpdate {
    Changed(Arc<SessionRecord>),
    /// A snapshot replaced the whole state: every watcher must read its session again.
    Reset,
}

/// The state-machine half of a [`crate::Store`], owned by openraft.
#[derive(Debug)]
pub struct StateMachine {
    db: Arc<DB>,
    updates: broadcast::Sender<SessionUpdate>,
    snapshots: Arc<SnapshotDir>,
}

/// The current snapshot as releases before snapshot files kept it, data and all, in RocksDB.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    /// In the format of [`crate::snapshot_format`].
    data: Vec<u8>,
}

/// Names the file that holds the current snapshot's data.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPointer {
    meta: Meta,
    /// A file name inside the snapshot directory.
    file: String,
    /// Its length, to tell a damaged file from the one written.
    len: u64,
}

impl StateMachine {
    pub(crate) fn new(
        db: Arc<DB>,
        updates: broadcast::Sender<SessionUpdate>,
        snapshots: Arc<SnapshotDir>,
    ) -> Self {
        Self {
            db,
            updates,
            snapshots,
        }
    }
}

/// Reads through the pending batch, then the database.
struct RocksTxn<'a> {
    db: &'a DB,
    batch: WriteBatch,
    /// Writes of this batch so far; `None` is a deletion.
    pending: HashMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl StateTxn for RocksTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.pending.get(&(table, key.to_vec())) {
            return Ok(value.clone());
        }
        self.db
            .get_cf(cf(self.db, table.cf_name())?, key)
            .map_err(StoreError::db("read state"))
    }

    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        match cf(self.db, table.cf_name()) {
            Ok(handle) => self.batch.put_cf(handle, &key, &value),
            // Column families are all created at open; a missing one cannot happen after it.
            Err(e) => tracing::error!(error = %e, "state write dropped"),
        }
        self.pending.insert((table, key), Some(value));
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) {
        match cf(self.db, table.cf_name()) {
            Ok(handle) => self.batch.delete_cf(handle, &key),
            Err(e) => tracing::error!(error = %e, "state delete dropped"),
        }
        self.pending.insert((table, key), None);
    }
}

fn read_applied(
    db: &DB,
    snapshot: Option<&rocksdb::Snapshot<'_>>,
) -> Result<(Option<LogId<NodeId>>, Membership), StoreError> {
    let meta = cf(db, CF_SM_META)?;
    let get = |key: &[u8]| match snapshot {
        Some(s) => s.get_cf(meta, key),
        None => db.get_cf(meta, key),
    };
    let applied = get(META_LAST_APPLIED)
        .map_err(StoreError::db("read last applied"))?
        .map(|b| decode("last applied log id", &b))
        .transpose()?;
    let membership = get(META_MEMBERSHIP)
        .map_err(StoreError::db("read membership"))?
        .map(|b| decode("membership", &b))
        .transpose()?
        .unwrap_or_default();
    Ok((applied, membership))
}

fn apply_batch(
    db: &DB,
    entries: Vec<Entry>,
) -> Result<(Vec<ProposalResponse>, Vec<SessionUpdate>), StoreError> {
    let mut txn = RocksTxn {
        db,
        batch: WriteBatch::default(),
        pending: HashMap::new(),
    };
    let meta = cf(db, CF_SM_META)?;
    let mut responses = Vec::with_capacity(entries.len());
    let mut updates = Vec::new();
    let mut last_applied = None;
    for entry in entries {
        let mut response = ProposalResponse::default();
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(proposal) => {
                for (position, cmd) in (0u32..).zip(&proposal.commands) {
                    let at = LogPosition {
                        index: entry.log_id.index,
                        position,
                    };
                    let applied = apply_command(&mut txn, at, cmd)?;
                    if let Some(session) = applied.session {
                        updates.push(SessionUpdate::Changed(Arc::new(session)));
                    }
                    response.responses.push(applied.response);
                }
            }
            EntryPayload::Membership(m) => {
                let stored = Membership::new(Some(entry.log_id), m.clone());
                txn.batch
                    .put_cf(meta, META_MEMBERSHIP, encode("membership", &stored)?);
            }
        }
        responses.push(response);
        last_applied = Some(entry.log_id);
    }
    if let Some(log_id) = last_applied {
        txn.batch.put_cf(
            meta,
            META_LAST_APPLIED,
            encode("last applied log id", &log_id)?,
        );
    }
    db.write(txn.batch)
        .map_err(StoreError::db("apply entries"))?;
    if let Some(log_id) = last_applied {
        metrics::gauge!("mpc_raft_applied_index").set(log_id.index as f64);
    }
    Ok((responses, updates))
}

/// Runs snapshot file work off the async runtime.
async fn off_runtime<T, F>(f: F) -> Result<T, SnapshotError>
where
    F: FnOnce() -> Result<T, SnapshotError> + Send + 'static,
    T: Send + 'static,
{
    blocking(move || Ok(f())).await?
}

/// Which of two current snapshots wins in [`commit_snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// An installed snapshot replaces the state, so it is the current snapshot whatever came
    /// before.
    Always,
    /// A build runs beside the state machine: one that started before an install finished must
    /// not put the older state back as the current snapshot.
    IfNotOlder,
}

/// Locks the snapshot directory, preparing it first if this run has not yet.
fn lock_dir<'a>(db: &DB, dir: &'a SnapshotDir) -> Result<MutexGuard<'a, bool>, SnapshotError> {
    let mut prepared = dir.lock();
    if !*prepared {
        prepare_dir(db, dir, &prepared)?;
        *prepared = true;
    }
    Ok(prepared)
}

/// Creates the directory, moves a snapshot that an earlier release kept inside RocksDB into a
/// file, and removes every file no record names: spools and half-written files of a run that
/// stopped midway.
fn prepare_dir(
    db: &DB,
    dir: &SnapshotDir,
    locked: &MutexGuard<'_, bool>,
) -> Result<(), SnapshotError> {
    dir.ensure()?;
    let legacy = db
        .get_cf(cf(db, CF_SNAPSHOT)?, SNAPSHOT_CURRENT)
        .map_err(StoreError::db("read snapshot"))?;
    // Only a release that predates snapshot files writes the legacy record, so if there is one
    // it was written last and matches the state tables: it wins over any file.
    if let Some(bytes) = legacy {
        migrate_legacy_snapshot(db, dir, locked, &bytes)?;
    }
    let current = load_pointer(db)?;
    let removed = dir.sweep(current.as_ref().map(|p| p.file.as_str()))?;
    if removed > 0 {
        tracing::info!(removed, dir = %dir.path().display(), "removed leftover snapshot files");
    }
    Ok(())
}

fn migrate_legacy_snapshot(
    db: &DB,
    dir: &SnapshotDir,
    locked: &MutexGuard<'_, bool>,
    bytes: &[u8],
) -> Result<(), SnapshotError> {
    let stored: StoredSnapshot = decode("stored snapshot", bytes)?;
    let (file, temp) = dir.create_temp("migrate")?;
    let path = temp_path(&temp);
    let mut out = BoundedWriter::new(&file);
    out.write_all(&stored.data)
        .map_err(io_err("write", &path))?;
    file.sync_all().map_err(io_err("sync", &path))?;
    let mut batch = WriteBatch::default();
    batch.delete_cf(cf(db, CF_SNAPSHOT)?, SNAPSHOT_CURRENT);
    let len = out.written();
    commit_snapshot(
        db,
        dir,
        locked,
        &stored.meta,
        temp,
        len,
        batch,
        Replace::Always,
    )?;
    tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = len, "moved the current snapshot out of RocksDB into a file");
    Ok(())
}

fn temp_path(temp: &TempPath) -> PathBuf {
    temp.path().map(Path::to_path_buf).unwrap_or_default()
}

fn load_pointer(db: &DB) -> Result<Option<SnapshotPointer>, StoreError> {
    db.get_cf(cf(db, CF_SNAPSHOT)?, SNAPSHOT_FILE)
        .map_err(StoreError::db("read snapshot"))?
        .map(|bytes| decode("snapshot pointer", &bytes))
        .transpose()
}

/// Makes `staged` the current snapshot, in the same atomic write as `batch`, then removes the
/// file it replaces. Returns `false`, having removed `staged` instead, if `replace` keeps a
/// newer current snapshot. The caller holds the directory lock (`_locked`).
#[allow(clippy::too_many_arguments)]
fn commit_snapshot(
    db: &DB,
    dir: &SnapshotDir,
    _locked: &MutexGuard<'_, bool>,
    meta: &Meta,
    staged: TempPath,
    len: u64,
    mut batch: WriteBatch,
    replace: Replace,
) -> Result<bool, SnapshotError> {
    let snapshots = cf(db, CF_SNAPSHOT)?;
    let previous = load_pointer(db)?;
    if replace == Replace::IfNotOlder
        && previous
            .as_ref()
            .is_some_and(|p| p.meta.last_log_id > meta.last_log_id)
    {
        staged.remove_now();
        return Ok(false);
    }
    // The file is in place before the record names it; a crash in between leaves an unnamed
    // file, which the next start removes.
    let file = staged.persist(dir)?;
    let written = encode(
        "snapshot pointer",
        &SnapshotPointer {
            meta: meta.clone(),
            file: file.clone(),
            len,
        },
    )
    .map_err(SnapshotError::from)
    .and_then(|pointer| {
        batch.put_cf(snapshots, SNAPSHOT_FILE, pointer);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)
            .map_err(|e| StoreError::db("save snapshot")(e).into())
    });
    if let Err(e) = written {
        remove_quietly(&dir.path().join(&file));
        return Err(e);
    }
    if let Some(previous) = previous.filter(|p| p.file != file) {
        // Readers that opened it keep reading it; the name goes now.
        remove_quietly(&dir.path().join(&previous.file));
    }
    Ok(true)
}

/// Calls `f` with every record of every table, as seen by `view`, table by table in key order.
fn for_each_record(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    mut f: impl FnMut(u8, &[u8], &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    for table in Table::ALL {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(view);
        let mut it = db.raw_iterator_cf_opt(cf(db, table.cf_name())?, opts);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            f(table.snapshot_tag(), key, value)?;
            it.next();
        }
        it.status()
            .map_err(StoreError::db("read state for snapshot"))?;
    }
    Ok(())
}

/// Writes a snapshot of the state into a new file, makes it the current snapshot and returns it
/// open at its start.
/// How much of a snapshot file is written between two syncs while it is built.
const SYNC_STEP_BYTES: u64 = 8 << 20;

fn build_snapshot(db: &DB, dir: &SnapshotDir) -> Result<(Meta, File, u64), SnapshotError> {
    drop(lock_dir(db, dir)?);
    let view = db.snapshot();
    let (last_applied, membership) = read_applied(db, Some(&view))?;
    // The record count leads the records; counting first keeps them out of memory.
    let mut count = 0u64;
    for_each_record(db, &view, |_, _, _| {
        count += 1;
        Ok(())
    })?;
    let header = encode_header(
        &SnapshotHeader {
            last_applied,
            membership: membership.clone(),
        },
        count,
    )?;

    let (file, temp) = dir.create_temp("build")?;
    let path = temp_path(&temp);
    let mut out = BoundedWriter::new(BufWriter::with_capacity(1 << 16, &file));
    out.write_all(&header).map_err(io_err("write", &path))?;
    let mut written = 0u64;
    let mut synced_to = 0u64;
    for_each_record(db, &view, |tag, key, value| {
        written += 1;
        write_record(&mut out, tag, key, value).map_err(io_err("write", &path))?;
        // Synced as it grows: one sync of hundreds of MiB at the end would hold up the log's
        // own syncs on the same disk for seconds, and the leader's writes with them.
        if out.written() - synced_to >= SYNC_STEP_BYTES {
            out.flush().map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("sync", &path))?;
            synced_to = out.written();
        }
        Ok(())
    })?;
    if written != count {
        return Err(StoreError::Corrupt {
            what: "state",
            reason: format!("a snapshot view held {count} records, then {written}"),
        }
        .into());
    }
    out.flush().map_err(io_err("write", &path))?;
    let len = out.written();
    drop(out);
    file.sync_all().map_err(io_err("sync", &path))?;

    // The log up to `last_applied` may be purged once this returns: make the applied state as
    // durable as the log it replaces.
    db.flush_wal(true).map_err(StoreError::db("sync state"))?;
    let built_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let snapshot_id = match last_applied {
        Some(id) => format!(
            "{}-{}-{}-{built_ms}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("empty-{built_ms}"),
    };
    let meta = Meta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id,
    };
    let locked = lock_dir(db, dir)?;
    // Not made current (a newer one is), the file is unlinked but stays readable through `file`.
    commit_snapshot(
        db,
        dir,
        &locked,
        &meta,
        temp,
        len,
        WriteBatch::default(),
        Replace::IfNotOlder,
    )?;
    drop(locked);
    (&file)
        .seek(SeekFrom::Start(0))
        .map_err(io_err("seek", &path))?;
    Ok((meta, file, len))
}

/// A new spool file for a snapshot about to be received.
fn create_spool(db: &DB, dir: &SnapshotDir) -> Result<(File, TempPath), SnapshotError> {
    let _locked = lock_dir(db, dir)?;
    dir.create_temp("recv")
}

/// Copies a snapshot into a new file of `dir`.
fn copy_snapshot(dir: &SnapshotDir, from: &File) -> Result<(File, TempPath), SnapshotError> {
    let (copy, temp) = dir.create_temp("copy")?;
    let path = temp_path(&temp);
    let mut source = from;
    source
        .seek(SeekFrom::Start(0))
        .map_err(io_err("seek", &path))?;
    // One byte past the bound is enough for the writer to refuse an oversized source.
    let mut source = source.take(MAX_SNAPSHOT_BYTES + 1);
    let mut out = BoundedWriter::new(&copy);
    std::io::copy(&mut source, &mut out).map_err(io_err("copy", &path))?;
    Ok((copy, temp))
}

/// Replaces the state with the snapshot in `file` and makes that file the current snapshot.
fn install_snapshot(
    db: &DB,
    dir: &SnapshotDir,
    meta: Meta,
    file: File,
    spool: Option<TempPath>,
) -> Result<u64, SnapshotError> {
    drop(lock_dir(db, dir)?);
    // Our own spool becomes the current snapshot as it is. Anything else (openraft's storage
    // suite hands over another store's current snapshot) is copied, so that the file this
    // store keeps is its own.
    let (file, staged) = match spool {
        Some(spool) if dir.holds(&spool) => (file, spool),
        _ => copy_snapshot(dir, &file)?,
    };
    let path = temp_path(&staged);
    let len = file.metadata().map_err(io_err("stat", &path))?.len();
    if len > MAX_SNAPSHOT_BYTES {
        return Err(io_err("read", &path)(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("the snapshot holds {len} bytes, more than MAX_SNAPSHOT_BYTES ({MAX_SNAPSHOT_BYTES})"),
        )));
    }
    file.sync_all().map_err(io_err("sync", &path))?;
    let batch = read_into_batch(db, &meta, &file, len, &path)?;
    let locked = lock_dir(db, dir)?;
    commit_snapshot(db, dir, &locked, &meta, staged, len, batch, Replace::Always)?;
    // A snapshot from a release before the indexes carries none: derive them.
    crate::index::rebuild(db)?;
    Ok(len)
}

/// Decodes the snapshot in `file` record by record into one batch that replaces the state.
fn read_into_batch(
    db: &DB,
    meta: &Meta,
    file: &File,
    len: u64,
    path: &Path,
) -> Result<WriteBatch, SnapshotError> {
    let mut source = file;
    source
        .seek(SeekFrom::Start(0))
        .map_err(io_err("seek", path))?;
    let (mut reader, header) =
        SnapshotReader::open(BufReader::with_capacity(1 << 16, source), len, path)?;
    if header.last_applied != meta.last_log_id {
        return Err(StoreError::Corrupt {
            what: "snapshot",
            reason: format!(
                "its data ends at {:?} but its metadata says {:?}",
                header.last_applied, meta.last_log_id
            ),
        }
        .into());
    }
    let mut batch = WriteBatch::default();
    for table in Table::ALL {
        batch.delete_range_cf(
            cf(db, table.cf_name())?,
            [].as_slice(),
            TABLE_KEY_END.as_slice(),
        );
    }
    while let Some((tag, key, value)) = reader.next_record()? {
        let table = Table::from_snapshot_tag(tag).ok_or_else(|| StoreError::Corrupt {
            what: "snapshot",
            reason: format!("unknown table tag {tag}"),
        })?;
        batch.put_cf(cf(db, table.cf_name())?, key, value);
    }
    reader.finish()?;
    let sm_meta = cf(db, CF_SM_META)?;
    match meta.last_log_id {
        Some(id) => batch.put_cf(
            sm_meta,
            META_LAST_APPLIED,
            encode("last applied log id", &id)?,
        ),
        None => batch.delete_cf(sm_meta, META_LAST_APPLIED),
    }
    batch.put_cf(
        sm_meta,
        META_MEMBERSHIP,
        encode("membership", &meta.last_membership)?,
    );
    Ok(batch)
}

/// Opens the current snapshot's file, if there is a current snapshot.
fn open_current_snapshot(
    db: &DB,
    dir: &SnapshotDir,
) -> Result<Option<(Meta, File, u64)>, SnapshotError> {
    // Held until the file is open, so that no commit removes it in between.
    let _locked = lock_dir(db, dir)?;
    let Some(pointer) = load_pointer(db)? else {
        return Ok(None);
    };
    if pointer.file.is_empty()
        || pointer.file.contains(['/', '\\'])
        || pointer.file.starts_with('.')
    {
        return Err(StoreError::Corrupt {
            what: "snapshot pointer",
            reason: format!("{:?} is not a file name", pointer.file),
        }
        .into());
    }
    let path = dir.path().join(&pointer.file);
    let file = File::open(&path).map_err(io_err("open", &path))?;
    let len = file.metadata().map_err(io_err("stat", &path))?.len();
    if len != pointer.len {
        return Err(StoreError::Corrupt {
            what: "snapshot",
            reason: format!(
                "{} holds {len} bytes, {} were written",
                path.display(),
                pointer.len
            ),
        }
        .into());
    }
    Ok(Some((pointer.meta, file, len)))
}

fn sm_read_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

/// Builds snapshots from a consistent RocksDB view while the state machine keeps applying.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        let dir = self.snapshots.clone();
        let (meta, file, len) = off_runtime(move || build_snapshot(&db, &dir))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = len, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::new(file, len, None)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || read_applied(&db, None))
            .await
            .map_err(sm_read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let (responses, updates) = blocking(move || apply_batch(&db, entries))
            .await
            .map_err(sm_write_err)?;
        for update in updates {
            // Nobody watching is fine.
            let _ = self.updates.send(update);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let db = self.db.clone();
        let dir = self.snapshots.clone();
        let (file, spool) = off_runtime(move || create_spool(&db, &dir))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        Ok(Box::new(SnapshotFile::new(file, 0, Some(spool))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = meta.signature();
        let (file, spool) = snapshot.into_parts().await.map_err(|e| {
            StorageIOError::write_snapshot(Some(signature.clone()), AnyError::new(&e))
        })?;
        let db = self.db.clone();
        let dir = self.snapshots.clone();
        let meta = meta.clone();
        let bytes = off_runtime(move || install_snapshot(&db, &dir, meta, file, spool))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), AnyError::new(&e)))?;
        tracing::info!(bytes, "installed snapshot");
        let _ = self.updates.send(SessionUpdate::Reset);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = self.db.clone();
        let dir = self.snapshots.clone();
        let current = off_runtime(move || open_current_snapshot(&db, &dir))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(current.map(|(meta, file, len)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::new(file, len, None)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::network::snapshot_transport::Streaming;
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{CommittedLeaderId, Vote};
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;
    use crate::apply::tests::{enrol_cmds, keygen_cmd};
    use crate::{check_snapshot_chunk, Proposal, StateReader, Store};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// One keygen per entry, `from..=to`, each with its own session, key and request id.
    fn keygens(from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Normal(Proposal {
                    // Enrolling the same keys again only renews the admin's signature.
                    commands: enrol_cmds()
                        .into_iter()
                        .chain([keygen_cmd(
                            &format!("s{i}"),
                            &format!("k{i}"),
                            Some(&format!("r{i}")),
                        )])
                        .collect(),
                }),
            })
            .collect()
    }

    /// A one-node membership, as every real state machine has applied before any command.
    fn membership(index: u64) -> Vec<Entry> {
        vec![Entry {
            log_id: log_id(index),
            payload: EntryPayload::Membership(openraft::Membership::new(
                vec![std::collections::BTreeSet::from([1])],
                std::collections::BTreeMap::from([(1, NodeInfo::default())]),
            )),
        }]
    }

    fn open(dir: &Path) -> (StateMachine, StateReader) {
        let (_, sm, reader) = Store::open(dir).unwrap().into_parts().unwrap();
        (sm, reader)
    }

    fn dump(db: &DB) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
        let view = db.snapshot();
        let mut out = Vec::new();
        for_each_record(db, &view, |tag, key, value| {
            out.push((tag, key.to_vec(), value.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    async fn bytes_of(data: &mut SnapshotFile) -> Vec<u8> {
        data.seek(SeekFrom::Start(0)).await.unwrap();
        let mut out = Vec::new();
        data.read_to_end(&mut out).await.unwrap();
        out
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Waits for spools dropped on the runtime to be removed by the blocking pool.
    async fn settled_file_names(dir: &Path) -> Vec<String> {
        for _ in 0..200 {
            let names = file_names(dir);
            if names.iter().all(|n| n.starts_with("snap-")) {
                return names;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        file_names(dir)
    }

    /// A tiny xorshift, so that every run sends the same "arbitrary" chunk sizes.
    fn chunk_sizes(mut seed: u64, max: u64) -> impl FnMut() -> usize {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % max + 1).unwrap()
        }
    }

    /// Sends `from` the way openraft's sender does (seek to the offset, read up to a chunk) into
    /// openraft's own receiver over `into`, sending the second chunk twice as a leader does when
    /// an answer is lost.
    async fn stream_in_chunks(
        from: &mut SnapshotFile,
        into: Box<SnapshotFile>,
        meta: &Meta,
        mut next_size: impl FnMut() -> usize,
    ) -> Box<SnapshotFile> {
        let end = from.seek(SeekFrom::End(0)).await.unwrap();
        let mut streaming = Streaming::<TypeConfig>::new(meta.snapshot_id.clone(), into);
        let mut offset = 0;
        let mut chunks = 0;
        loop {
            from.seek(SeekFrom::Start(offset)).await.unwrap();
            let mut data = Vec::new();
            (&mut *from)
                .take(next_size() as u64)
                .read_to_end(&mut data)
                .await
                .unwrap();
            let len = data.len() as u64;
            let done = offset + len == end;
            check_snapshot_chunk(offset, data.len()).unwrap();
            let req = InstallSnapshotRequest::<TypeConfig> {
                vote: Vote::new_committed(1, 1),
                meta: meta.clone(),
                offset,
                data,
                done,
            };
            chunks += 1;
            if chunks == 2 {
                streaming.receive(req.clone()).await.unwrap();
            }
            streaming.receive(req).await.unwrap();
            if done {
                break;
            }
            offset += len;
        }
        let mut data = streaming.into_snapshot_data();
        data.shutdown().await.unwrap();
        data
    }

    #[tokio::test]
    async fn a_snapshot_streamed_in_arbitrary_chunks_installs_the_same_state() {
        let source_dir = tempfile::tempdir().unwrap();
        let (mut source, source_reader) = open(source_dir.path());
        source.apply(membership(1)).await.unwrap();
        source.apply(keygens(2, 12)).await.unwrap();
        let built = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(12)));
        let mut built_data = built.snapshot;
        let sent = bytes_of(&mut built_data).await;
        assert!(sent.len() > 2_000, "{} bytes", sent.len());

        for (round, max) in [97u64, 4096, 1 << 20].into_iter().enumerate() {
            let target_dir = tempfile::tempdir().unwrap();
            let (mut target, reader) = open(target_dir.path());
            // Something the snapshot must replace.
            target.apply(keygens(1, 1)).await.unwrap();
            target
                .apply(vec![Entry {
                    log_id: log_id(2),
                    payload: EntryPayload::Normal(Proposal {
                        commands: enrol_cmds()
                            .into_iter()
                            .chain([keygen_cmd("stale", "k-stale", None)])
                            .collect(),
                    }),
                }])
                .await
                .unwrap();

            // Each round reads the source's current snapshot anew, as each replication does.
            let mut current = source.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta, built.meta);
            let spool = target.begin_receiving_snapshot().await.unwrap();
            let received = stream_in_chunks(
                &mut current.snapshot,
                spool,
                &current.meta,
                chunk_sizes(round as u64 + 7, max),
            )
            .await;
            target
                .install_snapshot(&current.meta, received)
                .await
                .unwrap();

            assert_eq!(dump(&target.db), dump(&source.db), "max chunk {max}");
            assert_eq!(
                target.applied_state().await.unwrap(),
                source.applied_state().await.unwrap()
            );
            assert!(reader.session("stale").await.unwrap().is_none());
            assert_eq!(
                reader.session("s12").await.unwrap(),
                source_reader.session("s12").await.unwrap()
            );
            let mut kept = target.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(kept.meta, built.meta);
            assert_eq!(bytes_of(&mut kept.snapshot).await, sent);
            // The spool itself became the current snapshot; nothing else is left.
            let names = settled_file_names(&target_dir.path().join("snapshots")).await;
            assert_eq!(names.len(), 1, "{names:?}");
        }
    }

    #[tokio::test]
    async fn a_snapshot_that_does_not_decode_or_match_is_refused_and_changes_nothing() {
        let source_dir = tempfile::tempdir().unwrap();
        let (mut source, _) = open(source_dir.path());
        source.apply(keygens(1, 3)).await.unwrap();
        let built = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let mut built_data = built.snapshot;
        let good = bytes_of(&mut built_data).await;

        let dir = tempfile::tempdir().unwrap();
        let (mut target, reader) = open(dir.path());
        target.apply(keygens(1, 1)).await.unwrap();
        let before = dump(&target.db);

        let mut garbage = target.begin_receiving_snapshot().await.unwrap();
        garbage.write_all(b"\x01garbage").await.unwrap();
        garbage.shutdown().await.unwrap();
        assert!(target.install_snapshot(&built.meta, garbage).await.is_err());

        let mut truncated = target.begin_receiving_snapshot().await.unwrap();
        truncated.write_all(&good[..good.len() - 1]).await.unwrap();
        assert!(target
            .install_snapshot(&built.meta, truncated)
            .await
            .is_err());

        let mut mislabelled = target.begin_receiving_snapshot().await.unwrap();
        mislabelled.write_all(&good).await.unwrap();
        let meta = Meta {
            last_log_id: Some(log_id(99)),
            ..built.meta.clone()
        };
        let err = target
            .install_snapshot(&meta, mislabelled)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("metadata says"), "{err}");

        assert_eq!(dump(&target.db), before);
        assert!(reader.session("s1").await.unwrap().is_some());
        assert_eq!(target.applied_state().await.unwrap().0, Some(log_id(1)));
        assert!(target.get_current_snapshot().await.unwrap().is_none());
        let names = settled_file_names(&dir.path().join("snapshots")).await;
        assert!(names.is_empty(), "{names:?}");
    }

    #[tokio::test]
    async fn a_restart_removes_leftovers_and_moves_a_rocksdb_snapshot_into_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        let (legacy_meta, legacy_data, state) = {
            let (mut sm, _) = open(dir.path());
            sm.apply(membership(1)).await.unwrap();
            sm.apply(keygens(2, 4)).await.unwrap();
            // What a release before snapshot files stored: the whole snapshot inside RocksDB.
            let (last_applied, membership) = read_applied(&sm.db, None).unwrap();
            let records = dump(&sm.db);
            let mut data = encode_header(
                &SnapshotHeader {
                    last_applied,
                    membership: membership.clone(),
                },
                records.len() as u64,
            )
            .unwrap();
            for (tag, key, value) in &records {
                write_record(&mut data, *tag, key, value).unwrap();
            }
            let meta = Meta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id: "legacy".into(),
            };
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            };
            sm.db
                .put_cf(
                    cf(&sm.db, CF_SNAPSHOT).unwrap(),
                    SNAPSHOT_CURRENT,
                    encode("stored snapshot", &stored).unwrap(),
                )
                .unwrap();
            // And what a run that stopped midway leaves behind.
            std::fs::create_dir(&snapshots).unwrap();
            for name in ["recv-1-2-3", "build-4-5-6", "snap-7-8-9"] {
                std::fs::write(snapshots.join(name), b"partial").unwrap();
            }
            (meta, data, records)
        };

        let (mut sm, _) = open(dir.path());
        let mut current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, legacy_meta);
        assert_eq!(bytes_of(&mut current.snapshot).await, legacy_data);
        let names = file_names(&snapshots);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("snap-") && names[0] != "snap-7-8-9");
        assert!(sm
            .db
            .get_cf(cf(&sm.db, CF_SNAPSHOT).unwrap(), SNAPSHOT_CURRENT)
            .unwrap()
            .is_none());

        // The moved snapshot still installs elsewhere.
        let other_dir = tempfile::tempdir().unwrap();
        let (mut other, _) = open(other_dir.path());
        let spool = other.begin_receiving_snapshot().await.unwrap();
        let received = stream_in_chunks(
            &mut current.snapshot,
            spool,
            &current.meta,
            chunk_sizes(3, 500),
        )
        .await;
        other
            .install_snapshot(&current.meta, received)
            .await
            .unwrap();
        assert_eq!(dump(&other.db), state);

        // A spool abandoned by the stopped run is gone at the next start too.
        drop(sm);
        std::fs::write(snapshots.join("recv-9-9-9"), b"partial").unwrap();
        let (mut sm, _) = open(dir.path());
        assert!(sm.get_current_snapshot().await.unwrap().is_some());
        assert_eq!(file_names(&snapshots), names);
    }

    fn entry(index: u64, commands: Vec<crate::Command>) -> Vec<Entry> {
        vec![Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal { commands }),
        }]
    }

    fn expire(session_id: &str, at_ms: u64) -> crate::Command {
        crate::Command {
            at_ms,
            actor: "scheduler".into(),
            op: crate::Operation::ExpireSession {
                session_id: session_id.into(),
            },
        }
    }

    #[tokio::test]
    async fn listings_walk_indexes_and_retention_finds_what_finished_long_ago() {
        use crate::model::{SessionKind, SessionStatus};
        use crate::SessionFilter;
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, reader) = open(dir.path());
        sm.apply(membership(1)).await.unwrap();
        sm.apply(keygens(2, 6)).await.unwrap();
        // s2 and s3 expire at 61 000 and 62 000; s4..s6 stay pending.
        sm.apply(entry(7, vec![expire("s2", 61_000)]))
            .await
            .unwrap();
        sm.apply(entry(8, vec![expire("s3", 62_000)]))
            .await
            .unwrap();

        let ids = |page: Vec<crate::model::SessionRecord>| {
            page.into_iter().map(|s| s.session_id).collect::<Vec<_>>()
        };
        let by_key = SessionFilter {
            key_id: Some("k4".into()),
            ..Default::default()
        };
        let (page, next) = reader.sessions(by_key, 10, None).await.unwrap();
        assert_eq!((ids(page), next), (vec!["s4".to_owned()], None));
        let expired = SessionFilter {
            status: Some(SessionStatus::Expired),
            ..Default::default()
        };
        let (page, next) = reader.sessions(expired.clone(), 1, None).await.unwrap();
        assert_eq!(ids(page), ["s3"]);
        let (page, next) = reader.sessions(expired, 1, next).await.unwrap();
        assert_eq!((ids(page), next), (vec!["s2".to_owned()], None));
        let keygens = SessionFilter {
            kind: Some(SessionKind::Keygen),
            status: Some(SessionStatus::Pending),
            key_id: None,
        };
        let (page, _) = reader.sessions(keygens, 10, None).await.unwrap();
        assert_eq!(ids(page), ["s6", "s5", "s4"]);

        let mut active = ids(reader.active_sessions().await.unwrap());
        active.sort();
        assert_eq!(active, ["s4", "s5", "s6"]);
        let open = |key: &'static str, kind| reader.open_sessions_of_key(key, kind, 10);
        assert_eq!(open("k5", SessionKind::Keygen).await.unwrap(), 1);
        assert_eq!(open("k5", SessionKind::Sign).await.unwrap(), 0);
        assert_eq!(open("k2", SessionKind::Keygen).await.unwrap(), 0);

        let (sessions, updates) = reader.prunable(61_500, 10).await.unwrap();
        assert_eq!((sessions, updates), (vec!["s2".to_owned()], vec![]));
        let (sessions, _) = reader.prunable(70_000, 1).await.unwrap();
        assert_eq!(sessions, ["s2"]);
        let (sessions, _) = reader.prunable(70_000, 10).await.unwrap();
        assert_eq!(sessions, ["s2", "s3"]);

        let audit = reader
            .audit(
                None,
                100,
                crate::AuditFilter {
                    key_id: Some("k3".into()),
                    since_ms: None,
                },
            )
            .await
            .unwrap();
        let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["session.create_keygen", "session.expire"]);
    }

    #[tokio::test]
    async fn a_store_written_before_the_indexes_gets_them_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (mut sm, _) = open(dir.path());
            sm.apply(membership(1)).await.unwrap();
            sm.apply(keygens(2, 4)).await.unwrap();
            sm.apply(entry(5, vec![expire("s2", 61_000)]))
                .await
                .unwrap();
            let before = dump(&sm.db);
            // What a release before the indexes left: the table empty, no marker.
            let indexes = cf(&sm.db, Table::Indexes.cf_name()).unwrap();
            sm.db
                .delete_range_cf(indexes, [].as_slice(), TABLE_KEY_END.as_slice())
                .unwrap();
            before
        };
        let (sm, reader) = open(dir.path());
        assert_eq!(dump(&sm.db), before);
        let mut active: Vec<_> = reader
            .active_sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        active.sort();
        assert_eq!(active, ["s3", "s4"]);
    }

    #[tokio::test]
    async fn a_build_older_than_the_current_snapshot_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _) = open(dir.path());
        sm.apply(keygens(1, 2)).await.unwrap();
        let newer = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        // A build that read the state before the newer snapshot was made, finishing after it.
        let (file, temp) = sm.snapshots.create_temp("build").unwrap();
        drop(file);
        let stale = temp_path(&temp);
        let older = Meta {
            last_log_id: Some(log_id(1)),
            last_membership: Default::default(),
            snapshot_id: "older".into(),
        };
        let replaced = {
            let locked = lock_dir(&sm.db, &sm.snapshots).unwrap();
            commit_snapshot(
                &sm.db,
                &sm.snapshots,
                &locked,
                &older,
                temp,
                0,
                WriteBatch::default(),
                Replace::IfNotOlder,
            )
            .unwrap()
        };
        assert!(!replaced);
        assert!(!stale.exists());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, newer.meta.snapshot_id);

        // A newer build replaces it and removes the file it replaced.
        sm.apply(keygens(3, 3)).await.unwrap();
        let newest = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, newest.meta.snapshot_id);
        assert_eq!(file_names(&dir.path().join("snapshots")).len(), 1);
    }
}
