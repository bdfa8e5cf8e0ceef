//! The one translation between the relay job book ([`mpc_types::relay`]) and its protobuf
//! form, both ways: the coordinator decodes requests and encodes jobs, the relayer and the CLI
//! the other way round. Errors name the field and the reason.

use mpc_types::relay::{
    DiscoveredPacket, JobId, JobState, RelayJob, Submission, SubmissionOutcome, Verdict,
};

use crate::statements::Malformed;
use crate::v1 as pb;

fn fixed<const N: usize>(field: &str, b: &[u8]) -> Result<[u8; N], Malformed> {
    b.try_into().map_err(|_| {
        (
            field.to_owned(),
            format!("must be {N} bytes, got {}", b.len()),
        )
    })
}

/// A job id from its 32 bytes.
pub fn job_id(field: &str, b: &[u8]) -> Result<JobId, Malformed> {
    fixed(field, b).map(JobId)
}

impl From<JobState> for pb::JobState {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Discovered => pb::JobState::Discovered,
            JobState::Signed => pb::JobState::Signed,
            JobState::Submitting => pb::JobState::Submitting,
            JobState::Verified => pb::JobState::Verified,
            JobState::Rejected => pb::JobState::Rejected,
            JobState::Failed => pb::JobState::Failed,
        }
    }
}

/// The domain state of a wire state number; `None` for unspecified (no filter).
pub fn job_state(field: &str, raw: i32) -> Result<Option<JobState>, Malformed> {
    Ok(Some(match pb::JobState::try_from(raw) {
        Ok(pb::JobState::Unspecified) => return Ok(None),
        Ok(pb::JobState::Discovered) => JobState::Discovered,
        Ok(pb::JobState::Signed) => JobState::Signed,
        Ok(pb::JobState::Submitting) => JobState::Submitting,
        Ok(pb::JobState::Verified) => JobState::Verified,
        Ok(pb::JobState::Rejected) => JobState::Rejected,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Err(_) => return Err((field.to_owned(), format!("unknown job state {raw}"))),
    }))
}

/// A packet's wire form.
pub fn packet_to_pb(p: &DiscoveredPacket) -> pb::Packet {
    pb::Packet {
        src_eid: p.src_eid,
        dst_eid: p.dst_eid,
        nonce: p.nonce,
        guid: p.guid.to_vec(),
        header: p.header.clone(),
        payload_hash: p.payload_hash.to_vec(),
        source_tx: p.source_tx.to_vec(),
        source_block: p.source_block,
    }
}

/// A packet from its wire form.
pub fn packet(field: &str, p: &pb::Packet) -> Result<DiscoveredPacket, Malformed> {
    Ok(DiscoveredPacket {
        src_eid: p.src_eid,
        dst_eid: p.dst_eid,
        nonce: p.nonce,
        guid: fixed(&format!("{field}.guid"), &p.guid)?,
        header: p.header.clone(),
        payload_hash: fixed(&format!("{field}.payload_hash"), &p.payload_hash)?,
        source_tx: fixed(&format!("{field}.source_tx"), &p.source_tx)?,
        source_block: p.source_block,
    })
}

/// A verdict's wire form.
pub fn verdict_to_pb(v: &Verdict) -> pb::Verdict {
    let verdict = match v {
        Verdict::Signed {
            signer,
            signature,
            confirmations,
        } => pb::verdict::Verdict::Signed(pb::Signed {
            signer: signer.to_vec(),
            signature: signature.clone(),
            confirmations: *confirmations,
        }),
        Verdict::Rejected { reason } => pb::verdict::Verdict::Rejected(reason.clone()),
    };
    pb::Verdict {
        verdict: Some(verdict),
    }
}

/// A verdict from its wire form.
pub fn verdict(field: &str, v: Option<&pb::Verdict>) -> Result<Verdict, Malformed> {
    match v.and_then(|v| v.verdict.as_ref()) {
        None => Err((field.to_owned(), "is required".into())),
        Some(pb::verdict::Verdict::Signed(s)) => Ok(Verdict::Signed {
            signer: fixed(&format!("{field}.signed.signer"), &s.signer)?,
            signature: s.signature.clone(),
            confirmations: s.confirmations,
        }),
        Some(pb::verdict::Verdict::Rejected(reason)) => Ok(Verdict::Rejected {
            reason: reason.clone(),
        }),
    }
}

/// An outcome from the wire form of `RecordOutcome`.
pub fn outcome(
    field: &str,
    o: Option<&pb::record_outcome_request::Outcome>,
) -> Result<SubmissionOutcome, Malformed> {
    use pb::record_outcome_request::Outcome;
    match o {
        None => Err((field.to_owned(), "is required".into())),
        Some(Outcome::VerifiedTx(tx)) if tx.is_empty() => {
            Ok(SubmissionOutcome::Verified { tx_hash: None })
        }
        Some(Outcome::VerifiedTx(tx)) => Ok(SubmissionOutcome::Verified {
            tx_hash: Some(fixed(&format!("{field}.verified_tx"), tx)?),
        }),
        Some(Outcome::Retry(r)) => Ok(SubmissionOutcome::Retry {
            reason: r.reason.clone(),
            expiration: r.expiration,
        }),
        Some(Outcome::Failed(reason)) => Ok(SubmissionOutcome::Failed {
            reason: reason.clone(),
        }),
    }
}

