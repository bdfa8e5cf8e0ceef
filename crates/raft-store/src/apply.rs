//! The deterministic core of the state machine: one command in, writes and an answer out.
//!
//! It is sans-IO: it sees the state through [`StateTxn`], so the RocksDB state machine and the
//! unit tests (an in-memory map) run the very same code. Nothing here reads a clock or draws
//! randomness; every replica that applies the same log computes the same bytes.

use sha3::{Digest, Sha3_256};

use crate::codec::{decode, encode};
use crate::command::{
    Command, CommandResponse, CreateKeygen, CreatePresign, CreateSigning, Operation, PartyReport,
    Prune, Rejection, UpdateKey, ValidationError,
};
use crate::index;
use crate::model::{
    AuditEvent, Endorsed, IdempotencyRecord, KeyPolicy, KeyRecord, KeyStatus, KeyUpdateRecord,
    PartyRecord, PartyStatus, PresignatureRecord, PresignatureStatus, SessionFailure, SessionKind,
    SessionRecord, SessionResult, SessionStatus, TokenRecord,
};
use crate::StoreError;

/// The replicated tables; each is a RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Keys,
    Sessions,
    Parties,
    Idempotency,
    Audit,
    /// Keyed by key id, a slash, and presignature id.
    Presignatures,
    /// Applied key updates, by update id.
    KeyUpdates,
    /// API tokens by token id (hashes only).
    Tokens,
    /// The audit chain's head: the hash of the newest audit entry.
    AuditHead,
    /// Secondary indexes over the other tables ([`crate::index`]).
    Indexes,
    /// DVN relay jobs by job id (hex) ([`crate::relay`]).
    RelayJobs,
    /// Each relayer's scan position per source chain ([`crate::relay::cursor_key`]).
    RelayCursors,
}

/// The one key of [`Table::AuditHead`].
const AUDIT_HEAD: &[u8] = b"audit_head";

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Keys,
        Table::Sessions,
        Table::Parties,
        Table::Idempotency,
        Table::Audit,
        Table::Presignatures,
        Table::KeyUpdates,
        Table::Tokens,
        Table::AuditHead,
        Table::Indexes,
        Table::RelayJobs,
        Table::RelayCursors,
    ];

    pub fn cf_name(self) -> &'static str {
        match self {
            Table::Keys => "sm_keys",
            Table::Sessions => "sm_sessions",
            Table::Parties => "sm_parties",
            Table::Idempotency => "sm_idempotency",
            Table::Audit => "sm_audit",
            Table::Presignatures => "sm_presignatures",
            Table::KeyUpdates => "sm_key_updates",
            Table::Tokens => "sm_tokens",
            Table::AuditHead => "sm_audit_head",
            Table::Indexes => "sm_indexes",
            Table::RelayJobs => "sm_relay_jobs",
            Table::RelayCursors => "sm_relay_cursors",
        }
    }

    /// The tag that names the table inside a snapshot; never reuse a retired number.
    pub fn snapshot_tag(self) -> u8 {
        match self {
            Table::Keys => 1,
            Table::Sessions => 2,
            Table::Parties => 3,
            Table::Idempotency => 4,
            Table::Audit => 5,
            Table::Presignatures => 6,
            Table::KeyUpdates => 7,
            Table::Tokens => 8,
            Table::AuditHead => 9,
            Table::Indexes => 10,
            Table::RelayJobs => 11,
            Table::RelayCursors => 12,
        }
    }

    pub fn from_snapshot_tag(tag: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.snapshot_tag() == tag)
    }
}

/// Read-your-writes access to the tables for the duration of one apply batch.
pub trait StateTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, table: Table, key: Vec<u8>);
}

/// The outcome of applying one command.
#[derive(Debug)]
pub struct Applied {
    pub response: CommandResponse,
    /// The session this command created or changed, for watchers.
    pub session: Option<SessionRecord>,
}

impl Applied {
    fn rejected(rejection: Rejection) -> Self {
        Self {
            response: CommandResponse::Rejected(rejection),
            session: None,
        }
    }
}

/// Where a command sits in the log: its entry's index and its place in that entry's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub index: u64,
    pub position: u32,
}

impl LogPosition {
    /// The audit table's key: sorts in log order.
    pub fn audit_key(self) -> Vec<u8> {
        let mut key = self.index.to_be_bytes().to_vec();
        key.extend_from_slice(&self.position.to_be_bytes());
        key
    }
}

/// Applies `cmd`, which sits at `at` in the Raft log.
///
/// A store failure is an `Err` (the node must stop: its state can no longer be trusted); a
/// command that the state does not allow is an `Ok` holding [`CommandResponse::Rejected`].
pub fn apply_command(
    txn: &mut impl StateTxn,
    at: LogPosition,
    cmd: &Command,
) -> Result<Applied, StoreError> {
    if let Err(invalid) = cmd.validate() {
        return Ok(Applied::rejected(invalid.into()));
    }
    let (applied, action, subject) = match &cmd.op {
        Operation::CreateKeygen(k) => (
            create_keygen(txn, cmd.at_ms, &cmd.actor, k)?,
            "session.create_keygen",
            k.session_id.clone(),
        ),
        Operation::CreateSigning(s) => (
            create_signing(txn, cmd.at_ms, &cmd.actor, s)?,
            "session.create_signing",
            s.session_id.clone(),
        ),
        Operation::StartSession {
            session_id,
            parties,
            presignature_id,
        } => (
            start_session(
                txn,
                cmd.at_ms,
                session_id,
                parties,
                presignature_id.as_deref(),
            )?,
            "session.start",
            session_id.clone(),
        ),
        Operation::CreatePresign(p) => (
            create_presign(txn, cmd.at_ms, &cmd.actor, p)?,
            "session.create_presign",
            p.session_id.clone(),
        ),
        Operation::CompleteSession {
            session_id,
            result,
            address,
            reports,
        } => (
            complete_session(
                txn,
                cmd.at_ms,
                session_id,
                result,
                address.as_deref(),
                reports,
            )?,
            "session.complete",
            session_id.clone(),
        ),
        Operation::FailSession {
            session_id,
            failure,
        } => (
            transition(txn, cmd.at_ms, session_id, "failed", |s| {
                if s.status == SessionStatus::Failed && s.failure.as_ref() == Some(failure) {
                    return true; // a retried proposal of the same failure
                }
                if s.status.is_terminal() {
                    return false;
                }
                s.status = SessionStatus::Failed;
                s.failure = Some(failure.clone());
                s.finished_at_ms = Some(cmd.at_ms);
                true
            })?,
            "session.fail",
            session_id.clone(),
        ),
        Operation::ExpireSession { session_id } => (
            transition(txn, cmd.at_ms, session_id, "expired", |s| {
                if s.status == SessionStatus::Expired {
                    return true;
                }
                if s.status.is_terminal() || cmd.at_ms < s.deadline_ms {
                    return false;
                }
                // Say why: a client that finds an expired session should not have to guess
                // whether it never started or stalled.
                let reason = if s.status == SessionStatus::Pending {
                    format!(
                        "expired before it started: no {} online parties took it before the deadline",
                        s.threshold
                    )
                } else {
                    format!(
                        "expired while running (attempt {}): parties {} did not finish before the deadline",
                        s.attempt,
                        s.parties.join(", ")
                    )
                };
                s.failure = Some(SessionFailure {
                    reason,
                    blamed_parties: Vec::new(),
                });
                s.status = SessionStatus::Expired;
                s.finished_at_ms = Some(cmd.at_ms);
                true
            })?,
            "session.expire",
            session_id.clone(),
        ),
        Operation::UpdateKey(u) => (
            update_key(txn, u, cmd.at_ms)?,
            "key.update",
            u.key_id.clone(),
        ),
        Operation::RegisterParty(p) => {
            let existing = load::<PartyRecord>(txn, Table::Parties, &p.party_id, "party")?;
            // Only an admin's enrolment binds an id to keys: whoever proposes a registration
            // (a follower forwarding it, a compromised node), it can never swap them.
            let enrolled = match existing {
                None => Err(Rejection::PartyNotEnrolled {
                    party_id: p.party_id.clone(),
                }),
                Some(e)
                    if e.signing_public_key != p.signing_public_key
                        || e.encryption_public_key != p.encryption_public_key =>
                {
                    Err(Rejection::PartyIdentityChanged {
                        party_id: p.party_id.clone(),
                    })
                }
                Some(e) => Ok(e),
            };
            let mut party = match enrolled {
                Ok(party) => party,
                Err(rejection) => {
                    return finish(
                        txn,
                        at,
                        cmd,
                        Applied::rejected(rejection),
                        "party.register",
                        p.party_id.clone(),
                        None,
                    );
                }
            };
            party.endpoint = p.endpoint.clone();
            party.status = PartyStatus::Online;
            party.last_seen_ms = cmd.at_ms;
            if party.registered_at_ms == 0 {
                party.registered_at_ms = cmd.at_ms;
            }
            store(txn, Table::Parties, &party.party_id, "party", &party)?;
            (
                Applied {
                    response: CommandResponse::Party(Box::new(party)),
                    session: None,
                },
                "party.register",
                p.party_id.clone(),
            )
        }
        Operation::EnrollParty(e) => {
            let enrolment = &e.statement;
            let existing = load::<PartyRecord>(txn, Table::Parties, &enrolment.party_id, "party")?;
            let same_keys = existing.as_ref().is_some_and(|p| {
                p.signing_public_key == enrolment.signing_public_key
                    && p.encryption_public_key == enrolment.encryption_public_key
            });
            let party = match existing {
                // Re-enrolling the same keys only renews the admin's signature.
                Some(mut p) if same_keys => {
                    p.enrolled_by = e.by.clone();
                    p.enrolled_at_ms = cmd.at_ms;
                    p
                }
                // New keys (a rotation): the party must register again with them.
                other => PartyRecord {
                    party_id: enrolment.party_id.clone(),
                    signing_public_key: enrolment.signing_public_key.to_vec(),
                    encryption_public_key: enrolment.encryption_public_key.to_vec(),
                    endpoint: other.map(|p| p.endpoint).unwrap_or_default(),
                    status: PartyStatus::Offline,
                    last_seen_ms: cmd.at_ms,
                    registered_at_ms: 0,
                    enrolled_by: e.by.clone(),
                    enrolled_at_ms: cmd.at_ms,
                },
            };
            store(txn, Table::Parties, &party.party_id, "party", &party)?;
            (
                Applied {
                    response: CommandResponse::Party(Box::new(party)),
                    session: None,
                },
                "party.enroll",
                enrolment.party_id.clone(),
            )
        }
        Operation::SetPartyStatus { party_id, status } => {
            let applied = match load::<PartyRecord>(txn, Table::Parties, party_id, "party")? {
                None => Applied::rejected(Rejection::NotFound {
                    kind: "party".into(),
                    id: party_id.clone(),
                }),
                Some(mut party) => {
                    party.status = *status;
                    party.last_seen_ms = cmd.at_ms;
                    store(txn, Table::Parties, party_id, "party", &party)?;
                    Applied {
                        response: CommandResponse::Party(Box::new(party)),
                        session: None,
                    }
                }
            };
            (applied, "party.set_status", party_id.clone())
        }
        Operation::CreateToken(t) => {
            let applied =
                if load::<TokenRecord>(txn, Table::Tokens, &t.token_id, "token")?.is_some() {
                    Applied::rejected(Rejection::AlreadyExists {
                        kind: "token".into(),
                        id: t.token_id.clone(),
                    })
                } else {
                    let mut token = t.clone();
                    token.created_at_ms = cmd.at_ms;
                    token.created_by.clone_from(&cmd.actor);
                    token.revoked_at_ms = None;
                    store(txn, Table::Tokens, &token.token_id, "token", &token)?;
                    Applied {
                        response: CommandResponse::Token(Box::new(token)),
                        session: None,
                    }
                };
            (applied, "token.create", t.token_id.clone())
        }
        Operation::RevokeToken { token_id } => {
            let applied = match load::<TokenRecord>(txn, Table::Tokens, token_id, "token")? {
                None => Applied::rejected(Rejection::NotFound {
                    kind: "token".into(),
                    id: token_id.clone(),
                }),
                Some(mut token) => {
                    if token.revoked_at_ms.is_none() {
                        token.revoked_at_ms = Some(cmd.at_ms);
                        store(txn, Table::Tokens, token_id, "token", &token)?;
                    }
                    Applied {
                        response: CommandResponse::Token(Box::new(token)),
                        session: None,
                    }
                }
            };
            (applied, "token.revoke", token_id.clone())
        }
        Operation::SetKeyPolicy(policy) => (
            set_key_policy(txn, policy, cmd.at_ms)?,
            "key.set_policy",
            policy.statement.key_id.clone(),
        ),
        Operation::Prune(p) => (
            prune(txn, p)?,
            "retention.prune",
            format!("history finished before {}", p.cutoff_ms),
        ),
        Operation::Relay(r) => (
            Applied {
                response: crate::relay::apply(txn, cmd.at_ms, &cmd.actor, r)?,
                session: None,
            },
            r.action(),
            r.subject(),
        ),
        Operation::PruneRelayJobs(p) => (
            Applied {
                response: crate::relay::prune(txn, p)?,
                session: None,
            },
            "retention.prune_relay_jobs",
            format!("relay jobs ended before {}", p.cutoff_ms),
        ),
    };
    let key_id = audited_key(txn, cmd, &applied)?;
    finish(txn, at, cmd, applied, action, subject, key_id)
}

/// The key a command concerned, for the audit entry.
fn audited_key(
    txn: &impl StateTxn,
    cmd: &Command,
    applied: &Applied,
) -> Result<Option<String>, StoreError> {
    if let CommandResponse::Session { session, .. } = &applied.response {
        return Ok(Some(session.key_id.clone()));
    }
    Ok(match &cmd.op {
        Operation::CreateKeygen(k) => Some(k.key_id.clone()),
        Operation::CreateSigning(s) => Some(s.key_id.clone()),
        Operation::CreatePresign(p) => Some(p.key_id.clone()),
        Operation::UpdateKey(u) => Some(u.key_id.clone()),
        Operation::SetKeyPolicy(p) => Some(p.statement.key_id.clone()),
        Operation::StartSession { session_id, .. }
        | Operation::CompleteSession { session_id, .. }
        | Operation::FailSession { session_id, .. }
        | Operation::ExpireSession { session_id } => {
            load::<SessionRecord>(txn, Table::Sessions, session_id, "session")?.map(|s| s.key_id)
        }
        Operation::RegisterParty(_)
        | Operation::EnrollParty(_)
        | Operation::SetPartyStatus { .. }
        | Operation::CreateToken(_)
        | Operation::RevokeToken { .. }
        | Operation::Prune(_)
        | Operation::Relay(_)
        | Operation::PruneRelayJobs(_) => None,
    })
}

/// Appends the audit entry of an applied command to the hash chain and answers it.
fn finish(
    txn: &mut impl StateTxn,
    at: LogPosition,
    cmd: &Command,
    applied: Applied,
    action: &str,
    subject: String,
    key_id: Option<String>,
) -> Result<Applied, StoreError> {
    let outcome = match &applied.response {
        CommandResponse::Rejected(r) => format!("rejected: {r}"),
        CommandResponse::Session { created: false, .. } => "ok: existing session returned".into(),
        _ => "ok".into(),
    };
    let prev_hash = match txn.get(Table::AuditHead, AUDIT_HEAD)? {
        None => [0; 32],
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
            what: "audit chain head",
            reason: format!("{} bytes, not 32", bytes.len()),
        })?,
    };
    let mut event = AuditEvent {
        log_index: at.index,
        position: at.position,
        at_ms: cmd.at_ms,
        actor: cmd.actor.clone(),
        action: action.into(),
        subject,
        key_id,
        outcome,
        prev_hash,
        hash: [0; 32],
    };
    event.hash = event.expected_hash();
    txn.put(Table::AuditHead, AUDIT_HEAD.to_vec(), event.hash.to_vec());
    if let Some(key_id) = &event.key_id {
        txn.put(
            Table::Indexes,
            index::audit_entry(key_id, &at.audit_key()),
            Vec::new(),
        );
    }
    txn.put(Table::Audit, at.audit_key(), encode("audit event", &event)?);
    Ok(applied)
}

