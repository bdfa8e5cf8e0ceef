//! Where the relayer keeps its work: the coordinators' Raft state, through `mpc.v1.Relay`.
//! The pipeline only sees this trait, so its stages are tested against an in-memory book and
//! run in production against the cluster.
//!
//! Every write is idempotent: a relayer that crashes after a write and repeats it on restart
//! changes nothing the first write did not.

use std::future::Future;

use mpc_types::relay::{DiscoveredPacket, JobId, JobState, RelayJob, SubmissionOutcome, Verdict};

/// A failure to reach or update the job book.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// No coordinator answered, or the leader refused the call for now; try again later.
    #[error("job book unavailable: {0}")]
    Unavailable(String),
    /// The book refused the write for good (naming the field and the reason).
    #[error("job book refused the write: {0}")]
    Refused(String),
}

/// The replicated job book, as one relayer instance (`instance`, e.g. `dvn-1`) uses it.
pub trait JobStore: Send + Sync {
    /// This instance's cursor on the source chain `src_eid`: the last block whose packets are
    /// all recorded, or `None` before the first scan.
    fn cursor(
        &self,
        src_eid: u32,
    ) -> impl Future<Output = Result<Option<u64>, JobStoreError>> + Send;

    /// Records `packets` (those already known are left as they are) and, in the same write,
    /// moves this instance's cursor on `src_eid` to `scanned_to` (never backwards). New jobs
    /// get `expiration` for their first attempt.
    fn discover(
        &self,
        src_eid: u32,
        scanned_to: u64,
        packets: Vec<DiscoveredPacket>,
        expiration: u64,
    ) -> impl Future<Output = Result<(), JobStoreError>> + Send;

    /// Jobs in `state`, oldest first, at most `limit`.
    fn jobs(
        &self,
        state: JobState,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RelayJob>, JobStoreError>> + Send;

    /// One job, if it exists.
    fn job(
        &self,
        job_id: JobId,
    ) -> impl Future<Output = Result<Option<RelayJob>, JobStoreError>> + Send;

    /// Records this instance's verdict on `attempt` of the job. Ignored when the job moved on
    /// to another attempt or ended; answers the job as it stands after the write.
    fn record_verdict(
        &self,
        job_id: JobId,
        attempt: u32,
        verdict: Verdict,
    ) -> impl Future<Output = Result<RelayJob, JobStoreError>> + Send;

    /// Takes the submission lease of each job that is signed, or whose lease (held by anyone)
    /// ran out, for `lease_ms`. Answers the jobs this instance now holds.
    fn claim(
        &self,
        job_ids: Vec<JobId>,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Vec<RelayJob>, JobStoreError>> + Send;

    /// Records that this instance sent `tx_hash` (account nonce `tx_nonce`) carrying the jobs.
    fn submitted(
        &self,
        job_ids: Vec<JobId>,
        tx_hash: [u8; 32],
        tx_nonce: u64,
    ) -> impl Future<Output = Result<(), JobStoreError>> + Send;

    /// Records how the submission of a job ended.
    fn outcome(
        &self,
        job_id: JobId,
        outcome: SubmissionOutcome,
    ) -> impl Future<Output = Result<(), JobStoreError>> + Send;
}
