//! The leader's party message router: which parties hold a stream to this node, which
//! session attempts are running among which parties, and envelope delivery between them.
//!
//! The router never opens an envelope. It checks only what it can: the envelope's sender is
//! the party whose authenticated stream carried it, and sender and receiver both take part
//! in the running attempt. Everything else (authenticity, secrecy, replay) the parties check
//! end to end.

use std::collections::HashMap;
use std::sync::Mutex;

use mpc_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

pub type PartySender = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

#[derive(Debug)]
struct Connection {
    id: u64,
    tx: PartySender,
}

#[derive(Debug)]
struct Run {
    attempt: u32,
    participants: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    next_connection: u64,
    parties: HashMap<String, Connection>,
    runs: HashMap<String, Run>,
}

#[derive(Debug, Default)]
pub struct Router {
    state: Mutex<State>,
}

/// Why an envelope was not delivered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("envelope sender {claimed:?} is not the stream's party {party:?}")]
    ForgedSender { party: String, claimed: String },
    #[error("no running attempt {attempt} of session {session_id}")]
    NoSuchRun { session_id: String, attempt: u32 },
    #[error("{0} does not take part in this attempt")]
    NotParticipant(String),
}

impl Router {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated (each update
        // is one insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a party's stream, replacing (and thereby closing) an older one. Returns the
    /// connection id to detach with.
    pub fn attach(&self, party_id: &str, tx: PartySender) -> u64 {
        let mut s = self.state();
        s.next_connection += 1;
        let id = s.next_connection;
        s.parties.insert(party_id.to_owned(), Connection { id, tx });
        id
    }

    /// Removes a party's stream unless a newer one replaced it.
    pub fn detach(&self, party_id: &str, connection: u64) -> bool {
        let mut s = self.state();
        if s.parties.get(party_id).is_some_and(|c| c.id == connection) {
            s.parties.remove(party_id);
            true
        } else {
            false
        }
    }

    pub fn is_online(&self, party_id: &str) -> bool {
        self.state()
            .parties
            .get(party_id)
            .is_some_and(|c| !c.tx.is_closed())
    }

    /// The parties with an open stream to this node.
    pub fn online_parties(&self) -> Vec<String> {
        self.state()
            .parties
            .iter()
            .filter(|(_, c)| !c.tx.is_closed())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Drops every stream (this node stopped leading): parties reconnect to the new leader.
    pub fn disconnect_all(&self) {
        let mut s = self.state();
        s.parties.clear();
        s.runs.clear();
    }

    pub fn start_run(&self, session_id: &str, attempt: u32, participants: Vec<String>) {
        self.state().runs.insert(
            session_id.to_owned(),
            Run {
                attempt,
                participants,
            },
        );
    }

    pub fn end_run(&self, session_id: &str) {
        self.state().runs.remove(session_id);
    }

    fn sender(&self, party_id: &str) -> Option<PartySender> {
        self.state().parties.get(party_id).map(|c| c.tx.clone())
    }

    /// Sends a message to a party; false when it has no open stream.
    pub async fn send(&self, party_id: &str, message: pb::CoordinatorMessage) -> bool {
        match self.sender(party_id) {
            Some(tx) => tx.send(Ok(message)).await.is_ok(),
            None => false,
        }
    }

    /// Delivers an envelope from the party on stream `from` to its receiver (or to every
    /// other participant for a broadcast).
    pub async fn route(&self, from: &str, envelope: pb::Envelope) -> Result<(), RouteError> {
        if envelope.sender != from {
            return Err(RouteError::ForgedSender {
                party: from.to_owned(),
                claimed: envelope.sender,
            });
        }
        let receivers: Vec<(String, Option<PartySender>)> = {
            let s = self.state();
            let run = s
                .runs
                .get(&envelope.session_id)
                .filter(|r| r.attempt == envelope.attempt)
                .ok_or_else(|| RouteError::NoSuchRun {
                    session_id: envelope.session_id.clone(),
                    attempt: envelope.attempt,
                })?;
            if !run.participants.iter().any(|p| p == from) {
                return Err(RouteError::NotParticipant(from.to_owned()));
            }
            let targets: Vec<&String> = if envelope.receiver.is_empty() {
                run.participants.iter().filter(|p| *p != from).collect()
            } else if run.participants.contains(&envelope.receiver) {
                vec![&envelope.receiver]
            } else {
                return Err(RouteError::NotParticipant(envelope.receiver.clone()));
            };
            targets
                .into_iter()
                .map(|p| (p.clone(), s.parties.get(p).map(|c| c.tx.clone())))
                .collect()
        };
        for (party, tx) in receivers {
            let delivered = match tx {
                Some(tx) => tx
                    .send(Ok(pb::CoordinatorMessage {
                        body: Some(pb::coordinator_message::Body::Envelope(envelope.clone())),
                    }))
                    .await
                    .is_ok(),
                None => false,
            };
            if !delivered {
                // The protocol will stall and the session fail at its deadline or when the
                // party reports; nothing to do here but note it.
                tracing::debug!(%party, session = %envelope.session_id, "envelope not delivered: party offline");
            }
        }
        metrics::counter!("mpc_router_envelopes_total").increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sender: &str, receiver: &str) -> pb::Envelope {
        pb::Envelope {
            session_id: "s".into(),
            attempt: 1,
            sender: sender.into(),
            receiver: receiver.into(),
            sequence: 1,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn envelopes_go_only_between_participants_of_the_attempt() {
        let router = Router::default();
        let (a_tx, _a_rx) = mpsc::channel(8);
        let (b_tx, mut b_rx) = mpsc::channel(8);
        let (c_tx, mut c_rx) = mpsc::channel(8);
        router.attach("a", a_tx);
        router.attach("b", b_tx);
        router.attach("c", c_tx);
        router.start_run("s", 1, vec!["a".into(), "b".into()]);

        router.route("a", envelope("a", "b")).await.unwrap();
        assert!(b_rx.try_recv().is_ok());
        router.route("a", envelope("a", "")).await.unwrap();
        assert!(b_rx.try_recv().is_ok());
        assert!(
            c_rx.try_recv().is_err(),
            "a non-participant got a broadcast"
        );

        assert!(matches!(
            router.route("c", envelope("a", "b")).await,
            Err(RouteError::ForgedSender { .. })
        ));
        assert!(matches!(
            router.route("a", envelope("a", "c")).await,
            Err(RouteError::NotParticipant(_))
        ));
        let mut old = envelope("a", "b");
        old.attempt = 0;
        assert!(matches!(
            router.route("a", old).await,
            Err(RouteError::NoSuchRun { .. })
        ));
    }

    #[test]
    fn a_newer_stream_survives_the_older_ones_detach() {
        let router = Router::default();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let first = router.attach("a", tx1);
        let _second = router.attach("a", tx2);
        assert!(!router.detach("a", first));
        assert!(router.is_online("a"));
    }
}
