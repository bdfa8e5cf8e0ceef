//! The DVN relayers' job book: commands, their stateless checks and their deterministic apply.
//!
//! Every command is written by one relayer instance, and the instance is the command's actor
//! (the coordinator stamps the authenticated identity, never a name the caller chose), so one
//! relayer can neither sign nor claim in another's name. Every command is idempotent: a
//! relayer that repeats a write after a crash or a lost answer changes nothing more.
//!
//! Tables: [`Table::RelayJobs`] by job id (hex), [`Table::RelayCursors`] by instance and
//! source eid; the index `j` | state, discovery time, job id lists the jobs in a state,
//! oldest first.

use serde::{Deserialize, Serialize};

use crate::apply::{load, StateTxn, Table};
use crate::codec::encode;
use crate::command::{
    check_id, CommandResponse, PruneRelayJobs, Rejection, ValidationError, MAX_PARTIES,
    MAX_REASON_LEN,
};
use crate::index;
use crate::model::{
    DiscoveredPacket, JobId, JobState, RelayJob, Submission, SubmissionOutcome, Verdict,
    PACKET_HEADER_LEN,
};
use crate::StoreError;

/// At most this many packets one [`RelayCommand::Discover`] records, and jobs one claim names.
pub const MAX_RELAY_BATCH: usize = 256;
/// The longest submission lease: a relayer that stalls holds its jobs no longer than this.
pub const MAX_LEASE_MS: u64 = 10 * 60 * 1000;
/// Bytes of an Ethereum signature r ‖ s ‖ v.
pub const SIGNATURE_LEN: usize = 65;

/// A relayer's write to the job book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayCommand {
    /// Records packets found on `src_eid` (known ones are left alone) and moves the actor's
    /// cursor there to `scanned_to` (never back), in one write: the cursor passes a block
    /// only once every packet in it is recorded.
    Discover {
        src_eid: u32,
        scanned_to: u64,
        packets: Vec<DiscoveredPacket>,
        /// The first attempt's execute expiration (seconds since the epoch).
        expiration: u64,
    },
    /// The actor's verdict on `attempt` of a job. `quorum` of `signers` distinct signatures
    /// sign it; more than `signers - quorum` refusals reject it.
    Verdict {
        job_id: JobId,
        attempt: u32,
        verdict: Verdict,
        quorum: u32,
        signers: u32,
    },
    /// The actor takes the submission lease of each job that is signed, whose lease ran out,
    /// or that it already holds, until `at_ms + lease_ms`.
    Claim { job_ids: Vec<JobId>, lease_ms: u64 },
    /// The actor, holding their leases, sent `tx_hash` with account nonce `tx_nonce`.
    Submitted {
        job_ids: Vec<JobId>,
        tx_hash: [u8; 32],
        tx_nonce: u64,
    },
    /// How a job's submission ended. Any instance may report it verified (it reads that from
    /// the chain); only the lease holder may retry or fail it.
    Outcome {
        job_id: JobId,
        outcome: SubmissionOutcome,
    },
}

impl RelayCommand {
    /// The job this command concerns, when it names exactly one.
    pub fn subject(&self) -> String {
        match self {
            RelayCommand::Discover {
                src_eid,
                scanned_to,
                ..
            } => format!("source {src_eid} to block {scanned_to}"),
            RelayCommand::Verdict { job_id, .. } | RelayCommand::Outcome { job_id, .. } => {
                job_id.to_string()
            }
            RelayCommand::Claim { job_ids, .. } | RelayCommand::Submitted { job_ids, .. } => {
                match job_ids.as_slice() {
                    [one] => one.to_string(),
                    many => format!("{} jobs", many.len()),
                }
            }
        }
    }

