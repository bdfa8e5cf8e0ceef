use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_proto::v1::sessions_server::Sessions;
use mpc_raft_store::command::{CreateKeygen, CreateSigning};
use mpc_raft_store::model::{Scheme, SessionRecord, SigningInput};
use mpc_raft_store::{CommandResponse, Operation, Rejection, SessionFilter, SessionUpdate};
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{actor, convert, page_size, page_token};
use crate::auth::Principal;
use crate::error::invalid;
use crate::node::{now_ms, Consistency, Coordinator};
use crate::scheduler::{session_span, Planner};
use crate::CoordinatorError;

/// How long past a session's deadline a waiting create still waits: the leader expires
/// overdue sessions on a sub-second tick, and the expiry must then be committed and applied
/// here before the caller can see it.
const EXPIRY_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct SessionsService {
    node: Coordinator,
    planner: Planner,
}

/// Follows one session through this node's applied state.
///
/// Built from a subscription taken before the session was first read (or before the write
/// that made it was proposed), so no change can fall between that read and the first
/// update. Every node applies every entry, so this works on followers as on the leader.
struct SessionFollower {
    node: Coordinator,
    updates: broadcast::Receiver<SessionUpdate>,
    session_id: String,
}

impl SessionFollower {
    /// The session's next version other than `last`. A snapshot that replaced the state, or
    /// updates this subscriber fell behind on, make it read the record again; a record this
    /// node does not hold yet (a follower that has not applied the create) is waited for.
    async fn next(&mut self, last: &SessionRecord) -> Result<SessionRecord, CoordinatorError> {
        loop {
            let next = match self.updates.recv().await {
                Ok(SessionUpdate::Changed(s)) if s.session_id == self.session_id => {
                    Some((*s).clone())
                }
                Ok(SessionUpdate::Changed(_)) => None,
                Ok(SessionUpdate::Reset) | Err(RecvError::Lagged(_)) => {
                    self.node.reader().session(&self.session_id).await?
                }
                Err(RecvError::Closed) => {
                    return Err(CoordinatorError::RaftStopped(
                        "the node is shutting down".into(),
                    ))
                }
            };
            if let Some(session) = next.filter(|s| s != last) {
                return Ok(session);
            }
        }
    }
}

impl SessionsService {
    pub fn new(node: Coordinator, planner: Planner) -> Self {
        Self { node, planner }
    }

    fn deadline(&self, timeout_seconds: u32) -> Result<u64, CoordinatorError> {
        let settings = &self.node.config().sessions;
        let secs = match timeout_seconds {
            0 => settings.default_timeout_secs,
            s if s > settings.max_timeout_secs => {
                return Err(invalid(
                    "timeout_seconds",
                    format!("at most {} seconds, got {s}", settings.max_timeout_secs),
                ))
            }
            s => s,
        };
        Ok(now_ms() + u64::from(secs) * 1000)
    }

    /// Proposes a create. A create carries the session id chosen here, so if an earlier
    /// attempt of this very command reached the log, "already exists" for that id means
    /// success. With `wait`, answers once the session (the new one, or the one an earlier
    /// request with the same id made) is terminal or past its deadline.
    async fn create(
        &self,
        actor: String,
        session_id: String,
        op: Operation,
        wait: bool,
    ) -> Result<pb::CreateSessionResponse, CoordinatorError> {
        // Subscribed before the write is proposed: the write lands at a log index above
        // everything this node had applied by now, so every later version of the session,
        // wherever the write was answered, reaches this subscription.
        let updates = wait.then(|| self.node.reader().subscribe());
        let cmd = self.node.command(actor, op);
        let (session, created) = match self.node.write(cmd).await {
            Ok(CommandResponse::Session { session, created }) => (*session, created),
            Err(CoordinatorError::Rejected(Rejection::AlreadyExists { kind, id }))
                if kind == "session" && id == session_id =>
            {
                // The copy that got in may not be applied here yet: read it linearizably.
                let session = self
                    .read_session(&session_id, Consistency::Linearizable)
                    .await?;
                (session, true)
            }
            Ok(other) => {
                return Err(CoordinatorError::Server(format!(
                    "a create was answered with {other:?}"
                )))
            }
            Err(e) => return Err(e),
        };
        let session = match updates {
            Some(updates) => self.wait_terminal(session, updates).await,
            None => session,
        };
        Ok(pb::CreateSessionResponse {
            session: Some(convert::session(&session)),
            created,
        })
    }

