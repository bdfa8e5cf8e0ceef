//! Secondary indexes over the replicated tables, kept in [`Table::Indexes`] and written by
//! `apply` in the same batch as the records they point at, so they are never out of step.
//!
//! Every index entry is a key with an empty value; the key names what it indexes. Ids never
//! hold a NUL byte ([`crate::command::check_id`] and UUID session ids), so NUL separates the
//! parts and a prefix never matches a longer id:
//!
//! | prefix | rest | answers |
//! |---|---|---|
//! | `k` | key id, session id | a key's sessions, newest first |
//! | `s` | status, session id | sessions in a status |
//! | `t` | kind, session id | sessions of a kind |
//! | `o` | key id, kind, session id | a key's sessions not yet finished (the open-session cap, a new leader's takeover) |
//! | `f` | finish time (8 bytes, big endian), session id | finished sessions, oldest first (retention) |
//! | `u` | apply time (8 bytes), update id | applied key updates, oldest first (retention) |
//! | `a` | key id, audit key | a key's audit events in log order |
//!
//! The indexes are derived data: [`rebuild`] recomputes them from the tables, deterministically,
//! for a store written by a release that kept none.

use crate::apply::{StateTxn, Table};
use crate::model::SessionRecord;
#[cfg(feature = "storage")]
use crate::StoreError;

const SEP: u8 = 0;

/// Present once the indexes cover every record (set by [`rebuild`] and by every fresh store).
#[cfg(feature = "storage")]
pub(crate) const BUILT_MARKER: &[u8] = b"!built";

fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for part in parts {
        key.push(SEP);
        key.extend_from_slice(part);
    }
    key
}

/// The prefix shared by every entry under `prefix` and `parts`, ending in a separator.
pub fn prefix(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = join(prefix, parts);
    key.push(SEP);
    key
}

pub const BY_KEY: &[u8] = b"k";
pub const BY_STATUS: &[u8] = b"s";
pub const BY_KIND: &[u8] = b"t";
pub const OPEN_BY_KEY: &[u8] = b"o";
pub const FINISHED: &[u8] = b"f";
pub const KEY_UPDATES: &[u8] = b"u";
pub const AUDIT_BY_KEY: &[u8] = b"a";
pub const RELAY_BY_STATE: &[u8] = b"j";

/// The last part of an index key: the id it points at.
#[cfg(feature = "storage")]
pub fn id_of(index_key: &[u8]) -> &[u8] {
    match index_key.iter().rposition(|b| *b == SEP) {
        Some(at) => &index_key[at + 1..],
        None => index_key,
    }
}

/// The time part of a [`FINISHED`] or [`KEY_UPDATES`] entry.
#[cfg(feature = "storage")]
pub fn time_of(index_key: &[u8]) -> Option<u64> {
    let bytes = index_key.get(2..10)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn session_entries(s: &SessionRecord) -> Vec<Vec<u8>> {
    let id = s.session_id.as_bytes();
    let key = s.key_id.as_bytes();
    let mut entries = vec![
        join(BY_KEY, &[key, id]),
        join(BY_STATUS, &[s.status.as_str().as_bytes(), id]),
        join(BY_KIND, &[s.kind.as_str().as_bytes(), id]),
    ];
    if s.status.is_terminal() {
        let finished = s.finished_at_ms.unwrap_or(s.updated_at_ms);
        entries.push(join(FINISHED, &[&finished.to_be_bytes(), id]));
    } else {
        entries.push(join(OPEN_BY_KEY, &[key, s.kind.as_str().as_bytes(), id]));
    }
    entries
}

/// Moves a session's index entries from what `before` was to what `after` is.
pub(crate) fn session_changed(
    txn: &mut impl StateTxn,
    before: Option<&SessionRecord>,
    after: Option<&SessionRecord>,
) {
    let old = before.map(session_entries).unwrap_or_default();
    let new = after.map(session_entries).unwrap_or_default();
    for entry in old.iter().filter(|e| !new.contains(e)) {
        txn.delete(Table::Indexes, entry.clone());
    }
    for entry in new.into_iter().filter(|e| !old.contains(e)) {
        txn.put(Table::Indexes, entry, Vec::new());
    }
}

pub(crate) fn key_update_entry(applied_at_ms: u64, update_id: &str) -> Vec<u8> {
    join(
        KEY_UPDATES,
        &[&applied_at_ms.to_be_bytes(), update_id.as_bytes()],
    )
}

pub(crate) fn audit_entry(key_id: &str, audit_key: &[u8]) -> Vec<u8> {
    join(AUDIT_BY_KEY, &[key_id.as_bytes(), audit_key])
}

/// Builds every index from the tables of `db`, unless the marker says they are built (then
/// answers false). Key updates applied before indexes existed carry no time: they are indexed at time 0, so
/// the first retention run prunes them (their retries are long over).
#[cfg(feature = "storage")]
pub(crate) fn rebuild(db: &rocksdb::DB) -> Result<bool, StoreError> {
    use crate::codec::decode;
    use crate::model::AuditEvent;
    use crate::store::cf;
    use rocksdb::{IteratorMode, WriteBatch};

    let indexes = cf(db, Table::Indexes.cf_name())?;
    if db
        .get_cf(indexes, BUILT_MARKER)
        .map_err(StoreError::db("read index marker"))?
        .is_some()
    {
        return Ok(false);
    }
    let mut batch = WriteBatch::default();
    let table = |t: Table| -> Result<_, StoreError> {
        Ok(db.iterator_cf(cf(db, t.cf_name())?, IteratorMode::Start))
    };
    for item in table(Table::Sessions)? {
        let (_, value) = item.map_err(StoreError::db("rebuild indexes"))?;
        let session: SessionRecord = decode("session", &value)?;
        for entry in session_entries(&session) {
            batch.put_cf(indexes, entry, []);
        }
    }
    for item in table(Table::RelayJobs)? {
        let (_, value) = item.map_err(StoreError::db("rebuild indexes"))?;
        let job: crate::model::RelayJob = decode("relay job", &value)?;
        batch.put_cf(indexes, crate::relay::state_entry(&job), []);
    }
    for item in table(Table::KeyUpdates)? {
        let (id, _) = item.map_err(StoreError::db("rebuild indexes"))?;
        let id = String::from_utf8_lossy(&id);
        batch.put_cf(indexes, key_update_entry(0, &id), []);
    }
    for item in table(Table::Audit)? {
        let (key, value) = item.map_err(StoreError::db("rebuild indexes"))?;
        let event: AuditEvent = decode("audit event", &value)?;
        if let Some(key_id) = &event.key_id {
            batch.put_cf(indexes, audit_entry(key_id, &key), []);
        }
    }
    batch.put_cf(indexes, BUILT_MARKER, []);
    db.write(batch).map_err(StoreError::db("write indexes"))?;
    Ok(true)
}
