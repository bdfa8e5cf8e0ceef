//! The leader's session scheduler.
//!
//! While this node leads, it hands every pending session to parties and drives it to an end:
//!
//! - **dispatch**: pick the parties (all key parties for keygen; `t` online ones for signing,
//!   a ready presignature's signer set when the request may use one), commit `StartSession`
//!   (which marks the presignature used in the same write), register the attempt with the
//!   router and send each party its assignment;
//! - **collect**: gather the parties' outcomes; verify a signature against the key (or
//!   combine partial signatures and verify the result) before committing it; fail the session
//!   with the reason and the blamed parties when a party reports an abort;
//! - **deadlines**: expire what runs out of time and tell its parties to stop;
//! - **presignatures**: keep a pool of them per ECDSA key, refilled in the background;
//! - **leader change**: a new leader re-dispatches running keygen and signing sessions under a
//!   new attempt (a signing session that had a presignature runs the full protocol: the
//!   presignature stays used), and fails interrupted presign sessions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_raft_store::command::{CreatePresign, PartyReport};
use mpc_raft_store::model::{
    KeyRecord, Scheme, SessionFailure, SessionKind, SessionRecord, SessionResult, SessionStatus,
    SigningPayload,
};
use mpc_raft_store::{CommandResponse, Operation, Rejection, SessionUpdate};
use tokio::sync::broadcast::error::RecvError;

use crate::api::convert;
use crate::gateway::PartyHub;
use crate::node::{now_ms, Coordinator};
use crate::CoordinatorError;

const ACTOR: &str = "scheduler";

/// A dispatched attempt and what its parties reported so far.
#[derive(Debug)]
struct Dispatch {
    session: SessionRecord,
    participants: Vec<String>,
    key: Option<KeyRecord>,
    /// The participants' Ed25519 identity keys, as the replicated party table holds them.
    identity_keys: HashMap<String, Vec<u8>>,
    public_keys: HashMap<String, Vec<u8>>,
    /// Keygen: each participant's signature over its report of the public key.
    reports: HashMap<String, Vec<u8>>,
    partials: HashMap<String, Vec<u8>>,
    stored: HashSet<String>,
}

#[derive(Debug, Default)]
struct Book {
    /// Running attempts by session id.
    runs: HashMap<String, Dispatch>,
    /// Sessions being dispatched right now (between choosing parties and the commit).
    dispatching: HashSet<String>,
    /// Pending sessions whose parties are not all online yet.
    waiting: HashMap<String, SessionRecord>,
    /// Presignatures promised to a session being dispatched.
    reserved_presignatures: HashSet<String>,
    /// Spreads full signings over the online parties.
    rotation: usize,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    node: Coordinator,
    hub: Arc<PartyHub>,
    book: Arc<Mutex<Book>>,
}

fn tss_scheme(scheme: Scheme) -> mpc_tss::Scheme {
    match scheme {
        Scheme::EcdsaSecp256k1 => mpc_tss::Scheme::EcdsaSecp256k1,
        Scheme::SchnorrEd25519 => mpc_tss::Scheme::SchnorrEd25519,
        Scheme::SchnorrBip340 => mpc_tss::Scheme::SchnorrBip340,
    }
}

fn tss_input(input: &SigningPayload) -> Result<mpc_tss::SigningInput, String> {
    Ok(match input {
        SigningPayload::Digest(d) => mpc_tss::SigningInput::Digest(
            d.as_slice()
                .try_into()
                .map_err(|_| "digest must be 32 bytes".to_owned())?,
        ),
        SigningPayload::Message { message, hash } => mpc_tss::SigningInput::Message {
            message: message.clone(),
            hash: hash.map(|h| match h {
                mpc_raft_store::model::MessageHash::Keccak256 => mpc_tss::HashFunction::Keccak256,
                mpc_raft_store::model::MessageHash::Sha256 => mpc_tss::HashFunction::Sha256,
            }),
        },
    })
}

