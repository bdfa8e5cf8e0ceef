//! Generated protobuf types meet domain types here, and only here.

use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_raft_store::model::{
    KeyRecord, KeyStatus, SessionKind, SessionRecord, SessionResult, SessionStatus, SigningInput,
};

use crate::node::{ClusterView, Consistency};
use crate::scheduler::{Assignment, OutcomeResult, PartyOutcome};

pub fn session(s: &SessionRecord) -> pb::Session {
    let (public_key, signature) = match &s.result {
        Some(SessionResult::PublicKey(k)) => (k.clone(), Vec::new()),
        Some(SessionResult::Signature(sig)) => (Vec::new(), sig.clone()),
        Some(SessionResult::Presignature) => (Vec::new(), Vec::new()),
        None => (Vec::new(), Vec::new()),
    };
    let (digest, message, hash) = fields_of(s.signing_input.as_ref());
    pb::Session {
        session_id: s.session_id.clone(),
        kind: session_kind(s.kind) as i32,
        scheme: s.scheme.as_str().to_owned(),
        key_id: s.key_id.clone(),
        threshold: u32::from(s.threshold),
        parties: s.parties.clone(),
        digest,
        message,
        hash,
        attempt: s.attempt,
        // Set only when the signature came (or comes) from a presignature: a re-run signs in
        // full, though the record keeps the presignature its first attempt used up.
        presignature_id: s.attempt_presignature().unwrap_or_default().to_owned(),
        status: session_status(s.status) as i32,
        public_key,
        signature,
        failure_reason: s
            .failure
            .as_ref()
            .map(|f| f.reason.clone())
            .unwrap_or_default(),
        blamed_parties: s
            .failure
            .as_ref()
            .map(|f| f.blamed_parties.clone())
            .unwrap_or_default(),
        request_id: s.request_id.clone().unwrap_or_default(),
        requested_by: s.requested_by.clone(),
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        deadline_ms: s.deadline_ms,
        started_at_ms: s.started_at_ms.unwrap_or_default(),
        finished_at_ms: s.finished_at_ms.unwrap_or_default(),
    }
}

pub fn session_kind(k: SessionKind) -> pb::SessionKind {
    k.into()
}

pub fn session_status(s: SessionStatus) -> pb::SessionStatus {
    s.into()
}

/// `None` for "unspecified" (no filter); an unknown number is an error.
pub fn status_filter(raw: i32) -> Result<Option<SessionStatus>, crate::CoordinatorError> {
    match mpc_proto::domain::session_status(raw) {
        Ok(s) => Ok(Some(s)),
        Err(_) if raw == pb::SessionStatus::Unspecified as i32 => Ok(None),
        Err(_) => Err(crate::error::invalid(
            "status",
            format!("unknown value {raw}"),
        )),
    }
}

pub fn kind_filter(raw: i32) -> Result<Option<SessionKind>, crate::CoordinatorError> {
    match mpc_proto::domain::session_kind(raw) {
        Ok(k) => Ok(Some(k)),
        Err(_) if raw == pb::SessionKind::Unspecified as i32 => Ok(None),
        Err(_) => Err(crate::error::invalid(
            "kind",
            format!("unknown value {raw}"),
        )),
    }
}

pub fn consistency(raw: i32) -> Result<Consistency, crate::CoordinatorError> {
    match pb::ReadConsistency::try_from(raw) {
        Ok(pb::ReadConsistency::Unspecified | pb::ReadConsistency::Linearizable) => {
            Ok(Consistency::Linearizable)
        }
        Ok(pb::ReadConsistency::Local) => Ok(Consistency::Local),
        Err(_) => Err(crate::error::invalid(
            "consistency",
            format!("unknown value {raw}"),
        )),
    }
}

pub fn key_status_filter(raw: i32) -> Result<Option<KeyStatus>, crate::CoordinatorError> {
    match pb::KeyStatus::try_from(raw) {
        Ok(pb::KeyStatus::Unspecified) => Ok(None),
        Ok(pb::KeyStatus::Active) => Ok(Some(KeyStatus::Active)),
        Ok(pb::KeyStatus::Disabled) => Ok(Some(KeyStatus::Disabled)),
        Err(_) => Err(crate::error::invalid(
            "status",
            format!("unknown value {raw}"),
        )),
    }
}