    /// Waits until `session` (as the write answered it) is terminal, at most until its
    /// deadline and [`EXPIRY_GRACE`]; the latest version this node knows then.
    ///
    /// The write's answer is the session as the leader applied it, so it is the first check:
    /// a session already terminal there (a retried request whose signing is done) returns at
    /// once. A later version can only come from entries after the write, which this node
    /// applies, and announces, after the subscription was taken. On a follower the
    /// subscription may first replay versions up to the write's own (it applies behind the
    /// leader that answered): none of those is terminal, or the answer would have been.
    ///
    /// The session exists whatever happens here, so a failure to follow it (the node shutting
    /// down, a store read failing) answers the version known so far rather than an error: the
    /// client then follows it elsewhere, as after a deadline.
    async fn wait_terminal(
        &self,
        session: SessionRecord,
        updates: broadcast::Receiver<SessionUpdate>,
    ) -> SessionRecord {
        if session.status.is_terminal() {
            return session;
        }
        let left = Duration::from_millis(session.deadline_ms.saturating_sub(now_ms()));
        let until = tokio::time::Instant::now() + left + EXPIRY_GRACE;
        let mut follower = SessionFollower {
            node: self.node.clone(),
            updates,
            session_id: session.session_id.clone(),
        };
        let mut last = session;
        loop {
            match tokio::time::timeout_at(until, follower.next(&last)).await {
                Ok(Ok(next)) => {
                    last = next;
                    if last.status.is_terminal() {
                        return last;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(session_id = %last.session_id, error = %e, "stopped waiting for a session");
                    return last;
                }
                // Past the deadline and no expiry came (no leader, say): the session as
                // this node holds it now, at least as recent as any update seen.
                Err(_) => {
                    return match self.node.reader().session(&last.session_id).await {
                        Ok(Some(now)) => now,
                        _ => last,
                    };
                }
            }
        }
    }

    async fn read_session(
        &self,
        session_id: &str,
        consistency: Consistency,
    ) -> Result<SessionRecord, CoordinatorError> {
        mpc_raft_store::command::check_id("session_id", session_id)?;
        self.node.read_barrier(consistency).await?;
        self.node
            .reader()
            .session(session_id)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound {
                what: "session",
                id: session_id.to_owned(),
            })
    }
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::Session, Status>> + Send>>;

#[tonic::async_trait]
impl Sessions for SessionsService {
    async fn create_keygen(
        &self,
        request: Request<pb::CreateKeygenRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let actor = actor(&request)?;
        let req = request.into_inner();
        let scheme: Scheme = req
            .scheme
            .parse()
            .map_err(|e: mpc_types::FieldError| invalid(e.field, e.reason))?;
        let threshold = u16::try_from(req.threshold)
            .map_err(|_| invalid("threshold", format!("{} is out of range", req.threshold)))?;
        let policy = statements::policy_from("policy", req.policy.as_ref())
            .map_err(|(field, reason)| invalid(&field, reason))?;
        // The policy names the key: a request that leaves key_id empty takes the policy's.
        let key_id = optional(req.key_id).unwrap_or_else(|| policy.statement.key_id.clone());
        let session_id = uuid::Uuid::now_v7().to_string();
        let op = Operation::CreateKeygen(CreateKeygen {
            session_id: session_id.clone(),
            key_id,
            scheme,
            threshold,
            parties: req.parties,
            request_id: optional(req.request_id),
            description: req.description,
            tags: req.tags.into_iter().collect::<BTreeMap<_, _>>(),
            deadline_ms: self.deadline(req.timeout_seconds)?,
            policy,
        });
        // Keygen has no `wait` field yet; `create` would serve it the same way.
        Ok(Response::new(
            self.create(actor, session_id.clone(), op, false)
                .instrument(session_span(&session_id))
                .await?,
        ))
    }