    /// The audit action's name.
    pub fn action(&self) -> &'static str {
        match self {
            RelayCommand::Discover { .. } => "relay.discover",
            RelayCommand::Verdict { .. } => "relay.verdict",
            RelayCommand::Claim { .. } => "relay.claim",
            RelayCommand::Submitted { .. } => "relay.submitted",
            RelayCommand::Outcome { .. } => "relay.outcome",
        }
    }

    /// The stateless rules (field bounds), checked before proposing and again in apply.
    pub fn validate(&self, actor: &str) -> Result<(), ValidationError> {
        check_id("instance", actor)?;
        match self {
            RelayCommand::Discover {
                src_eid, packets, ..
            } => {
                if packets.len() > MAX_RELAY_BATCH {
                    return Err(ValidationError::new(
                        "packets",
                        format!(
                            "at most {MAX_RELAY_BATCH} in one write, got {}",
                            packets.len()
                        ),
                    ));
                }
                for (i, p) in packets.iter().enumerate() {
                    if p.src_eid != *src_eid {
                        return Err(ValidationError::new(
                            format!("packets[{i}].src_eid"),
                            format!("found on source {src_eid}, not {}", p.src_eid),
                        ));
                    }
                    if p.header.len() > PACKET_HEADER_LEN {
                        return Err(ValidationError::new(
                            format!("packets[{i}].header"),
                            format!("at most {PACKET_HEADER_LEN} bytes, got {}", p.header.len()),
                        ));
                    }
                }
                Ok(())
            }
            RelayCommand::Verdict {
                verdict,
                quorum,
                signers,
                ..
            } => {
                if *quorum == 0 || quorum > signers || *signers as usize > MAX_PARTIES {
                    return Err(ValidationError::new(
                        "quorum",
                        format!(
                            "must be 1 to signers ({signers}), and signers at most {MAX_PARTIES}; got {quorum}"
                        ),
                    ));
                }
                match verdict {
                    Verdict::Signed { signature, .. } if signature.len() != SIGNATURE_LEN => {
                        Err(ValidationError::new(
                            "verdict.signature",
                            format!("must be {SIGNATURE_LEN} bytes, got {}", signature.len()),
                        ))
                    }
                    Verdict::Rejected { reason } => check_reason("verdict.reason", reason),
                    Verdict::Signed { .. } => Ok(()),
                }
            }
            RelayCommand::Claim { job_ids, lease_ms } => {
                check_batch(job_ids)?;
                if *lease_ms == 0 || *lease_ms > MAX_LEASE_MS {
                    return Err(ValidationError::new(
                        "lease_ms",
                        format!("must be 1 to {MAX_LEASE_MS}, got {lease_ms}"),
                    ));
                }
                Ok(())
            }
            RelayCommand::Submitted { job_ids, .. } => check_batch(job_ids),
            RelayCommand::Outcome { outcome, .. } => match outcome {
                SubmissionOutcome::Verified { .. } => Ok(()),
                SubmissionOutcome::Retry { reason, .. } | SubmissionOutcome::Failed { reason } => {
                    check_reason("outcome.reason", reason)
                }
            },
        }
    }
}

fn check_batch(job_ids: &[JobId]) -> Result<(), ValidationError> {
    if job_ids.is_empty() || job_ids.len() > MAX_RELAY_BATCH {
        return Err(ValidationError::new(
            "job_ids",
            format!(
                "must name 1 to {MAX_RELAY_BATCH} jobs, got {}",
                job_ids.len()
            ),
        ));
    }
    Ok(())
}

fn check_reason(field: &str, reason: &str) -> Result<(), ValidationError> {
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_REASON_LEN} bytes, got {}", reason.len()),
        ));
    }
    Ok(())
}

/// A relayer's position on one source chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCursor {
    pub instance: String,
    pub src_eid: u32,
    /// Every packet up to and including this block is recorded.
    pub block: u64,
    pub updated_at_ms: u64,
}

/// The key of a cursor in [`Table::RelayCursors`]: instance ids hold no NUL.
pub fn cursor_key(instance: &str, src_eid: u32) -> Vec<u8> {
    let mut key = instance.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&src_eid.to_be_bytes());
    key
}

/// The index entry that lists `job` among the jobs in its state, oldest first.
pub fn state_entry(job: &RelayJob) -> Vec<u8> {
    let mut key = index::prefix(index::RELAY_BY_STATE, &[job.state.as_str().as_bytes()]);
    key.extend_from_slice(&job.discovered_at_ms.to_be_bytes());
    key.push(0);
    key.extend_from_slice(job.job_id.to_string().as_bytes());
    key
}

