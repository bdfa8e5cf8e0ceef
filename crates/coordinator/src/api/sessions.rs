use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_proto::v1::sessions_server::Sessions;
use mpc_raft_store::command::{CreateKeygen, CreateSigning};
use mpc_raft_store::model::{MessageHash, Scheme, SessionRecord, SigningPayload};
use mpc_raft_store::{CommandResponse, Operation, Rejection, SessionFilter, SessionUpdate};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::{actor, convert, page_size, page_token};
use crate::auth::Principal;
use crate::error::invalid;
use crate::node::{now_ms, Consistency, Coordinator};
use crate::CoordinatorError;

#[derive(Debug, Clone)]
pub struct SessionsService {
    node: Coordinator,
}

impl SessionsService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
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
    /// success.
    async fn create(
        &self,
        actor: String,
        session_id: String,
        op: Operation,
    ) -> Result<pb::CreateSessionResponse, CoordinatorError> {
        let cmd = self.node.command(actor, op);
        match self.node.write(cmd).await {
            Ok(CommandResponse::Session { session, created }) => Ok(pb::CreateSessionResponse {
                session: Some(convert::session(&session)),
                created,
            }),
            Err(CoordinatorError::Rejected(Rejection::AlreadyExists { kind, id }))
                if kind == "session" && id == session_id =>
            {
                // The copy that got in may not be applied here yet: read it linearizably.
                let session = self
                    .read_session(&session_id, Consistency::Linearizable)
                    .await?;
                Ok(pb::CreateSessionResponse {
                    session: Some(convert::session(&session)),
                    created: true,
                })
            }
            Ok(other) => Err(CoordinatorError::Server(format!(
                "a create was answered with {other:?}"
            ))),
            Err(e) => Err(e),
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
        let scheme: Scheme = req.scheme.parse().map_err(|e| invalid("scheme", e))?;
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
        Ok(Response::new(self.create(actor, session_id, op).await?))
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
        let input = match (req.digest.is_empty(), req.message.is_empty()) {
            (false, true) if req.hash.is_empty() => SigningPayload::Digest(req.digest),
            (false, true) => {
                return Err(invalid("hash", "a digest is signed as it is: leave hash empty").into())
            }
            (true, false) => SigningPayload::Message {
                message: req.message,
                hash: optional(req.hash)
                    .map(|h| h.parse::<MessageHash>())
                    .transpose()
                    .map_err(|e| invalid("hash", e))?,
            },
            (false, false) => {
                return Err(
                    invalid("message", "give either a digest or a message, not both").into(),
                )
            }
            (true, true) => {
                return Err(invalid("digest", "give a digest or a message to sign").into())
            }
        };
        let approvals = statements::signatures_from("approvals", &req.approvals)
            .map_err(|(field, reason)| invalid(&field, reason))?;
        let session_id = uuid::Uuid::now_v7().to_string();
        let op = Operation::CreateSigning(CreateSigning {
            session_id: session_id.clone(),
            key_id: req.key_id,
            input,
            request_id: optional(req.request_id),
            deadline_ms: self.deadline(req.timeout_seconds)?,
            approvals,
            approvals_not_after_ms: req.not_after_ms,
        });
        Ok(Response::new(self.create(actor, session_id, op).await?))
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
        let mut updates = self.node.reader().subscribe();
        let first = self
            .read_session(&session_id, Consistency::Linearizable)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            let _watch = watch;
            let mut last = first;
            if tx.send(Ok(convert::session(&last))).await.is_err() {
                return;
            }
            while !last.status.is_terminal() {
                // Stop as soon as the client goes away, not at the session's next change,
                // which may never come.
                let update = tokio::select! {
                    update = updates.recv() => update,
                    () = tx.closed() => return,
                };
                let next = match update {
                    Ok(SessionUpdate::Changed(s)) if s.session_id == last.session_id => {
                        Some((*s).clone())
                    }
                    Ok(SessionUpdate::Changed(_)) => None,
                    // A snapshot replaced the state, or we fell behind: read it again.
                    Ok(SessionUpdate::Reset) | Err(RecvError::Lagged(_)) => {
                        match node.reader().session(&last.session_id).await {
                            Ok(found) => found,
                            Err(e) => {
                                let _ = tx.send(Err(CoordinatorError::from(e).into())).await;
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => {
                        let _ = tx
                            .send(Err(Status::unavailable("the node is shutting down")))
                            .await;
                        return;
                    }
                };
                if let Some(session) = next.filter(|s| *s != last) {
                    last = session;
                    if tx.send(Ok(convert::session(&last))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
