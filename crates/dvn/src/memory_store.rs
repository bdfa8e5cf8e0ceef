//! A job book in memory, for the stages' unit tests: the transitions the replicated state
//! makes (quorum → signed, leases, retries), shared by several "instances" of one test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mpc_types::relay::{
    DiscoveredPacket, JobId, JobState, RelayJob, Submission, SubmissionOutcome, Verdict,
};

use crate::error::unix_now_ms;
use crate::jobs::{JobStore, JobStoreError};

#[derive(Debug, Default)]
struct Book {
    cursors: BTreeMap<(String, u32), u64>,
    jobs: BTreeMap<JobId, RelayJob>,
    clock_ms: u64,
}

/// One instance's handle on a shared in-memory book.
#[derive(Debug, Clone)]
pub(crate) struct MemoryStore {
    book: Arc<Mutex<Book>>,
    instance: String,
    quorum: usize,
    instances: usize,
}

/// The id the book gives a discovered packet.
pub(crate) fn job_id_of(p: &DiscoveredPacket) -> JobId {
    JobId::of(p)
}

impl MemoryStore {
    pub(crate) fn new(instance: &str, quorum: usize, instances: usize) -> Self {
        Self {
            book: Arc::default(),
            instance: instance.into(),
            quorum,
            instances,
        }
    }

    /// Another instance on the same book.
    pub(crate) fn as_instance(&self, instance: &str) -> Self {
        Self {
            instance: instance.into(),
            ..self.clone()
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> Result<T, JobStoreError> {
        let mut book = self
            .book
            .lock()
            .map_err(|_| JobStoreError::Unavailable("poisoned".into()))?;
        book.clock_ms = book.clock_ms.max(unix_now_ms());
        Ok(f(&mut book))
    }

    /// Moves every lease's clock past its end.
    pub(crate) fn expire_leases(&self) {
        if let Ok(mut book) = self.book.lock() {
            for job in book.jobs.values_mut() {
                if let Some(s) = &mut job.submission {
                    s.lease_until_ms = 0;
                }
            }
        }
    }

    pub(crate) fn all(&self) -> Vec<RelayJob> {
        self.book
            .lock()
            .map(|b| b.jobs.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl JobStore for MemoryStore {
    async fn cursor(&self, src_eid: u32) -> Result<Option<u64>, JobStoreError> {
        let key = (self.instance.clone(), src_eid);
        self.with(|b| b.cursors.get(&key).copied())
    }

    async fn discover(
        &self,
        src_eid: u32,
        scanned_to: u64,
        packets: Vec<DiscoveredPacket>,
        expiration: u64,
    ) -> Result<(), JobStoreError> {
        let instance = self.instance.clone();
        self.with(|b| {
            let now = b.clock_ms;
            for packet in packets {
                let job_id = job_id_of(&packet);
                b.jobs.entry(job_id).or_insert_with(|| RelayJob {
                    job_id,
                    packet,
                    state: JobState::Discovered,
                    attempt: 0,
                    expiration,
                    discovered_by: instance.clone(),
                    discovered_at_ms: now,
                    updated_at_ms: now,
                    verdicts: BTreeMap::new(),
                    submission: None,
                    verified_tx: None,
                    reason: None,
                });
            }
            let cursor = b.cursors.entry((instance, src_eid)).or_insert(scanned_to);
            *cursor = (*cursor).max(scanned_to);
        })
    }

    async fn jobs(&self, state: JobState, limit: usize) -> Result<Vec<RelayJob>, JobStoreError> {
        self.with(|b| {
            let mut jobs: Vec<RelayJob> = b
                .jobs
                .values()
                .filter(|j| j.state == state)
                .cloned()
                .collect();
            jobs.sort_by_key(|j| j.discovered_at_ms);
            jobs.truncate(limit);
            jobs
        })
    }

    async fn job(&self, job_id: JobId) -> Result<Option<RelayJob>, JobStoreError> {
        self.with(|b| b.jobs.get(&job_id).cloned())
    }

    async fn record_verdict(
        &self,
        job_id: JobId,
        attempt: u32,
        verdict: Verdict,
    ) -> Result<RelayJob, JobStoreError> {
        let (instance, quorum, instances) = (self.instance.clone(), self.quorum, self.instances);
        self.with(|b| {
            let job = b
                .jobs
                .get_mut(&job_id)
                .ok_or_else(|| JobStoreError::Refused(format!("job_id: no job {job_id}")))?;
            if job.attempt == attempt && job.state == JobState::Discovered {
                job.verdicts.insert(instance, verdict);
                if job.quorum_signatures(quorum).is_some() {
                    job.state = JobState::Signed;
                } else if job.rejections() > instances - quorum {
                    job.state = JobState::Rejected;
                }
            }
            Ok(job.clone())
        })?
    }

    async fn claim(
        &self,
        job_ids: Vec<JobId>,
        lease_ms: u64,
    ) -> Result<Vec<RelayJob>, JobStoreError> {
        let instance = self.instance.clone();
        self.with(|b| {
            let now = b.clock_ms;
            let mut held = Vec::new();
            for id in job_ids {
                let Some(job) = b.jobs.get_mut(&id) else {
                    continue;
                };
                let free = match (&job.state, &job.submission) {
                    (JobState::Signed, _) => true,
                    (JobState::Submitting, Some(s)) => s.lease_until_ms <= now,
                    _ => false,
                };
                if free {
                    let previous = job.submission.take();
                    job.state = JobState::Submitting;
                    job.submission = Some(Submission {
                        submitter: instance.clone(),
                        lease_until_ms: now + lease_ms,
                        tx_hash: previous.as_ref().and_then(|s| s.tx_hash),
                        tx_nonce: previous.as_ref().and_then(|s| s.tx_nonce),
                    });
                    held.push(job.clone());
                }
            }
            held
        })
    }

    async fn submitted(
        &self,
        job_ids: Vec<JobId>,
        tx_hash: [u8; 32],
        tx_nonce: u64,
    ) -> Result<(), JobStoreError> {
        self.with(|b| {
            for id in job_ids {
                if let Some(s) = b.jobs.get_mut(&id).and_then(|j| j.submission.as_mut()) {
                    s.tx_hash = Some(tx_hash);
                    s.tx_nonce = Some(tx_nonce);
                }
            }
        })
    }

    async fn outcome(
        &self,
        job_id: JobId,
        outcome: SubmissionOutcome,
    ) -> Result<(), JobStoreError> {
        self.with(|b| {
            let Some(job) = b.jobs.get_mut(&job_id) else {
                return;
            };
            if job.state.is_terminal() {
                return;
            }
            match outcome {
                SubmissionOutcome::Verified { tx_hash } => {
                    job.state = JobState::Verified;
                    job.verified_tx = tx_hash;
                }
                SubmissionOutcome::Retry { reason, expiration } => {
                    job.state = JobState::Discovered;
                    job.attempt += 1;
                    job.expiration = expiration;
                    job.verdicts.clear();
                    job.submission = None;
                    job.reason = Some(reason);
                }
                SubmissionOutcome::Failed { reason } => {
                    job.state = JobState::Failed;
                    job.reason = Some(reason);
                }
            }
        })
    }
}