/// An outcome's wire form.
pub fn outcome_to_pb(o: &SubmissionOutcome) -> pb::record_outcome_request::Outcome {
    use pb::record_outcome_request::Outcome;
    match o {
        SubmissionOutcome::Verified { tx_hash } => {
            Outcome::VerifiedTx(tx_hash.map(|h| h.to_vec()).unwrap_or_default())
        }
        SubmissionOutcome::Retry { reason, expiration } => Outcome::Retry(pb::Retry {
            reason: reason.clone(),
            expiration: *expiration,
        }),
        SubmissionOutcome::Failed { reason } => Outcome::Failed(reason.clone()),
    }
}

/// A job's wire form.
pub fn job_to_pb(j: &RelayJob) -> pb::RelayJob {
    pb::RelayJob {
        job_id: j.job_id.0.to_vec(),
        packet: Some(packet_to_pb(&j.packet)),
        state: pb::JobState::from(j.state) as i32,
        attempt: j.attempt,
        expiration: j.expiration,
        discovered_by: j.discovered_by.clone(),
        discovered_at_ms: j.discovered_at_ms,
        updated_at_ms: j.updated_at_ms,
        verdicts: j
            .verdicts
            .iter()
            .map(|(instance, v)| pb::RelayVerdict {
                instance: instance.clone(),
                verdict: Some(verdict_to_pb(v)),
            })
            .collect(),
        submission: j.submission.as_ref().map(|s| pb::Submission {
            submitter: s.submitter.clone(),
            lease_until_ms: s.lease_until_ms,
            tx_hash: s.tx_hash.map(|h| h.to_vec()).unwrap_or_default(),
            tx_nonce: s.tx_nonce,
        }),
        verified_tx: j.verified_tx.map(|h| h.to_vec()).unwrap_or_default(),
        reason: j.reason.clone().unwrap_or_default(),
    }
}

/// A job from its wire form.
pub fn job(field: &str, j: &pb::RelayJob) -> Result<RelayJob, Malformed> {
    let packet_field = format!("{field}.packet");
    let optional_hash = |name: &str, b: &[u8]| -> Result<Option<[u8; 32]>, Malformed> {
        if b.is_empty() {
            Ok(None)
        } else {
            fixed(&format!("{field}.{name}"), b).map(Some)
        }
    };
    Ok(RelayJob {
        job_id: job_id(&format!("{field}.job_id"), &j.job_id)?,
        packet: packet(
            &packet_field,
            j.packet
                .as_ref()
                .ok_or_else(|| (packet_field.clone(), "is required".to_owned()))?,
        )?,
        state: job_state(&format!("{field}.state"), j.state)?
            .ok_or_else(|| (format!("{field}.state"), "is unspecified".to_owned()))?,
        attempt: j.attempt,
        expiration: j.expiration,
        discovered_by: j.discovered_by.clone(),
        discovered_at_ms: j.discovered_at_ms,
        updated_at_ms: j.updated_at_ms,
        verdicts: j
            .verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                verdict(&format!("{field}.verdicts[{i}]"), v.verdict.as_ref())
                    .map(|verdict| (v.instance.clone(), verdict))
            })
            .collect::<Result<_, _>>()?,
        submission: j
            .submission
            .as_ref()
            .map(|s| -> Result<Submission, Malformed> {
                Ok(Submission {
                    submitter: s.submitter.clone(),
                    lease_until_ms: s.lease_until_ms,
                    tx_hash: optional_hash("submission.tx_hash", &s.tx_hash)?,
                    tx_nonce: s.tx_nonce,
                })
            })
            .transpose()?,
        verified_tx: optional_hash("verified_tx", &j.verified_tx)?,
        reason: (!j.reason.is_empty()).then(|| j.reason.clone()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_job_survives_the_wire_and_bad_bytes_are_named() {
        let packet = DiscoveredPacket {
            src_eid: 30101,
            dst_eid: 30212,
            nonce: 3,
            guid: [1; 32],
            header: vec![2; 81],
            payload_hash: [3; 32],
            source_tx: [4; 32],
            source_block: 9,
        };
        let original = RelayJob {
            job_id: JobId::of(&packet),
            packet,
            state: JobState::Submitting,
            attempt: 1,
            expiration: 77,
            discovered_by: "dvn-1".into(),
            discovered_at_ms: 5,
            updated_at_ms: 6,
            verdicts: [
                (
                    "dvn-1".to_string(),
                    Verdict::Signed {
                        signer: [5; 20],
                        signature: vec![6; 65],
                        confirmations: 2,
                    },
                ),
                (
                    "dvn-2".to_string(),
                    Verdict::Rejected {
                        reason: "reorged out".into(),
                    },
                ),
            ]
            .into(),
            submission: Some(Submission {
                submitter: "dvn-2".into(),
                lease_until_ms: 100,
                tx_hash: Some([7; 32]),
                tx_nonce: Some(4),
            }),
            verified_tx: None,
            reason: Some("first try expired".into()),
        };
        assert_eq!(job("job", &job_to_pb(&original)).unwrap(), original);

        let mut wire = job_to_pb(&original);
        wire.packet.as_mut().unwrap().guid.pop();
        assert_eq!(job("job", &wire).unwrap_err().0, "job.packet.guid");
        assert_eq!(job_state("state", 99).unwrap_err().0, "state");
        assert_eq!(job_state("state", 0).unwrap(), None);
        assert_eq!(verdict("verdict", None).unwrap_err().0, "verdict");
        for o in [
            SubmissionOutcome::Verified {
                tx_hash: Some([1; 32]),
            },
            SubmissionOutcome::Verified { tx_hash: None },
            SubmissionOutcome::Retry {
                reason: "x".into(),
                expiration: 3,
            },
            SubmissionOutcome::Failed { reason: "y".into() },
        ] {
            assert_eq!(outcome("o", Some(&outcome_to_pb(&o))).unwrap(), o);
        }
    }
}