fn create_keygen(
    txn: &mut impl StateTxn,
    at_ms: u64,
    actor: &str,
    k: &CreateKeygen,
) -> Result<Applied, StoreError> {
    let fingerprint = fingerprint(&(
        "keygen",
        &k.scheme,
        k.threshold,
        &k.parties,
        &k.description,
        &k.tags,
        &k.policy,
    ));
    if let Some(found) = replay(txn, k.request_id.as_deref(), fingerprint)? {
        return Ok(found);
    }
    if load::<KeyRecord>(txn, Table::Keys, &k.key_id, "key")?.is_some() {
        return Ok(Applied::rejected(Rejection::AlreadyExists {
            kind: "key".into(),
            id: k.key_id.clone(),
        }));
    }
    for party_id in &k.parties {
        if load::<PartyRecord>(txn, Table::Parties, party_id, "party")?.is_none() {
            return Ok(Applied::rejected(Rejection::PartyNotEnrolled {
                party_id: party_id.clone(),
            }));
        }
    }
    let session = SessionRecord {
        session_id: k.session_id.clone(),
        kind: SessionKind::Keygen,
        scheme: k.scheme,
        key_id: k.key_id.clone(),
        threshold: k.threshold,
        parties: k.parties.clone(),
        signing_input: None,
        attempt: 0,
        presignature_id: None,
        status: SessionStatus::Pending,
        result: None,
        failure: None,
        request_id: k.request_id.clone(),
        requested_by: actor.to_owned(),
        key_description: k.description.clone(),
        key_tags: k.tags.clone(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        deadline_ms: k.deadline_ms,
        started_at_ms: None,
        finished_at_ms: None,
        policy: Some(k.policy.clone()),
        approvals: Vec::new(),
        approvals_not_after_ms: 0,
    };
    insert_session(txn, session, k.request_id.as_deref(), fingerprint)
}

fn create_signing(
    txn: &mut impl StateTxn,
    at_ms: u64,
    actor: &str,
    s: &CreateSigning,
) -> Result<Applied, StoreError> {
    // What is signed, not who approved it: a retry carries fresh approvals (a new expiry) and
    // must still find the session its first attempt made.
    let fingerprint = fingerprint(&("sign", &s.key_id, &s.input));
    if let Some(found) = replay(txn, s.request_id.as_deref(), fingerprint)? {
        return Ok(found);
    }
    let Some(key) = load::<KeyRecord>(txn, Table::Keys, &s.key_id, "key")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "key".into(),
            id: s.key_id.clone(),
        }));
    };
    if key.status != KeyStatus::Active {
        return Ok(Applied::rejected(Rejection::KeyNotActive {
            key_id: key.key_id,
            status: key.status.as_str().into(),
        }));
    }
    if let crate::model::SigningInput::Message { hash, .. } = &s.input {
        let ecdsa = key.scheme == crate::model::Scheme::EcdsaSecp256k1;
        if ecdsa != hash.is_some() {
            let reason = if ecdsa {
                "an ECDSA key signs a digest: name the hash (keccak256 or sha256)".to_owned()
            } else {
                format!(
                    "a {} key signs the message itself: leave hash empty",
                    key.scheme
                )
            };
            return Ok(Applied::rejected(Rejection::Invalid(
                crate::ValidationError::new("hash", reason),
            )));
        }
    }
    // The parties decide, each against the policy it holds; this only fails fast.
    if let Err(reason) = key
        .policy
        .statement
        .authorise(&s.approval(), &s.approvals, at_ms)
    {
        return Ok(Applied::rejected(Rejection::Unauthorised { reason }));
    }
    let session = SessionRecord {
        session_id: s.session_id.clone(),
        kind: SessionKind::Sign,
        scheme: key.scheme,
        key_id: key.key_id,
        threshold: key.threshold,
        parties: Vec::new(),
        signing_input: Some(s.input.clone()),
        attempt: 0,
        presignature_id: None,
        status: SessionStatus::Pending,
        result: None,
        failure: None,
        request_id: s.request_id.clone(),
        requested_by: actor.to_owned(),
        key_description: String::new(),
        key_tags: Default::default(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        deadline_ms: s.deadline_ms,
        started_at_ms: None,
        finished_at_ms: None,
        policy: None,
        approvals: s.approvals.clone(),
        approvals_not_after_ms: s.approvals_not_after_ms,
    };
    let created = insert_session(txn, session, s.request_id.as_deref(), fingerprint)?;
    let Some(start) = &s.start else {
        return Ok(created);
    };
    if created.session.is_none() {
        return Ok(created);
    }
    let started = start_session(
        txn,
        at_ms,
        &s.session_id,
        &start.parties,
        start.presignature_id.as_deref(),
    )?;
    Ok(match started.response {
        CommandResponse::Session { session, .. } => Applied {
            session: Some((*session).clone()),
            response: CommandResponse::Session {
                session,
                created: true,
            },
        },
        // The state moved since the leader planned (a presignature went, a party left the
        // key): the session waits for the scheduler like any other.
        _ => created,
    })
}

/// Applies a key update once per update id: a second copy of the same update answers the key
/// as it stands and writes nothing.
fn update_key(txn: &mut impl StateTxn, u: &UpdateKey, at_ms: u64) -> Result<Applied, StoreError> {
    let fingerprint = fingerprint(&(&u.key_id, &u.description, &u.tags, &u.status));
    let Some(mut key) = load::<KeyRecord>(txn, Table::Keys, &u.key_id, "key")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "key".into(),
            id: u.key_id.clone(),
        }));
    };
    if let Some(done) =
        load::<KeyUpdateRecord>(txn, Table::KeyUpdates, &u.update_id, "key update record")?
    {
        if done.fingerprint != fingerprint {
            return Ok(Applied::rejected(Rejection::KeyUpdateIdReused {
                request_id: u.update_id.clone(),
                key_id: done.key_id,
            }));
        }
        return Ok(Applied {
            response: CommandResponse::Key(Box::new(key)),
            session: None,
        });
    }
    if let Some(d) = &u.description {
        key.description.clone_from(d);
    }
    if let Some(t) = &u.tags {
        key.tags.clone_from(t);
    }
    if let Some(status) = u.status {
        key.status = status;
    }
    key.updated_at_ms = at_ms;
    store(txn, Table::Keys, &key.key_id, "key", &key)?;
    let record = KeyUpdateRecord {
        key_id: key.key_id.clone(),
        fingerprint,
    };
    store(
        txn,
        Table::KeyUpdates,
        &u.update_id,
        "key update record",
        &record,
    )?;
    txn.put(
        Table::Indexes,
        index::key_update_entry(at_ms, &u.update_id),
        Vec::new(),
    );
    Ok(Applied {
        response: CommandResponse::Key(Box::new(key)),
        session: None,
    })
}

/// A retried request: answers the session it created the first time, or refuses an id reused
/// with other parameters.
fn replay(
    txn: &impl StateTxn,
    request_id: Option<&str>,
    fingerprint: [u8; 32],
) -> Result<Option<Applied>, StoreError> {
    let Some(request_id) = request_id else {
        return Ok(None);
    };
    let Some(record) =
        load::<IdempotencyRecord>(txn, Table::Idempotency, request_id, "idempotency record")?
    else {
        return Ok(None);
    };
    if record.fingerprint != fingerprint {
        return Ok(Some(Applied::rejected(Rejection::RequestIdReused {
            request_id: request_id.to_owned(),
            session_id: record.session_id,
        })));
    }
    let session = load::<SessionRecord>(txn, Table::Sessions, &record.session_id, "session")?
        .ok_or(StoreError::Corrupt {
            what: "idempotency record",
            reason: format!("names session {} that does not exist", record.session_id),
        })?;
    Ok(Some(Applied {
        response: CommandResponse::Session {
            session: Box::new(session),
            created: false,
        },
        session: None,
    }))
}

fn insert_session(
    txn: &mut impl StateTxn,
    session: SessionRecord,
    request_id: Option<&str>,
    fingerprint: [u8; 32],
) -> Result<Applied, StoreError> {
    if load::<SessionRecord>(txn, Table::Sessions, &session.session_id, "session")?.is_some() {
        return Ok(Applied::rejected(Rejection::AlreadyExists {
            kind: "session".into(),
            id: session.session_id,
        }));
    }
    if let Some(request_id) = request_id {
        let record = IdempotencyRecord {
            session_id: session.session_id.clone(),
            fingerprint,
        };
        store(
            txn,
            Table::Idempotency,
            request_id,
            "idempotency record",
            &record,
        )?;
    }
    store(
        txn,
        Table::Sessions,
        &session.session_id,
        "session",
        &session,
    )?;
    index::session_changed(txn, None, Some(&session));
    Ok(Applied {
        response: CommandResponse::Session {
            session: Box::new(session.clone()),
            created: true,
        },
        session: Some(session),
    })
}

fn complete_session(
    txn: &mut impl StateTxn,
    at_ms: u64,
    session_id: &str,
    result: &SessionResult,
    address: Option<&str>,
    reports: &[PartyReport],
) -> Result<Applied, StoreError> {
    let Some(session) = load::<SessionRecord>(txn, Table::Sessions, session_id, "session")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "session".into(),
            id: session_id.to_owned(),
        }));
    };
    let result_fits = matches!(
        (session.kind, result),
        (SessionKind::Keygen, SessionResult::PublicKey(_))
            | (SessionKind::Sign, SessionResult::Signature(_))
            | (SessionKind::Presign, SessionResult::Presignature)
    );
    if !result_fits {
        return Ok(Applied::rejected(Rejection::Invalid(
            crate::ValidationError::new(
                "result",
                format!(
                    "a {} session cannot complete with this result",
                    session.kind.as_str()
                ),
            ),
        )));
    }
    if let (SessionKind::Keygen, SessionResult::PublicKey(public_key)) = (session.kind, result) {
        if session.status == SessionStatus::Running {
            // The proposer's word is not enough: every participant must have signed this
            // very public key with the identity key the state records for it.
            if let Some(refused) = unreported(txn, &session, public_key, reports)? {
                return Ok(Applied::rejected(Rejection::Invalid(
                    crate::ValidationError::new("reports", refused),
                )));
            }
            let Some(policy) = session.policy.clone() else {
                return Ok(Applied::rejected(Rejection::Invalid(
                    crate::ValidationError::new("policy", "the keygen session carries none"),
                )));
            };
            let key = KeyRecord {
                key_id: session.key_id.clone(),
                scheme: session.scheme,
                threshold: session.threshold,
                parties: session.parties.clone(),
                public_key: public_key.clone(),
                address: address.map(str::to_owned),
                status: KeyStatus::Active,
                description: session.key_description.clone(),
                tags: session.key_tags.clone(),
                keygen_session_id: session.session_id.clone(),
                created_at_ms: at_ms,
                updated_at_ms: at_ms,
                policy,
            };
            store(txn, Table::Keys, &key.key_id, "key", &key)?;
        }
    }
    if session.kind == SessionKind::Presign && session.status == SessionStatus::Running {
        let record = PresignatureRecord {
            presignature_id: session.session_id.clone(),
            key_id: session.key_id.clone(),
            signers: session.parties.clone(),
            status: PresignatureStatus::Available,
            created_at_ms: at_ms,
        };
        let key = presignature_key(&record.key_id, &record.presignature_id);
        store(txn, Table::Presignatures, &key, "presignature", &record)?;
    }
    transition(txn, at_ms, session_id, "completed", |s| {
        if s.status == SessionStatus::Completed && s.result.as_ref() == Some(result) {
            return true; // a retried proposal of the same outcome
        }
        if s.status != SessionStatus::Running {
            return false;
        }
        s.status = SessionStatus::Completed;
        s.result = Some(result.clone());
        s.finished_at_ms = Some(at_ms);
        true
    })
}

/// Why `parties` may not run `session`, or `None` when they may. The leader picks who runs a
/// session, but not freely: a keygen runs with exactly the parties its request named (else a
/// leader could make a key of parties it controls), a presign with the signers its creation
/// named, and a signing with `threshold` of the key's own parties.
fn wrong_participants(
    txn: &impl StateTxn,
    session: &SessionRecord,
    parties: &[String],
) -> Result<Option<String>, StoreError> {
    Ok(match session.kind {
        SessionKind::Keygen | SessionKind::Presign | SessionKind::Refresh => {
            (parties != session.parties).then(|| {
                format!(
                    "a {} session runs with the parties it was created with ({})",
                    session.kind.as_str(),
                    session.parties.join(", ")
                )
            })
        }
        SessionKind::Sign => {
            let Some(key) = load::<KeyRecord>(txn, Table::Keys, &session.key_id, "key")? else {
                return Ok(Some(format!("key {} does not exist", session.key_id)));
            };
            let fits = parties.len() == usize::from(key.threshold)
                && parties.iter().all(|p| key.parties.contains(p));
            (!fits).then(|| {
                format!(
                    "a signing runs with {} of the key's parties ({})",
                    key.threshold,
                    key.parties.join(", ")
                )
            })
        }
    })
}

/// Why a keygen's reports do not prove its public key, or `None` when every party of the
/// session signed it.
fn unreported(
    txn: &impl StateTxn,
    session: &SessionRecord,
    public_key: &[u8],
    reports: &[PartyReport],
) -> Result<Option<String>, StoreError> {
    let statement = mpc_types::statement::KeygenReport {
        session_id: &session.session_id,
        key_id: &session.key_id,
        public_key,
    };
    for party in &session.parties {
        let Some(report) = reports.iter().find(|r| &r.party_id == party) else {
            return Ok(Some(format!("party {party} did not report the public key")));
        };
        let Some(record) = load::<PartyRecord>(txn, Table::Parties, party, "party")? else {
            return Ok(Some(format!("party {party} is not registered")));
        };
        if !mpc_types::statement::verifies_raw(
            &record.signing_public_key,
            &statement,
            &report.signature,
        ) {
            return Ok(Some(format!(
                "party {party}'s report does not verify under its identity key"
            )));
        }
    }
    Ok(None)
}

/// The presignature table's key.
pub fn presignature_key(key_id: &str, presignature_id: &str) -> String {
    format!("{key_id}/{presignature_id}")
}

fn create_presign(
    txn: &mut impl StateTxn,
    at_ms: u64,
    actor: &str,
    p: &CreatePresign,
) -> Result<Applied, StoreError> {
    let Some(key) = load::<KeyRecord>(txn, Table::Keys, &p.key_id, "key")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "key".into(),
            id: p.key_id.clone(),
        }));
    };
    let signers_fit = key.scheme == crate::model::Scheme::EcdsaSecp256k1
        && p.signers.len() == usize::from(key.threshold)
        && p.signers.iter().all(|s| key.parties.contains(s));
    if !signers_fit {
        return Ok(Applied::rejected(Rejection::Invalid(
            crate::ValidationError::new(
                "signers",
                format!(
                    "presignatures need {} of the ECDSA key's parties",
                    key.threshold
                ),
            ),
        )));
    }
    // A presignature is named after its presign session. Once that session is pruned, its
    // presignature (available, or used by a signing still kept) stays: a new presign of the
    // same name would overwrite that record when it completes, and a used presignature would
    // be available again.
    let record = presignature_key(&p.key_id, &p.session_id);
    if load::<PresignatureRecord>(txn, Table::Presignatures, &record, "presignature")?.is_some() {
        return Ok(Applied::rejected(Rejection::AlreadyExists {
            kind: "presignature".into(),
            id: p.session_id.clone(),
        }));
    }
    let session = SessionRecord {
        session_id: p.session_id.clone(),
        kind: SessionKind::Presign,
        scheme: key.scheme,
        key_id: key.key_id,
        threshold: key.threshold,
        parties: p.signers.clone(),
        signing_input: None,
        attempt: 0,
        presignature_id: None,
        status: SessionStatus::Pending,
        result: None,
        failure: None,
        request_id: None,
        requested_by: actor.to_owned(),
        key_description: String::new(),
        key_tags: Default::default(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        deadline_ms: p.deadline_ms,
        started_at_ms: None,
        finished_at_ms: None,
        policy: None,
        approvals: Vec::new(),
        approvals_not_after_ms: 0,
    };
    insert_session(txn, session, None, [0; 32])
}

