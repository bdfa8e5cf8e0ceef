//! `mpc.v1.Relay`: the DVN relayers' job book. Writes speak for the relayer named by the
//! caller's certificate (the command's actor), never for a name in the request.

use mpc_proto::relay as wire;
use mpc_proto::statements::Malformed;
use mpc_proto::v1 as pb;
use mpc_proto::v1::relay_server::Relay;
use mpc_raft_store::model::{JobId, JobState};
use mpc_raft_store::relay::{RelayCommand, RelayCursor};
use mpc_raft_store::{CommandResponse, Operation};
use tonic::{Request, Response, Status};

use super::{convert, page_size};
use crate::auth::Principal;
use crate::error::invalid;
use crate::node::Coordinator;
use crate::CoordinatorError;

#[derive(Debug, Clone)]
pub struct RelayService {
    node: Coordinator,
}

impl RelayService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
    }

    /// Proposes a relayer's write in its own name.
    async fn write<T>(
        &self,
        request: &Request<T>,
        cmd: RelayCommand,
    ) -> Result<CommandResponse, Status> {
        let instance = relayer(request)?;
        let cmd = self.node.command(instance, Operation::Relay(cmd));
        Ok(self.node.write(cmd).await?)
    }

    async fn read(&self, consistency: i32) -> Result<(), Status> {
        self.node
            .read_barrier(convert::consistency(consistency)?)
            .await?;
        Ok(())
    }
}

/// The relayer a write speaks for: its certificate's name. An insecure node (tests, local
/// experiments) has no certificates and takes the name `insecure`.
fn relayer<T>(request: &Request<T>) -> Result<String, Status> {
    match Principal::of(request)? {
        Principal::Relayer { name } => Ok(name),
        Principal::Insecure => Ok("insecure".into()),
        other => Err(Status::permission_denied(format!(
            "{} is not a DVN relayer: only a relayer's certificate writes to the job book",
            other.audit_name()
        ))),
    }
}

fn malformed((field, reason): Malformed) -> Status {
    invalid(&field, reason).into()
}

fn job_id(field: &str, b: &[u8]) -> Result<JobId, Status> {
    wire::job_id(field, b).map_err(malformed)
}

fn job_ids(raw: &[Vec<u8>]) -> Result<Vec<JobId>, Status> {
    raw.iter()
        .enumerate()
        .map(|(i, b)| job_id(&format!("job_ids[{i}]"), b))
        .collect()
}

fn job_response(resp: CommandResponse) -> Result<Response<pb::RelayJob>, Status> {
    match resp {
        CommandResponse::RelayJob(job) => Ok(Response::new(wire::job_to_pb(&job))),
        other => Err(unexpected(other)),
    }
}

fn unexpected(resp: CommandResponse) -> Status {
    CoordinatorError::Server(format!("a relay write was answered with {resp:?}")).into()
}

fn cursor_to_pb(c: Option<RelayCursor>, instance: &str, src_eid: u32) -> pb::RelayCursor {
    match c {
        Some(c) => pb::RelayCursor {
            instance: c.instance,
            src_eid: c.src_eid,
            block: c.block,
            known: true,
            updated_at_ms: c.updated_at_ms,
        },
        None => pb::RelayCursor {
            instance: instance.to_owned(),
            src_eid,
            ..Default::default()
        },
    }
}