fn save(
    txn: &mut impl StateTxn,
    before: Option<&RelayJob>,
    job: &RelayJob,
) -> Result<(), StoreError> {
    if let Some(before) = before {
        txn.delete(Table::Indexes, state_entry(before));
    }
    txn.put(Table::Indexes, state_entry(job), Vec::new());
    txn.put(
        Table::RelayJobs,
        job.job_id.to_string().into_bytes(),
        encode("relay job", job)?,
    );
    Ok(())
}

fn job(txn: &impl StateTxn, job_id: &JobId) -> Result<Option<RelayJob>, StoreError> {
    load(txn, Table::RelayJobs, &job_id.to_string(), "relay job")
}

fn not_found(job_id: &JobId) -> Rejection {
    Rejection::NotFound {
        kind: "relay job".into(),
        id: job_id.to_string(),
    }
}

/// Forgets the jobs `p` names that ended (verified, rejected or failed) at or before its
/// cutoff, with their index entries; any other is left alone. Which jobs every relayer's
/// cursor has passed, so that no listener finds their packets again, the proposer judged:
/// cursors only move forward, so that still holds when this applies.
pub(crate) fn prune(
    txn: &mut impl StateTxn,
    p: &PruneRelayJobs,
) -> Result<CommandResponse, StoreError> {
    let mut jobs = 0;
    for job_id in &p.job_ids {
        let Some(before) = job(txn, job_id)? else {
            continue;
        };
        if !before.state.is_terminal() || before.updated_at_ms > p.cutoff_ms {
            continue;
        }
        txn.delete(Table::Indexes, state_entry(&before));
        txn.delete(Table::RelayJobs, job_id.to_string().into_bytes());
        jobs += 1;
    }
    Ok(CommandResponse::PrunedRelayJobs { jobs })
}

