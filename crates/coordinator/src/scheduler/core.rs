//! The scheduler's decisions, without I/O.
//!
//! [`SessionScheduler`] takes [`Event`]s (a session committed, a party attached or gone, a
//! party's outcome, what a read returned, a tick, leadership gained or lost) and returns the
//! [`Action`]s they call for (read, propose, hand out assignments, cancel, record an end).
//! It owns every piece of run state the leader keeps; the runtime only carries actions out
//! and feeds their results back as events, so every rule here is testable by driving the
//! machine directly.
//!
//! A session costs little while it waits: until its start commits, the scheduler holds only
//! its [`SessionBrief`], never its payload; sessions short of online parties are indexed by
//! the parties they could use and looked at again only when one of those attaches; deadlines
//! sit in an ordered set, so a tick touches only what is due.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use mpc_raft_store::command::{CreatePresign, PartyReport, SessionStart, MAX_REASON_LEN};
use mpc_raft_store::model::{
    KeyRecord, PartyRecord, PresignatureRecord, Scheme, SessionFailure, SessionKind, SessionRecord,
    SessionStatus, SigningInput,
};
use mpc_raft_store::Operation;

use super::verdict::{self, Verdict};

/// How long a presign session may run before it is expired.
const PRESIGN_TIMEOUT_MS: u64 = 120_000;
/// How long a plan made for a signing being proposed holds its presignature: far beyond a
/// write's timeout, after which the entry either applied or never will.
const PLAN_LIFETIME_MS: u64 = 30_000;
/// Ticks between looks at the presignature pools when nothing else prompts one.
const REFILL_EVERY_TICKS: u64 = 4;
/// The window over which a key's use of presignatures raises its pool target.
const DEMAND_WINDOW_MS: u64 = 60_000;
/// A key's pool target grows with its demand up to this many times the configured one.
const MAX_TARGET_FACTOR: usize = 8;
/// A proposed presign session that has not shown up in the state by then never will.
const PROPOSAL_LIFETIME_MS: u64 = 30_000;

/// The scheduler's settings (from `[sessions]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Presignatures to keep ready per ECDSA key; 0 turns the pool off.
    pub presignatures_per_key: usize,
    /// Presign sessions running at once, over all keys.
    pub presign_concurrency: usize,
}

/// What a party reported about its part in a session attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyOutcome {
    pub session_id: String,
    pub attempt: u32,
    pub result: OutcomeResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeResult {
    /// The party aborted, naming the parties the protocol proved misbehaved.
    Failure {
        reason: String,
        blamed_parties: Vec<String>,
    },
    /// Keygen: the joint public key, with the party's signature over its report.
    PublicKey {
        public_key: Vec<u8>,
        report_signature: Vec<u8>,
    },
    Signature(Vec<u8>),
    /// A signing served from a presignature: this signer's share of the signature.
    PartialSignature(Vec<u8>),
    PresignatureStored,
}

/// What a dispatch needs from the replicated state, read by the runtime.
#[derive(Debug, Clone, Default)]
pub struct SessionContext {
    /// The key signed with (every kind but keygen).
    pub key: Option<KeyRecord>,
    /// Available presignatures of the key, when the load asked for them.
    pub presignatures: Vec<PresignatureRecord>,
    /// The records of every party the session could use.
    pub parties: Vec<PartyRecord>,
    /// Keygen: whether these parties already share an ECDSA key (and so its aux info).
    pub group_has_ecdsa_key: bool,
}

/// Why a read or a start did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The session moved on meanwhile (another attempt, or it ended): nothing to do.
    Superseded,
    /// Something the session needs does not exist: the session cannot run.
    Missing(String),
    /// A write timed out, a presignature was taken meanwhile, the store failed: try again.
    Transient(String),
}

/// One ECDSA key's presignature pool as the state holds it.
#[derive(Debug, Clone)]
pub struct PoolStock {
    pub key: KeyRecord,
    pub available: usize,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// This node became leader: `active` is every unfinished session, `online` the parties
    /// attached to it now.
    LeadershipGained {
        active: Vec<SessionRecord>,
        online: Vec<String>,
        now_ms: u64,
    },
    LeadershipLost,
    /// The state was replaced (snapshot) or changes were missed: every unfinished session.
    Resync {
        active: Vec<SessionRecord>,
    },
    SessionChanged(Box<SessionRecord>),
    PartyAttached(String),
    PartyDetached(String),
    Loaded {
        session_id: String,
        context: Box<SessionContext>,
    },
    LoadFailed {
        session_id: String,
        error: StartError,
    },
    /// `StartSession` committed: the record as it now stands.
    Started(Box<SessionRecord>),
    StartFailed {
        session_id: String,
        error: StartError,
    },
    /// A participant's stream was gone when its assignment was sent.
    Undelivered {
        session_id: String,
        attempt: u32,
        party: String,
    },
    Outcome {
        party: String,
        outcome: PartyOutcome,
    },
    Tick {
        now_ms: u64,
    },
    PoolStock(Vec<PoolStock>),
}

/// What planning a session's start needs of it: its record without the payload (a keygen's
/// description and tags, a signing's message and approvals, up to tens of KiB each), so that
/// the thousands of sessions a leader may hold waiting for parties cost a few hundred bytes
/// each. The full record comes back with the committed start ([`Event::Started`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionBrief {
    pub session_id: String,
    pub kind: SessionKind,
    pub scheme: Scheme,
    pub key_id: String,
    pub parties: Vec<String>,
    pub status: SessionStatus,
    pub deadline_ms: u64,
    /// Whether the session's input lets a presignature serve it.
    pub may_use_presignature: bool,
    /// Whether the current attempt signs with a presignature it already took.
    pub has_attempt_presignature: bool,
}

impl From<&SessionRecord> for SessionBrief {
    fn from(session: &SessionRecord) -> Self {
        Self {
            session_id: session.session_id.clone(),
            kind: session.kind,
            scheme: session.scheme,
            key_id: session.key_id.clone(),
            parties: session.parties.clone(),
            status: session.status,
            deadline_ms: session.deadline_ms,
            may_use_presignature: session
                .signing_input
                .as_ref()
                .is_some_and(SigningInput::may_use_presignature),
            has_attempt_presignature: session.attempt_presignature().is_some(),
        }
    }
}

/// Everything a participant needs to run its part of an attempt (the runtime turns it into
/// the wire message).
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The session as `StartSession` left it (attempt, participants, presignature).
    pub session: SessionRecord,
    /// Keygen: the session's parties; otherwise the key's, whose positions are the share
    /// indices.
    pub key_parties: Vec<String>,
    pub participants: Vec<String>,
    /// The participants' enrolled identities, in participant order.
    pub identities: Vec<PartyRecord>,
    /// Keygen of a group's first ECDSA key: make auxiliary info too.
    pub generate_aux_info: bool,
    /// The policy the run is checked against: keygen's own, or the key's current one.
    pub policy: Option<mpc_raft_store::model::Endorsed<mpc_raft_store::model::KeyPolicy>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Read what the session needs; answer with [`Event::Loaded`] or [`Event::LoadFailed`].
    Load {
        session: SessionBrief,
        presignatures: bool,
    },
    /// Propose `StartSession`; answer with [`Event::Started`] or [`Event::StartFailed`].
    Start {
        session_id: String,
        parties: Vec<String>,
        presignature_id: Option<String>,
    },
    /// Register the attempt with the router and send every participant its assignment;
    /// answer a participant that cannot be reached with [`Event::Undelivered`].
    Assign(Box<Assignment>),
    /// The attempt ended: the router stops carrying its envelopes.
    EndRun { session_id: String },
    /// Tell the participants to stop the attempt.
    Cancel {
        session_id: String,
        attempt: u32,
        participants: Vec<String>,
        reason: String,
    },
    /// Commit a session's end (complete, fail or expire), retrying while it is unknown
    /// whether it committed: these transitions are idempotent.
    Record(Box<Operation>),
    /// Propose a presign session.
    CreatePresign(CreatePresign),
    /// Read every ECDSA key's pool; answer with [`Event::PoolStock`].
    LoadPoolStock,
    /// Drop every party stream: parties follow the hint to the new leader.
    DisconnectAll,
}

