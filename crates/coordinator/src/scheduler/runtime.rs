//! Carries out the scheduler's actions: reads the replicated state, proposes commands, talks
//! to parties through the router, and feeds every result back to [`SessionScheduler`] as an
//! event. Nothing here decides anything.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mpc_proto::v1 as pb;
use mpc_raft_store::command::SessionStart;
use mpc_raft_store::model::{KeyRecord, Scheme, SessionKind, SigningInput};
use mpc_raft_store::{CommandResponse, Operation, Rejection, SessionUpdate};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::core::{
    Action, Event, PoolStock, SessionBrief, SessionContext, SessionScheduler, Settings, StartError,
};
use crate::api::convert;
use crate::gateway::{PartyHub, Presence};
use crate::node::{now_ms, Coordinator};
use crate::CoordinatorError;

const ACTOR: &str = "scheduler";
const TICK: Duration = Duration::from_millis(250);
/// Keys read per page when looking at presignature pools.
const KEYS_PAGE: usize = 1000;

type Shared = Arc<Mutex<SessionScheduler>>;

fn lock(scheduler: &Shared) -> MutexGuard<'_, SessionScheduler> {
    // Every handler leaves the machine consistent between statements that can panic, and
    // none of them panics by design: a poisoned lock is still usable.
    scheduler.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
pub struct Runtime {
    node: Coordinator,
    hub: Arc<PartyHub>,
    scheduler: Shared,
    results: mpsc::UnboundedSender<Event>,
    pending_results: mpsc::UnboundedReceiver<Event>,
}

/// The API's way to start a signing in the entry that creates it.
#[derive(Debug, Clone)]
pub struct Planner {
    node: Coordinator,
    scheduler: Shared,
}

impl Planner {
    /// On the leader, when enough of the key's parties are online: the participants (and
    /// presignature) the signing about to be proposed will start with. The plan holds its
    /// presignature until the entry applies; call [`Planner::abandon`] if the proposal fails.
    pub async fn plan_signing(
        &self,
        session_id: &str,
        key: &KeyRecord,
        input: &SigningInput,
    ) -> Option<SessionStart> {
        if !lock(&self.scheduler).is_leading() {
            return None;
        }
        let reader = self.node.reader();
        let may_presign = key.scheme.has_presignatures() && input.may_use_presignature();
        let presignatures = if may_presign {
            reader.available_presignatures(&key.key_id).await.ok()?
        } else {
            Vec::new()
        };
        let parties = reader
            .parties_named(&key.parties)
            .await
            .ok()?
            .into_iter()
            .collect::<Option<Vec<_>>>()?;
        lock(&self.scheduler).plan_new_signing(
            session_id,
            key.clone(),
            &presignatures,
            may_presign,
            &parties,
        )
    }

    pub fn abandon(&self, session_id: &str) {
        lock(&self.scheduler).abandon_plan(session_id);
    }
}

impl Runtime {
    pub fn new(node: Coordinator, hub: Arc<PartyHub>) -> (Self, Planner) {
        let settings = &node.config().sessions;
        let scheduler = Arc::new(Mutex::new(SessionScheduler::new(Settings {
            presignatures_per_key: settings.presignatures_per_key,
            presign_concurrency: settings.presign_concurrency,
        })));
        let (results, pending_results) = mpsc::unbounded_channel();
        let planner = Planner {
            node: node.clone(),
            scheduler: scheduler.clone(),
        };
        let runtime = Self {
            node,
            hub,
            scheduler,
            results,
            pending_results,
        };
        (runtime, planner)
    }