/// Hands a session to its parties. A presignature named here is marked used in the same
/// write, before any party can issue a partial signature with it: it never serves twice.
fn start_session(
    txn: &mut impl StateTxn,
    at_ms: u64,
    session_id: &str,
    parties: &[String],
    presignature_id: Option<&str>,
) -> Result<Applied, StoreError> {
    let Some(session) = load::<SessionRecord>(txn, Table::Sessions, session_id, "session")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "session".into(),
            id: session_id.to_owned(),
        }));
    };
    if let Some(reason) = wrong_participants(txn, &session, parties)? {
        return Ok(Applied::rejected(Rejection::Invalid(
            crate::ValidationError::new("parties", reason),
        )));
    }
    // A disabled key signs nothing more: neither a signing that was still waiting when it was
    // disabled, nor a running one that a new leader dispatches again.
    if session.kind == SessionKind::Sign {
        if let Some(key) = load::<KeyRecord>(txn, Table::Keys, &session.key_id, "key")? {
            if key.status != KeyStatus::Active {
                return Ok(Applied::rejected(Rejection::KeyNotActive {
                    key_id: key.key_id,
                    status: key.status.as_str().into(),
                }));
            }
        }
    }
    let unavailable = |presignature_id: &str, reason: &str| {
        Ok(Applied::rejected(Rejection::PresignatureUnavailable {
            presignature_id: presignature_id.to_owned(),
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        }))
    };
    if let Some(presignature_id) = presignature_id {
        if session.status != SessionStatus::Pending || session.kind != SessionKind::Sign {
            return unavailable(presignature_id, "only a pending signing session takes one");
        }
        let may_use = matches!(
            session.signing_input,
            Some(crate::model::SigningInput::Message { hash: Some(_), .. })
        );
        if !may_use {
            return unavailable(
                presignature_id,
                "the request carries a raw digest, not a message and its hash",
            );
        }
        let key = presignature_key(&session.key_id, presignature_id);
        let Some(mut record) =
            load::<PresignatureRecord>(txn, Table::Presignatures, &key, "presignature")?
        else {
            return unavailable(presignature_id, "no such presignature for this key");
        };
        if record.status != PresignatureStatus::Available {
            return unavailable(presignature_id, "already used");
        }
        if record.signers != parties {
            return unavailable(presignature_id, "its signer set differs from the parties");
        }
        record.status = PresignatureStatus::Used {
            session_id: session_id.to_owned(),
        };
        store(txn, Table::Presignatures, &key, "presignature", &record)?;
    }
    transition(txn, at_ms, session_id, "started", |s| {
        match s.status {
            SessionStatus::Pending => {}
            // A new leader re-dispatches what the old one had running: a new attempt.
            SessionStatus::Running => s.attempt += 1,
            _ => return false,
        }
        s.status = SessionStatus::Running;
        s.parties = parties.to_vec();
        s.presignature_id = presignature_id
            .map(str::to_owned)
            .or(s.presignature_id.take());
        s.started_at_ms.get_or_insert(at_ms);
        true
    })
}

/// Loads a session, lets `change` move it (returning false when the move is not allowed from
/// its current status), and stores it. A `change` that allows the move but changes nothing
/// (the retry of a move already made) stores nothing.
fn transition(
    txn: &mut impl StateTxn,
    at_ms: u64,
    session_id: &str,
    to: &'static str,
    change: impl FnOnce(&mut SessionRecord) -> bool,
) -> Result<Applied, StoreError> {
    let Some(mut session) = load::<SessionRecord>(txn, Table::Sessions, session_id, "session")?
    else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "session".into(),
            id: session_id.to_owned(),
        }));
    };
    let from = session.status.as_str();
    let before = session.clone();
    if !change(&mut session) {
        return Ok(Applied::rejected(Rejection::InvalidTransition {
            session_id: session_id.to_owned(),
            from: from.into(),
            to: to.into(),
        }));
    }
    if session == before {
        // A retried proposal of a move already made: answer it, change nothing.
        return Ok(Applied {
            response: CommandResponse::Session {
                session: Box::new(session),
                created: false,
            },
            session: None,
        });
    }
    session.updated_at_ms = at_ms;
    store(txn, Table::Sessions, session_id, "session", &session)?;
    index::session_changed(txn, Some(&before), Some(&session));
    Ok(Applied {
        response: CommandResponse::Session {
            session: Box::new(session.clone()),
            created: false,
        },
        session: Some(session),
    })
}

/// Replaces a key's policy with a successor ([`KeyPolicy::check_successor`]). The same
/// policy again (a retried request) answers the key unchanged.
fn set_key_policy(
    txn: &mut impl StateTxn,
    policy: &Endorsed<KeyPolicy>,
    at_ms: u64,
) -> Result<Applied, StoreError> {
    let key_id = &policy.statement.key_id;
    let Some(mut key) = load::<KeyRecord>(txn, Table::Keys, key_id, "key")? else {
        return Ok(Applied::rejected(Rejection::NotFound {
            kind: "key".into(),
            id: key_id.clone(),
        }));
    };
    if key.policy != *policy {
        if let Err(reason) = key.policy.statement.check_successor(&policy.statement) {
            let field = reason.split(':').next().unwrap_or("policy").to_owned();
            return Ok(Applied::rejected(Rejection::Invalid(ValidationError::new(
                format!("policy.{field}"),
                reason,
            ))));
        }
        key.policy = policy.clone();
        key.updated_at_ms = at_ms;
        store(txn, Table::Keys, key_id, "key", &key)?;
    }
    Ok(Applied {
        response: CommandResponse::Key(Box::new(key)),
        session: None,
    })
}

/// Forgets what `p` names that is indeed finished history older than its cutoff; skips the
/// rest (a session still running, a record already gone). A pruned signing takes the record
/// of the presignature it used with it: a missing presignature can never be started again,
/// and each party keeps its own ledger of the presignatures it used.
fn prune(txn: &mut impl StateTxn, p: &Prune) -> Result<Applied, StoreError> {
    let mut sessions = 0;
    for session_id in &p.session_ids {
        let Some(session) = load::<SessionRecord>(txn, Table::Sessions, session_id, "session")?
        else {
            continue;
        };
        let finished = session.finished_at_ms.unwrap_or(session.updated_at_ms);
        if !session.status.is_terminal() || finished > p.cutoff_ms {
            continue;
        }
        if let Some(request_id) = &session.request_id {
            let record =
                load::<IdempotencyRecord>(txn, Table::Idempotency, request_id, "idempotency")?;
            if record.is_some_and(|r| r.session_id == session.session_id) {
                txn.delete(Table::Idempotency, request_id.as_bytes().to_vec());
            }
        }
        // The presignature it used up goes with it; one still available stays in the pool.
        if let Some(presignature_id) = &session.presignature_id {
            let key = presignature_key(&session.key_id, presignature_id);
            let record =
                load::<PresignatureRecord>(txn, Table::Presignatures, &key, "presignature")?;
            let used_here = record.is_some_and(|r| {
                matches!(&r.status, PresignatureStatus::Used { session_id } if *session_id == session.session_id)
            });
            if used_here {
                txn.delete(Table::Presignatures, key.into_bytes());
            }
        }
        txn.delete(Table::Sessions, session_id.as_bytes().to_vec());
        index::session_changed(txn, Some(&session), None);
        sessions += 1;
    }
    let mut key_updates = 0;
    for u in &p.key_updates {
        let entry = index::key_update_entry(u.applied_at_ms, &u.update_id);
        if u.applied_at_ms > p.cutoff_ms || txn.get(Table::Indexes, &entry)?.is_none() {
            continue;
        }
        txn.delete(Table::KeyUpdates, u.update_id.as_bytes().to_vec());
        txn.delete(Table::Indexes, entry);
        key_updates += 1;
    }
    Ok(Applied {
        response: CommandResponse::Pruned {
            sessions,
            key_updates,
        },
        session: None,
    })
}

fn fingerprint<T: serde::Serialize>(params: &T) -> [u8; 32] {
    // postcard of plain owned data cannot fail; an empty encoding would still fingerprint
    // deterministically on every replica.
    let bytes = postcard::to_allocvec(params).unwrap_or_default();
    Sha3_256::digest(bytes).into()
}

pub(crate) fn load<T: serde::de::DeserializeOwned>(
    txn: &impl StateTxn,
    table: Table,
    id: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    txn.get(table, id.as_bytes())?
        .map(|bytes| decode(what, &bytes))
        .transpose()
}

