//! Generated protobuf types meet domain types here, and only here.

use mpc_proto::v1 as pb;
use mpc_raft_store::model::{
    KeyRecord, KeyStatus, SessionKind, SessionRecord, SessionResult, SessionStatus, SigningPayload,
};

use crate::node::{ClusterView, Consistency};

pub fn session(s: &SessionRecord) -> pb::Session {
    let (public_key, signature) = match &s.result {
        Some(SessionResult::PublicKey(k)) => (k.clone(), Vec::new()),
        Some(SessionResult::Signature(sig)) => (Vec::new(), sig.clone()),
        Some(SessionResult::Presignature) => (Vec::new(), Vec::new()),
        None => (Vec::new(), Vec::new()),
    };
    pb::Session {
        session_id: s.session_id.clone(),
        kind: session_kind(s.kind) as i32,
        scheme: s.scheme.as_str().to_owned(),
        key_id: s.key_id.clone(),
        threshold: u32::from(s.threshold),
        parties: s.parties.clone(),
        digest: match &s.signing_input {
            Some(SigningPayload::Digest(d)) => d.clone(),
            _ => Vec::new(),
        },
        message: match &s.signing_input {
            Some(SigningPayload::Message { message, .. }) => message.clone(),
            _ => Vec::new(),
        },
        hash: match &s.signing_input {
            Some(SigningPayload::Message { hash: Some(h), .. }) => h.as_str().into(),
            _ => String::new(),
        },
        attempt: s.attempt,
        presignature_id: s.presignature_id.clone().unwrap_or_default(),
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
    match k {
        SessionKind::Keygen => pb::SessionKind::Keygen,
        SessionKind::Sign => pb::SessionKind::Sign,
        SessionKind::Presign => pb::SessionKind::Presign,
        SessionKind::Refresh => pb::SessionKind::Refresh,
    }
}

pub fn session_status(s: SessionStatus) -> pb::SessionStatus {
    match s {
        SessionStatus::Pending => pb::SessionStatus::Pending,
        SessionStatus::Running => pb::SessionStatus::Running,
        SessionStatus::Completed => pb::SessionStatus::Completed,
        SessionStatus::Failed => pb::SessionStatus::Failed,
        SessionStatus::Expired => pb::SessionStatus::Expired,
    }
}

/// `None` for "unspecified" (no filter); an unknown number is an error.
pub fn status_filter(raw: i32) -> Result<Option<SessionStatus>, crate::CoordinatorError> {
    match pb::SessionStatus::try_from(raw) {
        Ok(pb::SessionStatus::Unspecified) => Ok(None),
        Ok(pb::SessionStatus::Pending) => Ok(Some(SessionStatus::Pending)),
        Ok(pb::SessionStatus::Running) => Ok(Some(SessionStatus::Running)),
        Ok(pb::SessionStatus::Completed) => Ok(Some(SessionStatus::Completed)),
        Ok(pb::SessionStatus::Failed) => Ok(Some(SessionStatus::Failed)),
        Ok(pb::SessionStatus::Expired) => Ok(Some(SessionStatus::Expired)),
        Err(_) => Err(crate::error::invalid(
            "status",
            format!("unknown value {raw}"),
        )),
    }
}

pub fn kind_filter(raw: i32) -> Result<Option<SessionKind>, crate::CoordinatorError> {
    match pb::SessionKind::try_from(raw) {
        Ok(pb::SessionKind::Unspecified) => Ok(None),
        Ok(pb::SessionKind::Keygen) => Ok(Some(SessionKind::Keygen)),
        Ok(pb::SessionKind::Sign) => Ok(Some(SessionKind::Sign)),
        Ok(pb::SessionKind::Presign) => Ok(Some(SessionKind::Presign)),
        Ok(pb::SessionKind::Refresh) => Ok(Some(SessionKind::Refresh)),
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
