//! Turning answers into text for people or JSON for scripts. JSON field names are stable.

use mpc_proto::v1 as pb;
use serde_json::{json, Value};

pub fn session_status(raw: i32) -> &'static str {
    match pb::SessionStatus::try_from(raw) {
        Ok(pb::SessionStatus::Pending) => "pending",
        Ok(pb::SessionStatus::Running) => "running",
        Ok(pb::SessionStatus::Completed) => "completed",
        Ok(pb::SessionStatus::Failed) => "failed",
        Ok(pb::SessionStatus::Expired) => "expired",
        _ => "unknown",
    }
}

pub fn session_kind(raw: i32) -> &'static str {
    match pb::SessionKind::try_from(raw) {
        Ok(pb::SessionKind::Keygen) => "keygen",
        Ok(pb::SessionKind::Sign) => "sign",
        Ok(pb::SessionKind::Presign) => "presign",
        Ok(pb::SessionKind::Refresh) => "refresh",
        _ => "unknown",
    }
}

fn hex_or_null(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        Value::String(format!("0x{}", hex::encode(bytes)))
    }
}

fn zero_null(v: u64) -> Value {
    if v == 0 {
        Value::Null
    } else {
        json!(v)
    }
}

pub fn session_json(s: &pb::Session) -> Value {
    json!({
        "session_id": s.session_id,
        "kind": session_kind(s.kind),
        "status": session_status(s.status),
        "scheme": s.scheme,
        "key_id": s.key_id,
        "threshold": s.threshold,
        "parties": s.parties,
        "digest": hex_or_null(&s.digest),
        "message": hex_or_null(&s.message),
        "hash": if s.hash.is_empty() { Value::Null } else { json!(s.hash) },
        "attempt": s.attempt,
        "presignature_id": if s.presignature_id.is_empty() { Value::Null } else { json!(s.presignature_id) },
        "public_key": hex_or_null(&s.public_key),
        "signature": hex_or_null(&s.signature),
        "failure_reason": if s.failure_reason.is_empty() { Value::Null } else { json!(s.failure_reason) },
        "blamed_parties": s.blamed_parties,
        "request_id": if s.request_id.is_empty() { Value::Null } else { json!(s.request_id) },
        "requested_by": s.requested_by,
        "created_at_ms": s.created_at_ms,
        "updated_at_ms": s.updated_at_ms,
        "deadline_ms": s.deadline_ms,
        "started_at_ms": zero_null(s.started_at_ms),
        "finished_at_ms": zero_null(s.finished_at_ms),
    })
}

pub fn session_line(s: &pb::Session) -> String {
    let mut line = format!(
        "{}  {:<7} {:<9} {:<16} key={} t={}",
        s.session_id,
        session_kind(s.kind),
        session_status(s.status),
        s.scheme,
        s.key_id,
        s.threshold
    );
    if !s.failure_reason.is_empty() {
        line.push_str(&format!("  reason: {}", s.failure_reason));
    }
    line
}