/// Applies a relayer's command written by `instance` at `at_ms`.
pub(crate) fn apply(
    txn: &mut impl StateTxn,
    at_ms: u64,
    instance: &str,
    cmd: &RelayCommand,
) -> Result<CommandResponse, StoreError> {
    match cmd {
        RelayCommand::Discover {
            src_eid,
            scanned_to,
            packets,
            expiration,
        } => {
            for packet in packets {
                let job_id = JobId::of(packet);
                if job(txn, &job_id)?.is_some() {
                    continue;
                }
                let new = RelayJob {
                    job_id,
                    packet: packet.clone(),
                    state: JobState::Discovered,
                    attempt: 0,
                    expiration: *expiration,
                    discovered_by: instance.to_owned(),
                    discovered_at_ms: at_ms,
                    updated_at_ms: at_ms,
                    verdicts: Default::default(),
                    submission: None,
                    verified_tx: None,
                    reason: None,
                };
                save(txn, None, &new)?;
            }
            let key = cursor_key(instance, *src_eid);
            let current = txn
                .get(Table::RelayCursors, &key)?
                .map(|b| crate::codec::decode::<RelayCursor>("relay cursor", &b))
                .transpose()?;
            // Block 0 is no progress: a write that only records packets names it.
            if *scanned_to > current.as_ref().map_or(0, |c| c.block) {
                let cursor = RelayCursor {
                    instance: instance.to_owned(),
                    src_eid: *src_eid,
                    block: *scanned_to,
                    updated_at_ms: at_ms,
                };
                txn.put(Table::RelayCursors, key, encode("relay cursor", &cursor)?);
            }
            Ok(CommandResponse::Empty)
        }
        RelayCommand::Verdict {
            job_id,
            attempt,
            verdict,
            quorum,
            signers,
        } => {
            let Some(before) = job(txn, job_id)? else {
                return Ok(CommandResponse::Rejected(not_found(job_id)));
            };
            // A verdict on an earlier attempt signs an expiration nobody submits any more,
            // and a finished or leased job needs no more signatures.
            if before.attempt != *attempt || before.state != JobState::Discovered {
                return Ok(CommandResponse::RelayJob(Box::new(before)));
            }
            let mut after = before.clone();
            after.verdicts.insert(instance.to_owned(), verdict.clone());
            after.updated_at_ms = at_ms;
            let quorum = *quorum as usize;
            if after.quorum_signatures(quorum).is_some() {
                after.state = JobState::Signed;
                after.reason = None;
            } else if after.rejections() > (*signers as usize).saturating_sub(quorum) {
                after.state = JobState::Rejected;
                after.reason = Some(rejection_reasons(&after));
            }
            if after != before {
                save(txn, Some(&before), &after)?;
            }
            Ok(CommandResponse::RelayJob(Box::new(after)))
        }
        RelayCommand::Claim { job_ids, lease_ms } => {
            let mut held = Vec::new();
            for job_id in job_ids {
                let Some(before) = job(txn, job_id)? else {
                    continue;
                };
                let lease = before.submission.as_ref();
                let free = match before.state {
                    JobState::Signed => true,
                    JobState::Submitting => {
                        lease.is_none_or(|s| s.submitter == instance || s.lease_until_ms <= at_ms)
                    }
                    _ => false,
                };
                if !free {
                    continue;
                }
                let mut after = before.clone();
                after.state = JobState::Submitting;
                after.updated_at_ms = at_ms;
                // A taker keeps what the last holder sent, so that it checks that transaction
                // on the chain before it sends another.
                let (tx_hash, tx_nonce) = lease.map_or((None, None), |s| (s.tx_hash, s.tx_nonce));
                after.submission = Some(Submission {
                    submitter: instance.to_owned(),
                    lease_until_ms: at_ms.saturating_add(*lease_ms),
                    tx_hash,
                    tx_nonce,
                });
                save(txn, Some(&before), &after)?;
                held.push(after);
            }
            Ok(CommandResponse::RelayJobs(held))
        }
        RelayCommand::Submitted {
            job_ids,
            tx_hash,
            tx_nonce,
        } => {
            for job_id in job_ids {
                let Some(before) = job(txn, job_id)? else {
                    return Ok(CommandResponse::Rejected(not_found(job_id)));
                };
                let holds = before.state == JobState::Submitting
                    && before
                        .submission
                        .as_ref()
                        .is_some_and(|s| s.submitter == instance);
                if !holds {
                    return Ok(CommandResponse::Rejected(Rejection::Unauthorised {
                        reason: format!(
                            "{instance} does not hold the submission lease of job {job_id}"
                        ),
                    }));
                }
            }
            for job_id in job_ids {
                let Some(before) = job(txn, job_id)? else {
                    continue;
                };
                let mut after = before.clone();
                if let Some(s) = after.submission.as_mut() {
                    s.tx_hash = Some(*tx_hash);
                    s.tx_nonce = Some(*tx_nonce);
                }
                after.updated_at_ms = at_ms;
                if after != before {
                    save(txn, Some(&before), &after)?;
                }
            }
            Ok(CommandResponse::Empty)
        }
        RelayCommand::Outcome { job_id, outcome } => {
            let Some(before) = job(txn, job_id)? else {
                return Ok(CommandResponse::Rejected(not_found(job_id)));
            };
            if before.state.is_terminal() {
                return Ok(CommandResponse::RelayJob(Box::new(before)));
            }
            // What the chain shows anyone may report; giving up or trying again is the
            // lease holder's call.
            let verified = matches!(outcome, SubmissionOutcome::Verified { .. });
            if !verified && !holds_lease(&before, instance) {
                return Ok(CommandResponse::Rejected(Rejection::Unauthorised {
                    reason: format!(
                        "{instance} does not hold the submission lease of job {job_id}"
                    ),
                }));
            }
            let mut after = before.clone();
            after.updated_at_ms = at_ms;
            match outcome {
                SubmissionOutcome::Verified { tx_hash } => {
                    after.state = JobState::Verified;
                    after.verified_tx = *tx_hash;
                    after.reason = None;
                }
                SubmissionOutcome::Retry { reason, expiration } => {
                    // Signatures over the old expiration are useless now: a new attempt
                    // collects new ones.
                    after.state = JobState::Discovered;
                    after.attempt = before.attempt.saturating_add(1);
                    after.expiration = *expiration;
                    after.verdicts.clear();
                    after.submission = None;
                    after.reason = Some(reason.clone());
                }
                SubmissionOutcome::Failed { reason } => {
                    after.state = JobState::Failed;
                    after.reason = Some(reason.clone());
                }
            }
            save(txn, Some(&before), &after)?;
            Ok(CommandResponse::RelayJob(Box::new(after)))
        }
    }
}

