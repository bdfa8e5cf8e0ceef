//! The party's link to the cluster: find the leader, register, hold the Attach stream, run
//! what arrives on it, and start over after any failure.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mpc_proto::v1 as pb;
use mpc_proto::v1::party_gateway_client::PartyGatewayClient;
use mpc_tls::ClientTls;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::PartyState;
use mpc_proto::hello_message;

struct Running {
    attempt: u32,
    inbox: mpsc::UnboundedSender<pb::Envelope>,
    task: JoinHandle<()>,
}

/// Why a connection ended; a leader hint says where to go next.
enum Ended {
    LeaderElsewhere(String),
    Failed(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection that lasted this long was a working attachment, not a failed attempt.
const HELD_CONNECTION: Duration = Duration::from_secs(5);

/// Keeps a stream to the leader open for as long as the party runs.
pub async fn run(state: Arc<PartyState>, endpoints: Vec<String>, tls: Option<ClientTls>) {
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let target = hint.take().unwrap_or_else(|| {
            let e = endpoints[next % endpoints.len()].clone();
            next += 1;
            e
        });
        let started = std::time::Instant::now();
        match connect_once(&state, &target, tls.as_ref()).await {
            Ended::LeaderElsewhere(leader) => {
                tracing::debug!(from = %target, to = %leader, "following the leader");
                hint = Some(leader);
                backoff = Duration::from_millis(100);
                continue;
            }
            Ended::Failed(reason) => {
                tracing::info!(endpoint = %target, %reason, "coordinator connection ended");
                // A stream that had been up ended (its leader died or stepped down): look for
                // the next leader at once, not after the backoff earlier failures built up.
                if started.elapsed() > HELD_CONNECTION {
                    backoff = Duration::from_millis(100);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect_once(state: &Arc<PartyState>, target: &str, tls: Option<&ClientTls>) -> Ended {
    let endpoint = match mpc_tls::endpoint(target) {
        // Pings notice a leader whose host vanished without closing the connection.
        Ok(e) => e
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true),
        Err(e) => return Ended::Failed(format!("bad endpoint: {e}")),
    };
    let connect = endpoint.connect_with_connector(mpc_tls::Connector::new(tls.cloned()));
    // Bounded as a whole: the connect timeout does not cover name resolution, which can hang
    // for seconds for a coordinator whose container is gone.
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Ended::Failed(format!("connect: {e}")),
        Err(_) => {
            return Ended::Failed(format!("connect: no connection within {CONNECT_TIMEOUT:?}"))
        }
    };
    let mut client = PartyGatewayClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    let register = pb::RegisterPartyRequest {
        party_id: state.party_id.clone(),
        signing_public_key: state.identity.signing_public_key().to_vec(),
        encryption_public_key: state.identity.encryption_public_key().to_vec(),
        endpoint: state.advertised_endpoint.clone(),
    };
    if let Err(status) = client.register(register).await {
        if status.code() == tonic::Code::FailedPrecondition {
            // Until an admin enrols these keys the party can do nothing: say what to enrol.
            tracing::warn!(
                party = %state.party_id,
                identity = %state.identity.public_hex(),
                "not enrolled: an admin runs `mpcctl party enroll --id {} --identity <identity>`",
                state.party_id
            );
        }
        return ended_by(status);
    }

    let (tx, rx) = mpsc::channel::<pb::PartyMessage>(1024);
    let mut inbound = match client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return ended_by(status),
    };
    let mut running: HashMap<String, Running> = HashMap::new();
    let ended = loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break Ended::Failed("the coordinator closed the stream".into()),
            Err(status) => break ended_by(status),
        };
        running.retain(|_, r| !r.task.is_finished());
        match message.body {
            Some(pb::coordinator_message::Body::Challenge(challenge)) => {
                let signature = state.identity.sign(&hello_message(
                    &challenge.nonce,
                    challenge.node_id,
                    &state.party_id,
                ));
                let hello = pb::PartyMessage {
                    body: Some(pb::party_message::Body::Hello(pb::Hello {
                        party_id: state.party_id.clone(),
                        signature: signature.to_vec(),
                    })),
                };
                if tx.send(hello).await.is_err() {
                    break Ended::Failed("stream closed before Hello".into());
                }
                state.connected.store(true, Ordering::Relaxed);
                tracing::info!(coordinator = %target, node = challenge.node_id, "connected to the leader");
            }
            Some(pb::coordinator_message::Body::Assignment(assignment)) => {
                let session_id = assignment.session_id.clone();
                if running
                    .get(&session_id)
                    .is_some_and(|r| r.attempt == assignment.attempt)
                {
                    // The same run again (a confused or hostile coordinator): the run in
                    // progress goes on; a second one is never started.
                    tracing::warn!(session = %session_id, attempt = assignment.attempt, "duplicate assignment ignored");
                    continue;
                }
                if let Some(old) = running.remove(&session_id) {
                    // A new attempt replaces the old one.
                    old.task.abort();
                }
                let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
                let attempt = assignment.attempt;
                // The same span name and field as the coordinator's, so one session's lines
                // come out of every log with one search.
                let span = tracing::info_span!("session", session = %session_id, attempt);
                let task = tokio::spawn(
                    {
                        let state = state.clone();
                        let tx = tx.clone();
                        async move {
                            let outcome =
                                crate::session::run(state, assignment, inbox_rx, tx.clone()).await;
                            let _ = tx
                                .send(pb::PartyMessage {
                                    body: Some(pb::party_message::Body::Outcome(outcome)),
                                })
                                .await;
                        }
                    }
                    .instrument(span),
                );
                running.insert(
                    session_id,
                    Running {
                        attempt,
                        inbox: inbox_tx,
                        task,
                    },
                );
            }
            Some(pb::coordinator_message::Body::Envelope(envelope)) => {
                match running.get(&envelope.session_id) {
                    Some(r) if r.attempt == envelope.attempt => {
                        let _ = r.inbox.send(envelope);
                    }
                    _ => {
                        tracing::debug!(session = %envelope.session_id, "envelope for no running attempt")
                    }
                }
            }
            Some(pb::coordinator_message::Body::Cancel(cancel)) => {
                if let Some(r) = running.get(&cancel.session_id) {
                    if r.attempt == cancel.attempt {
                        tracing::info!(session = %cancel.session_id, reason = %cancel.reason, "session cancelled");
                        r.task.abort();
                        running.remove(&cancel.session_id);
                    }
                }
            }
            None => {}
        }
    };
    state.connected.store(false, Ordering::Relaxed);
    // Attempts belong to the leader that assigned them; a new leader starts new ones.
    for (_, r) in running {
        r.task.abort();
    }
    ended
}

fn ended_by(status: tonic::Status) -> Ended {
    let leader = status
        .metadata()
        .get(mpc_proto::LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match leader {
        Some(l) if status.code() == tonic::Code::Unavailable && !l.is_empty() => {
            Ended::LeaderElsewhere(l)
        }
        _ => Ended::Failed(format!("{}: {}", status.code(), status.message())),
    }
}