/// A dispatched attempt and what its participants reported so far.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) session: SessionRecord,
    pub(super) participants: Vec<String>,
    pub(super) key: Option<KeyRecord>,
    /// The participants' Ed25519 identity keys.
    pub(super) identity_keys: HashMap<String, Vec<u8>>,
    pub(super) public_keys: HashMap<String, Vec<u8>>,
    /// Keygen: each participant's signature over its report of the public key.
    pub(super) reports: HashMap<String, Vec<u8>>,
    pub(super) partials: HashMap<String, Vec<u8>>,
    pub(super) stored: HashSet<String>,
}

/// A session between its load and its committed start.
#[derive(Debug)]
struct Starting {
    session: SessionBrief,
    /// Set once the load returned and the start is proposed.
    planned: Option<Planned>,
}

/// Who signs (or runs a keygen or presign), and the presignature a signing uses, if any.
#[derive(Debug)]
struct SignerChoice {
    parties: Vec<String>,
    presignature_id: Option<String>,
}

impl SignerChoice {
    fn without_presignature(parties: Vec<String>) -> Self {
        Self {
            parties,
            presignature_id: None,
        }
    }
}

#[derive(Debug)]
struct Planned {
    /// When it was planned: a plan whose entry never shows up is dropped after
    /// [`PLAN_LIFETIME_MS`].
    at_ms: u64,
    parties: Vec<String>,
    key: Option<KeyRecord>,
    identities: Vec<PartyRecord>,
    presignature_id: Option<String>,
    generate_aux_info: bool,
}

/// A session that cannot start yet.
#[derive(Debug)]
enum Parked {
    /// Fewer than `quorum` of `candidates` are online.
    Waiting {
        session: SessionBrief,
        candidates: Vec<String>,
        quorum: usize,
    },
    /// A start failed for a passing reason: try again at the next tick.
    Retry { session: SessionBrief },
}

impl Parked {
    fn session(&self) -> &SessionBrief {
        match self {
            Parked::Waiting { session, .. } | Parked::Retry { session } => session,
        }
    }
}

#[derive(Debug)]
pub struct SessionScheduler {
    settings: Settings,
    leading: bool,
    online: HashSet<String>,
    starting: HashMap<String, Starting>,
    /// Signings planned for the API to create already started, until their entry applies.
    planned_creates: HashMap<String, Planned>,
    runs: HashMap<String, Run>,
    parked: HashMap<String, Parked>,
    /// Waiting sessions by the offline parties that would let them start.
    waiting_on: HashMap<String, HashSet<String>>,
    /// Runs and parked sessions by deadline.
    deadlines: BTreeSet<(u64, String)>,
    /// Presignatures promised to a start not yet committed.
    reserved_presignatures: HashSet<String>,
    /// Spreads full signings over the online parties.
    rotation: usize,
    ticks: u64,
    now_ms: u64,
    pool_loading: bool,
    /// Presign sessions proposed and not yet seen in the state: key id and when.
    proposed_presigns: HashMap<String, (String, u64)>,
    /// When each key's recent signings took a presignature, oldest first.
    presignature_demand: HashMap<String, VecDeque<u64>>,
}

