//! The state machine: tables in RocksDB column families, applied in log order.
//!
//! Each `apply` call runs every entry of the batch through [`crate::apply::apply_command`]
//! against a read-your-writes overlay and commits the result, together with the new
//! `last_applied`, in one atomic RocksDB write. The write is not synced: the Raft log is the
//! durable record, and after a crash the entries past the persisted `last_applied` are simply
//! applied again. Before a snapshot lets the log be purged, the write-ahead log is synced.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::apply::{apply_command, LogPosition, StateTxn, Table};
use crate::codec::{decode, encode};
use crate::model::SessionRecord;
use crate::store::{blocking, cf, CF_SM_META, CF_SNAPSHOT};
use crate::{NodeId, NodeInfo, ProposalResponse, StoreError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<NodeId, NodeInfo>;

const META_LAST_APPLIED: &[u8] = b"last_applied";
const META_MEMBERSHIP: &[u8] = b"last_membership";
const SNAPSHOT_CURRENT: &[u8] = b"current";
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
}

/// A snapshot as sent between nodes and kept on disk.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    /// (table tag, key, value), table by table in key order.
    records: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<DB>, updates: broadcast::Sender<SessionUpdate>) -> Self {
        Self { db, updates }
    }
}

/// Reads through the pending batch, then the database.
struct RocksTxn<'a> {
    db: &'a DB,
    batch: WriteBatch,
    pending: HashMap<(Table, Vec<u8>), Vec<u8>>,
}

impl StateTxn for RocksTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.pending.get(&(table, key.to_vec())) {
            return Ok(Some(value.clone()));
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
        self.pending.insert((table, key), value);
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

fn build_snapshot(db: &DB) -> Result<StoredSnapshot, StoreError> {
    let view = db.snapshot();
    let (last_applied, membership) = read_applied(db, Some(&view))?;
    let mut records = Vec::new();
    for table in Table::ALL {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&view);
        for item in db.iterator_cf_opt(cf(db, table.cf_name())?, opts, IteratorMode::Start) {
            let (key, value) = item.map_err(StoreError::db("read state for snapshot"))?;
            records.push((table.snapshot_tag(), key.into_vec(), value.into_vec()));
        }
    }
    let payload = SnapshotPayload {
        last_applied,
        membership: membership.clone(),
        records,
    };
    let data = encode("snapshot", &payload)?;
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
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        },
        data,
    };
    save_snapshot(db, &stored, WriteBatch::default())?;
    Ok(stored)
}

/// Writes `stored` as the current snapshot, in the same atomic write as `batch`.
fn save_snapshot(
    db: &DB,
    stored: &StoredSnapshot,
    mut batch: WriteBatch,
) -> Result<(), StoreError> {
    batch.put_cf(
        cf(db, CF_SNAPSHOT)?,
        SNAPSHOT_CURRENT,
        encode("stored snapshot", stored)?,
    );
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)
        .map_err(StoreError::db("save snapshot"))
}

fn install_snapshot(
    db: &DB,
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
) -> Result<(), StoreError> {
    let payload: SnapshotPayload = decode("snapshot", &data)?;
    if payload.last_applied != meta.last_log_id {
        return Err(StoreError::Corrupt {
            what: "snapshot",
            reason: format!(
                "its data ends at {:?} but its metadata says {:?}",
                payload.last_applied, meta.last_log_id
            ),
        });
    }
    let mut batch = WriteBatch::default();
    for table in Table::ALL {
        batch.delete_range_cf(
            cf(db, table.cf_name())?,
            [].as_slice(),
            TABLE_KEY_END.as_slice(),
        );
    }
    for (tag, key, value) in &payload.records {
        let table = Table::from_snapshot_tag(*tag).ok_or_else(|| StoreError::Corrupt {
            what: "snapshot",
            reason: format!("unknown table tag {tag}"),
        })?;
        batch.put_cf(cf(db, table.cf_name())?, key, value);
    }
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
    save_snapshot(db, &StoredSnapshot { meta, data }, batch)
}

fn load_current_snapshot(db: &DB) -> Result<Option<StoredSnapshot>, StoreError> {
    db.get_cf(cf(db, CF_SNAPSHOT)?, SNAPSHOT_CURRENT)
        .map_err(StoreError::db("read snapshot"))?
        .map(|bytes| decode("stored snapshot", &bytes))
        .transpose()
}

fn into_snapshot(stored: StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: stored.meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    }
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
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        let stored = blocking(move || build_snapshot(&db))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "built snapshot");
        Ok(into_snapshot(stored))
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
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        let meta = meta.clone();
        let signature = meta.signature();
        let data = snapshot.into_inner();
        let bytes = data.len();
        blocking(move || install_snapshot(&db, meta, data))
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
        let stored = blocking(move || load_current_snapshot(&db))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(stored.map(into_snapshot))
    }
}