pub fn key(k: &KeyRecord) -> pb::Key {
    pb::Key {
        key_id: k.key_id.clone(),
        scheme: k.scheme.as_str().to_owned(),
        threshold: u32::from(k.threshold),
        parties: k.parties.clone(),
        public_key: k.public_key.clone(),
        address: k.address.clone().unwrap_or_default(),
        status: match k.status {
            KeyStatus::Active => pb::KeyStatus::Active,
            KeyStatus::Disabled => pb::KeyStatus::Disabled,
        } as i32,
        description: k.description.clone(),
        tags: k.tags.clone().into_iter().collect(),
        keygen_session_id: k.keygen_session_id.clone(),
        created_at_ms: k.created_at_ms,
        updated_at_ms: k.updated_at_ms,
        policy: Some(mpc_proto::statements::policy_to(&k.policy)),
    }
}

pub fn cluster_status(v: &ClusterView) -> pb::ClusterStatus {
    pb::ClusterStatus {
        id: v.id,
        state: v.state.to_owned(),
        leader: v.leader,
        leader_grpc_addr: v.leader_grpc_addr.clone().unwrap_or_default(),
        term: v.term,
        members: v.members.clone(),
        learners: v.learners.clone(),
        nodes: v
            .nodes
            .iter()
            .map(|n| pb::Node {
                id: n.id,
                grpc_addr: n.grpc_addr.clone(),
                http_addr: n.http_addr.clone(),
                raft_addr: n.raft_addr.clone(),
                role: n.role.to_owned(),
                is_leader: n.is_leader,
                matched_index: n.matched_index,
            })
            .collect(),
        last_log_index: v.last_log_index,
        last_applied: v.last_applied,
        committed: v.committed,
        snapshot_index: v.snapshot_index,
        purged_index: v.purged_index,
        ready: v.ready,
    }
}

/// The API's digest, message and hash fields of a session's input (all empty without one).
fn fields_of(input: Option<&SigningInput>) -> (Vec<u8>, Vec<u8>, String) {
    input.map(SigningInput::to_fields).unwrap_or_default()
}

/// The wire form of a participant's assignment.
pub fn assignment(a: &Assignment) -> pb::Assignment {
    let s = &a.session;
    let (digest, message, hash) = fields_of(s.signing_input.as_ref());
    pb::Assignment {
        session_id: s.session_id.clone(),
        attempt: s.attempt,
        kind: session_kind(s.kind) as i32,
        scheme: s.scheme.as_str().into(),
        key_id: s.key_id.clone(),
        threshold: u32::from(s.threshold),
        key_parties: a.key_parties.clone(),
        participants: a.participants.clone(),
        identities: a
            .identities
            .iter()
            .map(|p| pb::PartyIdentity {
                enrolled_by: Some(statements::signature_to(&p.enrolled_by)),
                party_id: p.party_id.clone(),
                signing_public_key: p.signing_public_key.clone(),
                encryption_public_key: p.encryption_public_key.clone(),
            })
            .collect(),
        generate_aux_info: a.generate_aux_info,
        digest,
        message,
        hash,
        presignature_id: s.attempt_presignature().unwrap_or_default().to_owned(),
        deadline_ms: s.deadline_ms,
        policy: a.policy.as_ref().map(statements::policy_to),
        approvals: s.approvals.iter().map(statements::signature_to).collect(),
        approvals_not_after_ms: s.approvals_not_after_ms,
        request_id: s.request_id.clone().unwrap_or_default(),
    }
}

/// A party's report, or None when it carries no result.
pub fn party_outcome(o: pb::SessionOutcome) -> Option<PartyOutcome> {
    use pb::session_outcome::Result as R;
    let result = match o.result? {
        R::Failure(f) => OutcomeResult::Failure {
            reason: f.reason,
            blamed_parties: f.blamed_parties,
        },
        R::PublicKey(public_key) => OutcomeResult::PublicKey {
            public_key,
            report_signature: o.report_signature,
        },
        R::Signature(s) => OutcomeResult::Signature(s),
        R::PartialSignature(p) => OutcomeResult::PartialSignature(p),
        R::PresignatureStored(_) => OutcomeResult::PresignatureStored,
    };
    Some(PartyOutcome {
        session_id: o.session_id,
        attempt: o.attempt,
        result,
    })
}
