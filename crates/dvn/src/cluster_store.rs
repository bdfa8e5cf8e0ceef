//! The job book in production: the coordinators' Raft state, through `mpc.v1.Relay`. The
//! instance the book knows this relayer by is the name in its certificate; nothing here can
//! claim another.

use mpc_client::relay::RelayBook;
use mpc_client::{retryable, ClientError, Endpoints};
use mpc_types::relay::{DiscoveredPacket, JobId, JobState, RelayJob, SubmissionOutcome, Verdict};

use crate::jobs::{JobStore, JobStoreError};

/// The cluster's job book, for one relayer with a quorum of `quorum` among `signers`.
#[derive(Debug, Clone)]
pub struct ClusterJobStore {
    book: RelayBook,
    quorum: u32,
    signers: u32,
}

impl ClusterJobStore {
    /// The book behind `endpoints` (whose credentials are this relayer's certificate).
    pub fn new(endpoints: Endpoints, quorum: u32, signers: u32) -> Self {
        Self {
            book: RelayBook::new(endpoints),
            quorum,
            signers,
        }
    }

    /// Whether a coordinator answers (for `/ready`).
    pub async fn reachable(&self) -> bool {
        self.book.status().await.is_ok()
    }
}

fn store_error(e: ClientError) -> JobStoreError {
    match &e {
        ClientError::Unreachable { .. } => JobStoreError::Unavailable(e.to_string()),
        ClientError::Status(s) if retryable(s) => JobStoreError::Unavailable(e.to_string()),
        _ => JobStoreError::Refused(e.to_string()),
    }
}

impl JobStore for ClusterJobStore {
    async fn cursor(&self, src_eid: u32) -> Result<Option<u64>, JobStoreError> {
        let cursor = self.book.cursor("", src_eid).await.map_err(store_error)?;
        Ok(cursor.block)
    }

    async fn discover(
        &self,
        src_eid: u32,
        scanned_to: u64,
        packets: Vec<DiscoveredPacket>,
        expiration: u64,
    ) -> Result<(), JobStoreError> {
        // The book takes a bounded batch per write; the cursor moves with the last one only,
        // so a crash between batches rescans (and re-records, harmlessly) the rest.
        let batches: Vec<&[DiscoveredPacket]> = if packets.is_empty() {
            vec![&[]]
        } else {
            packets.chunks(MAX_BATCH).collect()
        };
        let last = batches.len() - 1;
        for (i, batch) in batches.into_iter().enumerate() {
            let to = if i == last {
                scanned_to
            } else {
                // Earlier batches record packets without moving the cursor past any of them.
                self.cursor(src_eid).await?.unwrap_or(0)
            };
            self.book
                .discover(src_eid, to, batch, expiration)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn jobs(&self, state: JobState, limit: usize) -> Result<Vec<RelayJob>, JobStoreError> {
        let mut jobs = Vec::new();
        let mut token = None;
        while jobs.len() < limit {
            let want = u32::try_from((limit - jobs.len()).min(1000)).unwrap_or(1000);
            let (page, next) = self
                .book
                .jobs(Some(state), want, token)
                .await
                .map_err(store_error)?;
            jobs.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(jobs)
    }

    async fn job(&self, job_id: JobId) -> Result<Option<RelayJob>, JobStoreError> {
        self.book.job(job_id).await.map_err(store_error)
    }

    async fn record_verdict(
        &self,
        job_id: JobId,
        attempt: u32,
        verdict: Verdict,
    ) -> Result<RelayJob, JobStoreError> {
        self.book
            .record_verdict(job_id, attempt, &verdict, self.quorum, self.signers)
            .await
            .map_err(store_error)
    }

    async fn claim(
        &self,
        job_ids: Vec<JobId>,
        lease_ms: u64,
    ) -> Result<Vec<RelayJob>, JobStoreError> {
        let mut held = Vec::new();
        for batch in job_ids.chunks(MAX_BATCH) {
            held.extend(
                self.book
                    .claim(batch, lease_ms)
                    .await
                    .map_err(store_error)?,
            );
        }
        Ok(held)
    }

    async fn submitted(
        &self,
        job_ids: Vec<JobId>,
        tx_hash: [u8; 32],
        tx_nonce: u64,
    ) -> Result<(), JobStoreError> {
        for batch in job_ids.chunks(MAX_BATCH) {
            self.book
                .record_submission(batch, tx_hash, tx_nonce)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn outcome(
        &self,
        job_id: JobId,
        outcome: SubmissionOutcome,
    ) -> Result<(), JobStoreError> {
        self.book
            .record_outcome(job_id, &outcome)
            .await
            .map(drop)
            .map_err(store_error)
    }
}

/// Jobs per write: the book's own bound (`mpc_raft_store::relay::MAX_RELAY_BATCH`).
const MAX_BATCH: usize = 256;