    /// Runs for the life of the node; the scheduler acts only while it leads.
    pub async fn run(self) {
        let mut this = self;
        let mut outcomes = this.hub.outcomes();
        let mut presence = this.hub.presence();
        let mut updates = this.node.reader().subscribe();
        let mut metrics = this.node.raft().metrics();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut led_term: Option<u64> = None;
        loop {
            let term = this.node.leading_term();
            if term != led_term {
                if led_term.is_some() {
                    tracing::info!(
                        "no longer leading: dropping scheduled sessions and party streams"
                    );
                    this.handle(Event::LeadershipLost);
                    led_term = None;
                }
                if term.is_some() {
                    match this.node.reader().active_sessions().await {
                        Ok(active) => {
                            tracing::info!(
                                sessions = active.len(),
                                "leading: taking over unfinished sessions"
                            );
                            let online = this.hub.router.online_parties();
                            this.handle(Event::LeadershipGained {
                                active,
                                online,
                                now_ms: now_ms(),
                            });
                            led_term = term;
                        }
                        // Tried again at the next wake-up (a tick at the latest).
                        Err(e) => tracing::error!(error = %e, "reading active sessions failed"),
                    }
                }
            }
            let event = tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                update = updates.recv() => match update {
                    // A follower's scheduler has nothing to do with a change: skip the copy.
                    Ok(SessionUpdate::Changed(_)) if led_term.is_none() => continue,
                    Ok(SessionUpdate::Changed(session)) => {
                        Event::SessionChanged(Box::new((*session).clone()))
                    }
                    Ok(SessionUpdate::Reset) | Err(RecvError::Lagged(_)) => {
                        if !lock(&this.scheduler).is_leading() {
                            continue;
                        }
                        match this.node.reader().active_sessions().await {
                            Ok(active) => Event::Resync { active },
                            Err(e) => {
                                tracing::error!(error = %e, "reading active sessions failed");
                                continue;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                Some((party, outcome)) = outcomes.recv() => match convert::party_outcome(outcome) {
                    Some(outcome) => Event::Outcome { party, outcome },
                    None => continue,
                },
                Some(presence) = presence.recv() => match presence {
                    Presence::Attached(party) => Event::PartyAttached(party),
                    Presence::Detached(party) => Event::PartyDetached(party),
                },
                Some(result) = this.pending_results.recv() => result,
                _ = tick.tick() => Event::Tick { now_ms: now_ms() },
            };
            this.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        let (actions, (parked, running)) = {
            let mut scheduler = lock(&self.scheduler);
            let actions = scheduler.handle(event);
            (actions, scheduler.counts())
        };
        for action in actions {
            self.execute(action);
        }
        metrics::gauge!("mpc_scheduler_parked_sessions").set(parked as f64);
        metrics::gauge!("mpc_scheduler_running_sessions").set(running as f64);
    }

    fn execute(&self, action: Action) {
        match action {
            Action::Load {
                session,
                presignatures,
            } => {
                let node = self.node.clone();
                let results = self.results.clone();
                let span = session_span(&session.session_id);
                tokio::spawn(
                    async move {
                        let session_id = session.session_id.clone();
                        let event = match load(&node, &session, presignatures).await {
                            Ok(context) => Event::Loaded {
                                session_id,
                                context: Box::new(context),
                            },
                            Err(error) => Event::LoadFailed { session_id, error },
                        };
                        let _ = results.send(event);
                    }
                    .instrument(span),
                );
            }
            Action::Start {
                session_id,
                parties,
                presignature_id,
            } => {
                let node = self.node.clone();
                let results = self.results.clone();
                let span = session_span(&session_id);
                tokio::spawn(
                    async move {
                        let cmd = node.command(
                            ACTOR.into(),
                            Operation::StartSession {
                                session_id: session_id.clone(),
                                parties,
                                presignature_id,
                            },
                        );
                        let event = match node.write(cmd).await {
                            Ok(CommandResponse::Session { session, .. }) => Event::Started(session),
                            Ok(other) => Event::StartFailed {
                                session_id,
                                error: StartError::Transient(format!("start answered {other:?}")),
                            },
                            Err(e) => Event::StartFailed {
                                session_id,
                                error: start_error(e),
                            },
                        };
                        let _ = results.send(event);
                    }
                    .instrument(span),
                );
            }
            Action::Assign(assignment) => {
                let session = &assignment.session;
                let span = session_span(&session.session_id);
                let _entered = span.enter();
                // Registered before any party hears of it, so that no envelope finds the
                // router unaware of the attempt.
                self.hub.router.start_run(
                    &session.session_id,
                    session.attempt,
                    assignment.participants.clone(),
                );
                tracing::info!(
                    session = %session.session_id,
                    kind = session.kind.as_str(),
                    attempt = session.attempt,
                    parties = ?assignment.participants,
                    presignature = ?session.attempt_presignature(),
                    "session dispatched"
                );
                let message = pb::CoordinatorMessage {
                    body: Some(pb::coordinator_message::Body::Assignment(
                        convert::assignment(&assignment),
                    )),
                };
                let hub = self.hub.clone();
                let results = self.results.clone();
                let (session_id, attempt) = (session.session_id.clone(), session.attempt);
                let participants = assignment.participants.clone();
                tokio::spawn(async move {
                    for party in participants {
                        if !hub.router.send(&party, message.clone()).await {
                            tracing::info!(%party, "assignment undelivered: the party is offline");
                            let _ = results.send(Event::Undelivered {
                                session_id,
                                attempt,
                                party,
                            });
                            return;
                        }
                    }
                }.instrument(span.clone()));
            }
            Action::EndRun { session_id } => self.hub.router.end_run(&session_id),
            Action::Cancel {
                session_id,
                attempt,
                participants,
                reason,
            } => {
                let hub = self.hub.clone();
                let message = pb::CoordinatorMessage {
                    body: Some(pb::coordinator_message::Body::Cancel(pb::Cancel {
                        session_id,
                        attempt,
                        reason,
                    })),
                };
                tokio::spawn(async move {
                    for party in participants {
                        hub.router.send(&party, message.clone()).await;
                    }
                });
            }
            Action::Record(op) => {
                let span = op
                    .session_id()
                    .map_or_else(tracing::Span::current, session_span);
                record(self.node.clone(), *op, span);
            }
            Action::CreatePresign(create) => {
                let node = self.node.clone();
                tokio::spawn(async move {
                    let cmd = node.command(ACTOR.into(), Operation::CreatePresign(create));
                    if let Err(e) = node.write(cmd).await {
                        tracing::debug!(error = %e, "presignature refill skipped");
                    }
                });
            }
            Action::LoadPoolStock => {
                let node = self.node.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    let stock = match pool_stock(&node).await {
                        Ok(stock) => stock,
                        Err(e) => {
                            tracing::debug!(error = %e, "reading presignature pools failed");
                            Vec::new()
                        }
                    };
                    let _ = results.send(Event::PoolStock(stock));
                });
            }
            Action::DisconnectAll => self.hub.router.disconnect_all(),
        }
    }
}

/// One session's span: the API, the scheduler and the parties use the same name and field,
/// so a session's lines come out of every node's log with one search.
pub fn session_span(session_id: &str) -> tracing::Span {
    tracing::info_span!("session", session = %session_id)
}

fn start_error(e: CoordinatorError) -> StartError {
    match e {
        CoordinatorError::Rejected(Rejection::InvalidTransition { .. }) => StartError::Superseded,
        e @ (CoordinatorError::NotFound { .. }
        | CoordinatorError::Rejected(Rejection::KeyNotActive { .. })) => {
            StartError::Missing(e.to_string())
        }
        // Lost a race for a presignature, or the write timed out: try again.
        e => StartError::Transient(e.to_string()),
    }
}

/// Reads what a dispatch of `session` needs.
async fn load(
    node: &Coordinator,
    session: &SessionBrief,
    presignatures: bool,
) -> Result<SessionContext, StartError> {
    let reader = node.reader();
    let transient = |e: mpc_raft_store::StoreError| StartError::Transient(e.to_string());
    let mut context = SessionContext::default();
    let candidates = if session.kind == SessionKind::Keygen {
        context.group_has_ecdsa_key = session.scheme == Scheme::EcdsaSecp256k1
            && group_has_ecdsa_key(node, &session.parties)
                .await
                .map_err(transient)?;
        session.parties.clone()
    } else {
        let key = reader
            .key(&session.key_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| StartError::Missing(format!("key {} not found", session.key_id)))?;
        if presignatures {
            context.presignatures = reader
                .available_presignatures(&key.key_id)
                .await
                .map_err(transient)?;
        }
        let candidates = key.parties.clone();
        context.key = Some(key);
        candidates
    };
    for party in &candidates {
        if let Some(record) = reader.party(party).await.map_err(transient)? {
            context.parties.push(record);
        }
    }
    Ok(context)
}

async fn group_has_ecdsa_key(
    node: &Coordinator,
    parties: &[String],
) -> Result<bool, mpc_raft_store::StoreError> {
    let mut token = None;
    loop {
        let (keys, next) = node.reader().keys(KEYS_PAGE, token).await?;
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

/// Every ECDSA key with the number of presignatures it has ready.
async fn pool_stock(node: &Coordinator) -> Result<Vec<PoolStock>, mpc_raft_store::StoreError> {
    let reader = node.reader();
    let counts = reader.available_presignature_counts().await?;
    let mut stock = Vec::new();
    let mut token = None;
    loop {
        let (keys, next) = reader.keys(KEYS_PAGE, token).await?;
        for key in keys {
            if key.scheme == Scheme::EcdsaSecp256k1 {
                let available = counts.get(&key.key_id).copied().unwrap_or(0);
                // Key ids are public and as many as the keys: a bounded label.
                let key_id = key.key_id.clone();
                metrics::gauge!("mpc_scheduler_presignatures_available", "key_id" => key_id)
                    .set(available as f64);
                stock.push(PoolStock { key, available });
            }
        }
        match next {
            Some(n) => token = Some(n),
            None => return Ok(stock),
        }
    }
}

/// Commits a session's end, retrying while the outcome is unknown (these transitions are
/// idempotent, so a retry of a write that did commit is harmless).
fn record(node: Coordinator, op: Operation, span: tracing::Span) {
    tokio::spawn(
        async move {
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
        }
        .instrument(span),
    );
}
