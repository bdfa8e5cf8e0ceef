//! Sessions from a client's side: a signing whose call returns the signature, and following
//! any session to its end.
//!
//! [`sign`] is one `CreateSigning` call with `wait` set: the coordinator answers once the
//! session is completed, failed or expired (at the latest at its deadline). Only when that
//! answer is still pending or running (no expiry committed in time, or a server that predates
//! `wait`) does it follow the session with [`watch`].

use std::time::{Duration, Instant};

use mpc_proto::v1 as pb;
use mpc_proto::v1::sessions_client::SessionsClient;
use tonic::{Code, Status};

use crate::{retryable, ClientError, Endpoints};

/// Completed, failed or expired: the session will not change again.
pub use mpc_proto::domain::is_terminal;

/// Creates a signing and returns the session once it ended, or as last seen when `limit` ran
/// out first (check its status). `req.wait` is set here; give `req` a request id so that a
/// retry on another node (after a connection broke mid-call) waits for the same session
/// instead of making a second one, and so that a call cut off by `limit` still learns which
/// session it made. `on_update` sees the session as the call answered it when that was not
/// final, then every change the watch brings.
pub async fn sign(
    endpoints: &Endpoints,
    mut req: pb::CreateSigningRequest,
    limit: Duration,
    mut on_update: impl FnMut(&pb::Session),
) -> Result<pb::Session, ClientError> {
    let started = Instant::now();
    req.wait = true;
    let create = |req: pb::CreateSigningRequest| {
        move |ch| {
            let req = req.clone();
            async move {
                SessionsClient::new(ch)
                    .create_signing(req)
                    .await
                    .map(|r| r.into_inner())
            }
        }
    };
    // The answer comes when the session ends: each attempt may take all of `limit`, not
    // just the endpoints' timeout for quick calls.
    let created = match endpoints.call_for(limit, create(req.clone())).await {
        Ok(created) => created,
        // `limit` ran out first, so the call never said which session it made. The request
        // id finds it: the same request again, not waiting, answers that session at once.
        Err(e) if gave_up(&e) && !req.request_id.is_empty() => {
            req.wait = false;
            endpoints.call(create(req)).await?
        }
        Err(e) => return Err(e),
    };
    let session = created.session.ok_or_else(|| {
        ClientError::Status(Status::internal("CreateSigning answered no session"))
    })?;
    if is_terminal(session.status) {
        return Ok(session);
    }
    on_update(&session);
    let left = limit.saturating_sub(started.elapsed());
    match watch(endpoints, &session.session_id, left, on_update).await {
        Ok(latest) => Ok(latest),
        // No node answered the watch in time: the session as the call left it.
        Err(ClientError::Unreachable { .. }) => Ok(session),
        Err(e) => Err(e),
    }
}

/// A call that ended because the client's time ran out, not because a node refused it.
fn gave_up(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } => true,
        ClientError::Status(s) => matches!(s.code(), Code::Cancelled | Code::DeadlineExceeded),
        _ => false,
    }
}

/// Follows a session with `WatchSession` until it ends or `limit` runs out, re-opening the
/// watch on whichever node answers when a stream breaks (a leader change, a restart).
/// Returns the session as last seen (check its status), or an error when no node showed it
/// within `limit`, or refused it for good (not found, not allowed, too many watches).
/// `on_update` sees every version the watches bring, repeats after a re-open included.
pub async fn watch(
    endpoints: &Endpoints,
    session_id: &str,
    limit: Duration,
    mut on_update: impl FnMut(&pb::Session),
) -> Result<pb::Session, ClientError> {
    let deadline = Instant::now() + limit;
    let mut last: Option<pb::Session> = None;
    let mut failure = String::from("no watch opened");
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let open = endpoints.call(|ch| {
            let session_id = session_id.to_owned();
            async move {
                SessionsClient::new(ch)
                    .watch_session(pb::WatchSessionRequest { session_id })
                    .await
                    .map(|r| r.into_inner())
            }
        });
        let mut stream = match tokio::time::timeout(left, open).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(ClientError::Status(status))) if !retryable(&status) => {
                return Err(ClientError::Status(status))
            }
            Ok(Err(e)) => {
                failure = e.to_string();
                tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                continue;
            }
            Err(_) => break,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.message()).await {
                Ok(Ok(Some(session))) => {
                    on_update(&session);
                    if is_terminal(session.status) {
                        return Ok(session);
                    }
                    last = Some(session);
                }
                // The node went away or ended the stream early: watch again elsewhere.
                Ok(Ok(None)) => {
                    failure = "the watch ended before the session".into();
                    break;
                }
                Ok(Err(status)) => {
                    failure = status.message().to_owned();
                    break;
                }
                Err(_) => break,
            }
        }
    }
    last.ok_or_else(|| ClientError::Unreachable {
        timeout: limit,
        tried: endpoints.addrs().join(","),
        last: failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_sessions_are_terminal() {
        for s in [
            pb::SessionStatus::Completed,
            pb::SessionStatus::Failed,
            pb::SessionStatus::Expired,
        ] {
            assert!(is_terminal(s as i32), "{s:?}");
        }
        for s in [
            pb::SessionStatus::Unspecified,
            pb::SessionStatus::Pending,
            pb::SessionStatus::Running,
        ] {
            assert!(!is_terminal(s as i32), "{s:?}");
        }
        assert!(!is_terminal(99));
    }

    #[tokio::test]
    async fn a_watch_nobody_answers_ends_at_its_limit_with_an_error() {
        // Bound but not listening: connections are refused, and the port stays ours.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let endpoints = Endpoints::new(
            vec![addr],
            Duration::from_millis(200),
            crate::Credentials::insecure_plaintext(),
        );
        let started = Instant::now();
        let err = watch(&endpoints, "s", Duration::from_millis(500), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