impl SessionScheduler {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            leading: false,
            online: HashSet::new(),
            starting: HashMap::new(),
            planned_creates: HashMap::new(),
            runs: HashMap::new(),
            parked: HashMap::new(),
            waiting_on: HashMap::new(),
            deadlines: BTreeSet::new(),
            reserved_presignatures: HashSet::new(),
            rotation: 0,
            ticks: 0,
            now_ms: 0,
            pool_loading: false,
            proposed_presigns: HashMap::new(),
            presignature_demand: HashMap::new(),
        }
    }

    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Sessions parked until a party attaches or a retry, and attempts running.
    pub fn counts(&self) -> (usize, usize) {
        (self.parked.len(), self.runs.len())
    }

    /// Plans a signing that is about to be proposed, so that its entry starts it too:
    /// the participants (and a presignature, reserved until the entry applies) when enough
    /// of the key's parties are online, or `None` to let it wait like any other.
    /// `presignatures` are the key's available ones, when the request may use one.
    pub fn plan_new_signing(
        &mut self,
        session_id: &str,
        key: KeyRecord,
        presignatures: &[PresignatureRecord],
        may_use_presignature: bool,
        parties: &[PartyRecord],
    ) -> Option<SessionStart> {
        if !self.leading || self.planned_creates.contains_key(session_id) {
            return None;
        }
        let SignerChoice {
            parties: participants,
            presignature_id,
        } = self.choose_signers(&key, presignatures, may_use_presignature)?;
        let identities = participants
            .iter()
            .map(|p| parties.iter().find(|r| &r.party_id == p).cloned())
            .collect::<Option<Vec<_>>>()?;
        if let Some(p) = &presignature_id {
            self.reserved_presignatures.insert(p.clone());
        }
        self.planned_creates.insert(
            session_id.to_owned(),
            Planned {
                at_ms: self.now_ms,
                parties: participants.clone(),
                key: Some(key),
                identities,
                presignature_id: presignature_id.clone(),
                generate_aux_info: false,
            },
        );
        Some(SessionStart {
            parties: participants,
            presignature_id,
        })
    }

    /// The planned signing was not proposed, or its proposal failed: release what it held.
    pub fn abandon_plan(&mut self, session_id: &str) {
        if let Some(planned) = self.planned_creates.remove(session_id) {
            if let Some(p) = planned.presignature_id {
                self.reserved_presignatures.remove(&p);
            }
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::LeadershipGained {
                active,
                online,
                now_ms,
            } => {
                self.reset();
                self.leading = true;
                self.now_ms = now_ms;
                self.online = online.into_iter().collect();
                self.take_over(active, &mut out);
            }
            Event::LeadershipLost => {
                if self.leading {
                    self.reset();
                    out.push(Action::DisconnectAll);
                }
            }
            _ if !self.leading => {}
            Event::Resync { active } => self.take_over(active, &mut out),
            Event::SessionChanged(session) => self.on_change(*session, &mut out),
            Event::PartyAttached(party) => self.on_attached(party, &mut out),
            Event::PartyDetached(party) => {
                self.online.remove(&party);
            }
            Event::Loaded {
                session_id,
                context,
            } => self.on_loaded(&session_id, *context, &mut out),
            Event::LoadFailed { session_id, error } => {
                if let Some(starting) = self.starting.remove(&session_id) {
                    self.on_start_error(starting.session, error, &mut out);
                }
            }
            Event::Started(session) => self.on_started(*session, &mut out),
            Event::StartFailed { session_id, error } => {
                if let Some(starting) = self.starting.remove(&session_id) {
                    if let Some(p) = starting.planned.and_then(|p| p.presignature_id) {
                        self.reserved_presignatures.remove(&p);
                    }
                    self.on_start_error(starting.session, error, &mut out);
                }
            }
            Event::Undelivered {
                session_id,
                attempt,
                party,
            } => {
                if self
                    .runs
                    .get(&session_id)
                    .is_some_and(|r| r.session.attempt == attempt)
                {
                    let reason = format!("party {party} went offline before its assignment");
                    self.end_run(&session_id, &reason, Vec::new(), &mut out);
                }
            }
            Event::Outcome { party, outcome } => self.on_outcome(&party, outcome, &mut out),
            Event::Tick { now_ms } => self.on_tick(now_ms, &mut out),
            Event::PoolStock(stock) => self.on_pool_stock(stock, &mut out),
        }
        out
    }

    fn reset(&mut self) {
        let settings = self.settings;
        *self = Self::new(settings);
    }

    /// Picks up every unfinished session: new ones get dispatched, interrupted ones
    /// re-dispatched under a new attempt or, for presign sessions, failed.
    fn take_over(&mut self, active: Vec<SessionRecord>, out: &mut Vec<Action>) {
        for session in active {
            let ours = self
                .runs
                .get(&session.session_id)
                .is_some_and(|r| r.session.attempt == session.attempt);
            match session.status {
                SessionStatus::Running if ours => {}
                SessionStatus::Running if session.kind == SessionKind::Presign => out.push(fail(
                    &session.session_id,
                    "interrupted by a leader change; presign sessions are not resumed",
                    Vec::new(),
                )),
                _ => self.on_change(session, out),
            }
        }
    }

    fn on_change(&mut self, session: SessionRecord, out: &mut Vec<Action>) {
        let id = session.session_id.clone();
        self.proposed_presigns.remove(&id);
        if session.kind == SessionKind::Presign && session.status.is_terminal() {
            self.want_refill(out);
        }
        if let Some(planned) = self.planned_creates.remove(&id) {
            if let Some(p) = &planned.presignature_id {
                self.reserved_presignatures.remove(p);
            }
            // The first start of a session is attempt 0.
            let started_as_planned = session.status == SessionStatus::Running
                && session.attempt == 0
                && session.parties == planned.parties
                && session.presignature_id == planned.presignature_id;
            if started_as_planned {
                self.begin_run(session, planned, out);
                return;
            }
            // Apply refused the start: the session goes the usual way.
        }
        if session.status.is_terminal() {
            self.unpark(&id);
            if let Some(run) = self.runs.remove(&id) {
                self.deadlines
                    .remove(&(run.session.deadline_ms, id.clone()));
                out.push(Action::EndRun {
                    session_id: id.clone(),
                });
                out.push(cancel(&run, "the session ended"));
            }
            return;
        }
        if self.starting.contains_key(&id) || self.parked.contains_key(&id) {
            return;
        }
        match self.runs.get(&id) {
            Some(run) if run.session.attempt == session.attempt => return,
            // An attempt this leader did not start replaced ours: stop ours.
            Some(_) => {
                if let Some(run) = self.runs.remove(&id) {
                    self.deadlines
                        .remove(&(run.session.deadline_ms, id.clone()));
                    out.push(Action::EndRun {
                        session_id: id.clone(),
                    });
                    out.push(cancel(&run, "superseded by another attempt"));
                }
            }
            None => {}
        }
        // A running presign session this leader did not start belongs to an earlier leader's
        // term; take_over fails those.
        if session.status == SessionStatus::Running && session.kind == SessionKind::Presign {
            return;
        }
        self.begin(SessionBrief::from(&session), out);
    }

    /// Starts the path to a dispatch: keygen and presign need all their parties, which the
    /// record names; signing needs the key to know its parties.
    fn begin(&mut self, session: SessionBrief, out: &mut Vec<Action>) {
        match session.kind {
            SessionKind::Keygen => {
                let parties = session.parties.clone();
                let quorum = parties.len();
                if !self.park_unless_ready(&session, &parties, quorum) {
                    return;
                }
            }
            SessionKind::Presign => {
                if !session.parties.iter().all(|p| self.online.contains(p)) {
                    out.push(fail(
                        &session.session_id,
                        "a signer of the presignature is offline",
                        Vec::new(),
                    ));
                    return;
                }
            }
            SessionKind::Sign | SessionKind::Refresh => {}
        }
        let presignatures = session.kind == SessionKind::Sign
            && session.scheme == Scheme::EcdsaSecp256k1
            && session.may_use_presignature;
        self.starting.insert(
            session.session_id.clone(),
            Starting {
                session: session.clone(),
                planned: None,
            },
        );
        out.push(Action::Load {
            session,
            presignatures,
        });
    }

    /// True when at least `quorum` of `candidates` are online; otherwise parks the session
    /// until one of the offline candidates attaches.
    fn park_unless_ready(
        &mut self,
        session: &SessionBrief,
        candidates: &[String],
        quorum: usize,
    ) -> bool {
        let online = candidates
            .iter()
            .filter(|p| self.online.contains(*p))
            .count();
        if online >= quorum {
            return true;
        }
        let id = &session.session_id;
        for party in candidates.iter().filter(|p| !self.online.contains(*p)) {
            self.waiting_on
                .entry(party.clone())
                .or_default()
                .insert(id.clone());
        }
        self.deadlines.insert((session.deadline_ms, id.clone()));
        self.parked.insert(
            id.clone(),
            Parked::Waiting {
                session: session.clone(),
                candidates: candidates.to_vec(),
                quorum,
            },
        );
        false
    }

    fn unpark(&mut self, id: &str) -> Option<SessionBrief> {
        let parked = self.parked.remove(id)?;
        if let Parked::Waiting { candidates, .. } = &parked {
            for party in candidates {
                if let Some(ids) = self.waiting_on.get_mut(party) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.waiting_on.remove(party);
                    }
                }
            }
        }
        let session = match parked {
            Parked::Waiting { session, .. } | Parked::Retry { session } => session,
        };
        self.deadlines.remove(&(session.deadline_ms, id.to_owned()));
        Some(session)
    }

    fn on_attached(&mut self, party: String, out: &mut Vec<Action>) {
        self.online.insert(party.clone());
        let Some(ids) = self.waiting_on.remove(&party) else {
            return;
        };
        for id in ids {
            let ready = match self.parked.get(&id) {
                Some(Parked::Waiting {
                    candidates, quorum, ..
                }) => {
                    candidates
                        .iter()
                        .filter(|p| self.online.contains(*p))
                        .count()
                        >= *quorum
                }
                _ => false,
            };
            if ready {
                if let Some(session) = self.unpark(&id) {
                    self.begin(session, out);
                }
            }
        }
    }

    fn on_loaded(&mut self, session_id: &str, context: SessionContext, out: &mut Vec<Action>) {
        let Some(starting) = self.starting.get(session_id) else {
            return;
        };
        if starting.planned.is_some() {
            return;
        }
        let session = starting.session.clone();
        let plan = match self.plan(&session, &context) {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                self.starting.remove(session_id);
                return;
            }
            Err(reason) => {
                self.starting.remove(session_id);
                out.push(fail(session_id, &reason, Vec::new()));
                return;
            }
        };
        let SignerChoice {
            parties: participants,
            presignature_id,
        } = plan;
        let mut identities = Vec::with_capacity(participants.len());
        for p in &participants {
            match context.parties.iter().find(|r| &r.party_id == p) {
                Some(record) => identities.push(record.clone()),
                None => {
                    self.starting.remove(session_id);
                    out.push(fail(
                        session_id,
                        &format!("cannot dispatch: party {p} is not registered"),
                        Vec::new(),
                    ));
                    return;
                }
            }
        }
        if let Some(p) = &presignature_id {
            self.reserved_presignatures.insert(p.clone());
        }
        let generate_aux_info = session.kind == SessionKind::Keygen
            && session.scheme == Scheme::EcdsaSecp256k1
            && !context.group_has_ecdsa_key;
        if let Some(starting) = self.starting.get_mut(session_id) {
            starting.planned = Some(Planned {
                at_ms: self.now_ms,
                parties: participants.clone(),
                key: context.key,
                identities,
                presignature_id: presignature_id.clone(),
                generate_aux_info,
            });
        }
        out.push(Action::Start {
            session_id: session_id.to_owned(),
            parties: participants,
            presignature_id,
        });
    }

    /// Chooses the participants (and a presignature) for a loaded session. `Ok(None)`: the
    /// session was parked until more parties attach.
    fn plan(
        &mut self,
        session: &SessionBrief,
        context: &SessionContext,
    ) -> Result<Option<SignerChoice>, String> {
        if session.kind == SessionKind::Keygen {
            return Ok(self
                .park_unless_ready(session, &session.parties, session.parties.len())
                .then(|| SignerChoice::without_presignature(session.parties.clone())));
        }
        let key = context
            .key
            .as_ref()
            .ok_or_else(|| format!("cannot dispatch: key {} not found", session.key_id))?;
        if session.kind == SessionKind::Presign {
            if !session.parties.iter().all(|p| self.online.contains(p)) {
                return Err("a signer of the presignature is offline".into());
            }
            return Ok(Some(SignerChoice::without_presignature(
                session.parties.clone(),
            )));
        }
        let t = usize::from(key.threshold);
        if !self.park_unless_ready(session, &key.parties, t) {
            return Ok(None);
        }
        // A re-dispatched signing never takes a presignature: the one it may have had stays
        // used, and a new one would be a second use of the request's approvals.
        let may_presign = session.status == SessionStatus::Pending && session.may_use_presignature;
        Ok(self.choose_signers(key, &context.presignatures, may_presign))
    }

    /// The signers of a signing with `key`: a ready presignature's signer set when one may
    /// serve and all its signers are online, otherwise the next `t` online parties in turn.
    /// `None` when fewer than `t` are online.
    fn choose_signers(
        &mut self,
        key: &KeyRecord,
        presignatures: &[PresignatureRecord],
        may_presign: bool,
    ) -> Option<SignerChoice> {
        let t = usize::from(key.threshold);
        let online: Vec<&String> = key
            .parties
            .iter()
            .filter(|p| self.online.contains(*p))
            .collect();
        if online.len() < t || t == 0 {
            return None;
        }
        if may_presign {
            let chosen = presignatures.iter().find(|p| {
                p.key_id == key.key_id
                    && p.signers.iter().all(|s| self.online.contains(s))
                    && !self.reserved_presignatures.contains(&p.presignature_id)
            });
            if let Some(p) = chosen {
                return Some(SignerChoice {
                    parties: p.signers.clone(),
                    presignature_id: Some(p.presignature_id.clone()),
                });
            }
        }
        self.rotation = self.rotation.wrapping_add(1);
        let start = self.rotation % online.len();
        let mut chosen: Vec<String> = online
            .iter()
            .cycle()
            .skip(start)
            .take(t)
            .map(|p| (*p).clone())
            .collect();
        // Keep key order within the set: indices are positions in the key.
        chosen.sort_by_key(|p| key.parties.iter().position(|k| k == p));
        Some(SignerChoice::without_presignature(chosen))
    }

    fn on_start_error(&mut self, session: SessionBrief, error: StartError, out: &mut Vec<Action>) {
        match error {
            StartError::Superseded => {}
            StartError::Missing(what) => {
                out.push(fail(
                    &session.session_id,
                    &format!("cannot dispatch: {what}"),
                    Vec::new(),
                ));
            }
            StartError::Transient(_) => {
                let id = session.session_id.clone();
                self.deadlines.insert((session.deadline_ms, id.clone()));
                self.parked.insert(id, Parked::Retry { session });
            }
        }
    }

    fn on_started(&mut self, session: SessionRecord, out: &mut Vec<Action>) {
        let Some(Starting {
            planned: Some(planned),
            ..
        }) = self.starting.remove(&session.session_id)
        else {
            return;
        };
        if let Some(p) = &planned.presignature_id {
            self.reserved_presignatures.remove(p);
        }
        self.begin_run(session, planned, out);
    }

    /// The start committed: track the run and hand out the assignments.
    fn begin_run(&mut self, session: SessionRecord, planned: Planned, out: &mut Vec<Action>) {
        let id = session.session_id.clone();
        let participants = session.parties.clone();
        let key_parties = planned
            .key
            .as_ref()
            .map_or_else(|| session.parties.clone(), |k| k.parties.clone());
        let policy = session
            .policy
            .clone()
            .or_else(|| planned.key.as_ref().map(|k| k.policy.clone()));
        let identity_keys = planned
            .identities
            .iter()
            .map(|p| (p.party_id.clone(), p.signing_public_key.clone()))
            .collect();
        if session.attempt_presignature().is_some() {
            self.presignature_demand
                .entry(session.key_id.clone())
                .or_default()
                .push_back(self.now_ms);
            self.want_refill(out);
        }
        self.deadlines.insert((session.deadline_ms, id.clone()));
        self.runs.insert(
            id,
            Run {
                session: session.clone(),
                participants: participants.clone(),
                key: planned.key,
                identity_keys,
                public_keys: HashMap::new(),
                reports: HashMap::new(),
                partials: HashMap::new(),
                stored: HashSet::new(),
            },
        );
        out.push(Action::Assign(Box::new(Assignment {
            session,
            key_parties,
            participants,
            identities: planned.identities,
            generate_aux_info: planned.generate_aux_info,
            policy,
        })));
    }

    fn on_outcome(&mut self, party: &str, outcome: PartyOutcome, out: &mut Vec<Action>) {
        let Some(run) = self.runs.get_mut(&outcome.session_id) else {
            return;
        };
        if run.session.attempt != outcome.attempt || !run.participants.iter().any(|p| p == party) {
            return;
        }
        let session_id = outcome.session_id;
        match verdict::judge(run, party, outcome.result) {
            Verdict::Pending => {}
            Verdict::Complete { result, address } => {
                let Some(run) = self.runs.remove(&session_id) else {
                    return;
                };
                self.deadlines
                    .remove(&(run.session.deadline_ms, session_id.clone()));
                out.push(Action::EndRun {
                    session_id: session_id.clone(),
                });
                let reports = run
                    .reports
                    .into_iter()
                    .map(|(party_id, signature)| PartyReport {
                        party_id,
                        signature,
                    })
                    .collect();
                out.push(Action::Record(Box::new(Operation::CompleteSession {
                    session_id,
                    result,
                    address,
                    reports,
                })));
            }
            Verdict::Fail { reason, blamed } => self.end_run(&session_id, &reason, blamed, out),
        }
    }

    /// Ends a run that failed: the router drops it, its parties stop, the failure commits.
    fn end_run(
        &mut self,
        session_id: &str,
        reason: &str,
        blamed: Vec<String>,
        out: &mut Vec<Action>,
    ) {
        if let Some(run) = self.runs.remove(session_id) {
            self.deadlines
                .remove(&(run.session.deadline_ms, session_id.to_owned()));
            out.push(Action::EndRun {
                session_id: session_id.to_owned(),
            });
            out.push(cancel(&run, reason));
        }
        out.push(fail(session_id, reason, blamed));
    }

    fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        self.now_ms = now_ms;
        self.ticks += 1;
        while self
            .deadlines
            .first()
            .is_some_and(|(deadline, _)| *deadline <= now_ms)
        {
            let Some((_, id)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(run) = self.runs.remove(&id) {
                out.push(Action::EndRun {
                    session_id: id.clone(),
                });
                out.push(cancel(&run, "the session expired"));
            }
            self.unpark(&id);
            out.push(Action::Record(Box::new(Operation::ExpireSession {
                session_id: id,
            })));
        }
        let stale: Vec<String> = self
            .planned_creates
            .iter()
            .filter(|(_, p)| p.at_ms.saturating_add(PLAN_LIFETIME_MS) <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.abandon_plan(&id);
        }
        let retries: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| matches!(p, Parked::Retry { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in retries {
            if let Some(session) = self.unpark(&id) {
                self.begin(session, out);
            }
        }
        self.proposed_presigns
            .retain(|_, (_, at)| at.saturating_add(PROPOSAL_LIFETIME_MS) > now_ms);
        for times in self.presignature_demand.values_mut() {
            while times
                .front()
                .is_some_and(|t| t.saturating_add(DEMAND_WINDOW_MS) <= now_ms)
            {
                times.pop_front();
            }
        }
        self.presignature_demand
            .retain(|_, times| !times.is_empty());
        if self.ticks.is_multiple_of(REFILL_EVERY_TICKS) {
            self.want_refill(out);
        }
    }

    /// Asks for the pools' stock when a presign session could start now: the pool is on and
    /// there is room under the refill concurrency.
    fn want_refill(&mut self, out: &mut Vec<Action>) {
        if self.settings.presignatures_per_key > 0
            && !self.pool_loading
            && self.presigns_in_flight(None) < self.refill_concurrency()
        {
            self.pool_loading = true;
            out.push(Action::LoadPoolStock);
        }
    }

    /// How many presign sessions may run at once now. Signings come first: while a full
    /// ECDSA signing is starting or running, the pools get one session at a time, and only
    /// for a key with none ready ([`Self::on_pool_stock`]), so that a steady stream of full
    /// signings is not slowed by the pool, yet a signing from a message still finds one.
    fn refill_concurrency(&self) -> usize {
        if self.full_signings_busy() {
            self.settings.presign_concurrency.min(1)
        } else {
            self.settings.presign_concurrency
        }
    }

    /// Whether an ECDSA signing without a presignature is starting or running: the parties'
    /// cores are better spent on it than on the pool.
    fn full_signings_busy(&self) -> bool {
        let full = |kind: SessionKind, scheme: Scheme, has_presignature: bool| {
            kind == SessionKind::Sign && scheme == Scheme::EcdsaSecp256k1 && !has_presignature
        };
        self.runs.values().any(|r| {
            full(
                r.session.kind,
                r.session.scheme,
                r.session.attempt_presignature().is_some(),
            )
        }) || self.starting.values().any(|s| {
            full(
                s.session.kind,
                s.session.scheme,
                s.session.has_attempt_presignature,
            ) && s
                .planned
                .as_ref()
                .is_none_or(|p| p.presignature_id.is_none())
        })
    }

    /// The pool a key should hold: the configured size, or more while signings draw on it
    /// faster (as many as were used over the last minute, up to a bound).
    fn pool_target(&self, key_id: &str) -> usize {
        let configured = self.settings.presignatures_per_key;
        let recent = self
            .presignature_demand
            .get(key_id)
            .map_or(0, VecDeque::len);
        recent.clamp(configured, configured.saturating_mul(MAX_TARGET_FACTOR))
    }

    /// Presign sessions between their creation and their end (for one key, or all).
    fn presigns_in_flight(&self, key_id: Option<&str>) -> usize {
        let matches = |kind: SessionKind, key: &str| {
            kind == SessionKind::Presign && key_id.is_none_or(|k| key == k)
        };
        let proposed = self
            .proposed_presigns
            .values()
            .filter(|(k, _)| key_id.is_none_or(|id| k == id))
            .count();
        proposed
            + self
                .runs
                .values()
                .filter(|r| matches(r.session.kind, &r.session.key_id))
                .count()
            + self
                .starting
                .values()
                .filter(|s| matches(s.session.kind, &s.session.key_id))
                .count()
            + self
                .parked
                .values()
                .filter(|p| matches(p.session().kind, &p.session().key_id))
                .count()
    }

    /// Tops up each ECDSA key's pool for a signer set that is online now.
    fn on_pool_stock(&mut self, stock: Vec<PoolStock>, out: &mut Vec<Action>) {
        self.pool_loading = false;
        let busy = self.full_signings_busy();
        let mut room = self
            .refill_concurrency()
            .saturating_sub(self.presigns_in_flight(None));
        for PoolStock { key, available } in stock {
            if room == 0 {
                break;
            }
            if key.scheme != Scheme::EcdsaSecp256k1 {
                continue;
            }
            let in_flight = self.presigns_in_flight(Some(&key.key_id));
            let mut missing = if busy {
                usize::from(available == 0 && in_flight == 0)
            } else {
                self.pool_target(&key.key_id)
                    .saturating_sub(available + in_flight)
            };
            while missing > 0 && room > 0 {
                // The same rotation as full signings, so the pool's work spreads over the
                // parties and so do the signings it later serves.
                let Some(SignerChoice {
                    parties: signers, ..
                }) = self.choose_signers(&key, &[], false)
                else {
                    break;
                };
                let session_id = uuid::Uuid::now_v7().to_string();
                self.proposed_presigns
                    .insert(session_id.clone(), (key.key_id.clone(), self.now_ms));
                out.push(Action::CreatePresign(CreatePresign {
                    session_id,
                    key_id: key.key_id.clone(),
                    signers,
                    deadline_ms: self.now_ms + PRESIGN_TIMEOUT_MS,
                }));
                missing -= 1;
                room -= 1;
            }
        }
    }
}

fn fail(session_id: &str, reason: &str, blamed_parties: Vec<String>) -> Action {
    let mut reason = reason.to_owned();
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Action::Record(Box::new(Operation::FailSession {
        session_id: session_id.to_owned(),
        failure: SessionFailure {
            reason,
            blamed_parties,
        },
    }))
}

fn cancel(run: &Run, reason: &str) -> Action {
    Action::Cancel {
        session_id: run.session.session_id.clone(),
        attempt: run.session.attempt,
        participants: run.participants.clone(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ed25519_dalek::{Signer, SigningKey};
    use mpc_raft_store::model::{
        Endorsed, HashFunction, KeyPolicy, KeyStatus, PartyStatus, PresignatureStatus,
        SessionResult, Signed,
    };

    use super::*;

    const T0: u64 = 1_000_000;

    fn settings() -> Settings {
        Settings {
            presignatures_per_key: 2,
            presign_concurrency: 1,
        }
    }

    fn names(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn admin() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn identity(party: &str) -> SigningKey {
        let mut seed = [0u8; 32];
        seed[..party.len()].copy_from_slice(party.as_bytes());
        SigningKey::from_bytes(&seed)
    }

    fn party(id: &str) -> PartyRecord {
        PartyRecord {
            party_id: id.into(),
            signing_public_key: identity(id).verifying_key().to_bytes().to_vec(),
            encryption_public_key: vec![9; 32],
            endpoint: String::new(),
            status: PartyStatus::Online,
            last_seen_ms: 0,
            registered_at_ms: 0,
            enrolled_by: Signed {
                signer: admin().verifying_key().to_bytes(),
                signature: [0; 64],
            },
            enrolled_at_ms: 0,
        }
    }

    fn policy(key_id: &str, scheme: Scheme, parties: &[&str]) -> Endorsed<KeyPolicy> {
        Endorsed::new(
            &admin(),
            KeyPolicy {
                key_id: key_id.into(),
                scheme: scheme.as_str().into(),
                threshold: 2,
                parties: names(parties),
                initiators: Vec::new(),
                approvals_needed: 0,
                version: 1,
            },
        )
    }

    fn key(key_id: &str, scheme: Scheme, public_key: Vec<u8>) -> KeyRecord {
        KeyRecord {
            key_id: key_id.into(),
            scheme,
            threshold: 2,
            parties: names(&["p1", "p2", "p3"]),
            public_key,
            address: None,
            status: KeyStatus::Active,
            description: String::new(),
            tags: BTreeMap::new(),
            keygen_session_id: "kg".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
            policy: policy(key_id, scheme, &["p1", "p2", "p3"]),
        }
    }

    fn session(id: &str, kind: SessionKind, scheme: Scheme) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            kind,
            scheme,
            key_id: "k1".into(),
            threshold: 2,
            parties: Vec::new(),
            signing_input: None,
            attempt: 0,
            presignature_id: None,
            status: SessionStatus::Pending,
            result: None,
            failure: None,
            request_id: None,
            requested_by: "client:test".into(),
            key_description: String::new(),
            key_tags: BTreeMap::new(),
            created_at_ms: T0,
            updated_at_ms: T0,
            deadline_ms: T0 + 60_000,
            started_at_ms: None,
            finished_at_ms: None,
            policy: None,
            approvals: Vec::new(),
            approvals_not_after_ms: 0,
        }
    }

    fn keygen(id: &str) -> SessionRecord {
        let mut s = session(id, SessionKind::Keygen, Scheme::SchnorrEd25519);
        s.parties = names(&["p1", "p2", "p3"]);
        s.policy = Some(policy("k1", Scheme::SchnorrEd25519, &["p1", "p2", "p3"]));
        s
    }

    fn ecdsa_signing(id: &str, message_with_hash: bool) -> SessionRecord {
        let mut s = session(id, SessionKind::Sign, Scheme::EcdsaSecp256k1);
        s.signing_input = Some(if message_with_hash {
            SigningInput::Message {
                message: b"pay 1".to_vec(),
                hash: Some(HashFunction::Keccak256),
            }
        } else {
            SigningInput::Digest([1; 32])
        });
        s
    }

    fn presignature(id: &str, signers: &[&str]) -> PresignatureRecord {
        PresignatureRecord {
            presignature_id: id.into(),
            key_id: "k1".into(),
            signers: names(signers),
            status: PresignatureStatus::Available,
            created_at_ms: 0,
        }
    }

    fn changed(session: SessionRecord) -> Event {
        Event::SessionChanged(Box::new(session))
    }

    fn leader(online: &[&str]) -> SessionScheduler {
        let mut s = SessionScheduler::new(settings());
        let actions = s.handle(Event::LeadershipGained {
            active: Vec::new(),
            online: names(online),
            now_ms: T0,
        });
        assert!(actions.is_empty(), "{actions:?}");
        s
    }

    fn context(key: Option<KeyRecord>, presignatures: Vec<PresignatureRecord>) -> SessionContext {
        SessionContext {
            key,
            presignatures,
            parties: ["p1", "p2", "p3"].into_iter().map(party).collect(),
            group_has_ecdsa_key: false,
        }
    }

    fn loaded(id: &str, context: SessionContext) -> Event {
        Event::Loaded {
            session_id: id.into(),
            context: Box::new(context),
        }
    }

    /// The start the scheduler proposes for a session it was handed and then fed `context`.
    fn start_of(
        s: &mut SessionScheduler,
        session: SessionRecord,
        context: SessionContext,
    ) -> Option<(Vec<String>, Option<String>)> {
        let id = session.session_id.clone();
        let actions = s.handle(changed(session));
        assert!(
            matches!(actions.as_slice(), [Action::Load { .. }]),
            "{actions:?}"
        );
        s.handle(loaded(&id, context))
            .into_iter()
            .find_map(|a| match a {
                Action::Start {
                    parties,
                    presignature_id,
                    ..
                } => Some((parties, presignature_id)),
                _ => None,
            })
    }

    /// Drives a session to running: committed start and the assignment sent.
    fn run(
        s: &mut SessionScheduler,
        session: SessionRecord,
        context: SessionContext,
    ) -> SessionRecord {
        let (parties, presignature_id) =
            start_of(s, session.clone(), context).expect("a start is proposed");
        // As apply does it: the first start keeps attempt 0, a re-dispatch raises it.
        let mut started = session;
        if started.status == SessionStatus::Running {
            started.attempt += 1;
        }
        started.status = SessionStatus::Running;
        started.parties = parties;
        started.presignature_id = presignature_id;
        let actions = s.handle(Event::Started(Box::new(started.clone())));
        assert!(
            matches!(actions.as_slice(), [Action::Assign(a)] if a.session == started),
            "{actions:?}"
        );
        started
    }

    fn recorded(actions: &[Action]) -> Vec<&Operation> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(op) => Some(&**op),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_keygen_waits_for_its_parties_at_no_cost_and_starts_when_the_last_attaches() {
        let mut s = leader(&["p1"]);
        assert!(s.handle(changed(keygen("kg1"))).is_empty());
        assert_eq!(s.counts(), (1, 0));
        // Ticks and unrelated parties do not touch it.
        for i in 0..20 {
            assert!(s
                .handle(Event::Tick { now_ms: T0 + i })
                .iter()
                .all(|a| matches!(a, Action::LoadPoolStock)));
        }
        assert!(s.handle(Event::PartyAttached("p9".into())).is_empty());
        assert!(s.handle(Event::PartyAttached("p2".into())).is_empty());
        let actions = s.handle(Event::PartyAttached("p3".into()));
        assert!(
            matches!(actions.as_slice(), [Action::Load { session, presignatures: false }] if session.session_id == "kg1"),
            "{actions:?}"
        );
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn a_party_that_leaves_before_the_load_returns_parks_the_keygen_again() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let actions = s.handle(changed(keygen("kg1")));
        assert!(matches!(actions.as_slice(), [Action::Load { .. }]));
        s.handle(Event::PartyDetached("p2".into()));
        assert!(s
            .handle(loaded("kg1", context(None, Vec::new())))
            .is_empty());
        let actions = s.handle(Event::PartyAttached("p2".into()));
        assert!(
            matches!(actions.as_slice(), [Action::Load { .. }]),
            "{actions:?}"
        );
    }

    #[test]
    fn full_signings_rotate_over_the_online_parties_in_key_order() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let mut sets = HashSet::new();
        for i in 0..3 {
            let (parties, presignature) = start_of(
                &mut s,
                ecdsa_signing(&format!("s{i}"), false),
                context(Some(k.clone()), Vec::new()),
            )
            .expect("a start");
            assert_eq!(presignature, None);
            assert_eq!(parties.len(), 2);
            let mut sorted = parties.clone();
            sorted.sort_by_key(|p| k.parties.iter().position(|x| x == p));
            assert_eq!(parties, sorted, "signers keep key order");
            sets.insert(parties);
        }
        assert_eq!(sets.len(), 3, "every pair takes a turn: {sets:?}");
    }

    #[test]
    fn a_signing_short_of_threshold_waits_for_a_key_party() {
        let mut s = leader(&["p1"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        assert_eq!(
            start_of(
                &mut s,
                ecdsa_signing("s1", false),
                context(Some(k), Vec::new())
            ),
            None
        );
        assert_eq!(s.counts(), (1, 0));
        let actions = s.handle(Event::PartyAttached("p3".into()));
        assert!(
            matches!(actions.as_slice(), [Action::Load { .. }]),
            "{actions:?}"
        );
    }

    #[test]
    fn a_presignature_serves_only_a_hashed_message_and_never_two_signings() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let pool = vec![
            presignature("offline-signer", &["p1", "p4"]),
            presignature("ps1", &["p2", "p3"]),
        ];
        // A raw digest runs the full protocol even with a presignature ready.
        let (_, chosen) = start_of(
            &mut s,
            ecdsa_signing("digest", false),
            context(Some(k.clone()), pool.clone()),
        )
        .expect("a start");
        assert_eq!(chosen, None);
        // Loads ask for presignatures only when one may serve.
        let actions = s.handle(changed(ecdsa_signing("m1", true)));
        assert!(matches!(
            actions.as_slice(),
            [Action::Load {
                presignatures: true,
                ..
            }]
        ));
        let actions = s.handle(loaded("m1", context(Some(k.clone()), pool.clone())));
        assert!(
            matches!(actions.as_slice(), [Action::Start { presignature_id: Some(p), parties, .. }]
                if p == "ps1" && *parties == names(&["p2", "p3"])),
            "{actions:?}"
        );
        // A second signing loaded from the same (not yet updated) state does not get ps1.
        let (_, chosen) = start_of(
            &mut s,
            ecdsa_signing("m2", true),
            context(Some(k.clone()), pool.clone()),
        )
        .expect("a start");
        assert_eq!(chosen, None);
        // A failed start releases the reservation.
        s.handle(Event::StartFailed {
            session_id: "m1".into(),
            error: StartError::Transient("timeout".into()),
        });
        let (_, chosen) =
            start_of(&mut s, ecdsa_signing("m3", true), context(Some(k), pool)).expect("a start");
        assert_eq!(chosen.as_deref(), Some("ps1"));
    }

    #[test]
    fn a_failed_start_is_retried_at_the_next_tick_and_a_superseded_one_dropped() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        start_of(
            &mut s,
            ecdsa_signing("s1", false),
            context(Some(k.clone()), Vec::new()),
        );
        s.handle(Event::StartFailed {
            session_id: "s1".into(),
            error: StartError::Transient("timeout".into()),
        });
        let actions = s.handle(Event::Tick { now_ms: T0 + 1 });
        assert!(
            matches!(actions.as_slice(), [Action::Load { session, .. }] if session.session_id == "s1"),
            "{actions:?}"
        );
        s.handle(loaded("s1", context(Some(k), Vec::new())));
        s.handle(Event::StartFailed {
            session_id: "s1".into(),
            error: StartError::Superseded,
        });
        assert_eq!(s.counts(), (0, 0));
        assert!(s.handle(Event::Tick { now_ms: T0 + 2 }).is_empty());
    }

    #[test]
    fn blame_names_only_participants_and_the_run_is_cancelled() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let started = run(
            &mut s,
            ecdsa_signing("s1", false),
            context(Some(k), Vec::new()),
        );
        let reporter = started.parties[0].clone();
        let outsider = if started.parties.contains(&"p1".to_owned()) {
            if started.parties.contains(&"p2".to_owned()) {
                "p3"
            } else {
                "p2"
            }
        } else {
            "p1"
        };
        let actions = s.handle(Event::Outcome {
            party: reporter.clone(),
            outcome: PartyOutcome {
                session_id: "s1".into(),
                attempt: started.attempt,
                result: OutcomeResult::Failure {
                    reason: "bad proof".into(),
                    blamed_parties: vec![
                        started.parties[1].clone(),
                        outsider.into(),
                        "nobody".into(),
                    ],
                },
            },
        });
        assert!(actions.iter().any(|a| matches!(a, Action::EndRun { .. })));
        assert!(actions.iter().any(
            |a| matches!(a, Action::Cancel { participants, .. } if *participants == started.parties)
        ));
        match recorded(&actions).as_slice() {
            [Operation::FailSession { failure, .. }] => {
                assert_eq!(failure.blamed_parties, vec![started.parties[1].clone()]);
                assert!(failure.reason.starts_with(&reporter), "{}", failure.reason);
            }
            other => panic!("expected one failure, got {other:?}"),
        }
    }

    #[test]
    fn reports_from_outsiders_or_old_attempts_are_ignored() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let started = run(
            &mut s,
            ecdsa_signing("s1", false),
            context(Some(k), Vec::new()),
        );
        let outsider = ["p1", "p2", "p3"]
            .into_iter()
            .find(|p| !started.parties.contains(&(*p).to_owned()))
            .unwrap_or("p3");
        let failure = OutcomeResult::Failure {
            reason: "no".into(),
            blamed_parties: Vec::new(),
        };
        for (party, attempt) in [
            (outsider, started.attempt),
            (started.parties[0].as_str(), started.attempt + 1),
        ] {
            let actions = s.handle(Event::Outcome {
                party: party.into(),
                outcome: PartyOutcome {
                    session_id: "s1".into(),
                    attempt,
                    result: failure.clone(),
                },
            });
            assert!(actions.is_empty(), "{actions:?}");
        }
        assert_eq!(s.counts(), (0, 1));
    }

    #[test]
    fn a_signature_is_committed_only_when_it_verifies() {
        let signer = SigningKey::from_bytes(&[3; 32]);
        let k = key(
            "k1",
            Scheme::SchnorrEd25519,
            signer.verifying_key().to_bytes().to_vec(),
        );
        let mut s = leader(&["p1", "p2", "p3"]);
        let mut signing = session("s1", SessionKind::Sign, Scheme::SchnorrEd25519);
        signing.signing_input = Some(SigningInput::Message {
            message: b"hello".to_vec(),
            hash: None,
        });
        let started = run(&mut s, signing, context(Some(k), Vec::new()));
        let forged = signer.sign(b"something else").to_bytes().to_vec();
        let outcome = |signature: Vec<u8>| PartyOutcome {
            session_id: "s1".into(),
            attempt: started.attempt,
            result: OutcomeResult::Signature(signature),
        };
        let actions = s.handle(Event::Outcome {
            party: started.parties[0].clone(),
            outcome: outcome(forged),
        });
        match recorded(&actions).as_slice() {
            [Operation::FailSession { failure, .. }] => {
                assert_eq!(failure.blamed_parties, vec![started.parties[0].clone()]);
            }
            other => panic!("a forged signature must fail the session: {other:?}"),
        }

        let mut again = session("s2", SessionKind::Sign, Scheme::SchnorrEd25519);
        again.signing_input = Some(SigningInput::Message {
            message: b"hello".to_vec(),
            hash: None,
        });
        let k = key(
            "k1",
            Scheme::SchnorrEd25519,
            signer.verifying_key().to_bytes().to_vec(),
        );
        let started = run(&mut s, again, context(Some(k), Vec::new()));
        let good = signer.sign(b"hello").to_bytes().to_vec();
        let actions = s.handle(Event::Outcome {
            party: started.parties[1].clone(),
            outcome: PartyOutcome {
                session_id: "s2".into(),
                ..outcome(good.clone())
            },
        });
        assert!(
            matches!(recorded(&actions).as_slice(),
                [Operation::CompleteSession { result: SessionResult::Signature(sig), .. }] if *sig == good),
            "{actions:?}"
        );
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn a_keygen_completes_when_every_party_signed_the_same_key() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let started = run(&mut s, keygen("kg1"), context(None, Vec::new()));
        let public_key = vec![5; 32];
        let report = |p: &str, public_key: &[u8]| {
            let statement = mpc_types::statement::KeygenReport {
                session_id: "kg1",
                key_id: "k1",
                public_key,
            };
            Event::Outcome {
                party: p.into(),
                outcome: PartyOutcome {
                    session_id: "kg1".into(),
                    attempt: started.attempt,
                    result: OutcomeResult::PublicKey {
                        public_key: public_key.to_vec(),
                        report_signature: mpc_types::statement::sign(&identity(p), &statement)
                            .signature
                            .to_vec(),
                    },
                },
            }
        };
        assert!(s.handle(report("p1", &public_key)).is_empty());
        assert!(s.handle(report("p2", &public_key)).is_empty());
        let actions = s.handle(report("p3", &public_key));
        match recorded(&actions).as_slice() {
            [Operation::CompleteSession {
                result: SessionResult::PublicKey(k),
                reports,
                ..
            }] => {
                assert_eq!(*k, public_key);
                assert_eq!(reports.len(), 3);
            }
            other => panic!("expected the key to complete: {other:?}"),
        }

        // A report signed by another party's identity is refused and blamed.
        let started = run(&mut s, keygen("kg2"), context(None, Vec::new()));
        let statement = mpc_types::statement::KeygenReport {
            session_id: "kg2",
            key_id: "k1",
            public_key: &public_key,
        };
        let actions = s.handle(Event::Outcome {
            party: "p1".into(),
            outcome: PartyOutcome {
                session_id: "kg2".into(),
                attempt: started.attempt,
                result: OutcomeResult::PublicKey {
                    public_key: public_key.clone(),
                    report_signature: mpc_types::statement::sign(&identity("p2"), &statement)
                        .signature
                        .to_vec(),
                },
            },
        });
        assert!(
            matches!(recorded(&actions).as_slice(), [Operation::FailSession { failure, .. }] if failure.blamed_parties == ["p1"]),
            "{actions:?}"
        );
    }

    #[test]
    fn overdue_sessions_expire_whether_waiting_or_running() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let started = run(
            &mut s,
            ecdsa_signing("running", false),
            context(Some(k), Vec::new()),
        );
        s.handle(Event::PartyDetached("p1".into()));
        s.handle(Event::PartyDetached("p2".into()));
        let mut late = keygen("waiting");
        late.deadline_ms = T0 + 10_000;
        s.handle(changed(late));
        assert_eq!(s.counts(), (1, 1));

        let actions = s.handle(Event::Tick { now_ms: T0 + 9_999 });
        assert!(recorded(&actions).is_empty(), "{actions:?}");
        let actions = s.handle(Event::Tick {
            now_ms: T0 + 10_000,
        });
        assert!(
            matches!(recorded(&actions).as_slice(), [Operation::ExpireSession { session_id }] if session_id == "waiting"),
            "{actions:?}"
        );
        let actions = s.handle(Event::Tick {
            now_ms: started.deadline_ms,
        });
        assert!(actions.iter().any(
            |a| matches!(a, Action::Cancel { reason, .. } if reason == "the session expired")
        ));
        assert!(
            matches!(recorded(&actions).as_slice(), [Operation::ExpireSession { session_id }] if session_id == "running"),
            "{actions:?}"
        );
        assert_eq!(s.counts(), (0, 0));
        // The waiting session is gone from the party index too.
        assert!(s.handle(Event::PartyAttached("p1".into())).is_empty());
    }

    #[test]
    fn a_new_leader_reruns_interrupted_signings_without_their_presignature_and_fails_presigns() {
        let mut s = SessionScheduler::new(settings());
        let mut signing = ecdsa_signing("s1", true);
        signing.status = SessionStatus::Running;
        signing.attempt = 1;
        signing.parties = names(&["p1", "p2"]);
        signing.presignature_id = Some("ps1".into());
        let mut presign = session("ps2", SessionKind::Presign, Scheme::EcdsaSecp256k1);
        presign.status = SessionStatus::Running;
        presign.attempt = 1;
        presign.parties = names(&["p1", "p2"]);
        let actions = s.handle(Event::LeadershipGained {
            active: vec![signing, presign, keygen("kg1")],
            online: names(&["p1", "p2", "p3"]),
            now_ms: T0,
        });
        assert!(
            matches!(recorded(&actions).as_slice(), [Operation::FailSession { session_id, .. }] if session_id == "ps2"),
            "{actions:?}"
        );
        let loads: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Load { session, .. } => Some(session.session_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(loads, ["s1", "kg1"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let actions = s.handle(loaded(
            "s1",
            context(Some(k), vec![presignature("ps3", &["p1", "p2"])]),
        ));
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Start {
                    presignature_id: None,
                    ..
                }]
            ),
            "{actions:?}"
        );
    }

    #[test]
    fn a_deposed_leader_forgets_its_runs_and_ignores_what_follows() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let started = run(
            &mut s,
            ecdsa_signing("s1", false),
            context(Some(k), Vec::new()),
        );
        assert_eq!(s.handle(Event::LeadershipLost), vec![Action::DisconnectAll]);
        assert_eq!(s.counts(), (0, 0));
        assert!(s.handle(changed(keygen("kg1"))).is_empty());
        assert!(s
            .handle(Event::Outcome {
                party: started.parties[0].clone(),
                outcome: PartyOutcome {
                    session_id: "s1".into(),
                    attempt: started.attempt,
                    result: OutcomeResult::Signature(vec![0; 65]),
                },
            })
            .is_empty());
        assert!(s.handle(Event::Tick { now_ms: u64::MAX }).is_empty());
    }

    #[test]
    fn the_pool_is_topped_up_for_online_signers_within_the_concurrency() {
        let mut s = leader(&["p2", "p3"]);
        let mut loads = 0;
        for i in 1..=REFILL_EVERY_TICKS {
            loads += s
                .handle(Event::Tick { now_ms: T0 + i })
                .iter()
                .filter(|a| matches!(a, Action::LoadPoolStock))
                .count();
        }
        assert_eq!(loads, 1);
        let stock = vec![
            PoolStock {
                key: key("full", Scheme::EcdsaSecp256k1, vec![2; 33]),
                available: 2,
            },
            PoolStock {
                key: key("schnorr", Scheme::SchnorrEd25519, vec![2; 32]),
                available: 0,
            },
            PoolStock {
                key: key("low", Scheme::EcdsaSecp256k1, vec![2; 33]),
                available: 0,
            },
            PoolStock {
                key: key("low2", Scheme::EcdsaSecp256k1, vec![2; 33]),
                available: 0,
            },
        ];
        let actions = s.handle(Event::PoolStock(stock));
        match actions.as_slice() {
            [Action::CreatePresign(c)] => {
                assert_eq!(c.key_id, "low");
                assert_eq!(c.signers, names(&["p2", "p3"]));
            }
            other => panic!("one presign within the concurrency of 1: {other:?}"),
        }
    }

    #[test]
    fn a_terminal_change_ends_the_run_and_unparks_the_session() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let mut started = run(
            &mut s,
            ecdsa_signing("s1", false),
            context(Some(k), Vec::new()),
        );
        started.status = SessionStatus::Failed;
        let actions = s.handle(changed(started));
        assert!(
            matches!(
                actions.as_slice(),
                [Action::EndRun { .. }, Action::Cancel { .. }]
            ),
            "{actions:?}"
        );
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn a_signing_planned_at_its_creation_runs_when_its_entry_applies() {
        let mut s = leader(&["p1", "p2", "p3"]);
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let parties: Vec<PartyRecord> = ["p1", "p2", "p3"].into_iter().map(party).collect();
        let pool = vec![presignature("ps1", &["p1", "p3"])];
        let start = s
            .plan_new_signing("m1", k.clone(), &pool, true, &parties)
            .expect("parties are online");
        assert_eq!(start.presignature_id.as_deref(), Some("ps1"));
        assert_eq!(start.parties, names(&["p1", "p3"]));
        // The entry applied with the start: the assignment goes out, no second round.
        let mut created = ecdsa_signing("m1", true);
        created.status = SessionStatus::Running;
        created.parties = start.parties.clone();
        created.presignature_id = start.presignature_id.clone();
        let actions = s.handle(changed(created.clone()));
        let assigned: Vec<&Assignment> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign(a) => Some(&**a),
                _ => None,
            })
            .collect();
        assert!(
            matches!(assigned.as_slice(), [a] if a.session == created),
            "{actions:?}"
        );
        // Taking a presignature prompts a look at the pool.
        assert!(actions.contains(&Action::LoadPoolStock), "{actions:?}");
        assert_eq!(s.counts(), (0, 1));

        // Apply refused a planned start (the presignature was gone): the usual path, and the
        // plan's presignature is free again.
        let start = s
            .plan_new_signing(
                "m2",
                k.clone(),
                &[presignature("ps2", &["p1", "p2"])],
                true,
                &parties,
            )
            .expect("planned");
        assert_eq!(start.presignature_id.as_deref(), Some("ps2"));
        let actions = s.handle(changed(ecdsa_signing("m2", true)));
        assert!(
            matches!(actions.as_slice(), [Action::Load { .. }]),
            "{actions:?}"
        );
        let again = s
            .plan_new_signing(
                "m3",
                k.clone(),
                &[presignature("ps2", &["p1", "p2"])],
                true,
                &parties,
            )
            .expect("planned");
        assert_eq!(again.presignature_id.as_deref(), Some("ps2"));
        // An abandoned plan frees its presignature; a stale one goes at a tick.
        s.abandon_plan("m3");
        let stale = s
            .plan_new_signing(
                "m4",
                k.clone(),
                &[presignature("ps2", &["p1", "p2"])],
                true,
                &parties,
            )
            .expect("planned");
        assert_eq!(stale.presignature_id.as_deref(), Some("ps2"));
        s.handle(Event::Tick {
            now_ms: T0 + PLAN_LIFETIME_MS,
        });
        let after = s
            .plan_new_signing(
                "m5",
                k.clone(),
                &[presignature("ps2", &["p1", "p2"])],
                true,
                &parties,
            )
            .expect("planned");
        assert_eq!(after.presignature_id.as_deref(), Some("ps2"));
        // Too few parties online, or not leading: no plan.
        s.handle(Event::PartyDetached("p1".into()));
        s.handle(Event::PartyDetached("p2".into()));
        assert_eq!(
            s.plan_new_signing("m6", k.clone(), &[], false, &parties),
            None
        );
        s.handle(Event::LeadershipLost);
        s.handle(Event::PartyAttached("p1".into()));
        assert_eq!(s.plan_new_signing("m7", k, &[], false, &parties), None);
    }

    fn creates(actions: &[Action]) -> Vec<&CreatePresign> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePresign(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn full_signings_come_before_the_pool_and_its_target_follows_demand() {
        let mut s = SessionScheduler::new(Settings {
            presignatures_per_key: 2,
            presign_concurrency: 16,
        });
        s.handle(Event::LeadershipGained {
            active: Vec::new(),
            online: names(&["p1", "p2", "p3"]),
            now_ms: T0,
        });
        let k = key("k1", Scheme::EcdsaSecp256k1, vec![2; 33]);
        let stock = |available| {
            vec![PoolStock {
                key: k.clone(),
                available,
            }]
        };
        // A full signing is running: a key with a presignature ready gets nothing more, an
        // empty one gets one presign session, and no look at the stock while that one runs.
        let full = run(
            &mut s,
            ecdsa_signing("full", false),
            context(Some(k.clone()), Vec::new()),
        );
        assert!(creates(&s.handle(Event::PoolStock(stock(1)))).is_empty());
        let beside = s.handle(Event::PoolStock(stock(0)));
        assert_eq!(creates(&beside).len(), 1, "{beside:?}");
        for i in 1..=REFILL_EVERY_TICKS {
            let actions = s.handle(Event::Tick { now_ms: T0 + i });
            assert!(!actions.contains(&Action::LoadPoolStock), "{actions:?}");
        }
        for c in creates(&beside) {
            let mut presign = session(&c.session_id, SessionKind::Presign, Scheme::EcdsaSecp256k1);
            presign.parties = c.signers.clone();
            presign.status = SessionStatus::Completed;
            s.handle(changed(presign));
        }
        let mut done = full;
        done.status = SessionStatus::Completed;
        s.handle(changed(done));

        // Idle: the configured two, proposed once (their entries are not applied yet).
        let made = s.handle(Event::PoolStock(stock(0)));
        assert_eq!(creates(&made).len(), 2, "{made:?}");
        assert!(creates(&s.handle(Event::PoolStock(stock(0)))).is_empty());
        for c in creates(&made) {
            let mut presign = session(&c.session_id, SessionKind::Presign, Scheme::EcdsaSecp256k1);
            presign.parties = c.signers.clone();
            presign.status = SessionStatus::Completed;
            s.handle(changed(presign));
        }

        // Six signings served from presignatures in the last minute: the target is six.
        for i in 0..6 {
            let id = format!("m{i}");
            let pool = vec![presignature(&format!("ps{i}"), &["p1", "p2"])];
            let (_, chosen) = start_of(
                &mut s,
                ecdsa_signing(&id, true),
                context(Some(k.clone()), pool),
            )
            .expect("a start");
            let mut started = ecdsa_signing(&id, true);
            started.status = SessionStatus::Running;
            started.parties = names(&["p1", "p2"]);
            started.presignature_id = chosen;
            s.handle(Event::Started(Box::new(started)));
        }
        assert_eq!(creates(&s.handle(Event::PoolStock(stock(1)))).len(), 5);
        // A minute later the demand has gone and so has the raised target.
        s.handle(Event::Tick {
            now_ms: T0 + DEMAND_WINDOW_MS + 1,
        });
        s.handle(Event::Tick {
            now_ms: T0 + DEMAND_WINDOW_MS + PROPOSAL_LIFETIME_MS,
        });
        assert_eq!(creates(&s.handle(Event::PoolStock(stock(1)))).len(), 1);
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        match recorded(&[fail("s", &reason, Vec::new())]).as_slice() {
            [Operation::FailSession { failure, .. }] => {
                assert!(failure.reason.len() <= MAX_REASON_LEN);
                assert!(!failure.reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
