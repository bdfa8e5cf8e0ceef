use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::apply::Table;
use crate::log_store::LogStore;
use crate::reader::StateReader;
use crate::snapshot_file::SnapshotDir;
use crate::state_machine::StateMachine;
use crate::StoreError;

pub(crate) const CF_LOG: &str = "raft_log";
pub(crate) const CF_LOG_META: &str = "raft_meta";
pub(crate) const CF_SM_META: &str = "sm_meta";
pub(crate) const CF_SNAPSHOT: &str = "sm_snapshot";

/// The memory all column families' memtables may take together.
const MEMTABLE_BUDGET_BYTES: usize = 64 << 20;

/// One RocksDB database holding a coordinator's Raft log and its state machine.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<DB>,
    snapshots: Arc<SnapshotDir>,
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// Snapshot files go to `dir/snapshots/`. The state machine creates that directory, and
    /// removes what an earlier run left in it, the first time it touches a snapshot (openraft
    /// asks for the current one as it starts).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // Our own syncs make entries durable; RocksDB's own WAL flushes stay automatic.
        opts.set_manual_wal_flush(false);
        // Files RocksDB writes in the background (flushes, compactions of a large state) are
        // synced as they grow, so that a log sync never waits behind their dirty pages.
        opts.set_bytes_per_sync(1 << 20);
        opts.set_wal_bytes_per_sync(1 << 20);
        // One budget for the memtables of every column family (each would otherwise take up
        // to 128 MiB): a node under a stream of large writes flushes sooner instead of growing.
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);

        let mut names = vec![CF_LOG, CF_LOG_META, CF_SM_META, CF_SNAPSHOT];
        names.extend(Table::ALL.iter().map(|t| t.cf_name()));
        let cfs = names
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        // A store written before the indexes existed gets them now, once.
        if crate::index::rebuild(&db)? {
            tracing::info!(path = %dir.display(), "built the state machine's indexes");
        }
        Ok(Self {
            db: Arc::new(db),
            snapshots: Arc::new(SnapshotDir::new(dir.join("snapshots"))),
        })
    }

    /// The database underneath, for tests that set up records directly.
    #[cfg(test)]
    pub(crate) fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// Splits the store into the halves openraft owns and the read path the API serves from.
    pub fn into_parts(self) -> Result<(LogStore, StateMachine, StateReader), StoreError> {
        // Watchers that fall this far behind are told they lagged and re-read.
        let (updates, _) = tokio::sync::broadcast::channel(1024);
        let log = LogStore::new(self.db.clone())?;
        let reader = StateReader::new(self.db.clone(), updates.clone());
        let sm = StateMachine::new(self.db, updates, self.snapshots);
        Ok((log, sm, reader))
    }
}

pub(crate) fn cf<'a>(
    db: &'a DB,
    name: &'static str,
) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or(StoreError::MissingColumnFamily(name))
}

/// Runs a RocksDB call off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::TaskFailed)?
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{EntryPayload, LogId, StorageError};

    use super::*;
    use crate::apply::tests::keygen_cmd;
    use crate::{CommandResponse, NodeId, TypeConfig};

    struct RocksBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir()
                .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
            let store = Store::open(dir.path())
                .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
            let (log, sm, _) = store
                .into_parts()
                .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite against the RocksDB stores.
    #[test]
    fn openraft_storage_suite_passes() {
        if let Err(e) = Suite::test_all(RocksBuilder) {
            panic!("openraft storage suite failed: {e}");
        }
    }

    fn one(cmd: crate::Command) -> crate::Proposal {
        crate::Proposal {
            commands: vec![cmd],
        }
    }

    /// `cmd` after the admin's enrolment of the parties its keygen names.
    fn enrolled(cmd: crate::Command) -> crate::Proposal {
        let mut commands = crate::apply::tests::enrol_cmds();
        commands.push(cmd);
        crate::Proposal { commands }
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    async fn append(log: &mut LogStore, entries: Vec<openraft::Entry<TypeConfig>>) {
        use openraft::storage::RaftLogStorageExt;
        log.blocking_append(entries).await.unwrap();
    }

    #[tokio::test]
    async fn log_vote_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _, _) = Store::open(dir.path()).unwrap().into_parts().unwrap();
            append(
                &mut log,
                (1..=10).map(|i| entry(i, EntryPayload::Blank)).collect(),
            )
            .await;
            log.save_vote(&openraft::Vote::new_committed(3, 2))
                .await
                .unwrap();
            log.purge(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4))
                .await
                .unwrap();
        }
        let (mut log, _, _) = Store::open(dir.path()).unwrap().into_parts().unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(10));
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(openraft::Vote::new_committed(3, 2))
        );
        let left = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(left.first().map(|e| e.log_id.index), Some(5));
        assert_eq!(left.len(), 6);
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_state_to_another_store() {
        let source_dir = tempfile::tempdir().unwrap();
        let (_, mut source, source_reader) = Store::open(source_dir.path())
            .unwrap()
            .into_parts()
            .unwrap();
        let responses = source
            .apply(vec![
                entry(
                    1,
                    EntryPayload::Normal(enrolled(keygen_cmd("s1", "k1", Some("r1")))),
                ),
                entry(2, EntryPayload::Normal(one(keygen_cmd("s2", "k2", None)))),
            ])
            .await
            .unwrap();
        assert!(matches!(
            responses[0].responses.last(),
            Some(CommandResponse::Session { created: true, .. })
        ));
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(2));

        let target_dir = tempfile::tempdir().unwrap();
        let (_, mut target, reader) = Store::open(target_dir.path())
            .unwrap()
            .into_parts()
            .unwrap();
        // Something the snapshot must replace.
        target
            .apply(vec![entry(
                1,
                EntryPayload::Normal(enrolled(keygen_cmd("stale", "k9", None))),
            )])
            .await
            .unwrap();
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();

        assert!(reader.session("stale").await.unwrap().is_none());
        assert_eq!(
            reader.session("s1").await.unwrap(),
            source_reader.session("s1").await.unwrap()
        );
        let (applied, _) = target.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        // The idempotency table came along: a retry on the new node finds the old session.
        let retried = target
            .apply(vec![entry(
                3,
                EntryPayload::Normal(one(keygen_cmd("s3", "k1", Some("r1")))),
            )])
            .await
            .unwrap();
        assert!(
            matches!(&retried[0].responses[0], CommandResponse::Session { created: false, session } if session.session_id == "s1")
        );
        let current = target.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
    }

    #[tokio::test]
    async fn listing_sessions_pages_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut sm, reader) = Store::open(dir.path()).unwrap().into_parts().unwrap();
        let entries = (1..=5)
            .map(|i| {
                let keygen = keygen_cmd(&format!("s{i}"), &format!("k{i}"), None);
                let proposal = if i == 1 {
                    enrolled(keygen)
                } else {
                    one(keygen)
                };
                entry(i, EntryPayload::Normal(proposal))
            })
            .collect::<Vec<_>>();
        sm.apply(entries).await.unwrap();
        let (first, token) = reader.sessions(Default::default(), 2, None).await.unwrap();
        let ids: Vec<_> = first.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, ["s5", "s4"]);
        let (second, _) = reader.sessions(Default::default(), 2, token).await.unwrap();
        let ids: Vec<_> = second.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, ["s3", "s2"]);
        let audit = reader.audit(None, 10, Default::default()).await.unwrap();
        assert_eq!(audit.len(), 3 + 5);
    }
}