impl Scheduler {
    pub fn new(node: Coordinator, hub: Arc<PartyHub>) -> Self {
        Self {
            node,
            hub,
            book: Arc::default(),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs for the life of the node; acts only while it leads.
    pub async fn run(self) {
        let mut outcomes = self.hub.outcomes();
        let mut updates = self.node.reader().subscribe();
        let mut metrics = self.node.raft().metrics();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut led_term: Option<u64> = None;
        let mut ticks = 0u64;
        loop {
            let term = self.node.leading_term();
            if term != led_term {
                if led_term.is_some() {
                    self.step_down();
                }
                led_term = term;
                if term.is_some() {
                    self.take_over().await;
                }
            }
            let leading = led_term.is_some();
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                update = updates.recv() => match update {
                    Ok(SessionUpdate::Changed(session)) if leading => self.on_change((*session).clone()),
                    Ok(SessionUpdate::Reset) | Err(RecvError::Lagged(_)) if leading => self.take_over().await,
                    Err(RecvError::Closed) => return,
                    _ => {}
                },
                Some((party, outcome)) = outcomes.recv() => if leading { self.on_outcome(&party, outcome) },
                _ = tick.tick() => if leading {
                    ticks += 1;
                    self.expire_overdue();
                    self.retry_waiting();
                    if ticks.is_multiple_of(4) {
                        self.refill_presignatures();
                    }
                },
                () = self.hub.attached.notified() => if leading { self.retry_waiting() },
            }
        }
    }

    fn step_down(&self) {
        tracing::info!("no longer leading: dropping scheduled sessions and party streams");
        let mut book = self.book();
        book.runs.clear();
        book.waiting.clear();
        book.dispatching.clear();
        book.reserved_presignatures.clear();
        drop(book);
        self.hub.router.disconnect_all();
    }

    /// Picks up every unfinished session: new ones get dispatched, interrupted ones
    /// re-dispatched or failed.
    async fn take_over(&self) {
        let active = match self.node.reader().active_sessions().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "reading active sessions failed");
                return;
            }
        };
        tracing::info!(
            sessions = active.len(),
            "leading: taking over unfinished sessions"
        );
        for session in active {
            let known = {
                let book = self.book();
                book.runs
                    .get(&session.session_id)
                    .map(|d| d.session.attempt)
            };
            match (session.status, known) {
                (SessionStatus::Running, Some(attempt)) if attempt == session.attempt => {}
                (SessionStatus::Running, _) if session.kind == SessionKind::Presign => {
                    self.fail(
                        &session.session_id,
                        "interrupted by a leader change; presign sessions are not resumed",
                        Vec::new(),
                    );
                }
                _ => self.on_change(session),
            }
        }
    }

    fn on_change(&self, session: SessionRecord) {
        let id = session.session_id.clone();
        if session.status.is_terminal() {
            let run = {
                let mut book = self.book();
                book.waiting.remove(&id);
                book.runs.remove(&id)
            };
            if let Some(run) = run {
                self.hub.router.end_run(&id);
                self.cancel(&run, "the session ended");
            }
            return;
        }
        // Running sessions this leader did not start are interrupted ones: run them again.
        let ours = {
            let book = self.book();
            book.dispatching.contains(&id)
                || book
                    .runs
                    .get(&id)
                    .is_some_and(|d| d.session.attempt == session.attempt)
        };
        if ours
            || (session.status == SessionStatus::Running && session.kind == SessionKind::Presign)
        {
            return;
        }
        self.book().dispatching.insert(id.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.dispatch(session.clone()).await;
            this.book().dispatching.remove(&id);
            match result {
                Ok(true) => {}
                Ok(false) => {
                    this.book().waiting.insert(id, session);
                }
                // The session moved on meanwhile (another attempt, or it ended): nothing to do.
                Err(CoordinatorError::Rejected(Rejection::InvalidTransition { .. })) => {}
                Err(e @ CoordinatorError::NotFound { .. }) => {
                    this.fail(&id, &format!("cannot dispatch: {e}"), Vec::new());
                }
                // Lost a race for a presignature, or the write timed out: try again.
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "dispatch failed; will retry");
                    this.book().waiting.insert(id, session);
                }
            }
        });
    }

    fn retry_waiting(&self) {
        let waiting: Vec<SessionRecord> = self.book().waiting.drain().map(|(_, s)| s).collect();
        for session in waiting {
            self.on_change(session);
        }
    }

    /// Chooses parties, commits the start and sends the assignments. Ok(false): not all
    /// needed parties are online yet.
    async fn dispatch(&self, session: SessionRecord) -> Result<bool, CoordinatorError> {
        let reader = self.node.reader();
        let key = match session.kind {
            SessionKind::Keygen => None,
            _ => Some(reader.key(&session.key_id).await?.ok_or_else(|| {
                CoordinatorError::NotFound {
                    what: "key",
                    id: session.key_id.clone(),
                }
            })?),
        };
        let mut presignature: Option<String> = None;
        let participants = match (&key, session.kind) {
            (None, _) => {
                if !session.parties.iter().all(|p| self.hub.router.is_online(p)) {
                    return Ok(false);
                }
                session.parties.clone()
            }
            (Some(_), SessionKind::Presign) => {
                if !session.parties.iter().all(|p| self.hub.router.is_online(p)) {
                    self.fail(
                        &session.session_id,
                        "a signer of the presignature is offline",
                        Vec::new(),
                    );
                    return Ok(true);
                }
                session.parties.clone()
            }
            (Some(key), _) => {
                let online: Vec<String> = key
                    .parties
                    .iter()
                    .filter(|p| self.hub.router.is_online(p))
                    .cloned()
                    .collect();
                let t = usize::from(key.threshold);
                if online.len() < t {
                    return Ok(false);
                }
                let may_presign = key.scheme == Scheme::EcdsaSecp256k1
                    && session.status == SessionStatus::Pending
                    && matches!(
                        session.signing_input,
                        Some(SigningPayload::Message { hash: Some(_), .. })
                    );
                let mut chosen = None;
                if may_presign {
                    for p in reader.available_presignatures(&key.key_id).await? {
                        if p.signers.iter().all(|s| online.contains(s))
                            && self
                                .book()
                                .reserved_presignatures
                                .insert(p.presignature_id.clone())
                        {
                            presignature = Some(p.presignature_id.clone());
                            chosen = Some(p.signers);
                            break;
                        }
                    }
                }
                match chosen {
                    Some(signers) => signers,
                    None => {
                        let start = {
                            let mut book = self.book();
                            book.rotation = book.rotation.wrapping_add(1);
                            book.rotation % online.len()
                        };
                        let mut rotated: Vec<String> =
                            online.iter().cycle().skip(start).take(t).cloned().collect();
                        // Keep key order within the set: indices are positions in the key.
                        rotated.sort_by_key(|p| key.parties.iter().position(|k| k == p));
                        rotated
                    }
                }
            }
        };

        let start = self.node.command(
            ACTOR.into(),
            Operation::StartSession {
                session_id: session.session_id.clone(),
                parties: participants.clone(),
                presignature_id: presignature.clone(),
            },
        );
        let written = self.node.write(start).await;
        if let Some(p) = &presignature {
            self.book().reserved_presignatures.remove(p);
        }
        let started = match written {
            Ok(CommandResponse::Session { session, .. }) => *session,
            Ok(other) => {
                return Err(CoordinatorError::Server(format!(
                    "start answered {other:?}"
                )))
            }
            Err(e) => return Err(e),
        };

        let generate_aux = match (&key, started.scheme) {
            (None, Scheme::EcdsaSecp256k1) => !self.group_has_ecdsa_key(&started.parties).await?,
            _ => false,
        };
        let mut identities = Vec::with_capacity(participants.len());
        let mut identity_keys = HashMap::with_capacity(participants.len());
        for p in &participants {
            let party = reader
                .party(p)
                .await?
                .ok_or_else(|| CoordinatorError::NotFound {
                    what: "party",
                    id: p.clone(),
                })?;
            identity_keys.insert(party.party_id.clone(), party.signing_public_key.clone());
            identities.push(pb::PartyIdentity {
                enrolled_by: Some(statements::signature_to(&party.enrolled_by)),
                party_id: party.party_id,
                signing_public_key: party.signing_public_key,
                encryption_public_key: party.encryption_public_key,
            });
        }
        let (digest, message, hash) = match &started.signing_input {
            Some(SigningPayload::Digest(d)) => (d.clone(), Vec::new(), String::new()),
            Some(SigningPayload::Message { message, hash }) => (
                Vec::new(),
                message.clone(),
                hash.map(|h| h.as_str().to_owned()).unwrap_or_default(),
            ),
            None => (Vec::new(), Vec::new(), String::new()),
        };
        let assignment = pb::Assignment {
            session_id: started.session_id.clone(),
            attempt: started.attempt,
            kind: convert::session_kind(started.kind) as i32,
            scheme: started.scheme.as_str().into(),
            key_id: started.key_id.clone(),
            threshold: u32::from(started.threshold),
            key_parties: key
                .as_ref()
                .map_or_else(|| started.parties.clone(), |k| k.parties.clone()),
            participants: participants.clone(),
            identities,
            generate_aux_info: generate_aux,
            digest,
            message,
            hash,
            presignature_id: presignature.clone().unwrap_or_default(),
            deadline_ms: started.deadline_ms,
            // Keygen: the policy it runs under; any other run: the key's current one.
            policy: started
                .policy
                .as_ref()
                .or(key.as_ref().map(|k| &k.policy))
                .map(statements::policy_to),
            approvals: started
                .approvals
                .iter()
                .map(statements::signature_to)
                .collect(),
            approvals_not_after_ms: started.approvals_not_after_ms,
            request_id: started.request_id.clone().unwrap_or_default(),
        };
        self.hub
            .router
            .start_run(&started.session_id, started.attempt, participants.clone());
        self.book().runs.insert(
            started.session_id.clone(),
            Dispatch {
                session: started.clone(),
                participants: participants.clone(),
                key,
                identity_keys,
                public_keys: HashMap::new(),
                reports: HashMap::new(),
                partials: HashMap::new(),
                stored: HashSet::new(),
            },
        );
        tracing::info!(
            session = %started.session_id,
            kind = started.kind.as_str(),
            attempt = started.attempt,
            parties = ?participants,
            presignature = ?presignature,
            "session dispatched"
        );
        for p in &participants {
            let message = pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Assignment(
                    assignment.clone(),
                )),
            };
            if !self.hub.router.send(p, message).await {
                self.fail(
                    &started.session_id,
                    &format!("party {p} went offline before its assignment"),
                    Vec::new(),
                );
                break;
            }
        }
        Ok(true)
    }

    async fn group_has_ecdsa_key(&self, parties: &[String]) -> Result<bool, CoordinatorError> {
        let mut token = None;
        loop {
            let (keys, next) = self.node.reader().keys(1000, token).await?;
            if keys
                .iter()
                .any(|k| k.scheme == Scheme::EcdsaSecp256k1 && k.parties == parties)
            {
                return Ok(true);
            }
            match next {
                Some(n) => token = Some(n),
                None => return Ok(false),
            }
        }
    }

    fn on_outcome(&self, party: &str, outcome: pb::SessionOutcome) {
        use pb::session_outcome::Result as R;
        let mut book = self.book();
        let Some(run) = book.runs.get_mut(&outcome.session_id) else {
            return;
        };
        if run.session.attempt != outcome.attempt || !run.participants.iter().any(|p| p == party) {
            return;
        }
        let session_id = outcome.session_id.clone();
        let decision = match outcome.result {
            None => return,
            Some(R::Failure(f)) => {
                let blamed: Vec<String> = f
                    .blamed_parties
                    .into_iter()
                    .filter(|b| run.participants.contains(b))
                    .collect();
                Decision::Fail(format!("{party}: {}", f.reason), blamed)
            }
            Some(R::PublicKey(pk)) => {
                let report = mpc_types::statement::KeygenReport {
                    session_id: &run.session.session_id,
                    key_id: &run.session.key_id,
                    public_key: &pk,
                };
                let signed = run.identity_keys.get(party).is_some_and(|key| {
                    mpc_types::statement::verifies_raw(key, &report, &outcome.report_signature)
                });
                if !signed {
                    Decision::Fail(
                        format!("{party} reported a public key without a valid signature"),
                        vec![party.to_owned()],
                    )
                } else {
                    run.reports
                        .insert(party.to_owned(), outcome.report_signature.clone());
                    run.public_keys.insert(party.to_owned(), pk);
                    if run.public_keys.len() < run.participants.len() {
                        return;
                    }
                    agreed_public_key(run)
                }
            }
            Some(R::Signature(signature)) => match verify(run, &signature) {
                Ok(()) => Decision::Complete(SessionResult::Signature(signature), None),
                Err(reason) => Decision::Fail(
                    format!("{party} returned a signature that does not verify: {reason}"),
                    vec![party.to_owned()],
                ),
            },
            Some(R::PartialSignature(partial)) => {
                run.partials.insert(party.to_owned(), partial);
                if run.partials.len() < run.participants.len() {
                    return;
                }
                match combine(run) {
                    Ok(signature) => Decision::Complete(SessionResult::Signature(signature), None),
                    Err(reason) => Decision::Fail(reason, Vec::new()),
                }
            }
            Some(R::PresignatureStored(_)) => {
                run.stored.insert(party.to_owned());
                if run.stored.len() < run.participants.len() {
                    return;
                }
                Decision::Complete(SessionResult::Presignature, None)
            }
        };
        let Some(run) = book.runs.remove(&session_id) else {
            return;
        };
        drop(book);
        self.hub.router.end_run(&session_id);
        match decision {
            Decision::Complete(result, address) => {
                let reports = run
                    .reports
                    .into_iter()
                    .map(|(party_id, signature)| PartyReport {
                        party_id,
                        signature,
                    })
                    .collect();
                self.write_outcome(Operation::CompleteSession {
                    session_id,
                    result,
                    address,
                    reports,
                });
            }
            Decision::Fail(reason, blamed) => {
                self.cancel(&run, &reason);
                self.fail(&session_id, &reason, blamed);
            }
        }
    }

    fn fail(&self, session_id: &str, reason: &str, blamed: Vec<String>) {
        let mut reason = reason.to_owned();
        reason.truncate(mpc_raft_store::command::MAX_REASON_LEN);
        self.write_outcome(Operation::FailSession {
            session_id: session_id.to_owned(),
            failure: SessionFailure {
                reason,
                blamed_parties: blamed,
            },
        });
    }

    /// Commits a session's end, retrying while the outcome is unknown (these transitions
    /// are idempotent, so a retry of a write that did commit is harmless).
    fn write_outcome(&self, op: Operation) {
        let node = self.node.clone();
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                let cmd = node.command(ACTOR.into(), op.clone());
                match node.write(cmd).await {
                    Ok(_) => return,
                    Err(CoordinatorError::Timeout(_)) | Err(CoordinatorError::NoLeader { .. })
                        if node.leading_term().is_some() =>
                    {
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a session outcome failed");
                        return;
                    }
                }
            }
        });
    }

    fn cancel(&self, run: &Dispatch, reason: &str) {
        let hub = self.hub.clone();
        let participants = run.participants.clone();
        let cancel = pb::Cancel {
            session_id: run.session.session_id.clone(),
            attempt: run.session.attempt,
            reason: reason.to_owned(),
        };
        tokio::spawn(async move {
            for p in participants {
                let message = pb::CoordinatorMessage {
                    body: Some(pb::coordinator_message::Body::Cancel(cancel.clone())),
                };
                hub.router.send(&p, message).await;
            }
        });
    }

    fn expire_overdue(&self) {
        let now = now_ms();
        let overdue: Vec<String> = {
            let mut book = self.book();
            let mut overdue: Vec<String> = book
                .runs
                .iter()
                .filter(|(_, d)| d.session.deadline_ms <= now)
                .map(|(id, _)| id.clone())
                .collect();
            overdue.extend(
                book.waiting
                    .iter()
                    .filter(|(_, s)| s.deadline_ms <= now)
                    .map(|(id, _)| id.clone()),
            );
            for id in &overdue {
                book.waiting.remove(id);
                if let Some(run) = book.runs.remove(id) {
                    self.hub.router.end_run(id);
                    self.cancel(&run, "the session expired");
                }
            }
            overdue
        };
        for session_id in overdue {
            self.write_outcome(Operation::ExpireSession { session_id });
        }
    }

    /// Tops up each ECDSA key's presignatures for the signer set a signing would pick now.
    fn refill_presignatures(&self) {
        let settings = &self.node.config().sessions;
        if settings.presignatures_per_key == 0 {
            return;
        }
        let in_flight: usize = self
            .book()
            .runs
            .values()
            .filter(|d| d.session.kind == SessionKind::Presign)
            .count();
        if in_flight >= settings.presign_concurrency {
            return;
        }
        let this = self.clone();
        let target = settings.presignatures_per_key;
        let room = settings.presign_concurrency - in_flight;
        tokio::spawn(async move {
            if let Err(e) = this.refill(target, room).await {
                tracing::debug!(error = %e, "presignature refill skipped");
            }
        });
    }

    async fn refill(&self, target: usize, mut room: usize) -> Result<(), CoordinatorError> {
        let reader = self.node.reader();
        let (keys, _) = reader.keys(1000, None).await?;
        for key in keys
            .into_iter()
            .filter(|k| k.scheme == Scheme::EcdsaSecp256k1)
        {
            if room == 0 {
                break;
            }
            let pending = self
                .book()
                .runs
                .values()
                .filter(|d| {
                    d.session.kind == SessionKind::Presign && d.session.key_id == key.key_id
                })
                .count();
            let available = reader.available_presignatures(&key.key_id).await?.len();
            if available + pending >= target {
                continue;
            }
            let signers: Vec<String> = key
                .parties
                .iter()
                .filter(|p| self.hub.router.is_online(p))
                .take(usize::from(key.threshold))
                .cloned()
                .collect();
            if signers.len() < usize::from(key.threshold) {
                continue;
            }
            let cmd = self.node.command(
                ACTOR.into(),
                Operation::CreatePresign(CreatePresign {
                    session_id: uuid::Uuid::now_v7().to_string(),
                    key_id: key.key_id.clone(),
                    signers,
                    deadline_ms: now_ms() + 120_000,
                }),
            );
            self.node.write(cmd).await?;
            room -= 1;
        }
        Ok(())
    }
}

