//! Reads made after the faults are healed: each register once more, and every signing
//! request's session, so that the checker can tell what survived and settle every signing
//! whose outcome the load did not learn.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mpc_proto::v1 as pb;
use mpc_proto::v1::sessions_client::SessionsClient;
use tonic::Code;

use crate::authority::Initiator;
use crate::check::FINAL_CLIENT;
use crate::client::Coordinators;
use crate::history::{now_us, Event, Op, OpKind, Outcome, Recorder, SignDetail};
use crate::load::{approved_signing, get_session, is_terminal, read_description, status_name};

enum Fetched {
    Found(Box<pb::Session>),
    Missing,
    NoAnswer(String),
}

async fn fetch(coords: &Coordinators, session_id: &str, budget: Duration) -> Fetched {
    match get_session(coords, 0, session_id, budget).await {
        Ok((s, _)) => Fetched::Found(Box::new(s)),
        Err(e) if e.code == Code::NotFound => Fetched::Missing,
        Err(e) => Fetched::NoAnswer(e.message),
    }
}

/// The session behind a request whose creation was never acknowledged: asking again with
/// the same request (id, input and approval expiry) returns the session if the first
/// request was committed, and otherwise creates it now, which is harmless. Returns the
/// session id and whether this call created it.
async fn resolve_request(
    coords: &Coordinators,
    op: &Op,
    detail: &SignDetail,
    initiator: &Initiator,
    budget: Duration,
) -> Result<(String, bool), String> {
    let input = detail.signing_input()?;
    let req = approved_signing(
        &op.key_id,
        &input,
        detail.request_id.clone(),
        detail.not_after_ms,
        initiator,
    )
    .map_err(|e| format!("{e:#}"))?;
    coords
        .call(0, budget, |ch| {
            let req = req.clone();
            async move {
                SessionsClient::new(ch)
                    .create_signing(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|e| e.message)
        .and_then(|(r, _)| {
            r.session
                .map(|s| (s.session_id, r.created))
                .ok_or_else(|| "no session in the answer".to_owned())
        })
}

pub async fn final_reads(
    coords: &Coordinators,
    events: &[Event],
    initiator: &Initiator,
    patience: Duration,
    rec: &Recorder,
) {
    for event in events {
        if let Event::Register { key_id, .. } = event {
            let op = read_description(coords, 0, key_id, patience).await;
            rec.record(Event::Op(Box::new(Op {
                client: FINAL_CLIENT.into(),
                ..op
            })));
        }
    }

    // One final look per request id, at the first operation that used it.
    let mut requests: BTreeMap<&str, (&Op, &SignDetail)> = BTreeMap::new();
    for event in events {
        if let Event::Op(op) = event {
            if let (OpKind::Sign, Some(detail)) = (op.kind, &op.sign) {
                if op.client != FINAL_CLIENT {
                    requests.entry(&detail.request_id).or_insert((op, detail));
                }
            }
        }
    }
    let deadline = Instant::now() + patience;
    for (op, detail) in requests.into_values() {
        let start_us = now_us();
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2));
        let resolved = match &detail.session_id {
            Some(s) => Ok((s.clone(), false)),
            None => resolve_request(coords, op, detail, initiator, left).await,
        };
        let session_id = resolved
            .as_ref()
            .map(|(s, _)| s.clone())
            .map_err(Clone::clone);
        let mut fin = SignDetail {
            session_id: session_id.as_ref().ok().cloned(),
            status: None,
            signature: None,
            failure_reason: None,
            attempt: 0,
            presignature_id: None,
            created_by_final_read: resolved.as_ref().is_ok_and(|(_, created)| *created),
            ..detail.clone()
        };
        let mut error = session_id.as_ref().err().cloned();
        if let Ok(session_id) = &session_id {
            loop {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(2));
                match fetch(coords, session_id, left).await {
                    Fetched::Missing => {
                        fin.status = Some("missing".into());
                        break;
                    }
                    Fetched::NoAnswer(e) => {
                        error = Some(e);
                        break;
                    }
                    Fetched::Found(s) => {
                        fin.status = Some(status_name(s.status));
                        fin.attempt = s.attempt;
                        if !s.signature.is_empty() {
                            fin.signature = Some(hex::encode(&s.signature));
                        }
                        if !s.failure_reason.is_empty() {
                            fin.failure_reason = Some(s.failure_reason.clone());
                        }
                        if !s.presignature_id.is_empty() {
                            fin.presignature_id = Some(s.presignature_id.clone());
                        }
                        if is_terminal(s.status) || Instant::now() >= deadline {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let outcome = match fin.status.as_deref() {
            Some("completed") => Outcome::Ok,
            Some("failed" | "expired") => Outcome::Fail,
            _ => Outcome::Unknown,
        };
        rec.record(Event::Op(Box::new(Op {
            client: FINAL_CLIENT.into(),
            kind: OpKind::Sign,
            key_id: op.key_id.clone(),
            value: None,
            start_us,
            end_us: now_us(),
            outcome,
            endpoint: String::new(),
            error,
            expect: None,
            sign: Some(fin),
        })));
    }
}
