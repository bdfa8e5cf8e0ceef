//! The read path: point reads and listings served straight from the state machine's column
//! families. Linearizability is the caller's business (wait until the node has applied the
//! leader's read index, then read here).

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, DB};
use tokio::sync::broadcast;

use crate::apply::Table;
use crate::codec::decode;
use crate::index;
use crate::model::{
    AuditEvent, IdempotencyRecord, JobId, JobState, KeyRecord, PartyRecord, PresignatureRecord,
    PresignatureStatus, RelayJob, SessionKind, SessionRecord, SessionStatus, TokenRecord,
};
use crate::relay::{self, RelayCursor};
use crate::state_machine::SessionUpdate;
use crate::store::{blocking, cf};
use crate::StoreError;

/// Which sessions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    pub kind: Option<SessionKind>,
    pub key_id: Option<String>,
}

impl SessionFilter {
    fn matches(&self, s: &SessionRecord) -> bool {
        self.status.is_none_or(|st| s.status == st)
            && self.kind.is_none_or(|k| s.kind == k)
            && self.key_id.as_ref().is_none_or(|k| &s.key_id == k)
    }
}

/// Which audit events a listing returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    /// Only events at or after this time.
    pub since_ms: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.key_id
            .as_ref()
            .is_none_or(|k| e.key_id.as_ref() == Some(k))
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
    }
}

/// Read access to the replicated state, shared with the state machine.
#[derive(Debug, Clone)]
pub struct StateReader {
    db: Arc<DB>,
    updates: broadcast::Sender<SessionUpdate>,
}

impl StateReader {
    pub(crate) fn new(db: Arc<DB>, updates: broadcast::Sender<SessionUpdate>) -> Self {
        Self { db, updates }
    }