fn holds_lease(job: &RelayJob, instance: &str) -> bool {
    job.state == JobState::Submitting
        && job
            .submission
            .as_ref()
            .is_some_and(|s| s.submitter == instance)
}

fn rejection_reasons(job: &RelayJob) -> String {
    let reasons: Vec<String> = job
        .verdicts
        .iter()
        .filter_map(|(instance, v)| match v {
            Verdict::Rejected { reason } => Some(format!("{instance}: {reason}")),
            Verdict::Signed { .. } => None,
        })
        .collect();
    let mut joined = reasons.join("; ");
    if joined.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
    }
    joined
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::apply::tests::{state, MemTxn};

    fn packet(nonce: u64) -> DiscoveredPacket {
        DiscoveredPacket {
            src_eid: 30101,
            dst_eid: 30212,
            nonce,
            guid: [nonce as u8; 32],
            header: vec![1; PACKET_HEADER_LEN],
            payload_hash: [7; 32],
            source_tx: [9; 32],
            source_block: 5,
        }
    }

    fn run(txn: &mut MemTxn, at_ms: u64, who: &str, cmd: RelayCommand) -> CommandResponse {
        cmd.validate(who).unwrap();
        apply(txn, at_ms, who, &cmd).unwrap()
    }

    fn signed(signer: u8) -> Verdict {
        Verdict::Signed {
            signer: [signer; 20],
            signature: vec![signer; SIGNATURE_LEN],
            confirmations: 2,
        }
    }

    fn verdict(job_id: JobId, attempt: u32, v: Verdict) -> RelayCommand {
        RelayCommand::Verdict {
            job_id,
            attempt,
            verdict: v,
            quorum: 2,
            signers: 3,
        }
    }

    fn discover(txn: &mut MemTxn, who: &str, scanned_to: u64, packets: Vec<DiscoveredPacket>) {
        run(
            txn,
            1,
            who,
            RelayCommand::Discover {
                src_eid: 30101,
                scanned_to,
                packets,
                expiration: 1000,
            },
        );
    }

    fn stored(txn: &MemTxn, id: JobId) -> RelayJob {
        job(txn, &id).unwrap().unwrap()
    }

    fn cursor(txn: &MemTxn, who: &str) -> Option<u64> {
        txn.get(Table::RelayCursors, &cursor_key(who, 30101))
            .unwrap()
            .map(|b| crate::codec::decode::<RelayCursor>("c", &b).unwrap().block)
    }

    #[test]
    fn discovery_records_each_packet_once_and_moves_only_its_instances_cursor_forward() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1)]);
        let id = JobId::of(&packet(1));
        assert_eq!(stored(&txn, id).discovered_by, "dvn-1");
        // Another instance finds the same packet: one job, its first finder kept.
        discover(&mut txn, "dvn-2", 12, vec![packet(1), packet(2)]);
        assert_eq!(stored(&txn, id).discovered_by, "dvn-1");
        assert_eq!(stored(&txn, JobId::of(&packet(2))).discovered_by, "dvn-2");
        // A replayed, older scan never moves a cursor back.
        discover(&mut txn, "dvn-1", 4, vec![]);
        assert_eq!(cursor(&txn, "dvn-1"), Some(10));
        assert_eq!(cursor(&txn, "dvn-2"), Some(12));
        assert_eq!(cursor(&txn, "dvn-3"), None);
    }

    #[test]
    fn a_prune_forgets_only_jobs_that_ended_before_its_cutoff_with_their_index_entries() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1), packet(2), packet(3)]);
        let (done, open, late) = (
            JobId::of(&packet(1)),
            JobId::of(&packet(2)),
            JobId::of(&packet(3)),
        );
        let no = |r: &str| Verdict::Rejected { reason: r.into() };
        for id in [done, late] {
            let at = if id == done { 20 } else { 90 };
            run(
                &mut txn,
                at,
                "dvn-1",
                verdict(id, 0, no("unknown send library")),
            );
            run(
                &mut txn,
                at,
                "dvn-2",
                verdict(id, 0, no("unknown send library")),
            );
            assert_eq!(stored(&txn, id).state, JobState::Rejected);
        }
        let pruned = super::prune(
            &mut txn,
            &PruneRelayJobs {
                cutoff_ms: 50,
                job_ids: vec![done, open, late, JobId([0xee; 32])],
            },
        )
        .unwrap();
        // The open job and the one that ended after the cutoff stay; an unknown id is
        // nothing to forget.
        assert_eq!(pruned, CommandResponse::PrunedRelayJobs { jobs: 1 });
        assert!(job(&txn, &done).unwrap().is_none());
        assert_eq!(stored(&txn, open).state, JobState::Discovered);
        assert_eq!(stored(&txn, late).state, JobState::Rejected);
        let entries: Vec<Vec<u8>> = txn
            .0
            .keys()
            .filter(|(t, k)| *t == Table::Indexes && k.starts_with(index::RELAY_BY_STATE))
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(
            entries,
            {
                let mut e = vec![
                    state_entry(&stored(&txn, open)),
                    state_entry(&stored(&txn, late)),
                ];
                e.sort();
                e
            },
            "the pruned job's index entry goes with it"
        );
    }

    #[test]
    fn a_quorum_of_distinct_signers_signs_a_job_and_refusals_past_hope_reject_it() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1), packet(2)]);
        let (a, b) = (JobId::of(&packet(1)), JobId::of(&packet(2)));
        run(&mut txn, 2, "dvn-1", verdict(a, 0, signed(5)));
        assert_eq!(stored(&txn, a).state, JobState::Discovered);
        // A second instance on the same signer is not a second signature.
        run(&mut txn, 3, "dvn-2", verdict(a, 0, signed(5)));
        assert_eq!(stored(&txn, a).state, JobState::Discovered);
        run(&mut txn, 4, "dvn-3", verdict(a, 0, signed(3)));
        assert_eq!(stored(&txn, a).state, JobState::Signed);

        let no = |r: &str| Verdict::Rejected { reason: r.into() };
        run(&mut txn, 5, "dvn-1", verdict(b, 0, no("guid mismatch")));
        assert_eq!(
            stored(&txn, b).state,
            JobState::Discovered,
            "one refusal leaves two signers: a quorum is still possible"
        );
        run(&mut txn, 6, "dvn-2", verdict(b, 0, no("guid mismatch")));
        let rejected = stored(&txn, b);
        assert_eq!(rejected.state, JobState::Rejected);
        assert!(rejected.reason.unwrap().contains("dvn-2: guid mismatch"));
        // Late verdicts change nothing once the job moved on.
        run(&mut txn, 7, "dvn-3", verdict(b, 0, signed(3)));
        assert_eq!(stored(&txn, b).state, JobState::Rejected);
    }

    #[test]
    fn one_instance_holds_a_lease_until_it_runs_out_and_a_taker_sees_what_was_sent() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1)]);
        let id = JobId::of(&packet(1));
        run(&mut txn, 2, "dvn-1", verdict(id, 0, signed(1)));
        run(&mut txn, 2, "dvn-2", verdict(id, 0, signed(2)));
        let claim = |ms| RelayCommand::Claim {
            job_ids: vec![id],
            lease_ms: ms,
        };
        let held = |r: CommandResponse| match r {
            CommandResponse::RelayJobs(jobs) => jobs.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(held(run(&mut txn, 100, "dvn-1", claim(1000))), 1);
        assert_eq!(held(run(&mut txn, 500, "dvn-2", claim(1000))), 0);
        let sent = RelayCommand::Submitted {
            job_ids: vec![id],
            tx_hash: [0xaa; 32],
            tx_nonce: 7,
        };
        // Only the holder may say it sent.
        assert!(matches!(
            run(&mut txn, 600, "dvn-2", sent.clone()),
            CommandResponse::Rejected(Rejection::Unauthorised { .. })
        ));
        run(&mut txn, 600, "dvn-1", sent);
        // The lease runs out: another instance takes it over, with the sent transaction.
        assert_eq!(held(run(&mut txn, 1100, "dvn-2", claim(1000))), 1);
        let job = stored(&txn, id);
        let lease = job.submission.unwrap();
        assert_eq!(lease.submitter, "dvn-2");
        assert_eq!(lease.tx_hash, Some([0xaa; 32]));
        assert_eq!(lease.tx_nonce, Some(7));
    }

    #[test]
    fn a_retry_starts_a_new_attempt_with_new_signatures_and_verified_is_final() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1)]);
        let id = JobId::of(&packet(1));
        run(&mut txn, 2, "dvn-1", verdict(id, 0, signed(1)));
        run(&mut txn, 2, "dvn-2", verdict(id, 0, signed(2)));
        run(
            &mut txn,
            3,
            "dvn-1",
            RelayCommand::Claim {
                job_ids: vec![id],
                lease_ms: 1000,
            },
        );
        let retry = RelayCommand::Outcome {
            job_id: id,
            outcome: SubmissionOutcome::Retry {
                reason: "expired".into(),
                expiration: 2000,
            },
        };
        assert!(matches!(
            run(&mut txn, 4, "dvn-2", retry.clone()),
            CommandResponse::Rejected(Rejection::Unauthorised { .. })
        ));
        run(&mut txn, 4, "dvn-1", retry);
        let job = stored(&txn, id);
        assert_eq!(
            (job.state, job.attempt, job.expiration),
            (JobState::Discovered, 1, 2000)
        );
        assert!(job.verdicts.is_empty() && job.submission.is_none());
        // A verdict on the old attempt is ignored.
        run(&mut txn, 5, "dvn-3", verdict(id, 0, signed(3)));
        assert!(stored(&txn, id).verdicts.is_empty());

        // Anyone who reads the chain may report it verified; then nothing moves it.
        let verified = RelayCommand::Outcome {
            job_id: id,
            outcome: SubmissionOutcome::Verified {
                tx_hash: Some([1; 32]),
            },
        };
        run(&mut txn, 6, "dvn-3", verified);
        run(
            &mut txn,
            7,
            "dvn-1",
            RelayCommand::Outcome {
                job_id: id,
                outcome: SubmissionOutcome::Failed {
                    reason: "late".into(),
                },
            },
        );
        assert_eq!(stored(&txn, id).state, JobState::Verified);
    }

    #[test]
    fn the_state_index_follows_every_change() {
        let mut txn = state();
        discover(&mut txn, "dvn-1", 10, vec![packet(1)]);
        let id = JobId::of(&packet(1));
        let entries = |txn: &MemTxn| -> Vec<Vec<u8>> {
            txn.0
                .keys()
                .filter(|(t, k)| *t == Table::Indexes && k.starts_with(index::RELAY_BY_STATE))
                .map(|(_, k)| k.clone())
                .collect()
        };
        assert_eq!(entries(&txn), vec![state_entry(&stored(&txn, id))]);
        run(&mut txn, 2, "dvn-1", verdict(id, 0, signed(1)));
        run(&mut txn, 2, "dvn-2", verdict(id, 0, signed(2)));
        assert_eq!(entries(&txn), vec![state_entry(&stored(&txn, id))]);
        assert_eq!(stored(&txn, id).state, JobState::Signed);
    }

    #[test]
    fn bounds_are_checked_naming_the_field() {
        let bad = verdict(
            JobId::of(&packet(1)),
            0,
            Verdict::Signed {
                signer: [1; 20],
                signature: vec![0; 64],
                confirmations: 1,
            },
        );
        assert_eq!(
            bad.validate("dvn-1").unwrap_err().field,
            "verdict.signature"
        );
        let bad = RelayCommand::Verdict {
            job_id: JobId::of(&packet(1)),
            attempt: 0,
            verdict: signed(1),
            quorum: 4,
            signers: 3,
        };
        assert_eq!(bad.validate("dvn-1").unwrap_err().field, "quorum");
        let bad = RelayCommand::Claim {
            job_ids: vec![],
            lease_ms: 10,
        };
        assert_eq!(bad.validate("dvn-1").unwrap_err().field, "job_ids");
        assert_eq!(
            RelayCommand::Claim {
                job_ids: vec![JobId([0; 32])],
                lease_ms: MAX_LEASE_MS + 1
            }
            .validate("dvn-1")
            .unwrap_err()
            .field,
            "lease_ms"
        );
        assert_eq!(
            verdict(JobId([0; 32]), 0, signed(1))
                .validate("dvn/1")
                .unwrap_err()
                .field,
            "instance"
        );
    }
}
