//! The DVN relay job book (`mpc.v1.Relay`) in domain types, for relayers and the CLI. Every
//! call goes to whichever coordinator answers and follows the leader it names; writes are
//! idempotent in the book, so a call retried after a broken connection is safe.

use std::collections::BTreeMap;

use mpc_proto::relay as wire;
use mpc_proto::v1 as pb;
use mpc_proto::v1::relay_client::RelayClient;
use mpc_types::relay::{DiscoveredPacket, JobId, JobState, RelayJob, SubmissionOutcome, Verdict};
use tonic::Status;

use crate::{ClientError, Endpoints};

/// A relayer's cursor on one source chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The relayer instance.
    pub instance: String,
    /// The source chain's LayerZero endpoint id.
    pub src_eid: u32,
    /// Every packet up to and including this block is recorded; `None` before the first scan.
    pub block: Option<u64>,
    /// When it last moved (ms since the epoch).
    pub updated_at_ms: u64,
}

/// Every relayer's cursors and the number of jobs in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// Every relayer's cursor on every source chain.
    pub cursors: Vec<Cursor>,
    /// Jobs per state (every state present).
    pub jobs: BTreeMap<JobState, u64>,
}

/// The job book as one client sees it.
#[derive(Debug, Clone)]
pub struct RelayBook {
    endpoints: Endpoints,
}

fn malformed((field, reason): (String, String)) -> ClientError {
    ClientError::Status(Status::internal(format!(
        "a coordinator answered a malformed relay message: {field} {reason}"
    )))
}

fn job_from(j: &pb::RelayJob) -> Result<RelayJob, ClientError> {
    wire::job("job", j).map_err(malformed)
}

fn cursor_from(c: pb::RelayCursor) -> Cursor {
    Cursor {
        block: c.known.then_some(c.block),
        instance: c.instance,
        src_eid: c.src_eid,
        updated_at_ms: c.updated_at_ms,
    }
}

impl RelayBook {
    /// The book behind these coordinators.
    pub fn new(endpoints: Endpoints) -> Self {
        Self { endpoints }
    }

    /// The coordinators this book talks to.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The calling relayer's cursor on `src_eid` (`instance` empty), or another's.
    pub async fn cursor(&self, instance: &str, src_eid: u32) -> Result<Cursor, ClientError> {
        let req = pb::GetCursorRequest {
            instance: instance.to_owned(),
            src_eid,
            consistency: 0,
        };
        let c = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).get_cursor(req).await }
            })
            .await?
            .into_inner();
        Ok(cursor_from(c))
    }

    /// Records `packets` found on `src_eid` and moves the caller's cursor to `scanned_to`.
    pub async fn discover(
        &self,
        src_eid: u32,
        scanned_to: u64,
        packets: &[DiscoveredPacket],
        expiration: u64,
    ) -> Result<(), ClientError> {
        let req = pb::DiscoverRequest {
            src_eid,
            scanned_to,
            packets: packets.iter().map(wire::packet_to_pb).collect(),
            expiration,
        };
        self.endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).discover(req).await }
            })
            .await?;
        Ok(())
    }

    /// The caller's verdict on `attempt` of a job; answers the job as it stands after it.
    pub async fn record_verdict(
        &self,
        job_id: JobId,
        attempt: u32,
        verdict: &Verdict,
        quorum: u32,
        signers: u32,
    ) -> Result<RelayJob, ClientError> {
        let req = pb::RecordVerdictRequest {
            job_id: job_id.0.to_vec(),
            attempt,
            verdict: Some(wire::verdict_to_pb(verdict)),
            quorum,
            signers,
        };
        let job = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).record_verdict(req).await }
            })
            .await?
            .into_inner();
        job_from(&job)
    }

    /// Takes the submission lease of the jobs that are free; answers those now held.
    pub async fn claim(
        &self,
        job_ids: &[JobId],
        lease_ms: u64,
    ) -> Result<Vec<RelayJob>, ClientError> {
        let req = pb::ClaimRequest {
            job_ids: job_ids.iter().map(|id| id.0.to_vec()).collect(),
            lease_ms,
        };
        let resp = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).claim(req).await }
            })
            .await?
            .into_inner();
        resp.jobs.iter().map(job_from).collect()
    }

    /// Records that the caller sent `tx_hash` (account nonce `tx_nonce`) for the jobs.
    pub async fn record_submission(
        &self,
        job_ids: &[JobId],
        tx_hash: [u8; 32],
        tx_nonce: u64,
    ) -> Result<(), ClientError> {
        let req = pb::RecordSubmissionRequest {
            job_ids: job_ids.iter().map(|id| id.0.to_vec()).collect(),
            tx_hash: tx_hash.to_vec(),
            tx_nonce,
        };
        self.endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).record_submission(req).await }
            })
            .await?;
        Ok(())
    }

    /// Records how a job's submission ended.
    pub async fn record_outcome(
        &self,
        job_id: JobId,
        outcome: &SubmissionOutcome,
    ) -> Result<RelayJob, ClientError> {
        let req = pb::RecordOutcomeRequest {
            job_id: job_id.0.to_vec(),
            outcome: Some(wire::outcome_to_pb(outcome)),
        };
        let job = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).record_outcome(req).await }
            })
            .await?
            .into_inner();
        job_from(&job)
    }

    /// One job, or `None` when the book has no such job.
    pub async fn job(&self, job_id: JobId) -> Result<Option<RelayJob>, ClientError> {
        let req = pb::GetJobRequest {
            job_id: job_id.0.to_vec(),
            consistency: 0,
        };
        let answer = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).get_job(req).await }
            })
            .await;
        match answer {
            Ok(job) => job_from(&job.into_inner()).map(Some),
            Err(ClientError::Status(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of jobs: in `state` oldest first, or all in id order; after `page_token`.
    pub async fn jobs(
        &self,
        state: Option<JobState>,
        page_size: u32,
        page_token: Option<JobId>,
    ) -> Result<(Vec<RelayJob>, Option<JobId>), ClientError> {
        let req = pb::ListJobsRequest {
            state: state.map_or(0, |s| pb::JobState::from(s) as i32),
            page_size,
            page_token: page_token.map(|t| t.to_string()).unwrap_or_default(),
            consistency: 0,
        };
        let resp = self
            .endpoints
            .call(|ch| {
                let req = req.clone();
                async move { RelayClient::new(ch).list_jobs(req).await }
            })
            .await?
            .into_inner();
        let jobs = resp.jobs.iter().map(job_from).collect::<Result<_, _>>()?;
        let next = match resp.next_page_token.as_str() {
            "" => None,
            t => Some(
                t.parse()
                    .map_err(|reason: String| malformed(("next_page_token".into(), reason)))?,
            ),
        };
        Ok((jobs, next))
    }

    /// Every relayer's cursors and the job count of each state.
    pub async fn status(&self) -> Result<RelayStatus, ClientError> {
        let resp = self
            .endpoints
            .call(|ch| async move {
                RelayClient::new(ch)
                    .get_status(pb::GetRelayStatusRequest { consistency: 0 })
                    .await
            })
            .await?
            .into_inner();
        let mut jobs: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for count in resp.jobs {
            if let Ok(Some(state)) = wire::job_state("jobs.state", count.state) {
                jobs.insert(state, count.count);
            }
        }
        Ok(RelayStatus {
            cursors: resp.cursors.into_iter().map(cursor_from).collect(),
            jobs,
        })
    }
}