    /// Session changes as this node applies them.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionUpdate> {
        self.updates.subscribe()
    }

    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.get(Table::Sessions, session_id, "session").await
    }

    pub async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.get(Table::Keys, key_id, "key").await
    }

    /// What a request id created, while it is remembered.
    pub async fn request(&self, request_id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(Table::Idempotency, request_id, "idempotency record")
            .await
    }

    pub async fn party(&self, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
        self.get(Table::Parties, party_id, "party").await
    }

    /// The records of `party_ids`, in that order, read in one pass (`None` for an unknown id).
    pub async fn parties_named(
        &self,
        party_ids: &[String],
    ) -> Result<Vec<Option<PartyRecord>>, StoreError> {
        let db = self.db.clone();
        let ids = party_ids.to_vec();
        blocking(move || {
            let parties = cf(&db, Table::Parties.cf_name())?;
            db.batched_multi_get_cf(parties, ids.iter().map(String::as_bytes), false)
                .into_iter()
                .map(|read| {
                    read.map_err(StoreError::db("read state"))?
                        .map(|b| decode("party", &b))
                        .transpose()
                })
                .collect()
        })
        .await
    }

    /// Sessions newest first (session ids are time-ordered UUIDv7), starting after
    /// `page_token` (the last id of the previous page). Returns the page and the next token.
    ///
    /// A filter on the key, else on the status, else on the kind walks that index; the other
    /// conditions are checked on the records it yields.
    pub async fn sessions(
        &self,
        filter: SessionFilter,
        page_size: usize,
        page_token: Option<String>,
    ) -> Result<(Vec<SessionRecord>, Option<String>), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let prefix = if let Some(key_id) = &filter.key_id {
                Some(index::prefix(index::BY_KEY, &[key_id.as_bytes()]))
            } else if let Some(status) = filter.status {
                Some(index::prefix(
                    index::BY_STATUS,
                    &[status.as_str().as_bytes()],
                ))
            } else {
                filter
                    .kind
                    .map(|kind| index::prefix(index::BY_KIND, &[kind.as_str().as_bytes()]))
            };
            let mut page = Vec::new();
            let mut take = |session: SessionRecord| {
                if filter.matches(&session) {
                    page.push(session);
                }
                page.len() > page_size
            };
            match prefix {
                Some(prefix) => {
                    let after = page_token.as_deref().map_or(&[0xff][..], str::as_bytes);
                    walk_index(
                        &db,
                        &prefix,
                        after,
                        Direction::Reverse,
                        Table::Sessions,
                        |v| Ok(take(decode("session", v)?)),
                    )?;
                }
                None => {
                    let mode = match &page_token {
                        Some(token) => IteratorMode::From(token.as_bytes(), Direction::Reverse),
                        None => IteratorMode::End,
                    };
                    let sessions = cf(&db, Table::Sessions.cf_name())?;
                    for item in db.iterator_cf(sessions, mode) {
                        let (key, value) = item.map_err(StoreError::db("list sessions"))?;
                        if page_token.as_deref().is_some_and(|t| t.as_bytes() == &*key) {
                            continue;
                        }
                        if take(decode("session", &value)?) {
                            break;
                        }
                    }
                }
            }
            Ok(paginate(page, page_size, |s| s.session_id.clone()))
        })
        .await
    }

    /// Every session not yet finished (pending or running). A new leader's scheduler reads
    /// this once to take over what its predecessor left.
    pub async fn active_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let sessions = cf(&db, Table::Sessions.cf_name())?;
            let mut active = Vec::new();
            for id in index_ids(&db, &index::prefix(index::OPEN_BY_KEY, &[]), usize::MAX)? {
                let id = index::id_of(&id);
                if let Some(value) = db
                    .get_cf(sessions, id)
                    .map_err(StoreError::db("list sessions"))?
                {
                    active.push(decode("session", &value)?);
                }
            }
            Ok(active)
        })
        .await
    }

    /// How many of a key's sessions of `kind` are not finished yet, counting no further than
    /// `limit`.
    pub async fn open_sessions_of_key(
        &self,
        key_id: &str,
        kind: SessionKind,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let db = self.db.clone();
        let prefix = index::prefix(
            index::OPEN_BY_KEY,
            &[key_id.as_bytes(), kind.as_str().as_bytes()],
        );
        blocking(move || Ok(index_ids(&db, &prefix, limit)?.len())).await
    }

    /// What a retention run may forget: up to `limit` sessions finished at or before
    /// `cutoff_ms`, and up to `limit` key updates applied by then, oldest first.
    pub async fn prunable(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<(Vec<String>, Vec<(String, u64)>), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let older = |prefix: &[u8]| -> Result<Vec<(String, u64)>, StoreError> {
                let mut found = Vec::new();
                for key in index_ids(&db, &index::prefix(prefix, &[]), limit)? {
                    match index::time_of(&key) {
                        Some(t) if t <= cutoff_ms => found
                            .push((String::from_utf8_lossy(index::id_of(&key)).into_owned(), t)),
                        _ => break,
                    }
                }
                Ok(found)
            };
            let sessions = older(index::FINISHED)?.into_iter().map(|(id, _)| id);
            Ok((sessions.collect(), older(index::KEY_UPDATES)?))
        })
        .await
    }

    /// A key's presignatures that are still available, oldest first.
    pub async fn available_presignatures(
        &self,
        key_id: &str,
    ) -> Result<Vec<PresignatureRecord>, StoreError> {
        let db = self.db.clone();
        let prefix = format!("{key_id}/");
        blocking(move || {
            let mut found = Vec::new();
            let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
            for item in db.iterator_cf(cf(&db, Table::Presignatures.cf_name())?, mode) {
                let (key, value) = item.map_err(StoreError::db("list presignatures"))?;
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                let record: PresignatureRecord = decode("presignature", &value)?;
                if record.status == PresignatureStatus::Available {
                    found.push(record);
                }
            }
            found.sort_by_key(|r| r.created_at_ms);
            Ok(found)
        })
        .await
    }

    /// How many presignatures each key has available, in one pass over the pool (the
    /// scheduler asks for every key at once; a read per key made its refill loop N+1 reads).
    /// Keys with none available are absent.
    pub async fn available_presignature_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let mut counts = std::collections::HashMap::new();
            let table = cf(&db, Table::Presignatures.cf_name())?;
            for item in db.iterator_cf(table, IteratorMode::Start) {
                let (_, value) = item.map_err(StoreError::db("count presignatures"))?;
                let record: PresignatureRecord = decode("presignature", &value)?;
                if record.status == PresignatureStatus::Available {
                    *counts.entry(record.key_id).or_insert(0) += 1;
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Keys in id order, starting after `page_token`.
    pub async fn keys(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> Result<(Vec<KeyRecord>, Option<String>), StoreError> {
        self.scan(
            Table::Keys,
            "key",
            page_size,
            page_token,
            |k: &KeyRecord| k.key_id.clone(),
        )
        .await
    }

    /// Parties in id order, starting after `page_token`.
    pub async fn parties(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> Result<(Vec<PartyRecord>, Option<String>), StoreError> {
        self.scan(
            Table::Parties,
            "party",
            page_size,
            page_token,
            |p: &PartyRecord| p.party_id.clone(),
        )
        .await
    }

    /// Audit events after log position `after` (exclusive; `None` from the start), oldest
    /// first, at most `limit` of those that match `filter`. A key filter walks that key's
    /// index.
    pub async fn audit(
        &self,
        after: Option<crate::apply::LogPosition>,
        limit: usize,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let start = after.map(|p| p.audit_key()).unwrap_or_default();
            let table = cf(&db, Table::Audit.cf_name())?;
            let mut events = Vec::new();
            let mut take = |event: AuditEvent| {
                if filter.matches(&event) {
                    events.push(event);
                }
                events.len() >= limit
            };
            match &filter.key_id {
                Some(key_id) => {
                    let prefix = index::prefix(index::AUDIT_BY_KEY, &[key_id.as_bytes()]);
                    walk_index(
                        &db,
                        &prefix,
                        &start,
                        Direction::Forward,
                        Table::Audit,
                        |v| Ok(take(decode("audit event", v)?)),
                    )?;
                }
                None => {
                    let mode = IteratorMode::From(&start, Direction::Forward);
                    for item in db.iterator_cf(table, mode) {
                        let (key, value) = item.map_err(StoreError::db("list audit events"))?;
                        if *key == *start {
                            continue;
                        }
                        if take(decode("audit event", &value)?) {
                            break;
                        }
                    }
                }
            }
            Ok(events)
        })
        .await
    }

    /// One DVN relay job.
    pub async fn relay_job(&self, job_id: JobId) -> Result<Option<RelayJob>, StoreError> {
        self.get(Table::RelayJobs, &job_id.to_string(), "relay job")
            .await
    }

    /// Relay jobs: in `state`, oldest first, or all of them in job-id order; starting after
    /// the job `page_token` names. Returns the page and the next token.
    pub async fn relay_jobs(
        &self,
        state: Option<JobState>,
        page_size: usize,
        page_token: Option<JobId>,
    ) -> Result<(Vec<RelayJob>, Option<JobId>), StoreError> {
        let Some(state) = state else {
            let (page, next) = self
                .scan(
                    Table::RelayJobs,
                    "relay job",
                    page_size,
                    page_token.map(|t| t.to_string()),
                    |j: &RelayJob| j.job_id.to_string(),
                )
                .await?;
            return Ok((page, next.and_then(|t| t.parse().ok())));
        };
        // The index orders by discovery time: resume after the token's own entry, found from
        // its record (a token whose job left the state starts the listing again).
        let after = match page_token {
            Some(id) => self
                .relay_job(id)
                .await?
                .filter(|j| j.state == state)
                .map(|j| relay::state_entry(&j)),
            None => None,
        };
        let db = self.db.clone();
        blocking(move || {
            let prefix = index::prefix(index::RELAY_BY_STATE, &[state.as_str().as_bytes()]);
            let from = after.clone().unwrap_or_else(|| prefix.clone());
            let indexes = cf(&db, Table::Indexes.cf_name())?;
            let jobs = cf(&db, Table::RelayJobs.cf_name())?;
            let mut page = Vec::new();
            for item in db.iterator_cf(indexes, IteratorMode::From(&from, Direction::Forward)) {
                let (key, _) = item.map_err(StoreError::db("read index"))?;
                if !key.starts_with(&prefix) {
                    break;
                }
                if after.as_deref() == Some(&*key) {
                    continue;
                }
                let Some(value) = db
                    .get_cf(jobs, index::id_of(&key))
                    .map_err(StoreError::db("read an indexed record"))?
                else {
                    continue;
                };
                page.push(decode::<RelayJob>("relay job", &value)?);
                if page.len() > page_size {
                    break;
                }
            }
            let (page, next) = paginate(page, page_size, |j| j.job_id.to_string());
            Ok((page, next.and_then(|t| t.parse().ok())))
        })
        .await
    }

    /// How many relay jobs each state holds (states with none are absent). Counts index
    /// entries, so it reads no job record.
    pub async fn relay_job_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<JobState, u64>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let indexes = cf(&db, Table::Indexes.cf_name())?;
            let mut counts = std::collections::BTreeMap::new();
            for state in JobState::ALL {
                let prefix = index::prefix(index::RELAY_BY_STATE, &[state.as_str().as_bytes()]);
                let mut n = 0u64;
                for item in db.iterator_cf(indexes, IteratorMode::From(&prefix, Direction::Forward))
                {
                    let (key, _) = item.map_err(StoreError::db("read index"))?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    n += 1;
                }
                if n > 0 {
                    counts.insert(state, n);
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Up to `limit` relay jobs that ended (verified, rejected or failed) at or before
    /// `cutoff_ms` and whose source block every live relayer's cursor on that chain has
    /// passed, so that no listener finds their packets again and records them anew. A cursor
    /// that has not moved since the cutoff is a retired relayer's: it holds nothing back (were
    /// it to come back, the target chain's `hashLookup` still keeps it from verifying a packet
    /// twice).
    pub async fn prunable_relay_jobs(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut passed: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        let cursors = self.relay_cursors().await?;
        for c in cursors.iter().filter(|c| c.updated_at_ms > cutoff_ms) {
            let block = passed.entry(c.src_eid).or_insert(c.block);
            *block = (*block).min(c.block);
        }
        let db = self.db.clone();
        blocking(move || {
            let indexes = cf(&db, Table::Indexes.cf_name())?;
            let jobs = cf(&db, Table::RelayJobs.cf_name())?;
            let mut found = Vec::new();
            for state in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
                let prefix = index::prefix(index::RELAY_BY_STATE, &[state.as_str().as_bytes()]);
                for item in db.iterator_cf(indexes, IteratorMode::From(&prefix, Direction::Forward))
                {
                    if found.len() >= limit {
                        return Ok(found);
                    }
                    let (key, _) = item.map_err(StoreError::db("read index"))?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    // Oldest discovered first: none after one discovered past the cutoff
                    // can have ended before it.
                    let discovered = key
                        .get(prefix.len()..prefix.len() + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes);
                    if discovered.is_none_or(|t| t > cutoff_ms) {
                        break;
                    }
                    let Some(value) = db
                        .get_cf(jobs, index::id_of(&key))
                        .map_err(StoreError::db("read an indexed record"))?
                    else {
                        continue;
                    };
                    let job: RelayJob = decode("relay job", &value)?;
                    let behind_every_cursor = passed
                        .get(&job.packet.src_eid)
                        .is_some_and(|block| job.packet.source_block <= *block);
                    if job.updated_at_ms <= cutoff_ms && behind_every_cursor {
                        found.push(job.job_id);
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// Every relayer's cursor on every source chain.
    pub async fn relay_cursors(&self) -> Result<Vec<RelayCursor>, StoreError> {
        let (all, _) = self
            .scan(
                Table::RelayCursors,
                "relay cursor",
                usize::MAX - 1,
                None,
                |c: &RelayCursor| c.instance.clone(),
            )
            .await?;
        Ok(all)
    }

    /// One relayer's cursor on one source chain.
    pub async fn relay_cursor(
        &self,
        instance: &str,
        src_eid: u32,
    ) -> Result<Option<RelayCursor>, StoreError> {
        let db = self.db.clone();
        let key = relay::cursor_key(instance, src_eid);
        blocking(move || {
            db.get_cf(cf(&db, Table::RelayCursors.cf_name())?, &key)
                .map_err(StoreError::db("read state"))?
                .map(|b| decode("relay cursor", &b))
                .transpose()
        })
        .await
    }

    pub async fn token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(Table::Tokens, token_id, "token").await
    }

    /// Tokens (revoked ones included) in id order, starting after `page_token`.
    pub async fn tokens(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> Result<(Vec<TokenRecord>, Option<String>), StoreError> {
        self.scan(
            Table::Tokens,
            "token",
            page_size,
            page_token,
            |t: &TokenRecord| t.token_id.clone(),
        )
        .await
    }

    async fn get<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: &str,
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let db = self.db.clone();
        let id = id.to_owned();
        blocking(move || {
            db.get_cf(cf(&db, table.cf_name())?, id.as_bytes())
                .map_err(StoreError::db("read state"))?
                .map(|b| decode(what, &b))
                .transpose()
        })
        .await
    }

    async fn scan<T, F>(
        &self,
        table: Table,
        what: &'static str,
        page_size: usize,
        page_token: Option<String>,
        id_of: F,
    ) -> Result<(Vec<T>, Option<String>), StoreError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(&T) -> String + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let mode = match &page_token {
                Some(token) => IteratorMode::From(token.as_bytes(), Direction::Forward),
                None => IteratorMode::Start,
            };
            let mut page = Vec::new();
            for item in db.iterator_cf(cf(&db, table.cf_name())?, mode) {
                let (key, value) = item.map_err(StoreError::db("list records"))?;
                if page_token.as_deref().is_some_and(|t| t.as_bytes() == &*key) {
                    continue;
                }
                page.push(decode(what, &value)?);
                if page.len() > page_size {
                    break;
                }
            }
            Ok(paginate(page, page_size, id_of))
        })
        .await
    }
}

/// Walks the index entries under `prefix` whose rest is a record id of `table`, from the
/// entry `prefix` + `after` (itself skipped: a page token or a position already seen) in
/// `direction`, and hands each record's bytes to `visit` until it returns true.
fn walk_index(
    db: &DB,
    prefix: &[u8],
    after: &[u8],
    direction: Direction,
    table: Table,
    mut visit: impl FnMut(&[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let indexes = cf(db, Table::Indexes.cf_name())?;
    let records = cf(db, table.cf_name())?;
    let mut from = prefix.to_vec();
    from.extend_from_slice(after);
    for item in db.iterator_cf(indexes, IteratorMode::From(&from, direction)) {
        let (key, _) = item.map_err(StoreError::db("read index"))?;
        let Some(id) = key.strip_prefix(prefix) else {
            break;
        };
        if id == after {
            continue;
        }
        let Some(value) = db
            .get_cf(records, id)
            .map_err(StoreError::db("read an indexed record"))?
        else {
            continue;
        };
        if visit(&value)? {
            break;
        }
    }
    Ok(())
}

/// The index keys under `prefix`, in order, at most `limit` of them.
fn index_ids(db: &DB, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let table = cf(db, Table::Indexes.cf_name())?;
    let mut keys = Vec::new();
    for item in db.iterator_cf(table, IteratorMode::From(prefix, Direction::Forward)) {
        if keys.len() >= limit {
            break;
        }
        let (key, _) = item.map_err(StoreError::db("read index"))?;
        if !key.starts_with(prefix) {
            break;
        }
        keys.push(key.into_vec());
    }
    Ok(keys)
}

/// `page` holds up to one item more than asked: its presence says there is a next page.
fn paginate<T>(
    mut page: Vec<T>,
    page_size: usize,
    id_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if page.len() > page_size {
        page.truncate(page_size);
        let next = page.last().map(id_of);
        (page, next)
    } else {
        (page, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::presignature_key;
    use crate::codec::encode;
    use crate::Store;

    #[tokio::test]
    async fn presignature_counts_take_only_available_ones_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.db();
        let (_, _, reader) = store.into_parts().unwrap();
        let table = cf(&db, Table::Presignatures.cf_name()).unwrap();
        let pool = [
            ("k1", "p1", PresignatureStatus::Available),
            ("k1", "p2", PresignatureStatus::Available),
            (
                "k1",
                "p3",
                PresignatureStatus::Used {
                    session_id: "s1".into(),
                },
            ),
            // A key whose id is another's prefix must not be counted with it.
            ("k10", "p4", PresignatureStatus::Available),
            (
                "k2",
                "p5",
                PresignatureStatus::Used {
                    session_id: "s2".into(),
                },
            ),
        ];
        for (key_id, id, status) in pool {
            let record = PresignatureRecord {
                presignature_id: id.into(),
                key_id: key_id.into(),
                signers: vec!["party-1".into(), "party-2".into()],
                status,
                created_at_ms: 1,
            };
            db.put_cf(
                table,
                presignature_key(key_id, id),
                encode("presignature", &record).unwrap(),
            )
            .unwrap();
        }
        let counts = reader.available_presignature_counts().await.unwrap();
        assert_eq!(counts, [("k1".to_owned(), 2), ("k10".to_owned(), 1)].into());
        // The per-key read agrees with the counts.
        for (key_id, expected) in [("k1", 2), ("k10", 1), ("k2", 0)] {
            let available = reader.available_presignatures(key_id).await.unwrap();
            assert_eq!(available.len(), expected, "{key_id}");
        }
    }
}