#[tonic::async_trait]
impl Relay for RelayService {
    async fn discover(
        &self,
        request: Request<pb::DiscoverRequest>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        let req = request.get_ref();
        let packets = req
            .packets
            .iter()
            .enumerate()
            .map(|(i, p)| wire::packet(&format!("packets[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed)?;
        let cmd = RelayCommand::Discover {
            src_eid: req.src_eid,
            scanned_to: req.scanned_to,
            packets,
            expiration: req.expiration,
        };
        match self.write(&request, cmd).await? {
            CommandResponse::Empty => Ok(Response::new(pb::DiscoverResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn record_verdict(
        &self,
        request: Request<pb::RecordVerdictRequest>,
    ) -> Result<Response<pb::RelayJob>, Status> {
        let req = request.get_ref();
        let cmd = RelayCommand::Verdict {
            job_id: job_id("job_id", &req.job_id)?,
            attempt: req.attempt,
            verdict: wire::verdict("verdict", req.verdict.as_ref()).map_err(malformed)?,
            quorum: req.quorum,
            signers: req.signers,
        };
        job_response(self.write(&request, cmd).await?)
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let req = request.get_ref();
        let cmd = RelayCommand::Claim {
            job_ids: job_ids(&req.job_ids)?,
            lease_ms: req.lease_ms,
        };
        match self.write(&request, cmd).await? {
            CommandResponse::RelayJobs(jobs) => Ok(Response::new(pb::ClaimResponse {
                jobs: jobs.iter().map(wire::job_to_pb).collect(),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn record_submission(
        &self,
        request: Request<pb::RecordSubmissionRequest>,
    ) -> Result<Response<pb::RecordSubmissionResponse>, Status> {
        let req = request.get_ref();
        let cmd = RelayCommand::Submitted {
            job_ids: job_ids(&req.job_ids)?,
            tx_hash: req
                .tx_hash
                .as_slice()
                .try_into()
                .map_err(|_| invalid("tx_hash", "must be 32 bytes"))?,
            tx_nonce: req.tx_nonce,
        };
        match self.write(&request, cmd).await? {
            CommandResponse::Empty => Ok(Response::new(pb::RecordSubmissionResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RelayJob>, Status> {
        let req = request.get_ref();
        let cmd = RelayCommand::Outcome {
            job_id: job_id("job_id", &req.job_id)?,
            outcome: wire::outcome("outcome", req.outcome.as_ref()).map_err(malformed)?,
        };
        job_response(self.write(&request, cmd).await?)
    }

    async fn get_cursor(
        &self,
        request: Request<pb::GetCursorRequest>,
    ) -> Result<Response<pb::RelayCursor>, Status> {
        let instance = match request.get_ref().instance.as_str() {
            "" => relayer(&request)?,
            named => named.to_owned(),
        };
        let req = request.into_inner();
        self.read(req.consistency).await?;
        let cursor = self
            .node
            .reader()
            .relay_cursor(&instance, req.src_eid)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(cursor_to_pb(cursor, &instance, req.src_eid)))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::RelayJob>, Status> {
        let req = request.into_inner();
        let id = job_id("job_id", &req.job_id)?;
        self.read(req.consistency).await?;
        let job = self
            .node
            .reader()
            .relay_job(id)
            .await
            .map_err(CoordinatorError::from)?
            .ok_or(CoordinatorError::NotFound {
                what: "relay job",
                id: id.to_string(),
            })?;
        Ok(Response::new(wire::job_to_pb(&job)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = request.into_inner();
        let state = wire::job_state("state", req.state).map_err(malformed)?;
        let size = page_size(req.page_size)?;
        let token = match req.page_token.as_str() {
            "" => None,
            t => Some(t.parse::<JobId>().map_err(|reason| {
                invalid(
                    "page_token",
                    format!("is not a token a listing returned ({reason})"),
                )
            })?),
        };
        self.read(req.consistency).await?;
        let (jobs, next) = self
            .node
            .reader()
            .relay_jobs(state, size, token)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(wire::job_to_pb).collect(),
            next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetRelayStatusRequest>,
    ) -> Result<Response<pb::RelayStatus>, Status> {
        let req = request.into_inner();
        self.read(req.consistency).await?;
        let reader = self.node.reader();
        let cursors = reader
            .relay_cursors()
            .await
            .map_err(CoordinatorError::from)?;
        let counts = reader
            .relay_job_counts()
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::RelayStatus {
            cursors: cursors
                .into_iter()
                .map(|c| {
                    let (instance, src_eid) = (c.instance.clone(), c.src_eid);
                    cursor_to_pb(Some(c), &instance, src_eid)
                })
                .collect(),
            jobs: JobState::ALL
                .into_iter()
                .map(|state| pb::JobCount {
                    state: pb::JobState::from(state) as i32,
                    count: counts.get(&state).copied().unwrap_or(0),
                })
                .collect(),
        }))
    }
}