fn store<T: serde::Serialize>(
    txn: &mut impl StateTxn,
    table: Table,
    id: &str,
    what: &'static str,
    value: &T,
) -> Result<(), StoreError> {
    txn.put(table, id.as_bytes().to_vec(), encode(what, value)?);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::command::{CreateKeygen, CreateSigning, SessionStart};
    use crate::model::{Endorsed, Enrolment, KeyPolicy, Scheme};

    /// The state as a plain map: the same apply code, no RocksDB.
    #[derive(Default)]
    pub struct MemTxn(pub BTreeMap<(Table, Vec<u8>), Vec<u8>>);

    impl StateTxn for MemTxn {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(&(table, key.to_vec())).cloned())
        }
        fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
            self.0.insert((table, key), value);
        }
        fn delete(&mut self, table: Table, key: Vec<u8>) {
            self.0.remove(&(table, key));
        }
    }

    /// A deterministic identity key per party name.
    pub fn party_key(party: &str) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&Sha3_256::digest(party.as_bytes()).into())
    }

    /// A state in which p1, p2 and p3 are enrolled (and registered).
    pub fn state() -> MemTxn {
        let mut txn = MemTxn::default();
        register_parties(&mut txn, &["p1", "p2", "p3"]);
        txn
    }

    /// The admin's enrolments of p1, p2 and p3, as commands (for tests on real stores).
    pub fn enrol_cmds() -> Vec<Command> {
        ["p1", "p2", "p3"]
            .iter()
            .map(|p| Command {
                at_ms: 500,
                actor: "client:admin".into(),
                op: Operation::EnrollParty(Endorsed::new(
                    &admin_key(),
                    Enrolment {
                        party_id: (*p).into(),
                        signing_public_key: party_key(p).verifying_key().to_bytes(),
                        encryption_public_key: [9; 32],
                    },
                )),
            })
            .collect()
    }

    /// Records `parties` with their identity keys, as their registration would.
    pub fn register_parties(txn: &mut MemTxn, parties: &[&str]) {
        for p in parties {
            let record = PartyRecord {
                party_id: (*p).into(),
                signing_public_key: party_key(p).verifying_key().to_bytes().to_vec(),
                encryption_public_key: vec![9; 32],
                endpoint: "test:1".into(),
                status: PartyStatus::Online,
                last_seen_ms: 0,
                registered_at_ms: 0,
                enrolled_by: mpc_types::statement::sign(
                    &admin_key(),
                    &mpc_types::statement::Enrolment {
                        party_id: (*p).into(),
                        signing_public_key: party_key(p).verifying_key().to_bytes(),
                        encryption_public_key: [9; 32],
                    },
                ),
                enrolled_at_ms: 0,
            };
            store(txn, Table::Parties, p, "party", &record).unwrap();
        }
    }

    pub fn admin_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0xad; 32])
    }

    pub fn initiator_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0x1e; 32])
    }

    /// Stands in where a literal needs a policy: [`with_policy`] replaces it with the one
    /// that matches the keygen.
    pub fn policy_placeholder() -> Endorsed<KeyPolicy> {
        Endorsed::new(
            &admin_key(),
            KeyPolicy {
                key_id: String::new(),
                scheme: String::new(),
                threshold: 0,
                parties: Vec::new(),
                initiators: vec![initiator_key().verifying_key().to_bytes()],
                approvals_needed: 1,
                version: 1,
            },
        )
    }

    /// The admin's policy for exactly this keygen: one initiator, one approval.
    pub fn with_policy(mut op: Operation) -> Operation {
        if let Operation::CreateKeygen(k) = &mut op {
            k.policy = Endorsed::new(
                &admin_key(),
                KeyPolicy {
                    key_id: k.key_id.clone(),
                    scheme: k.scheme.as_str().to_owned(),
                    threshold: k.threshold,
                    parties: k.parties.clone(),
                    initiators: vec![initiator_key().verifying_key().to_bytes()],
                    approvals_needed: 1,
                    version: 1,
                },
            );
        }
        op
    }

    /// The initiator's approval of the signing, when it names a request id (without one it
    /// stays unapproved, as a client that forgot would send it).
    pub fn approve(mut s: CreateSigning) -> CreateSigning {
        if s.request_id.is_some() {
            s.approvals_not_after_ms = s.deadline_ms + 60_000;
            s.approvals = vec![mpc_types::statement::sign(&initiator_key(), &s.approval())];
        }
        s
    }

    /// Every party's signed report of `public_key` for keygen `session_id` of `key_id`.
    pub fn reports(
        session_id: &str,
        key_id: &str,
        parties: &[&str],
        public_key: &[u8],
    ) -> Vec<PartyReport> {
        use ed25519_dalek::Signer;
        use mpc_types::statement::Statement;
        let statement = mpc_types::statement::KeygenReport {
            session_id,
            key_id,
            public_key,
        };
        parties
            .iter()
            .map(|p| PartyReport {
                party_id: (*p).into(),
                signature: party_key(p)
                    .sign(&statement.signing_bytes())
                    .to_bytes()
                    .to_vec(),
            })
            .collect()
    }

    pub fn keygen_cmd(session_id: &str, key_id: &str, request_id: Option<&str>) -> Command {
        Command {
            at_ms: 1_000,
            actor: "alice".into(),
            op: with_policy(Operation::CreateKeygen(CreateKeygen {
                session_id: session_id.into(),
                key_id: key_id.into(),
                scheme: Scheme::EcdsaSecp256k1,
                threshold: 2,
                parties: vec!["p1".into(), "p2".into(), "p3".into()],
                request_id: request_id.map(Into::into),
                description: "treasury".into(),
                tags: BTreeMap::from([("env".into(), "prod".into())]),
                deadline_ms: 61_000,
                policy: policy_placeholder(),
            })),
        }
    }

    fn pos(index: u64) -> LogPosition {
        LogPosition { index, position: 0 }
    }

    fn cmd(at_ms: u64, op: Operation) -> Command {
        Command {
            at_ms,
            actor: "leader".into(),
            op,
        }
    }

    /// Key k1 of p1..p3, made by keygen s1 at log positions 1 to 3 (time 3 000).
    fn make_key(txn: &mut MemTxn) {
        apply_command(txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        let start = Operation::StartSession {
            session_id: "s1".into(),
            parties: vec!["p1".into(), "p2".into(), "p3".into()],
            presignature_id: None,
        };
        apply_command(txn, pos(2), &cmd(2_000, start)).unwrap();
        let complete = Operation::CompleteSession {
            session_id: "s1".into(),
            result: SessionResult::PublicKey(vec![2; 33]),
            address: None,
            reports: reports("s1", "k1", &["p1", "p2", "p3"], &[2; 33]),
        };
        let made = apply_command(txn, pos(3), &cmd(3_000, complete)).unwrap();
        assert!(
            matches!(made.response, CommandResponse::Session { .. }),
            "{made:?}"
        );
    }

    fn session_of(applied: &Applied) -> SessionRecord {
        match &applied.response {
            CommandResponse::Session { session, .. } => (**session).clone(),
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[test]
    fn a_retried_request_id_returns_the_first_session() {
        let mut txn = state();
        let first =
            apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", Some("req-1"))).unwrap();
        // The retry reached the leader with a fresh session id, as it would after a client
        // timeout (the key id is the client's, named by the admin's policy).
        let retry =
            apply_command(&mut txn, pos(2), &keygen_cmd("s2", "k1", Some("req-1"))).unwrap();
        assert!(matches!(
            retry.response,
            CommandResponse::Session { created: false, .. }
        ));
        assert_eq!(session_of(&retry).session_id, session_of(&first).session_id);
        assert!(txn.get(Table::Sessions, b"s2").unwrap().is_none());
    }

    #[test]
    fn a_request_id_reused_with_other_parameters_is_refused() {
        let mut txn = state();
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", Some("req-1"))).unwrap();
        let mut other = keygen_cmd("s2", "k2", Some("req-1"));
        if let Operation::CreateKeygen(k) = &mut other.op {
            k.threshold = 3;
        }
        other.op = with_policy(other.op);
        let applied = apply_command(&mut txn, pos(2), &other).unwrap();
        assert!(matches!(
            applied.response,
            CommandResponse::Rejected(Rejection::RequestIdReused { .. })
        ));
    }

    #[test]
    fn keygen_completion_creates_the_key_and_signing_needs_it() {
        let mut txn = state();
        register_parties(&mut txn, &["p1", "p2", "p3"]);
        let sign = |txn: &mut MemTxn, idx| {
            apply_command(
                txn,
                pos(idx),
                &cmd(
                    5_000,
                    Operation::CreateSigning(approve(CreateSigning {
                        session_id: format!("sig-{idx}"),
                        key_id: "k1".into(),
                        input: crate::model::SigningInput::Digest([7; 32]),
                        request_id: Some(format!("r-{idx}")),
                        deadline_ms: 9_000,
                        approvals: Vec::new(),
                        approvals_not_after_ms: 0,
                        start: None,
                    })),
                ),
            )
            .unwrap()
        };
        assert!(matches!(
            sign(&mut txn, 1).response,
            CommandResponse::Rejected(Rejection::NotFound { ref kind, .. }) if kind == "key"
        ));

        apply_command(&mut txn, pos(2), &keygen_cmd("s1", "k1", None)).unwrap();
        let parties = vec!["p1".to_string(), "p2".into(), "p3".into()];
        apply_command(
            &mut txn,
            pos(3),
            &cmd(
                2_000,
                Operation::StartSession {
                    session_id: "s1".into(),
                    parties,
                    presignature_id: None,
                },
            ),
        )
        .unwrap();
        let done = apply_command(
            &mut txn,
            pos(4),
            &cmd(
                3_000,
                Operation::CompleteSession {
                    session_id: "s1".into(),
                    result: SessionResult::PublicKey(vec![2; 33]),
                    address: Some("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".into()),
                    reports: reports("s1", "k1", &["p1", "p2", "p3"], &[2; 33]),
                },
            ),
        )
        .unwrap();
        assert_eq!(session_of(&done).status, SessionStatus::Completed);
        let key: KeyRecord = load(&txn, Table::Keys, "k1", "key").unwrap().unwrap();
        assert_eq!(key.description, "treasury");
        assert_eq!(key.threshold, 2);

        let signing = session_of(&sign(&mut txn, 5));
        assert_eq!(signing.kind, SessionKind::Sign);
        assert_eq!(signing.scheme, Scheme::EcdsaSecp256k1);
        assert_eq!(signing.status, SessionStatus::Pending);
    }

    #[test]
    fn a_retried_signing_with_fresh_approvals_finds_the_first_session() {
        let mut txn = state();
        make_key(&mut txn);
        let signing = |session_id: &str, deadline_ms, input| {
            cmd(
                4_000,
                Operation::CreateSigning(approve(CreateSigning {
                    session_id: session_id.into(),
                    key_id: "k1".into(),
                    input,
                    request_id: Some("dvn-retry".into()),
                    deadline_ms,
                    approvals: Vec::new(),
                    approvals_not_after_ms: 0,
                    start: None,
                })),
            )
        };
        let digest = crate::model::SigningInput::Digest([7; 32]);
        let first =
            apply_command(&mut txn, pos(10), &signing("sig-1", 9_000, digest.clone())).unwrap();
        // A relayer restarted and asked again: same key and digest, a later approval expiry.
        let retry = apply_command(&mut txn, pos(11), &signing("sig-2", 19_000, digest)).unwrap();
        assert!(matches!(
            retry.response,
            CommandResponse::Session { created: false, .. }
        ));
        assert_eq!(session_of(&retry).session_id, session_of(&first).session_id);
        // Another digest under the same id is another request.
        let other = apply_command(
            &mut txn,
            pos(12),
            &signing("sig-3", 9_000, crate::model::SigningInput::Digest([8; 32])),
        )
        .unwrap();
        assert!(matches!(
            other.response,
            CommandResponse::Rejected(Rejection::RequestIdReused { .. })
        ));
    }

    #[test]
    fn a_key_update_applies_once_per_update_id() {
        let mut txn = state();
        make_key(&mut txn);
        let update = |id: &str, description: &str| {
            cmd(
                4_000,
                Operation::UpdateKey(UpdateKey {
                    key_id: "k1".into(),
                    description: Some(description.into()),
                    tags: None,
                    status: None,
                    update_id: id.into(),
                }),
            )
        };
        let description = |txn: &MemTxn| {
            load::<KeyRecord>(txn, Table::Keys, "k1", "key")
                .unwrap()
                .unwrap()
                .description
        };
        apply_command(&mut txn, pos(4), &update("a", "first")).unwrap();
        apply_command(&mut txn, pos(5), &update("b", "second")).unwrap();
        // A's second copy (a forward retried after the leader had committed it) arrives late:
        // it must not undo B.
        let before = txn.0.clone();
        let replay = apply_command(&mut txn, pos(6), &update("a", "first")).unwrap();
        assert!(
            matches!(&replay.response, CommandResponse::Key(k) if k.description == "second"),
            "{:?}",
            replay.response
        );
        assert_eq!(description(&txn), "second");
        let changed: Vec<_> = txn
            .0
            .iter()
            .filter(|(k, v)| {
                let audit = matches!(k.0, Table::Audit | Table::AuditHead)
                    || (k.0 == Table::Indexes && k.1.starts_with(index::AUDIT_BY_KEY));
                before.get(*k) != Some(*v) && !audit
            })
            .collect();
        assert!(changed.is_empty(), "a replayed update wrote {changed:?}");

        let reused = apply_command(&mut txn, pos(7), &update("a", "other")).unwrap();
        assert!(matches!(
            reused.response,
            CommandResponse::Rejected(Rejection::KeyUpdateIdReused { .. })
        ));
        assert_eq!(description(&txn), "second");
    }

    #[test]
    fn terminal_sessions_do_not_move() {
        let mut txn = state();
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        let fail = cmd(
            2_000,
            Operation::FailSession {
                session_id: "s1".into(),
                failure: SessionFailure {
                    reason: "party p2 sent an invalid proof".into(),
                    blamed_parties: vec!["p2".into()],
                },
            },
        );
        assert_eq!(
            session_of(&apply_command(&mut txn, pos(2), &fail).unwrap()).status,
            SessionStatus::Failed
        );
        // The same failure proposed again (a retry) is answered and changes nothing...
        let again = apply_command(&mut txn, pos(3), &fail).unwrap();
        assert!(again.session.is_none());
        assert!(
            matches!(again.response, CommandResponse::Session { ref session, .. }
            if session.status == SessionStatus::Failed && session.updated_at_ms == 2_000)
        );
        // ... another outcome is refused.
        let mut other = fail.clone();
        if let Operation::FailSession { failure, .. } = &mut other.op {
            failure.reason = "something else".into();
        }
        assert!(matches!(
            apply_command(&mut txn, pos(3), &other).unwrap().response,
            CommandResponse::Rejected(Rejection::InvalidTransition { ref from, .. }) if from == "failed"
        ));
        let expire = cmd(
            100_000,
            Operation::ExpireSession {
                session_id: "s1".into(),
            },
        );
        assert!(matches!(
            apply_command(&mut txn, pos(4), &expire).unwrap().response,
            CommandResponse::Rejected(_)
        ));
    }

    #[test]
    fn expiry_before_the_deadline_is_refused() {
        let mut txn = state();
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        let early = cmd(
            60_999,
            Operation::ExpireSession {
                session_id: "s1".into(),
            },
        );
        assert!(matches!(
            apply_command(&mut txn, pos(2), &early).unwrap().response,
            CommandResponse::Rejected(_)
        ));
        let late = cmd(
            61_000,
            Operation::ExpireSession {
                session_id: "s1".into(),
            },
        );
        let expired = session_of(&apply_command(&mut txn, pos(3), &late).unwrap());
        assert_eq!(expired.status, SessionStatus::Expired);
        let reason = expired.failure.map(|f| f.reason).unwrap_or_default();
        assert!(reason.contains("before it started"), "{reason}");
    }

    /// The session index entries a state holds are exactly those its sessions call for.
    pub fn indexes_match(txn: &MemTxn) {
        let held: std::collections::BTreeSet<Vec<u8>> = txn
            .0
            .keys()
            .filter(|(t, _)| *t == Table::Indexes)
            .map(|(_, k)| k.clone())
            .filter(|k| k.first().is_some_and(|b| b"kstof".contains(b)))
            .collect();
        let mut wanted = std::collections::BTreeSet::new();
        let sessions = txn
            .0
            .iter()
            .filter(|((t, _), _)| *t == Table::Sessions)
            .map(|(_, v)| decode::<SessionRecord>("session", v).unwrap());
        for session in sessions {
            let mut scratch = MemTxn::default();
            index::session_changed(&mut scratch, None, Some(&session));
            wanted.extend(scratch.0.into_keys().map(|(_, k)| k));
        }
        assert_eq!(
            held, wanted,
            "the session indexes drifted from the sessions"
        );
    }

    #[test]
    fn prune_forgets_only_finished_history_older_than_its_cutoff() {
        let mut txn = state();
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", Some("r1"))).unwrap();
        apply_command(&mut txn, pos(2), &keygen_cmd("s2", "k2", Some("r2"))).unwrap();
        let expire = cmd(
            61_000,
            Operation::ExpireSession {
                session_id: "s1".into(),
            },
        );
        apply_command(&mut txn, pos(3), &expire).unwrap();
        indexes_match(&txn);
        let prune = |cutoff_ms: u64, at_ms: u64| {
            cmd(
                at_ms,
                Operation::Prune(Prune {
                    cutoff_ms,
                    session_ids: vec!["s1".into(), "s2".into(), "nope".into()],
                    key_updates: vec![],
                }),
            )
        };
        // Finished at 61 000: a cutoff before that forgets nothing.
        let applied = apply_command(&mut txn, pos(4), &prune(60_999, 70_000)).unwrap();
        assert_eq!(
            applied.response,
            CommandResponse::Pruned {
                sessions: 0,
                key_updates: 0
            }
        );
        // A cutoff after the command's own time is not a prune anyone may propose.
        let future = apply_command(&mut txn, pos(5), &prune(80_000, 70_000)).unwrap();
        assert!(matches!(future.response, CommandResponse::Rejected(_)));
        // s1 finished and is old enough; s2 is still pending and stays.
        let applied = apply_command(&mut txn, pos(6), &prune(61_000, 70_000)).unwrap();
        assert_eq!(
            applied.response,
            CommandResponse::Pruned {
                sessions: 1,
                key_updates: 0
            }
        );
        assert!(txn.get(Table::Sessions, b"s1").unwrap().is_none());
        assert!(txn.get(Table::Idempotency, b"r1").unwrap().is_none());
        assert!(txn.get(Table::Sessions, b"s2").unwrap().is_some());
        assert!(txn.get(Table::Idempotency, b"r2").unwrap().is_some());
        indexes_match(&txn);
        // The request id is free again: a retry this late makes a new session.
        let again = apply_command(&mut txn, pos(7), &keygen_cmd("s3", "k1", Some("r1"))).unwrap();
        assert!(matches!(
            again.response,
            CommandResponse::Session { created: true, .. }
        ));
        // Each prune that was applied is audited (the invalid one never was).
        let audited = txn
            .0
            .iter()
            .filter(|((t, _), _)| *t == Table::Audit)
            .map(|(_, v)| decode::<AuditEvent>("audit", v).unwrap())
            .filter(|e| e.action == "retention.prune")
            .count();
        assert_eq!(audited, 2);
    }

    #[test]
    fn a_pruned_signing_takes_its_used_presignature_and_it_never_serves_again() {
        let mut txn = state();
        make_key(&mut txn);
        let signers = vec!["p1".to_string(), "p2".into()];
        let mut at = 3;
        let mut apply = |at_ms: u64, op: Operation| {
            at += 1;
            apply_command(&mut txn, pos(at), &cmd(at_ms, op))
                .unwrap()
                .response
        };
        let presign = Operation::CreatePresign(CreatePresign {
            session_id: "ps1".into(),
            key_id: "k1".into(),
            signers: signers.clone(),
            deadline_ms: 60_000,
        });
        apply(4_000, presign);
        let start = |session_id: &str, presignature_id: Option<&str>| Operation::StartSession {
            session_id: session_id.into(),
            parties: signers.clone(),
            presignature_id: presignature_id.map(Into::into),
        };
        apply(4_100, start("ps1", None));
        let done = Operation::CompleteSession {
            session_id: "ps1".into(),
            result: SessionResult::Presignature,
            address: None,
            reports: Vec::new(),
        };
        apply(4_200, done);
        let signing = |request_id: &str| {
            Operation::CreateSigning(approve(CreateSigning {
                session_id: format!("sig-{request_id}"),
                key_id: "k1".into(),
                input: crate::model::SigningInput::Message {
                    message: b"pay".to_vec(),
                    hash: Some(crate::model::HashFunction::Keccak256),
                },
                request_id: Some(request_id.into()),
                deadline_ms: 9_000,
                approvals: Vec::new(),
                approvals_not_after_ms: 0,
                start: None,
            }))
        };
        apply(5_000, signing("r1"));
        let started = apply(5_100, start("sig-r1", Some("ps1")));
        assert!(
            matches!(started, CommandResponse::Session { .. }),
            "{started:?}"
        );
        let failed = Operation::FailSession {
            session_id: "sig-r1".into(),
            failure: SessionFailure {
                reason: "a party went away".into(),
                blamed_parties: Vec::new(),
            },
        };
        apply(5_200, failed);
        let prune = Operation::Prune(Prune {
            cutoff_ms: 6_000,
            session_ids: vec!["sig-r1".into(), "ps1".into()],
            key_updates: Vec::new(),
        });
        let pruned = apply(7_000, prune);
        assert!(
            matches!(pruned, CommandResponse::Pruned { sessions: 2, .. }),
            "{pruned:?}"
        );
        // Gone with the signing that used it, and refused to any later one.
        apply(8_000, signing("r2"));
        let again = apply(8_100, start("sig-r2", Some("ps1")));
        assert!(
            matches!(
                &again,
                CommandResponse::Rejected(Rejection::PresignatureUnavailable { reason, .. })
                    if reason.contains("no such presignature")
            ),
            "{again:?}"
        );
        assert!(txn.0.keys().all(|(t, _)| *t != Table::Presignatures));
        indexes_match(&txn);
    }

    #[test]
    fn a_signing_created_with_its_start_runs_at_once_and_uses_its_presignature_once() {
        let mut txn = state();
        make_key(&mut txn);
        let signers = vec!["p1".to_string(), "p2".into()];
        let mut at = 3;
        let mut apply = |at_ms: u64, op: Operation| {
            at += 1;
            apply_command(&mut txn, pos(at), &cmd(at_ms, op))
                .unwrap()
                .response
        };
        apply(
            4_000,
            Operation::CreatePresign(CreatePresign {
                session_id: "ps1".into(),
                key_id: "k1".into(),
                signers: signers.clone(),
                deadline_ms: 60_000,
            }),
        );
        apply(
            4_100,
            Operation::StartSession {
                session_id: "ps1".into(),
                parties: signers.clone(),
                presignature_id: None,
            },
        );
        apply(
            4_200,
            Operation::CompleteSession {
                session_id: "ps1".into(),
                result: SessionResult::Presignature,
                address: None,
                reports: Vec::new(),
            },
        );
        let signing = |request_id: &str, start: SessionStart| {
            Operation::CreateSigning(approve(CreateSigning {
                session_id: format!("sig-{request_id}"),
                key_id: "k1".into(),
                input: crate::model::SigningInput::Message {
                    message: b"pay".to_vec(),
                    hash: Some(crate::model::HashFunction::Keccak256),
                },
                request_id: Some(request_id.into()),
                deadline_ms: 9_000,
                approvals: Vec::new(),
                approvals_not_after_ms: 0,
                start: Some(start),
            }))
        };
        let with_presignature = SessionStart {
            parties: signers.clone(),
            presignature_id: Some("ps1".into()),
        };
        match apply(5_000, signing("r1", with_presignature.clone())) {
            CommandResponse::Session { session, created } => {
                assert!(created);
                assert_eq!(session.status, SessionStatus::Running);
                assert_eq!(session.attempt, 0);
                assert_eq!(session.parties, signers);
                assert_eq!(session.presignature_id.as_deref(), Some("ps1"));
                assert_eq!(session.started_at_ms, Some(5_000));
            }
            other => panic!("expected a running session, got {other:?}"),
        }
        // A second request planned with the same presignature is created, but waits.
        match apply(5_100, signing("r2", with_presignature)) {
            CommandResponse::Session { session, created } => {
                assert!(created);
                assert_eq!(session.status, SessionStatus::Pending);
                assert_eq!(session.presignature_id, None);
            }
            other => panic!("expected a pending session, got {other:?}"),
        }
        // So does one planned with parties the key does not have.
        let strangers = SessionStart {
            parties: vec!["p1".into(), "p9".into()],
            presignature_id: None,
        };
        assert!(matches!(
            apply(5_200, signing("r3", strangers)),
            CommandResponse::Session { session, .. } if session.status == SessionStatus::Pending
        ));
        // A retry of the first request answers its session and starts nothing again.
        let retry = SessionStart {
            parties: signers.clone(),
            presignature_id: None,
        };
        assert!(matches!(
            apply(5_300, signing("r1", retry)),
            CommandResponse::Session { session, created: false }
                if session.status == SessionStatus::Running && session.attempt == 0
        ));
        indexes_match(&txn);
    }

    #[test]
    fn prune_forgets_key_update_ids_by_their_indexed_time() {
        let mut txn = state();
        make_key(&mut txn);
        let update = Operation::UpdateKey(UpdateKey {
            key_id: "k1".into(),
            description: Some("cold".into()),
            tags: None,
            status: None,
            update_id: "u1".into(),
        });
        apply_command(&mut txn, pos(4), &cmd(4_000, update)).unwrap();
        let prune = |applied_at_ms: u64| {
            cmd(
                10_000,
                Operation::Prune(Prune {
                    cutoff_ms: 9_000,
                    session_ids: vec![],
                    key_updates: vec![crate::command::PrunedKeyUpdate {
                        update_id: "u1".into(),
                        applied_at_ms,
                    }],
                }),
            )
        };
        // A time other than the one indexed names nothing.
        let wrong = apply_command(&mut txn, pos(5), &prune(3_000)).unwrap();
        assert!(matches!(
            wrong.response,
            CommandResponse::Pruned { key_updates: 0, .. }
        ));
        assert!(txn.get(Table::KeyUpdates, b"u1").unwrap().is_some());
        let right = apply_command(&mut txn, pos(6), &prune(4_000)).unwrap();
        assert!(matches!(
            right.response,
            CommandResponse::Pruned { key_updates: 1, .. }
        ));
        assert!(txn.get(Table::KeyUpdates, b"u1").unwrap().is_none());
        assert!(txn
            .get(Table::Indexes, &index::key_update_entry(4_000, "u1"))
            .unwrap()
            .is_none());
        // The key itself and its finished keygen are untouched by a key-update prune.
        assert!(txn.get(Table::Keys, b"k1").unwrap().is_some());
        assert!(txn.get(Table::Sessions, b"s1").unwrap().is_some());
    }

    #[test]
    fn every_command_leaves_one_audit_event_at_its_index() {
        let mut txn = state();
        apply_command(&mut txn, pos(41), &keygen_cmd("s1", "k1", None)).unwrap();
        let bad = keygen_cmd("s1", "k1", None); // same session id again
        apply_command(&mut txn, pos(42), &bad).unwrap();
        let events: Vec<AuditEvent> = [41u64, 42]
            .iter()
            .map(|i| {
                decode(
                    "audit",
                    &txn.get(Table::Audit, &pos(*i).audit_key())
                        .unwrap()
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(events[0].outcome, "ok");
        assert!(
            events[1].outcome.starts_with("rejected"),
            "{}",
            events[1].outcome
        );
        assert_eq!(events[1].actor, "alice");
    }

    #[test]
    fn audit_events_form_a_hash_chain_that_shows_any_rewrite() {
        let mut txn = state();
        for i in 1..=4u64 {
            apply_command(
                &mut txn,
                pos(i),
                &keygen_cmd(&format!("s{i}"), &format!("k{i}"), None),
            )
            .unwrap();
        }
        let events: Vec<AuditEvent> = txn
            .0
            .iter()
            .filter(|((t, _), _)| *t == Table::Audit)
            .map(|(_, v)| decode("audit", v).unwrap())
            .collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].prev_hash, [0; 32]);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        for e in &events {
            assert_eq!(e.hash, e.expected_hash());
            assert_eq!(
                e.key_id.as_deref(),
                Some(e.subject.replace('s', "k").as_str())
            );
        }
        let head = txn.get(Table::AuditHead, AUDIT_HEAD).unwrap().unwrap();
        assert_eq!(head, events[3].hash.to_vec());
        let mut forged = events[1].clone();
        forged.actor = "mallory".into();
        assert_ne!(forged.expected_hash(), forged.hash);
    }

    #[test]
    fn a_keygen_completes_only_with_every_partys_signed_report() {
        let mut txn = state();
        register_parties(&mut txn, &["p1", "p2", "p3"]);
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        let start = Operation::StartSession {
            session_id: "s1".into(),
            parties: vec!["p1".into(), "p2".into(), "p3".into()],
            presignature_id: None,
        };
        apply_command(&mut txn, pos(2), &cmd(2_000, start)).unwrap();
        let complete = |reports: Vec<PartyReport>, public_key: Vec<u8>| {
            cmd(
                3_000,
                Operation::CompleteSession {
                    session_id: "s1".into(),
                    result: SessionResult::PublicKey(public_key),
                    address: None,
                    reports,
                },
            )
        };
        let refused = |applied: Applied, why: &str| match applied.response {
            CommandResponse::Rejected(Rejection::Invalid(e)) => {
                assert_eq!(e.field, "reports");
                assert!(e.reason.contains(why), "{}", e.reason);
            }
            other => panic!("accepted: {other:?}"),
        };
        // One party missing.
        let two = reports("s1", "k1", &["p1", "p2"], &[7; 33]);
        refused(
            apply_command(&mut txn, pos(3), &complete(two, vec![7; 33])).unwrap(),
            "p3 did not report",
        );
        // The leader's own key (0xee..) that nobody signed.
        let all = reports("s1", "k1", &["p1", "p2", "p3"], &[7; 33]);
        refused(
            apply_command(&mut txn, pos(4), &complete(all.clone(), vec![0xee; 33])).unwrap(),
            "does not verify",
        );
        // A report signed by another key than the party's.
        let mut forged = all.clone();
        forged[1].signature = reports("s1", "k1", &["mallory"], &[7; 33])[0]
            .signature
            .clone();
        refused(
            apply_command(&mut txn, pos(5), &complete(forged, vec![7; 33])).unwrap(),
            "p2's report",
        );
        assert!(load::<KeyRecord>(&txn, Table::Keys, "k1", "key")
            .unwrap()
            .is_none());
        let done = apply_command(&mut txn, pos(6), &complete(all, vec![7; 33])).unwrap();
        assert!(matches!(done.response, CommandResponse::Session { .. }));
        let key: KeyRecord = load(&txn, Table::Keys, "k1", "key").unwrap().unwrap();
        assert_eq!(key.public_key, vec![7; 33]);
    }

    #[test]
    fn the_leader_cannot_choose_who_makes_a_key_or_signs() {
        let mut txn = state();
        register_parties(&mut txn, &["p1", "p2", "p3", "evil-1", "evil-2"]);
        apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        let start = |session: &str, parties: &[&str]| {
            cmd(
                2_000,
                Operation::StartSession {
                    session_id: session.into(),
                    parties: parties.iter().map(|p| p.to_string()).collect(),
                    presignature_id: None,
                },
            )
        };
        let refused = |applied: Applied| {
            assert!(
                matches!(&applied.response, CommandResponse::Rejected(Rejection::Invalid(e)) if e.field == "parties"),
                "{:?}",
                applied.response
            )
        };
        // A keygen with parties of the leader's choosing, or a subset.
        refused(apply_command(&mut txn, pos(2), &start("s1", &["evil-1", "evil-2"])).unwrap());
        refused(apply_command(&mut txn, pos(3), &start("s1", &["p1", "p2"])).unwrap());
        apply_command(&mut txn, pos(4), &start("s1", &["p1", "p2", "p3"])).unwrap();
        let complete = Operation::CompleteSession {
            session_id: "s1".into(),
            result: SessionResult::PublicKey(vec![2; 33]),
            address: None,
            reports: reports("s1", "k1", &["p1", "p2", "p3"], &[2; 33]),
        };
        apply_command(&mut txn, pos(5), &cmd(3_000, complete)).unwrap();
        // A signing with outsiders, or with fewer than the threshold.
        let sign = Command {
            at_ms: 4_000,
            actor: "alice".into(),
            op: Operation::CreateSigning(approve(CreateSigning {
                session_id: "s2".into(),
                key_id: "k1".into(),
                input: crate::model::SigningInput::Digest([1; 32]),
                request_id: Some("r-s2".into()),
                deadline_ms: 50_000,
                approvals: Vec::new(),
                approvals_not_after_ms: 0,
                start: None,
            })),
        };
        apply_command(&mut txn, pos(6), &sign).unwrap();
        refused(apply_command(&mut txn, pos(7), &start("s2", &["p1", "evil-1"])).unwrap());
        refused(apply_command(&mut txn, pos(8), &start("s2", &["p1"])).unwrap());
        let started = apply_command(&mut txn, pos(9), &start("s2", &["p1", "p3"])).unwrap();
        assert_eq!(session_of(&started).status, SessionStatus::Running);
    }

    #[test]
    fn only_an_admin_enrolment_binds_a_party_to_its_keys() {
        let mut txn = MemTxn::default();
        let key_of = |seed: &str| party_key(seed).verifying_key().to_bytes();
        let register = |signing: [u8; 32], endpoint: &str| Command {
            at_ms: 5,
            actor: "party:party-1".into(),
            op: Operation::RegisterParty(crate::command::RegisterParty {
                party_id: "party-1".into(),
                signing_public_key: signing.to_vec(),
                encryption_public_key: vec![2; 32],
                endpoint: endpoint.into(),
            }),
        };
        let enrol = |signing: [u8; 32]| Command {
            at_ms: 7,
            actor: "client:admin".into(),
            op: Operation::EnrollParty(Endorsed::new(
                &admin_key(),
                Enrolment {
                    party_id: "party-1".into(),
                    signing_public_key: signing,
                    encryption_public_key: [2; 32],
                },
            )),
        };
        let rejected = |applied: Applied| match applied.response {
            CommandResponse::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        };
        // First come is no longer first served.
        assert!(matches!(
            rejected(apply_command(&mut txn, pos(1), &register(key_of("a"), "a:1")).unwrap()),
            Rejection::PartyNotEnrolled { .. }
        ));
        apply_command(&mut txn, pos(2), &enrol(key_of("a"))).unwrap();
        let moved = apply_command(&mut txn, pos(3), &register(key_of("a"), "b:1")).unwrap();
        let CommandResponse::Party(party) = moved.response else {
            panic!("{:?}", moved.response)
        };
        assert_eq!(
            (party.status, party.registered_at_ms),
            (PartyStatus::Online, 5)
        );
        assert!(party
            .enrolment()
            .is_some_and(|e| e.endorsed_by_one_of(&[admin_key().verifying_key().to_bytes()])));
        // Other keys: refused, and nothing changes.
        let before = txn.get(Table::Parties, b"party-1").unwrap();
        assert!(matches!(
            rejected(apply_command(&mut txn, pos(4), &register(key_of("b"), "b:1")).unwrap()),
            Rejection::PartyIdentityChanged { .. }
        ));
        assert_eq!(txn.get(Table::Parties, b"party-1").unwrap(), before);
        // A rotation is an admin's enrolment: the old keys are then refused.
        apply_command(&mut txn, pos(5), &enrol(key_of("b"))).unwrap();
        assert!(matches!(
            rejected(apply_command(&mut txn, pos(6), &register(key_of("a"), "b:1")).unwrap()),
            Rejection::PartyIdentityChanged { .. }
        ));
        apply_command(&mut txn, pos(7), &register(key_of("b"), "b:1")).unwrap();
        // An enrolment whose signature does not verify never reaches the state.
        let mut forged = enrol(key_of("c"));
        if let Operation::EnrollParty(e) = &mut forged.op {
            e.by.signature[0] ^= 1;
        }
        assert!(forged.validate().is_err());
    }

    #[test]
    fn keygens_need_enrolled_parties_and_signings_need_approvals() {
        let mut txn = MemTxn::default();
        register_parties(&mut txn, &["p1", "p2"]);
        let refused = apply_command(&mut txn, pos(1), &keygen_cmd("s1", "k1", None)).unwrap();
        assert!(
            matches!(&refused.response, CommandResponse::Rejected(Rejection::PartyNotEnrolled { party_id }) if party_id == "p3"),
            "{:?}",
            refused.response
        );
        register_parties(&mut txn, &["p3"]);
        apply_command(&mut txn, pos(2), &keygen_cmd("s1", "k1", None)).unwrap();
        let parties = vec!["p1".to_string(), "p2".into(), "p3".into()];
        apply_command(
            &mut txn,
            pos(3),
            &cmd(
                2_000,
                Operation::StartSession {
                    session_id: "s1".into(),
                    parties,
                    presignature_id: None,
                },
            ),
        )
        .unwrap();
        let complete = Operation::CompleteSession {
            session_id: "s1".into(),
            result: SessionResult::PublicKey(vec![2; 33]),
            address: None,
            reports: reports("s1", "k1", &["p1", "p2", "p3"], &[2; 33]),
        };
        apply_command(&mut txn, pos(4), &cmd(3_000, complete)).unwrap();
        let signing = |request_id: &str| {
            approve(CreateSigning {
                session_id: format!("sig-{request_id}"),
                key_id: "k1".into(),
                input: crate::model::SigningInput::Digest([7; 32]),
                request_id: Some(request_id.into()),
                deadline_ms: 9_000,
                approvals: Vec::new(),
                approvals_not_after_ms: 0,
                start: None,
            })
        };
        let mut unauthorised = |s: CreateSigning, idx| {
            let applied =
                apply_command(&mut txn, pos(idx), &cmd(5_000, Operation::CreateSigning(s)))
                    .unwrap();
            matches!(
                applied.response,
                CommandResponse::Rejected(Rejection::Unauthorised { .. })
            )
        };
        // Someone else's approval, an approval of another request, an expired one.
        let mut stranger = signing("r1");
        stranger.approvals = vec![mpc_types::statement::sign(
            &party_key("stranger"),
            &stranger.approval(),
        )];
        assert!(unauthorised(stranger, 5));
        let mut moved = signing("r2");
        moved.input = crate::model::SigningInput::Digest([8; 32]);
        assert!(unauthorised(moved, 6));
        let mut expired = signing("r3");
        expired.approvals_not_after_ms = 4_000;
        expired.approvals = vec![mpc_types::statement::sign(
            &initiator_key(),
            &expired.approval(),
        )];
        assert!(unauthorised(expired, 7));
        assert!(!unauthorised(signing("r4"), 8));
    }

    #[test]
    fn a_policy_changes_only_to_a_newer_version_of_the_same_key() {
        let mut txn = state();
        make_key(&mut txn);
        let held = load::<KeyRecord>(&txn, Table::Keys, "k1", "key")
            .unwrap()
            .unwrap()
            .policy;
        let successor = |change: &dyn Fn(&mut KeyPolicy)| {
            let mut p = held.statement.clone();
            p.initiators = vec![party_key("bob").verifying_key().to_bytes()];
            p.version = 2;
            change(&mut p);
            Operation::SetKeyPolicy(Endorsed::new(&admin_key(), p))
        };
        let mut at = 4;
        let mut apply = |op: Operation| {
            at += 1;
            apply_command(&mut txn, pos(at), &cmd(4_000, op))
                .unwrap()
                .response
        };
        let rejected_on = |r: CommandResponse| match r {
            CommandResponse::Rejected(Rejection::Invalid(v)) => v.field,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(
            rejected_on(apply(successor(&|p| p.version = 1))),
            "policy.version"
        );
        assert_eq!(
            rejected_on(apply(successor(&|p| p.threshold = 3))),
            "policy.key"
        );
        let forged = match successor(&|_| {}) {
            Operation::SetKeyPolicy(mut e) => {
                e.statement.approvals_needed = 1;
                e.statement.version = 7;
                Operation::SetKeyPolicy(e)
            }
            _ => unreachable!(),
        };
        assert_eq!(rejected_on(apply(forged)), "policy.admin");
        // The real successor, and a retry of it, which changes nothing more.
        let CommandResponse::Key(key) = apply(successor(&|_| {})) else {
            panic!("the successor was refused");
        };
        assert_eq!(key.policy.statement.version, 2);
        assert!(matches!(apply(successor(&|_| {})), CommandResponse::Key(_)));
        // The old initiator's approval no longer signs; bob's does.
        let signing = |approver: &ed25519_dalek::SigningKey, request_id: &str| {
            let mut s = CreateSigning {
                session_id: format!("sig-{request_id}"),
                key_id: "k1".into(),
                input: crate::model::SigningInput::Digest([7; 32]),
                request_id: Some(request_id.into()),
                deadline_ms: 9_000,
                approvals: Vec::new(),
                approvals_not_after_ms: 60_000,
                start: None,
            };
            s.approvals = vec![mpc_types::statement::sign(approver, &s.approval())];
            Operation::CreateSigning(s)
        };
        assert!(matches!(
            apply(signing(&initiator_key(), "r1")),
            CommandResponse::Rejected(Rejection::Unauthorised { .. })
        ));
        assert!(matches!(
            apply(signing(&party_key("bob"), "r2")),
            CommandResponse::Session { created: true, .. }
        ));
    }

    #[test]
    fn tokens_are_created_once_and_revoked_for_good() {
        let mut txn = state();
        let token = TokenRecord {
            token_id: "0123456789abcdef".into(),
            name: "ci".into(),
            role: crate::model::AccessRole::Signer,
            keys: vec!["k1".into(), "tag:env=prod".into()],
            secret_hash: [3; 32],
            created_by: "forged".into(),
            created_at_ms: 0,
            expires_at_ms: None,
            revoked_at_ms: Some(1),
        };
        let create = |t: TokenRecord| Command {
            at_ms: 10,
            actor: "client:admin".into(),
            op: Operation::CreateToken(t),
        };
        let created = apply_command(&mut txn, pos(1), &create(token.clone())).unwrap();
        let CommandResponse::Token(stored) = created.response else {
            panic!("{:?}", created.response)
        };
        // Stamped by apply, whatever the proposer sent.
        assert_eq!(stored.created_by, "client:admin");
        assert_eq!(stored.created_at_ms, 10);
        assert_eq!(stored.revoked_at_ms, None);
        let again = apply_command(&mut txn, pos(2), &create(token.clone())).unwrap();
        assert!(matches!(
            again.response,
            CommandResponse::Rejected(Rejection::AlreadyExists { .. })
        ));
        let revoke = Command {
            at_ms: 20,
            actor: "client:admin".into(),
            op: Operation::RevokeToken {
                token_id: token.token_id.clone(),
            },
        };
        apply_command(&mut txn, pos(3), &revoke).unwrap();
        let revoked: TokenRecord = load(&txn, Table::Tokens, &token.token_id, "token")
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(20));
        // Revoking again keeps the first time.
        let mut later = revoke.clone();
        later.at_ms = 30;
        apply_command(&mut txn, pos(4), &later).unwrap();
        let revoked: TokenRecord = load(&txn, Table::Tokens, &token.token_id, "token")
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(20));
        // A signer token must name keys; others must not.
        let mut unscoped = token.clone();
        unscoped.token_id = "1123456789abcdef".into();
        unscoped.keys.clear();
        let refused = apply_command(&mut txn, pos(5), &create(unscoped)).unwrap();
        assert!(matches!(refused.response, CommandResponse::Rejected(_)));
    }

    fn session_in(response: CommandResponse) -> SessionRecord {
        match response {
            CommandResponse::Session { session, .. } => *session,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    /// Presignature `ps1` of key k1 (made by [`make_key`]) for `signers`, ready: log
    /// positions 4 to 6.
    fn make_presignature(txn: &mut MemTxn, signers: &[String]) {
        let steps = [
            Operation::CreatePresign(CreatePresign {
                session_id: "ps1".into(),
                key_id: "k1".into(),
                signers: signers.to_vec(),
                deadline_ms: 60_000,
            }),
            Operation::StartSession {
                session_id: "ps1".into(),
                parties: signers.to_vec(),
                presignature_id: None,
            },
            Operation::CompleteSession {
                session_id: "ps1".into(),
                result: SessionResult::Presignature,
                address: None,
                reports: Vec::new(),
            },
        ];
        for (i, op) in steps.into_iter().enumerate() {
            let applied = apply_command(txn, pos(4 + i as u64), &cmd(4_000, op)).unwrap();
            session_in(applied.response);
        }
    }

    fn presignature_status(txn: &MemTxn, id: &str) -> Option<PresignatureStatus> {
        load::<PresignatureRecord>(
            txn,
            Table::Presignatures,
            &presignature_key("k1", id),
            "presignature",
        )
        .unwrap()
        .map(|p| p.status)
    }

    /// An approved signing of k1 (made by [`make_key`]) with a hashed message, which a
    /// presignature may serve.
    fn hashed_signing(request_id: &str, start: Option<SessionStart>) -> Operation {
        Operation::CreateSigning(approve(CreateSigning {
            session_id: format!("sig-{request_id}"),
            key_id: "k1".into(),
            input: crate::model::SigningInput::Message {
                message: request_id.as_bytes().to_vec(),
                hash: Some(crate::model::HashFunction::Sha256),
            },
            request_id: Some(request_id.into()),
            deadline_ms: 50_000,
            approvals: Vec::new(),
            approvals_not_after_ms: 0,
            start,
        }))
    }

    /// Applies commands at consecutive log positions, after those of
    /// [`key_with_presignature`].
    struct Log {
        at: u64,
    }

    impl Log {
        fn apply_at(
            &mut self,
            txn: &mut MemTxn,
            at_ms: u64,
            op: Operation,
        ) -> (LogPosition, CommandResponse) {
            self.at += 1;
            let applied = apply_command(txn, pos(self.at), &cmd(at_ms, op)).unwrap();
            (pos(self.at), applied.response)
        }

        fn apply(&mut self, txn: &mut MemTxn, at_ms: u64, op: Operation) -> CommandResponse {
            self.apply_at(txn, at_ms, op).1
        }
    }

    /// Key k1 ([`make_key`]) with presignature ps1 ready for p1 and p2, and the log after it.
    fn key_with_presignature() -> (MemTxn, Vec<String>, Log) {
        let mut txn = state();
        make_key(&mut txn);
        let signers = vec!["p1".to_string(), "p2".into()];
        make_presignature(&mut txn, &signers);
        (txn, signers, Log { at: 6 })
    }

    #[test]
    fn two_starts_naming_one_presignature_and_a_new_leaders_rerun_use_it_once() {
        let (mut txn, signers, mut log) = key_with_presignature();
        for request_id in ["a", "b"] {
            let created = session_in(log.apply(&mut txn, 5_000, hashed_signing(request_id, None)));
            assert_eq!(created.status, SessionStatus::Pending);
        }
        let start = |session_id: &str, presignature_id: Option<&str>| Operation::StartSession {
            session_id: session_id.into(),
            parties: signers.clone(),
            presignature_id: presignature_id.map(Into::into),
        };
        let unavailable = |response: CommandResponse, why: &str| {
            assert!(
                matches!(&response, CommandResponse::Rejected(Rejection::PresignatureUnavailable { reason, .. }) if reason.contains(why)),
                "{response:?}"
            );
        };
        // Two starts naming ps1 for two signings (two plans of one leader, or of an old and
        // a new leader) reach the log: the first takes it, the second is refused.
        let a = session_in(log.apply(&mut txn, 5_100, start("sig-a", Some("ps1"))));
        assert_eq!(a.status, SessionStatus::Running);
        assert_eq!(a.presignature_id.as_deref(), Some("ps1"));
        unavailable(
            log.apply(&mut txn, 5_100, start("sig-b", Some("ps1"))),
            "already used",
        );
        let b = load::<SessionRecord>(&txn, Table::Sessions, "sig-b", "session")
            .unwrap()
            .expect("sig-b is kept");
        assert_eq!(
            (b.status, b.presignature_id),
            (SessionStatus::Pending, None)
        );
        let used_by_a = Some(PresignatureStatus::Used {
            session_id: "sig-a".into(),
        });
        assert_eq!(presignature_status(&txn, "ps1"), used_by_a);
        // A new leader re-dispatches sig-a: never with a presignature, not even its own ...
        unavailable(
            log.apply(&mut txn, 6_000, start("sig-a", Some("ps1"))),
            "only a pending signing",
        );
        // ... but as a full signing: a new attempt, which keeps the record of what it used.
        let rerun = session_in(log.apply(&mut txn, 6_100, start("sig-a", None)));
        assert_eq!(rerun.status, SessionStatus::Running);
        assert_eq!(rerun.attempt, 1);
        assert_eq!(rerun.presignature_id.as_deref(), Some("ps1"));
        // The parties of the new attempt are not sent it: they sign in full.
        assert_eq!(a.attempt_presignature(), Some("ps1"));
        assert_eq!(rerun.attempt_presignature(), None);
        // ps1 serves nobody else, while sig-a runs or after it ended.
        unavailable(
            log.apply(&mut txn, 6_200, start("sig-b", Some("ps1"))),
            "already used",
        );
        let done = Operation::CompleteSession {
            session_id: "sig-a".into(),
            result: SessionResult::Signature(vec![4; 65]),
            address: None,
            reports: Vec::new(),
        };
        session_in(log.apply(&mut txn, 6_300, done));
        unavailable(
            log.apply(&mut txn, 6_400, start("sig-b", Some("ps1"))),
            "already used",
        );
        // A signing created with a start planned on ps1 is created, but waits for the
        // scheduler, without it.
        let with_ps1 = SessionStart {
            parties: signers.clone(),
            presignature_id: Some("ps1".into()),
        };
        let c = session_in(log.apply(&mut txn, 6_500, hashed_signing("c", Some(with_ps1))));
        assert_eq!(
            (c.status, c.presignature_id),
            (SessionStatus::Pending, None)
        );
        let b = session_in(log.apply(&mut txn, 6_600, start("sig-b", None)));
        assert_eq!(
            (b.status, b.presignature_id),
            (SessionStatus::Running, None)
        );
        assert_eq!(presignature_status(&txn, "ps1"), used_by_a);
        indexes_match(&txn);
    }

    #[test]
    fn a_new_presign_cannot_take_the_name_of_a_presignature_still_held() {
        let (mut txn, signers, mut log) = key_with_presignature();
        session_in(log.apply(&mut txn, 5_000, hashed_signing("a", None)));
        let start = Operation::StartSession {
            session_id: "sig-a".into(),
            parties: signers.clone(),
            presignature_id: Some("ps1".into()),
        };
        session_in(log.apply(&mut txn, 5_100, start));
        // The presign session goes; its presignature, used by sig-a, stays.
        let prune = Operation::Prune(Prune {
            cutoff_ms: 6_000,
            session_ids: vec!["ps1".into()],
            key_updates: Vec::new(),
        });
        assert!(matches!(
            log.apply(&mut txn, 7_000, prune),
            CommandResponse::Pruned { sessions: 1, .. }
        ));
        let used_by_a = Some(PresignatureStatus::Used {
            session_id: "sig-a".into(),
        });
        assert_eq!(presignature_status(&txn, "ps1"), used_by_a);
        let again = Operation::CreatePresign(CreatePresign {
            session_id: "ps1".into(),
            key_id: "k1".into(),
            signers: signers.clone(),
            deadline_ms: 60_000,
        });
        let refused = log.apply(&mut txn, 7_100, again);
        assert!(
            matches!(&refused, CommandResponse::Rejected(Rejection::AlreadyExists { kind, id })
                if kind == "presignature" && id == "ps1"),
            "{refused:?}"
        );
        assert!(txn.get(Table::Sessions, b"ps1").unwrap().is_none());
        assert_eq!(presignature_status(&txn, "ps1"), used_by_a);
    }

    #[test]
    fn a_disabled_key_signs_nothing_until_it_is_enabled_again() {
        let (mut txn, signers, mut log) = key_with_presignature();
        let set_status = |status: KeyStatus, update_id: &str| {
            Operation::UpdateKey(UpdateKey {
                key_id: "k1".into(),
                description: None,
                tags: None,
                status: Some(status),
                update_id: update_id.into(),
            })
        };
        let not_active = |response: &CommandResponse| {
            assert!(
                matches!(response, CommandResponse::Rejected(Rejection::KeyNotActive { key_id, status })
                    if key_id == "k1" && status == "disabled"),
                "{response:?}"
            );
        };
        // Waiting for its parties when the key is disabled.
        let (_, waiting) = log.apply_at(&mut txn, 4_500, hashed_signing("early", None));
        assert_eq!(session_in(waiting).status, SessionStatus::Pending);
        let (_, disabled) = log.apply_at(&mut txn, 5_000, set_status(KeyStatus::Disabled, "off"));
        assert!(
            matches!(&disabled, CommandResponse::Key(k) if k.status == KeyStatus::Disabled),
            "{disabled:?}"
        );
        let start = SessionStart {
            parties: signers.clone(),
            presignature_id: Some("ps1".into()),
        };
        for (request_id, start) in [("r1", None), ("r2", Some(start.clone()))] {
            let before = txn.0.clone();
            let (at, refused) = log.apply_at(&mut txn, 5_100, hashed_signing(request_id, start));
            not_active(&refused);
            // Nothing of it is kept but the audit entry of the refusal: no session, and no
            // idempotency record that a retry after re-enabling would find.
            let written: Vec<Table> = txn
                .0
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|((t, _), _)| *t)
                .collect();
            assert!(
                written
                    .iter()
                    .all(|t| matches!(t, Table::Audit | Table::AuditHead | Table::Indexes)),
                "{written:?}"
            );
            assert!(txn
                .get(Table::Sessions, format!("sig-{request_id}").as_bytes())
                .unwrap()
                .is_none());
            assert!(txn
                .get(Table::Idempotency, request_id.as_bytes())
                .unwrap()
                .is_none());
            let event: AuditEvent = decode(
                "audit",
                &txn.get(Table::Audit, &at.audit_key()).unwrap().unwrap(),
            )
            .unwrap();
            assert!(
                event.outcome.contains("disabled and cannot sign"),
                "{}",
                event.outcome
            );
            assert_eq!(event.key_id.as_deref(), Some("k1"));
        }
        // The signing that was waiting does not start either, with or without the
        // presignature, and the presignature stays available.
        for presignature_id in [None, Some("ps1".to_string())] {
            let (_, refused) = log.apply_at(
                &mut txn,
                5_200,
                Operation::StartSession {
                    session_id: "sig-early".into(),
                    parties: signers.clone(),
                    presignature_id,
                },
            );
            not_active(&refused);
        }
        let early: SessionRecord = load(&txn, Table::Sessions, "sig-early", "session")
            .unwrap()
            .unwrap();
        assert_eq!(early.status, SessionStatus::Pending);
        assert_eq!(
            presignature_status(&txn, "ps1"),
            Some(PresignatureStatus::Available)
        );
        // Enabled again, the same requests sign.
        log.apply_at(&mut txn, 6_000, set_status(KeyStatus::Active, "on"));
        let (_, created) = log.apply_at(&mut txn, 6_100, hashed_signing("r2", Some(start)));
        let created = session_in(created);
        assert_eq!(created.status, SessionStatus::Running);
        assert_eq!(created.presignature_id.as_deref(), Some("ps1"));
        let (_, started) = log.apply_at(
            &mut txn,
            6_200,
            Operation::StartSession {
                session_id: "sig-early".into(),
                parties: signers,
                presignature_id: None,
            },
        );
        assert_eq!(session_in(started).status, SessionStatus::Running);
        indexes_match(&txn);
    }

    #[test]
    fn invalid_commands_are_rejected_in_apply_too() {
        let mut txn = state();
        let mut bad = keygen_cmd("s1", "k1", None);
        if let Operation::CreateKeygen(k) = &mut bad.op {
            k.threshold = 9;
        }
        let applied = apply_command(&mut txn, pos(1), &bad).unwrap();
        assert!(matches!(
            applied.response,
            CommandResponse::Rejected(Rejection::Invalid(ref e)) if e.field == "threshold"
        ));
        assert!(txn.get(Table::Sessions, b"s1").unwrap().is_none());
    }
}

#[cfg(test)]
mod properties {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::strategy::Union;

    use super::tests::{self, MemTxn};
    use super::*;
    use crate::command::{
        CreateKeygen, CreateSigning, PrunedKeyUpdate, RegisterParty, SessionStart,
    };
    use crate::model::{AccessRole, Enrolment, HashFunction, Scheme, SessionFailure, SigningInput};

    /// How many kinds of [`Operation`] there are; [`kind`] numbers them.
    const KINDS: usize = 17;

    /// Each operation's number and the audit action its entry carries. Exhaustive, so that a
    /// new kind of command fails to compile here until the generator makes it too.
    fn kind(op: &Operation) -> (usize, &'static str) {
        match op {
            Operation::CreateKeygen(_) => (0, "session.create_keygen"),
            Operation::CreateSigning(_) => (1, "session.create_signing"),
            Operation::StartSession { .. } => (2, "session.start"),
            Operation::CompleteSession { .. } => (3, "session.complete"),
            Operation::FailSession { .. } => (4, "session.fail"),
            Operation::ExpireSession { .. } => (5, "session.expire"),
            Operation::UpdateKey(_) => (6, "key.update"),
            Operation::RegisterParty(_) => (7, "party.register"),
            Operation::SetPartyStatus { .. } => (8, "party.set_status"),
            Operation::CreatePresign(_) => (9, "session.create_presign"),
            Operation::CreateToken(_) => (10, "token.create"),
            Operation::RevokeToken { .. } => (11, "token.revoke"),
            Operation::EnrollParty(_) => (12, "party.enroll"),
            Operation::Prune(_) => (13, "retention.prune"),
            Operation::SetKeyPolicy(_) => (14, "key.set_policy"),
            Operation::Relay(r) => (15, r.action()),
            Operation::PruneRelayJobs(_) => (16, "retention.prune_relay_jobs"),
        }
    }

    /// When the `i`th generated command is stamped: after the setup, ten seconds apart.
    fn at_ms(i: usize) -> u64 {
        100_000 + i as u64 * 10_000
    }

    /// The ECDSA key that [`setup`] makes, with its two presignatures `ps0` and `ps1`.
    const KEY: &str = "k-e";

    /// A state the generated commands can reach deep from: p1..p3 enrolled, ECDSA key
    /// [`KEY`] of p1..p3 (2 of 3), two presignatures of p1 and p2 ready, and a signing `w0`
    /// waiting.
    fn setup() -> Vec<Command> {
        let signers = vec!["p1".to_string(), "p2".into()];
        let mut ops = vec![
            tests::with_policy(Operation::CreateKeygen(CreateKeygen {
                session_id: "g0".into(),
                key_id: KEY.into(),
                scheme: Scheme::EcdsaSecp256k1,
                threshold: 2,
                parties: vec!["p1".into(), "p2".into(), "p3".into()],
                request_id: None,
                description: String::new(),
                tags: BTreeMap::new(),
                deadline_ms: 90_000,
                policy: tests::policy_placeholder(),
            })),
            Operation::StartSession {
                session_id: "g0".into(),
                parties: vec!["p1".into(), "p2".into(), "p3".into()],
                presignature_id: None,
            },
            Operation::CompleteSession {
                session_id: "g0".into(),
                result: SessionResult::PublicKey(vec![2; 33]),
                address: None,
                reports: tests::reports("g0", KEY, &["p1", "p2", "p3"], &[2; 33]),
            },
        ];
        for ps in ["ps0", "ps1"] {
            ops.push(Operation::CreatePresign(CreatePresign {
                session_id: ps.into(),
                key_id: KEY.into(),
                signers: signers.clone(),
                deadline_ms: 90_000,
            }));
            ops.push(Operation::StartSession {
                session_id: ps.into(),
                parties: signers.clone(),
                presignature_id: None,
            });
            ops.push(Operation::CompleteSession {
                session_id: ps.into(),
                result: SessionResult::Presignature,
                address: None,
                reports: Vec::new(),
            });
        }
        // Waiting for its parties: a key disabled now must not start it later.
        ops.push(Operation::CreateSigning(tests::approve(CreateSigning {
            session_id: "w0".into(),
            key_id: KEY.into(),
            input: SigningInput::Message {
                message: b"wait".to_vec(),
                hash: Some(HashFunction::Keccak256),
            },
            request_id: Some("rw".into()),
            deadline_ms: 900_000,
            approvals: Vec::new(),
            approvals_not_after_ms: 0,
            start: None,
        })));
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| Command {
                at_ms: 1_000 + i as u64 * 1_000,
                actor: "setup".into(),
                op,
            })
            .collect()
    }

    /// A few ids, so that random commands collide on them often.
    fn session_id() -> impl Strategy<Value = String> {
        (0..6u8).prop_map(|i| format!("s{i}"))
    }

    /// A presign session's id, which is also its presignature's.
    fn presign_id() -> impl Strategy<Value = String> {
        prop_oneof![session_id(), Just("ps2".to_string())]
    }

    /// Any session: generated ones, and the setup's keygen, presigns and waiting signing.
    fn any_session_id() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => presign_id(),
            2 => Just("w0".to_string()),
            1 => Just("g0".to_string()),
            1 => Just("ps0".to_string()),
        ]
    }

    /// The setup's presignatures, or ones generated presigns may have made.
    fn presignature_id() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("ps0".to_string()),
            Just("ps1".to_string()),
            presign_id()
        ]
    }

    /// The setup's key, or those generated keygens may have made (`k-<session id>`).
    fn key_id() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just(KEY.to_string()),
            1 => session_id().prop_map(|s| format!("k-{s}")),
        ]
    }

    /// p1..p3 are enrolled at the start, p4 is not.
    fn party() -> impl Strategy<Value = String> {
        (1..=4u8).prop_map(|i| format!("p{i}"))
    }

    /// A party's identity key: its own, or a rotated one.
    fn identity(party: &str, rotated: bool) -> [u8; 32] {
        let seed = if rotated {
            format!("{party}-rotated")
        } else {
            party.to_owned()
        };
        tests::party_key(&seed).verifying_key().to_bytes()
    }

    /// Signer sets: a presignature's (p1, p2), another pair, all three, one with an outsider.
    fn signers() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            3 => Just(vec!["p1".to_string(), "p2".into()]),
            1 => Just(vec!["p2".to_string(), "p3".into()]),
            1 => Just(vec!["p1".to_string(), "p2".into(), "p3".into()]),
            1 => Just(vec!["p1".to_string(), "p4".into()]),
        ]
    }

    fn deadline() -> impl Strategy<Value = u64> {
        prop_oneof![Just(150_000u64), Just(400_000), Just(900_000)]
    }

    fn input() -> impl Strategy<Value = SigningInput> {
        prop_oneof![
            Just(SigningInput::Digest([1; 32])),
            Just(SigningInput::Message {
                message: b"pay".to_vec(),
                hash: Some(HashFunction::Keccak256),
            }),
            Just(SigningInput::Message {
                message: b"pay".to_vec(),
                hash: Some(HashFunction::Sha256),
            }),
            Just(SigningInput::Message {
                message: b"pay".to_vec(),
                hash: None,
            }),
        ]
    }

    fn op() -> impl Strategy<Value = Operation> {
        let request_id = || proptest::option::of((0..3u8).prop_map(|i| format!("r{i}")));
        let update_id = || (0..3u8).prop_map(|i| format!("u{i}"));
        let token_id = || {
            prop_oneof![
                Just("0123456789abcdef".to_string()),
                Just("fedcba9876543210".to_string()),
                Just("not-hex".to_string()),
            ]
        };
        let keygen = (
            session_id(),
            any::<bool>(),
            1..5u16,
            request_id(),
            deadline(),
        )
            .prop_map(|(session_id, ecdsa, threshold, request_id, deadline_ms)| {
                tests::with_policy(Operation::CreateKeygen(CreateKeygen {
                    key_id: format!("k-{session_id}"),
                    session_id,
                    scheme: if ecdsa {
                        Scheme::EcdsaSecp256k1
                    } else {
                        Scheme::SchnorrEd25519
                    },
                    threshold,
                    parties: vec!["p1".into(), "p2".into(), "p3".into()],
                    request_id,
                    description: String::new(),
                    tags: BTreeMap::new(),
                    deadline_ms,
                    policy: tests::policy_placeholder(),
                }))
            });
        let start = || {
            (signers(), proptest::option::of(presignature_id())).prop_map(
                |(parties, presignature_id)| SessionStart {
                    parties,
                    presignature_id,
                },
            )
        };
        let signing = (
            session_id(),
            key_id(),
            input(),
            request_id(),
            deadline(),
            proptest::option::of(start()),
        )
            .prop_map(
                |(session_id, key_id, input, request_id, deadline_ms, start)| {
                    Operation::CreateSigning(tests::approve(CreateSigning {
                        session_id,
                        key_id,
                        input,
                        request_id,
                        deadline_ms,
                        approvals: Vec::new(),
                        approvals_not_after_ms: 0,
                        start,
                    }))
                },
            );
        let start_session = (
            any_session_id(),
            signers(),
            proptest::option::of(presignature_id()),
        )
            .prop_map(
                |(session_id, parties, presignature_id)| Operation::StartSession {
                    session_id,
                    parties,
                    presignature_id,
                },
            );
        let complete = (any_session_id(), 0..3u8).prop_map(|(session_id, result)| {
            Operation::CompleteSession {
                session_id: session_id.clone(),
                result: match result {
                    0 => SessionResult::PublicKey(vec![3; 32]),
                    1 => SessionResult::Signature(vec![4; 64]),
                    _ => SessionResult::Presignature,
                },
                address: None,
                reports: tests::reports(
                    &session_id,
                    &format!("k-{session_id}"),
                    &["p1", "p2", "p3"],
                    &[3; 32],
                ),
            }
        });
        let fail = any_session_id().prop_map(|session_id| Operation::FailSession {
            session_id,
            failure: SessionFailure {
                reason: "timeout".into(),
                blamed_parties: Vec::new(),
            },
        });
        let expire =
            any_session_id().prop_map(|session_id| Operation::ExpireSession { session_id });
        let update_key = (
            key_id(),
            proptest::option::of(Just("cold".to_string())),
            proptest::option::of(Just(BTreeMap::from([(
                "env".to_string(),
                "prod".to_string(),
            )]))),
            proptest::option::of(prop_oneof![
                Just(KeyStatus::Active),
                Just(KeyStatus::Disabled)
            ]),
            update_id(),
        )
            .prop_map(|(key_id, description, tags, status, update_id)| {
                Operation::UpdateKey(UpdateKey {
                    key_id,
                    description,
                    tags,
                    status,
                    update_id,
                })
            });
        let register = (party(), any::<bool>()).prop_map(|(party_id, rotated)| {
            Operation::RegisterParty(RegisterParty {
                signing_public_key: identity(&party_id, rotated).to_vec(),
                encryption_public_key: vec![9; 32],
                endpoint: "test:1".into(),
                party_id,
            })
        });
        let set_status =
            (party(), any::<bool>()).prop_map(|(party_id, online)| Operation::SetPartyStatus {
                party_id,
                status: if online {
                    PartyStatus::Online
                } else {
                    PartyStatus::Offline
                },
            });
        let presign = (presign_id(), key_id(), signers(), deadline()).prop_map(
            |(session_id, key_id, signers, deadline_ms)| {
                Operation::CreatePresign(CreatePresign {
                    session_id,
                    key_id,
                    signers,
                    deadline_ms,
                })
            },
        );
        let create_token =
            (token_id(), any::<bool>(), any::<bool>()).prop_map(|(token_id, signer, scoped)| {
                Operation::CreateToken(TokenRecord {
                    token_id,
                    name: "ci".into(),
                    role: if signer {
                        AccessRole::Signer
                    } else {
                        AccessRole::Admin
                    },
                    keys: if scoped { vec![KEY.into()] } else { Vec::new() },
                    secret_hash: [3; 32],
                    created_by: String::new(),
                    created_at_ms: 0,
                    expires_at_ms: None,
                    revoked_at_ms: None,
                })
            });
        let revoke = token_id().prop_map(|token_id| Operation::RevokeToken { token_id });
        let enrol = (party(), any::<bool>()).prop_map(|(party_id, rotated)| {
            Operation::EnrollParty(Endorsed::new(
                &tests::admin_key(),
                Enrolment {
                    signing_public_key: identity(&party_id, rotated),
                    encryption_public_key: [9; 32],
                    party_id,
                },
            ))
        });
        let prune = (
            proptest::collection::vec(any_session_id(), 0..3),
            0u64..1_000_000,
            proptest::collection::vec(
                (update_id(), 0..MAX_COMMANDS).prop_map(|(update_id, i)| PrunedKeyUpdate {
                    update_id,
                    applied_at_ms: at_ms(i),
                }),
                0..2,
            ),
        )
            .prop_map(|(session_ids, cutoff_ms, key_updates)| {
                Operation::Prune(Prune {
                    cutoff_ms,
                    session_ids,
                    key_updates,
                })
            });
        // Successors of the setup key's policy (and policies of keys that may not exist):
        // another initiator, one of several versions, or other terms.
        let policy = (key_id(), 1..4u64, any::<bool>(), 2..4u16).prop_map(
            |(key_id, version, bob, threshold)| {
                let initiator = if bob {
                    tests::party_key("bob")
                } else {
                    tests::initiator_key()
                };
                Operation::SetKeyPolicy(Endorsed::new(
                    &tests::admin_key(),
                    KeyPolicy {
                        key_id,
                        scheme: Scheme::EcdsaSecp256k1.as_str().into(),
                        threshold,
                        parties: vec!["p1".into(), "p2".into(), "p3".into()],
                        initiators: vec![initiator.verifying_key().to_bytes()],
                        approvals_needed: 1,
                        version,
                    },
                ))
            },
        );
        let relay = relay_command().prop_map(Operation::Relay);
        let prune_relay = (
            proptest::collection::vec(relay_job_id(), 0..3),
            0..MAX_COMMANDS,
        )
            .prop_map(|(job_ids, i)| {
                Operation::PruneRelayJobs(crate::command::PruneRelayJobs {
                    cutoff_ms: at_ms(i),
                    job_ids,
                })
            });
        // The session commands weigh more: they are where the invariants are at risk.
        Union::new_weighted(vec![
            (2, relay.boxed()),
            (3, keygen.boxed()),
            (4, signing.boxed()),
            (4, start_session.boxed()),
            (3, complete.boxed()),
            (1, fail.boxed()),
            (1, expire.boxed()),
            (2, update_key.boxed()),
            (1, register.boxed()),
            (1, set_status.boxed()),
            (3, presign.boxed()),
            (1, create_token.boxed()),
            (1, revoke.boxed()),
            (1, enrol.boxed()),
            (2, prune.boxed()),
            (1, prune_relay.boxed()),
            (1, policy.boxed()),
        ])
    }

    /// The packets the generated relay commands are about.
    fn relay_packet(nonce: u64) -> crate::model::DiscoveredPacket {
        crate::model::DiscoveredPacket {
            src_eid: 30101,
            dst_eid: 30212,
            nonce,
            guid: [nonce as u8; 32],
            header: vec![1; crate::model::PACKET_HEADER_LEN],
            payload_hash: [7; 32],
            source_tx: [9; 32],
            source_block: nonce,
        }
    }

    /// The job of one of the generated packets.
    fn relay_job_id() -> impl Strategy<Value = crate::model::JobId> {
        (0..3u64).prop_map(|n| crate::model::JobId::of(&relay_packet(n)))
    }

    /// Relayer writes over a few packets, so that runs reach signed, leased, retried and
    /// verified jobs. Every command is the same relayer's ("prop"): what differs between
    /// relayers is covered by the relay module's own tests.
    fn relay_command() -> impl Strategy<Value = crate::relay::RelayCommand> {
        use crate::model::{SubmissionOutcome, Verdict};
        use crate::relay::RelayCommand;
        let packet = relay_packet;
        let job = relay_job_id;
        let discover = (proptest::collection::vec(0..3u64, 0..3), 0..100u64).prop_map(
            move |(nonces, scanned_to)| RelayCommand::Discover {
                src_eid: 30101,
                scanned_to,
                packets: nonces.into_iter().map(packet).collect(),
                expiration: 1_000,
            },
        );
        let verdict = (job(), 0..2u32, prop::option::of(1..4u8), 1..3u32).prop_map(
            |(job_id, attempt, signer, quorum)| RelayCommand::Verdict {
                job_id,
                attempt,
                verdict: match signer {
                    Some(s) => Verdict::Signed {
                        signer: [s; 20],
                        signature: vec![s; 65],
                        confirmations: 2,
                    },
                    None => Verdict::Rejected {
                        reason: "guid mismatch".into(),
                    },
                },
                quorum,
                signers: 3,
            },
        );
        let claim = (proptest::collection::vec(job(), 1..3), 1..50_000u64)
            .prop_map(|(job_ids, lease_ms)| RelayCommand::Claim { job_ids, lease_ms });
        let submitted =
            proptest::collection::vec(job(), 1..3).prop_map(|job_ids| RelayCommand::Submitted {
                job_ids,
                tx_hash: [5; 32],
                tx_nonce: 1,
            });
        let outcome = (job(), 0..3u8).prop_map(|(job_id, kind)| RelayCommand::Outcome {
            job_id,
            outcome: match kind {
                0 => SubmissionOutcome::Verified {
                    tx_hash: Some([5; 32]),
                },
                1 => SubmissionOutcome::Retry {
                    reason: "expired".into(),
                    expiration: 2_000,
                },
                _ => SubmissionOutcome::Failed {
                    reason: "gave up".into(),
                },
            },
        });
        prop_oneof![discover, verdict, claim, submitted, outcome]
    }

    /// Short scripts that take a session through its life (a keygen, a presign, a signing and
    /// its start), so that runs reach made keys, ready presignatures and signings that use
    /// them. Each command may still be refused by the state the run has reached.
    fn flow() -> impl Strategy<Value = Vec<Operation>> {
        let everyone = || vec!["p1".to_string(), "p2".into(), "p3".into()];
        let keygen = (session_id(), any::<bool>(), 2..4u16).prop_map(move |(s, ecdsa, t)| {
            let key_id = format!("k-{s}");
            let reports = tests::reports(&s, &key_id, &["p1", "p2", "p3"], &[3; 32]);
            vec![
                tests::with_policy(Operation::CreateKeygen(CreateKeygen {
                    session_id: s.clone(),
                    key_id,
                    scheme: if ecdsa {
                        Scheme::EcdsaSecp256k1
                    } else {
                        Scheme::SchnorrEd25519
                    },
                    threshold: t,
                    parties: everyone(),
                    request_id: None,
                    description: String::new(),
                    tags: BTreeMap::new(),
                    deadline_ms: 900_000,
                    policy: tests::policy_placeholder(),
                })),
                Operation::StartSession {
                    session_id: s.clone(),
                    parties: everyone(),
                    presignature_id: None,
                },
                Operation::CompleteSession {
                    session_id: s,
                    result: SessionResult::PublicKey(vec![3; 32]),
                    address: None,
                    reports,
                },
            ]
        });
        let presign = (presign_id(), key_id(), signers()).prop_map(|(s, key_id, signers)| {
            vec![
                Operation::CreatePresign(CreatePresign {
                    session_id: s.clone(),
                    key_id,
                    signers: signers.clone(),
                    deadline_ms: 900_000,
                }),
                Operation::StartSession {
                    session_id: s.clone(),
                    parties: signers,
                    presignature_id: None,
                },
                Operation::CompleteSession {
                    session_id: s,
                    result: SessionResult::Presignature,
                    address: None,
                    reports: Vec::new(),
                },
            ]
        });
        let signing = (
            session_id(),
            key_id(),
            input(),
            (0..6u8).prop_map(|i| format!("f{i}")),
            signers(),
            proptest::option::of(presignature_id()),
        )
            .prop_map(|(s, key_id, input, request_id, parties, presignature_id)| {
                vec![
                    Operation::CreateSigning(tests::approve(CreateSigning {
                        session_id: s.clone(),
                        key_id,
                        input,
                        request_id: Some(request_id),
                        deadline_ms: 900_000,
                        approvals: Vec::new(),
                        approvals_not_after_ms: 0,
                        start: None,
                    })),
                    Operation::StartSession {
                        session_id: s,
                        parties,
                        presignature_id,
                    },
                ]
            });
        prop_oneof![1 => keygen, 1 => presign, 2 => signing]
    }

    /// At most this many commands follow the setup in one run.
    const MAX_COMMANDS: usize = 120;

    /// A run: single commands of any kind, and [`flow`]s.
    fn run() -> impl Strategy<Value = Vec<Operation>> {
        proptest::collection::vec(
            prop_oneof![3 => op().prop_map(|op| vec![op]), 1 => flow()],
            1..40,
        )
        .prop_map(|steps| steps.into_iter().flatten().collect())
    }

    fn records<T: serde::de::DeserializeOwned>(
        txn: &MemTxn,
        table: Table,
        what: &'static str,
    ) -> BTreeMap<String, T> {
        txn.0
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    decode(what, v).unwrap(),
                )
            })
            .collect()
    }

    fn sessions(txn: &MemTxn) -> BTreeMap<String, SessionRecord> {
        records(txn, Table::Sessions, "session")
    }

    fn audit_events(txn: &MemTxn) -> BTreeMap<Vec<u8>, AuditEvent> {
        txn.0
            .iter()
            .filter(|((t, _), _)| *t == Table::Audit)
            .map(|((_, k), v)| (k.clone(), decode("audit", v).unwrap()))
            .collect()
    }

    /// What the audit entry of a command that answered `response` says.
    fn expected_outcome(response: &CommandResponse) -> String {
        match response {
            CommandResponse::Rejected(r) => format!("rejected: {r}"),
            CommandResponse::Session { created: false, .. } => {
                "ok: existing session returned".into()
            }
            _ => "ok".into(),
        }
    }

    /// Applies `cmd` at `at` and checks what one command may do: a command that breaks a
    /// stateless rule ([`Command::validate`]) changes nothing at all, not even the audit
    /// chain; any other (accepted or refused by the state) appends exactly one audit entry, at
    /// its own log position, chained to the previous head, saying what it was and how it
    /// ended. A presignature serves the first session that starts with it and no other: a
    /// session takes one only if it was available, and marks it used by that session. A
    /// signing starts only while its key is active. Returns whether an audit entry was
    /// written.
    fn apply_checked(
        txn: &mut MemTxn,
        at: LogPosition,
        cmd: &Command,
    ) -> Result<(Applied, bool), TestCaseError> {
        let before = txn.0.clone();
        let sessions_before = sessions(txn);
        let presignatures_before: BTreeMap<String, PresignatureRecord> =
            records(txn, Table::Presignatures, "presignature");
        let head_before = txn.get(Table::AuditHead, AUDIT_HEAD).unwrap();
        let events_before = audit_events(txn);
        let applied = apply_command(txn, at, cmd).unwrap();

        if let Err(invalid) = cmd.validate() {
            prop_assert_eq!(
                &applied.response,
                &CommandResponse::Rejected(Rejection::Invalid(invalid))
            );
            prop_assert!(txn.0 == before, "an invalid command wrote to the state");
            return Ok((applied, false));
        }

        let mut events = audit_events(txn);
        let Some(event) = events.remove(&at.audit_key()) else {
            return Err(TestCaseError::fail(format!(
                "no audit entry at {at:?} for {:?}",
                cmd.op
            )));
        };
        prop_assert_eq!(&events, &events_before, "other audit entries changed");
        prop_assert_eq!(event.log_index, at.index);
        prop_assert_eq!(event.position, at.position);
        prop_assert_eq!(event.at_ms, cmd.at_ms);
        prop_assert_eq!(&event.actor, &cmd.actor);
        prop_assert_eq!(event.action.as_str(), kind(&cmd.op).1);
        prop_assert_eq!(&event.outcome, &expected_outcome(&applied.response));
        let prev = head_before.map_or([0; 32], |h| <[u8; 32]>::try_from(h).unwrap());
        prop_assert_eq!(event.prev_hash, prev);
        prop_assert_eq!(event.hash, event.expected_hash());
        prop_assert_eq!(
            txn.get(Table::AuditHead, AUDIT_HEAD).unwrap(),
            Some(event.hash.to_vec())
        );

        let presignatures: BTreeMap<String, PresignatureRecord> =
            records(txn, Table::Presignatures, "presignature");
        for (id, session) in sessions(txn) {
            let earlier = sessions_before.get(&id);
            if let Some(p) = &session.presignature_id {
                if earlier.and_then(|s| s.presignature_id.as_ref()) != Some(p) {
                    // Taken in this very command: it was there for the taking, and now
                    // names this session.
                    let key = presignature_key(&session.key_id, p);
                    let was = presignatures_before.get(&key).map(|r| &r.status);
                    prop_assert_eq!(
                        was,
                        Some(&PresignatureStatus::Available),
                        "{} took {}",
                        id,
                        key
                    );
                    let now = presignatures.get(&key).map(|r| &r.status);
                    let used = PresignatureStatus::Used {
                        session_id: id.clone(),
                    };
                    prop_assert_eq!(now, Some(&used));
                }
            }
            let started = session.status == SessionStatus::Running
                && earlier.is_none_or(|s| {
                    s.status != SessionStatus::Running || s.attempt != session.attempt
                });
            if started && session.kind == SessionKind::Sign {
                let key: Option<KeyRecord> =
                    load(txn, Table::Keys, &session.key_id, "key").unwrap();
                prop_assert_eq!(
                    key.map(|k| k.status),
                    Some(KeyStatus::Active),
                    "signing {} started with its key not active",
                    id
                );
            }
        }
        // A used presignature stays used by the same session until a prune forgets it.
        for (key, record) in &presignatures_before {
            if matches!(record.status, PresignatureStatus::Used { .. }) {
                if let Some(now) = presignatures.get(key) {
                    prop_assert_eq!(
                        &now.status,
                        &record.status,
                        "used presignature {} changed",
                        key
                    );
                }
            }
        }
        Ok((applied, true))
    }

    proptest! {
        /// Whatever clients and leaders send, in whatever order, from a state with a key and
        /// presignatures: apply never fails on a healthy store, is deterministic, never lets
        /// a request id name two sessions, never moves a finished session, never lets a
        /// presignature serve two sessions, and writes exactly one audit entry per command
        /// that passes [`Command::validate`] (accepted or refused by the state), none for one
        /// that does not ([`apply_checked`]).
        #[test]
        fn apply_keeps_its_invariants(ops in run()) {
            let mut txn = MemTxn::default();
            let mut replay = MemTxn::default();
            tests::register_parties(&mut txn, &["p1", "p2", "p3"]);
            tests::register_parties(&mut replay, &["p1", "p2", "p3"]);
            let setup = setup();
            let generated = ops.into_iter().enumerate().map(|(i, op)| Command {
                at_ms: at_ms(i),
                actor: "prop".into(),
                op,
            });
            let mut finished: BTreeMap<String, SessionRecord> = BTreeMap::new();
            let (mut valid, mut refused) = (0usize, 0usize);
            for (i, cmd) in setup.iter().cloned().chain(generated).enumerate() {
                let at = LogPosition { index: i as u64 + 1, position: (i % 3) as u32 };
                let (applied, audited) = apply_checked(&mut txn, at, &cmd)?;
                if i < setup.len() {
                    prop_assert!(
                        !matches!(applied.response, CommandResponse::Rejected(_)),
                        "setup step {} refused: {:?}", i, applied.response
                    );
                }
                let again = apply_command(&mut replay, at, &cmd).unwrap();
                prop_assert_eq!(&applied.response, &again.response);
                valid += usize::from(audited);
                refused += usize::from(
                    audited && matches!(applied.response, CommandResponse::Rejected(_)),
                );
                let now = sessions(&txn);
                // A finished session never changes; a prune may forget it, and its id may
                // then name a new session.
                finished.retain(|id, _| now.contains_key(id));
                for (id, before) in &finished {
                    if let Some(after) = now.get(id) {
                        prop_assert_eq!(after, before, "finished session {} moved", id);
                    }
                }
                for (id, s) in now {
                    if s.status.is_terminal() {
                        finished.insert(id, s);
                    }
                }
            }
            prop_assert_eq!(&txn.0, &replay.0);

            let all = sessions(&txn);
            let mut seen = BTreeSet::new();
            let mut served = BTreeSet::new();
            for s in all.values() {
                if let Some(r) = &s.request_id {
                    prop_assert!(seen.insert(r.clone()), "request id {} names two sessions", r);
                    let record: IdempotencyRecord =
                        load(&txn, Table::Idempotency, r, "idempotency").unwrap().unwrap();
                    prop_assert_eq!(&record.session_id, &s.session_id);
                }
                if let Some(p) = &s.presignature_id {
                    let key = presignature_key(&s.key_id, p);
                    prop_assert!(served.insert(key.clone()), "presignature {} served two sessions", key);
                }
            }
            // The audit trail holds one entry per valid command, refusals included, and the
            // entries chain in log order.
            let events = audit_events(&txn);
            prop_assert_eq!(events.len(), valid);
            prop_assert_eq!(
                events.values().filter(|e| e.outcome.starts_with("rejected: ")).count(),
                refused
            );
            let mut prev = [0; 32];
            for e in events.values() {
                prop_assert_eq!(e.prev_hash, prev);
                prev = e.hash;
            }
            tests::indexes_match(&txn);
        }
    }

    /// The property is only as good as the states it reaches: the generated runs take
    /// presignatures, are refused them, re-dispatch running sessions, refuse to start a
    /// signing of a disabled key, make keys, complete presigns and prune. Counted over the
    /// same number of runs the property makes, from a fixed seed.
    #[test]
    fn the_generated_runs_reach_what_the_property_checks() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let strategy = run();
        let mut reached: BTreeMap<&str, usize> = BTreeMap::new();
        for _ in 0..Config::default().cases {
            let ops = strategy
                .new_tree(&mut runner)
                .expect("the generator makes a run")
                .current();
            let mut txn = MemTxn::default();
            tests::register_parties(&mut txn, &["p1", "p2", "p3"]);
            let generated = ops.into_iter().enumerate().map(|(i, op)| Command {
                at_ms: at_ms(i),
                actor: "prop".into(),
                op,
            });
            for (i, cmd) in setup().into_iter().chain(generated).enumerate() {
                let before = sessions(&txn);
                let at = LogPosition {
                    index: i as u64 + 1,
                    position: 0,
                };
                let response = apply_command(&mut txn, at, &cmd).unwrap().response;
                let what = match (&cmd.op, &response) {
                    (_, CommandResponse::Rejected(Rejection::KeyNotActive { .. })) => {
                        if matches!(cmd.op, Operation::StartSession { .. }) {
                            "a start refused for a disabled key"
                        } else {
                            "a signing refused for a disabled key"
                        }
                    }
                    (_, CommandResponse::Rejected(Rejection::PresignatureUnavailable { .. })) => {
                        "a presignature refused"
                    }
                    (Operation::StartSession { .. }, CommandResponse::Session { session, .. })
                        if session.attempt > 0
                            && before.get(&session.session_id).map(|s| s.attempt)
                                != Some(session.attempt) =>
                    {
                        "a running session started again"
                    }
                    (_, CommandResponse::Session { session, .. })
                        if session.presignature_id.is_some()
                            && before
                                .get(&session.session_id)
                                .is_none_or(|s| s.presignature_id.is_none()) =>
                    {
                        "a presignature taken"
                    }
                    (
                        Operation::CompleteSession { result, .. },
                        CommandResponse::Session { .. },
                    ) if i >= setup().len() => match result {
                        SessionResult::PublicKey(_) => "a key made",
                        SessionResult::Presignature => "a presign completed",
                        SessionResult::Signature(_) => "a signing completed",
                    },
                    (_, CommandResponse::Pruned { sessions, .. }) if *sessions > 0 => {
                        "sessions pruned"
                    }
                    (Operation::UpdateKey(_), CommandResponse::Key(_)) => "a key updated",
                    (Operation::SetKeyPolicy(_), CommandResponse::Key(_)) => "a policy set",
                    (Operation::EnrollParty(_), CommandResponse::Party(_)) => "a party enrolled",
                    (Operation::RegisterParty(_), CommandResponse::Party(_)) => {
                        "a party registered"
                    }
                    (Operation::CreateToken(_), CommandResponse::Token(_)) => "a token made",
                    _ => continue,
                };
                *reached.entry(what).or_default() += 1;
            }
        }
        let wanted = [
            "a start refused for a disabled key",
            "a signing refused for a disabled key",
            "a presignature refused",
            "a running session started again",
            "a presignature taken",
            "a key made",
            "a presign completed",
            "a signing completed",
            "sessions pruned",
            "a key updated",
            "a policy set",
            "a party enrolled",
            "a party registered",
            "a token made",
        ];
        for what in wanted {
            assert!(reached.contains_key(what), "never {what}: {reached:?}");
        }
        println!("{reached:#?}");
    }

    /// The generator makes every kind of command, so the property above covers them all.
    #[test]
    fn the_generator_makes_every_kind_of_command() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::{Config, TestRng, TestRunner};
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        let strategy = op();
        let mut seen = BTreeSet::new();
        for _ in 0..2_000 {
            let op = strategy
                .new_tree(&mut runner)
                .expect("the generator makes a command")
                .current();
            seen.insert(kind(&op).0);
        }
        assert_eq!(seen, (0..KINDS).collect::<BTreeSet<_>>());
    }
}
