//! Calls with a deadline against a list of coordinators, trying them in turn. Errors are
//! sorted the way a history needs them: refused for certain, or of unknown effect.

use std::future::Future;
use std::time::{Duration, Instant};

use mpc_client::{ClientChannel, Credentials};
use tonic::{Code, Status};

use crate::history::Outcome;

#[derive(Debug, Clone)]
pub struct Coordinators {
    channels: Vec<(String, ClientChannel)>,
    /// Bound of one attempt, enforced here: a channel's own timeout does not cover name
    /// resolution, which hangs for seconds when a cut-off node's name does not resolve.
    rpc_timeout: Duration,
}

/// The end of a call that found no answer it could use.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: Code,
    pub outcome: Outcome,
    pub message: String,
    pub endpoint: String,
}

/// Codes after which the request certainly changed nothing. Everything else (unavailable,
/// deadline exceeded, a reset connection, an internal error) may have been committed.
pub fn definite_failure(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::OutOfRange
            | Code::Unimplemented
    )
}

impl Coordinators {
    pub fn new(
        addrs: &[String],
        rpc_timeout: Duration,
        credentials: &Credentials,
    ) -> anyhow::Result<Self> {
        let channels = addrs
            .iter()
            .map(|addr| {
                let channel = credentials.channel(addr, |e| {
                    e.connect_timeout(Duration::from_millis(300).min(rpc_timeout))
                        .timeout(rpc_timeout)
                        // A coordinator cut off or moved leaves its connection silent: drop
                        // it within seconds and reconnect by name.
                        .http2_keep_alive_interval(Duration::from_secs(1))
                        .keep_alive_timeout(Duration::from_secs(2))
                        .keep_alive_while_idle(true)
                })?;
                Ok((addr.clone(), channel))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!channels.is_empty(), "endpoints: none given");
        Ok(Self {
            channels,
            rpc_timeout,
        })
    }

    pub fn get(&self, i: usize) -> (&str, ClientChannel) {
        let (addr, ch) = &self.channels[i % self.channels.len()];
        (addr, ch.clone())
    }

    /// Every coordinator's own view of the group, `None` where none came within the RPC
    /// timeout.
    pub async fn statuses(&self) -> Vec<Option<mpc_proto::v1::ClusterStatus>> {
        futures::future::join_all(self.channels.iter().map(|(_, ch)| {
            let ch = ch.clone();
            async move {
                let mut client = mpc_proto::v1::cluster_client::ClusterClient::new(ch);
                let call = client.get_status(mpc_proto::v1::GetStatusRequest {});
                match tokio::time::timeout(self.rpc_timeout, call).await {
                    Ok(Ok(r)) => Some(r.into_inner()),
                    _ => None,
                }
            }
        }))
        .await
    }

    /// Runs `call` against the coordinators in turn, starting at `first`, until one answers
    /// or a definite error comes back or `budget` runs out. Returns the answer and the
    /// endpoint that gave it.
    pub async fn call<T, F, Fut>(
        &self,
        first: usize,
        budget: Duration,
        mut call: F,
    ) -> Result<(T, String), CallError>
    where
        F: FnMut(ClientChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + budget;
        let mut i = first;
        loop {
            let (addr, channel) = self.get(i);
            i += 1;
            let answer = tokio::time::timeout(self.rpc_timeout, call(channel))
                .await
                .unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded(format!(
                        "no answer within {:?}",
                        self.rpc_timeout
                    )))
                });
            match answer {
                Ok(v) => return Ok((v, addr.to_owned())),
                Err(status) => {
                    let definite = definite_failure(status.code());
                    let last = CallError {
                        code: status.code(),
                        outcome: if definite {
                            Outcome::Fail
                        } else {
                            Outcome::Unknown
                        },
                        message: format!("{:?}: {}", status.code(), status.message()),
                        endpoint: addr.to_owned(),
                    };
                    if definite || Instant::now() >= deadline {
                        return Err(last);
                    }
                }
            }
            if i % self.channels.len() == first % self.channels.len() {
                // Every node refused once: give an election time to finish.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_definite() {
        assert!(definite_failure(Code::InvalidArgument));
        assert!(definite_failure(Code::NotFound));
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Internal,
            Code::Cancelled,
            Code::Aborted,
        ] {
            assert!(!definite_failure(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn nobody_listening_is_an_unknown_outcome_after_the_budget() {
        // Bound but not listening: the port refuses connections, and stays ours meanwhile
        // (a port that is merely closed again may be handed to another test's server).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let coords = Coordinators::new(
            &[addr.to_string()],
            Duration::from_millis(200),
            &Credentials::insecure_plaintext(),
        )
        .unwrap();
        let started = Instant::now();
        let err = coords
            .call(0, Duration::from_millis(300), |ch| async move {
                mpc_proto::v1::cluster_client::ClusterClient::new(ch)
                    .get_status(mpc_proto::v1::GetStatusRequest {})
                    .await
            })
            .await
            .unwrap_err();
        assert_eq!(err.outcome, Outcome::Unknown);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