    async fn create_signing(
        &self,
        request: Request<pb::CreateSigningRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let actor = principal.audit_name();
        let req = request.into_inner();
        mpc_raft_store::command::check_id("key_id", &req.key_id).map_err(CoordinatorError::from)?;
        // A tag grant needs the key's tags: this node's copy is recent enough, since the
        // leader checks the key again when it applies the signing.
        let key = self
            .node
            .reader()
            .key(&req.key_id)
            .await
            .map_err(CoordinatorError::from)?;
        if !principal.may_sign_with(&req.key_id, key.as_ref()) {
            return Err(Status::permission_denied(format!(
                "{actor} may not sign with key {:?}",
                req.key_id
            )));
        }
        let input = SigningInput::from_fields(&req.digest, &req.message, &req.hash)
            .map_err(|e| invalid(e.field, e.reason))?;
        let approvals = statements::signatures_from("approvals", &req.approvals)
            .map_err(|(field, reason)| invalid(&field, reason))?;
        let session_id = uuid::Uuid::now_v7().to_string();
        let deadline_ms = self.deadline(req.timeout_seconds)?;
        // On the leader, a signing whose parties are ready starts in the entry that creates
        // it: one Raft round from request to assignment instead of two.
        let start = match &key {
            Some(key) => self.planner.plan_signing(&session_id, key, &input).await,
            None => None,
        };
        let planned = start.is_some();
        let op = Operation::CreateSigning(CreateSigning {
            session_id: session_id.clone(),
            key_id: req.key_id,
            input,
            request_id: optional(req.request_id),
            deadline_ms,
            approvals,
            approvals_not_after_ms: req.not_after_ms,
            start,
        });
        let created = self
            .create(actor, session_id.clone(), op, req.wait)
            .instrument(session_span(&session_id))
            .await;
        if planned && created.is_err() {
            self.planner.abandon(&session_id);
        }
        Ok(Response::new(created?))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        let consistency = convert::consistency(req.consistency)?;
        let session = self.read_session(&req.session_id, consistency).await?;
        Ok(Response::new(convert::session(&session)))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let req = request.into_inner();
        let filter = SessionFilter {
            status: convert::status_filter(req.status)?,
            kind: convert::kind_filter(req.kind)?,
            key_id: optional(req.key_id),
        };
        let size = page_size(req.page_size)?;
        self.node
            .read_barrier(convert::consistency(req.consistency)?)
            .await?;
        let (sessions, next) = self
            .node
            .reader()
            .sessions(filter, size, page_token(req.page_token)?)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.iter().map(convert::session).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    type WatchSessionStream = SessionStream;

    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let principal = Principal::of(&request)?;
        // Held by the stream's task: the watch counts until it ends.
        let watch = match principal {
            Principal::Insecure => None,
            p => Some(self.node.limiter().open_watch(&p.audit_name())?),
        };
        let session_id = request.into_inner().session_id;
        // Subscribe before the first read so that no change falls between the two.
        let updates = self.node.reader().subscribe();
        let first = self
            .read_session(&session_id, Consistency::Linearizable)
            .await?;
        let mut follower = SessionFollower {
            node: self.node.clone(),
            updates,
            session_id,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let _watch = watch;
            let mut last = first;
            if tx.send(Ok(convert::session(&last))).await.is_err() {
                return;
            }
            while !last.status.is_terminal() {
                // Stop as soon as the client goes away, not at the session's next change,
                // which may never come.
                let next = tokio::select! {
                    next = follower.next(&last) => next,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(session) => last = session,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                if tx.send(Ok(convert::session(&last))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