enum Decision {
    Complete(SessionResult, Option<String>),
    Fail(String, Vec<String>),
}

/// Every participant reported a public key: complete when they all agree.
fn agreed_public_key(run: &Dispatch) -> Decision {
    let mut keys = run.public_keys.values();
    let first = keys.next().cloned().unwrap_or_default();
    if keys.any(|k| *k != first) {
        return Decision::Fail("the parties disagree on the public key".into(), Vec::new());
    }
    let address = (run.session.scheme == Scheme::EcdsaSecp256k1)
        .then(|| mpc_tss::ethereum_address(&first).ok())
        .flatten();
    Decision::Complete(SessionResult::PublicKey(first), address)
}

fn verify(run: &Dispatch, signature: &[u8]) -> Result<(), String> {
    let key = run.key.as_ref().ok_or("no key for a signing session")?;
    let input = tss_input(
        run.session
            .signing_input
            .as_ref()
            .ok_or("nothing was to be signed")?,
    )?;
    let scheme = tss_scheme(key.scheme);
    let signature = mpc_tss::Signature::from_bytes(scheme, signature).map_err(|e| e.to_string())?;
    mpc_tss::verify(scheme, &key.public_key, &input, &signature).map_err(|e| e.to_string())
}

fn combine(run: &Dispatch) -> Result<Vec<u8>, String> {
    let key = run.key.as_ref().ok_or("no key for a signing session")?;
    let input = tss_input(
        run.session
            .signing_input
            .as_ref()
            .ok_or("nothing was to be signed")?,
    )?;
    let mpc_tss::SigningInput::Message {
        message,
        hash: Some(hash),
    } = &input
    else {
        return Err("a presignature served a request without a message and hash".into());
    };
    let mut partials = Vec::with_capacity(run.participants.len());
    for p in &run.participants {
        let bytes = run
            .partials
            .get(p)
            .ok_or("a partial signature is missing")?;
        partials.push(
            mpc_tss::PartialSignature::from_bytes(bytes)
                .map_err(|e| format!("partial signature from {p}: {e}"))?,
        );
    }
    // combine() verifies the result against the key (k256) before returning it.
    let signature = mpc_tss::PartialSignature::combine(&partials, &key.public_key, message, *hash)
        .map_err(|e| format!("combining partial signatures: {e}"))?;
    Ok(signature.to_bytes())
}
