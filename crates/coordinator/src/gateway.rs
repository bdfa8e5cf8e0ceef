//! `mpc.v1.PartyGateway`: party registration and the parties' streams to the leader.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use futures::Stream;
use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_proto::v1::party_gateway_server::PartyGateway;
use mpc_raft_store::command::RegisterParty;
use mpc_raft_store::model::{Endorsed, Enrolment, PartyRecord, PartyStatus};
use mpc_raft_store::{CommandResponse, Operation};
use rand::RngCore;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::api::actor;
use crate::auth::Principal;
use crate::error::invalid;
use crate::node::{Consistency, Coordinator};
use crate::router::Router;
use crate::CoordinatorError;

/// A party's stream to this node opened or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Attached(String),
    Detached(String),
}

/// What the gateway shares with the scheduler: the router, and the parties' comings, goings
/// and outcomes as they happen.
#[derive(Debug, Default)]
pub struct PartyHub {
    pub router: Router,
    feeds: std::sync::Mutex<Feeds>,
}

#[derive(Debug, Default)]
struct Feeds {
    outcomes: Option<mpsc::UnboundedSender<(String, pb::SessionOutcome)>>,
    presence: Option<mpsc::UnboundedSender<Presence>>,
}

impl PartyHub {
    fn feeds(&self) -> std::sync::MutexGuard<'_, Feeds> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The receiving end of party outcomes, for the scheduler (once).
    pub fn outcomes(&self) -> mpsc::UnboundedReceiver<(String, pb::SessionOutcome)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.feeds().outcomes = Some(tx);
        rx
    }

    /// The receiving end of party attach and detach events, for the scheduler (once).
    pub fn presence(&self) -> mpsc::UnboundedReceiver<Presence> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.feeds().presence = Some(tx);
        rx
    }

    fn report(&self, party: &str, outcome: pb::SessionOutcome) {
        if let Some(tx) = &self.feeds().outcomes {
            let _ = tx.send((party.to_owned(), outcome));
        }
    }

    fn announce(&self, presence: Presence) {
        if let Some(tx) = &self.feeds().presence {
            let _ = tx.send(presence);
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayService {
    node: Coordinator,
    hub: Arc<PartyHub>,
}

impl GatewayService {
    pub fn new(node: Coordinator, hub: Arc<PartyHub>) -> Self {
        Self { node, hub }
    }

    fn party(&self, p: &PartyRecord) -> pb::Party {
        pb::Party {
            party_id: p.party_id.clone(),
            signing_public_key: p.signing_public_key.clone(),
            encryption_public_key: p.encryption_public_key.clone(),
            endpoint: p.endpoint.clone(),
            status: match p.status {
                PartyStatus::Online => "online",
                PartyStatus::Offline => "offline",
            }
            .into(),
            last_seen_ms: p.last_seen_ms,
            registered_at_ms: p.registered_at_ms,
            connected: self.hub.router.is_online(&p.party_id),
            enrolled_by: Some(statements::signature_to(&p.enrolled_by)),
            registered: p.registered_at_ms != 0,
        }
    }
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[tonic::async_trait]
impl PartyGateway for GatewayService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        let actor = actor(&request)?;
        let req = request.into_inner();
        let key = |field: &str, b: &[u8]| -> Result<[u8; 32], CoordinatorError> {
            b.try_into()
                .map_err(|_| invalid(field, format!("must be 32 bytes, got {}", b.len())))
        };
        let admin = req
            .admin
            .as_ref()
            .ok_or_else(|| invalid("admin", "required: the admin's signature"))?;
        let enrolment = Endorsed {
            statement: Enrolment {
                party_id: req.party_id,
                signing_public_key: key("signing_public_key", &req.signing_public_key)?,
                encryption_public_key: key("encryption_public_key", &req.encryption_public_key)?,
            },
            by: statements::signature_from("admin", admin)
                .map_err(|(field, reason)| invalid(&field, reason))?,
        };
        let cmd = self.node.command(actor, Operation::EnrollParty(enrolment));
        match self.node.write(cmd).await? {
            CommandResponse::Party(p) => Ok(Response::new(self.party(&p))),
            other => Err(CoordinatorError::Server(format!("enroll answered {other:?}")).into()),
        }
    }

    async fn register(
        &self,
        request: Request<pb::RegisterPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        let principal = Principal::of(&request)?;
        let actor = principal.audit_name();
        let req = request.into_inner();
        mpc_raft_store::command::check_id("party_id", &req.party_id)
            .map_err(CoordinatorError::from)?;
        principal.require_party(&req.party_id)?;
        self.node.read_barrier(Consistency::Linearizable).await?;
        let existing = self
            .node
            .reader()
            .party(&req.party_id)
            .await
            .map_err(CoordinatorError::from)?;
        // Only an admin's enrolment binds an id to keys (apply checks this again).
        match existing {
            None => {
                return Err(Status::failed_precondition(format!(
                    "party {:?} is not enrolled: an admin enrols it first (mpcctl party enroll)",
                    req.party_id
                )))
            }
            Some(e)
                if e.signing_public_key != req.signing_public_key
                    || e.encryption_public_key != req.encryption_public_key =>
            {
                return Err(Status::permission_denied(format!(
                    "party {:?} presents other identity keys than an admin enrolled",
                    req.party_id
                )))
            }
            Some(e) if e.endpoint == req.endpoint && e.registered_at_ms != 0 => {
                return Ok(Response::new(self.party(&e)));
            }
            Some(_) => {}
        }
        let cmd = self.node.command(
            actor,
            Operation::RegisterParty(RegisterParty {
                party_id: req.party_id,
                signing_public_key: req.signing_public_key,
                encryption_public_key: req.encryption_public_key,
                endpoint: req.endpoint,
            }),
        );
        match self.node.write(cmd).await? {
            CommandResponse::Party(p) => Ok(Response::new(self.party(&p))),
            other => Err(CoordinatorError::Server(format!("register answered {other:?}")).into()),
        }
    }

    async fn get_party(
        &self,
        request: Request<pb::GetPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        let req = request.into_inner();
        mpc_raft_store::command::check_id("party_id", &req.party_id)
            .map_err(CoordinatorError::from)?;
        self.node
            .read_barrier(crate::api::convert::consistency(req.consistency)?)
            .await?;
        let party = self
            .node
            .reader()
            .party(&req.party_id)
            .await
            .map_err(CoordinatorError::from)?
            .ok_or(CoordinatorError::NotFound {
                what: "party",
                id: req.party_id,
            })?;
        Ok(Response::new(self.party(&party)))
    }

    async fn list_parties(
        &self,
        request: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        let req = request.into_inner();
        let size = crate::api::page_size(req.page_size)?;
        let token = crate::api::page_token(req.page_token)?;
        self.node.read_barrier(Consistency::Linearizable).await?;
        let (parties, next) = self
            .node
            .reader()
            .parties(size, token)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListPartiesResponse {
            parties: parties.iter().map(|p| self.party(p)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    type AttachStream = OutboundStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::PartyMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if self.node.leading_term().is_none() {
            return Err(self.node.not_leader("PartyGateway.Attach").into());
        }
        let principal = Principal::of(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let challenge = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Challenge(pb::Challenge {
                nonce: nonce.to_vec(),
                node_id: self.node.id(),
            })),
        };
        tx.send(Ok(challenge))
            .await
            .map_err(|_| Status::cancelled("the party went away"))?;
        let node = self.node.clone();
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let party_id = match authenticate(&node, &mut inbound, &nonce)
                .await
                .and_then(|p| principal.require_party(&p).map(|()| p))
            {
                Ok(p) => p,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let connection = hub.router.attach(&party_id, tx.clone());
            tracing::info!(party = %party_id, "party attached");
            set_status(&node, &party_id, PartyStatus::Online);
            hub.announce(Presence::Attached(party_id.clone()));
            let term = node.leading_term();
            let mut metrics = node.raft().metrics();
            loop {
                let next = tokio::select! {
                    next = inbound.message() => next,
                    // A deposed leader schedules nothing: end the stream so the party follows
                    // the hint to the new leader.
                    changed = metrics.changed() => {
                        if changed.is_err() || node.leading_term() != term {
                            let _ = tx.send(Err(node.not_leader("PartyGateway.Attach").into())).await;
                            break;
                        }
                        continue;
                    }
                };
                let message = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(party = %party_id, %status, "party stream failed");
                        break;
                    }
                };
                match message.body {
                    Some(pb::party_message::Body::Envelope(envelope)) => {
                        if let Err(e) = hub.router.route(&party_id, envelope).await {
                            tracing::debug!(party = %party_id, error = %e, "envelope dropped");
                        }
                    }
                    Some(pb::party_message::Body::Outcome(outcome)) => {
                        hub.report(&party_id, outcome);
                    }
                    Some(pb::party_message::Body::Hello(_)) | None => {}
                }
            }
            if hub.router.detach(&party_id, connection) {
                tracing::info!(party = %party_id, "party detached");
                hub.announce(Presence::Detached(party_id.clone()));
                set_status(&node, &party_id, PartyStatus::Offline);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Waits for the Hello and checks its signature against the registered identity key.
async fn authenticate(
    node: &Coordinator,
    inbound: &mut Streaming<pb::PartyMessage>,
    nonce: &[u8],
) -> Result<String, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
    let Some(pb::PartyMessage {
        body: Some(pb::party_message::Body::Hello(hello)),
    }) = first
    else {
        return Err(Status::invalid_argument("the first message must be Hello"));
    };
    let party = node
        .reader()
        .party(&hello.party_id)
        .await
        .map_err(CoordinatorError::from)?
        .ok_or_else(|| {
            Status::permission_denied(format!("party {:?} is not registered", hello.party_id))
        })?;
    let key = <[u8; 32]>::try_from(party.signing_public_key.as_slice())
        .ok()
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or_else(|| Status::internal("registered signing key is malformed"))?;
    let signature = Signature::from_slice(&hello.signature)
        .map_err(|_| Status::invalid_argument("signature: must be 64 bytes"))?;
    key.verify_strict(
        &mpc_proto::hello_message(nonce, node.id(), &hello.party_id),
        &signature,
    )
    .map_err(|_| Status::unauthenticated("Hello signature does not verify"))?;
    Ok(hello.party_id)
}

/// Records a party's status change in the replicated state, off the stream's path.
fn set_status(node: &Coordinator, party_id: &str, status: PartyStatus) {
    let node = node.clone();
    let cmd = node.command(
        "gateway".into(),
        Operation::SetPartyStatus {
            party_id: party_id.to_owned(),
            status,
        },
    );
    tokio::spawn(async move {
        if let Err(e) = node.write(cmd).await {
            tracing::debug!(error = %e, "recording a party status failed");
        }
    });
}
