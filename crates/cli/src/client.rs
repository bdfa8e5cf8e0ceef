//! Talks to whichever coordinator answers: tries the endpoints in turn, follows the leader
//! named in an UNAVAILABLE answer, and retries until the deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

#[derive(Debug, Clone)]
pub struct Endpoints {
    addrs: Vec<String>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Status(Status),
    #[error("no coordinator answered within {timeout:?} (tried {tried}); last error: {last}")]
    Unreachable {
        timeout: Duration,
        tried: String,
        last: String,
    },
    #[error("invalid endpoint {addr:?}: {reason}")]
    BadEndpoint { addr: String, reason: String },
}

pub fn channel(addr: &str, timeout: Duration) -> Result<Channel, ClientError> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| ClientError::BadEndpoint {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_millis(500).min(timeout))
        .timeout(timeout)
        .connect_lazy())
}

impl Endpoints {
    pub fn new(addrs: Vec<String>, timeout: Duration) -> Self {
        Self { addrs, timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` against a coordinator until one answers something other than "unavailable".
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut queue: Vec<String> = self.addrs.clone();
        let mut next = 0usize;
        let mut last = String::from("no endpoint given");
        loop {
            if queue.is_empty() || Instant::now() >= deadline {
                return Err(ClientError::Unreachable {
                    timeout: self.timeout,
                    tried: self.addrs.join(","),
                    last,
                });
            }
            let addr = queue[next % queue.len()].clone();
            next += 1;
            match call(channel(&addr, self.timeout)?).await {
                Ok(v) => return Ok(v),
                Err(status) if retryable(&status) => {
                    last = format!("{addr}: {}", status.message());
                    if let Some(leader) = status
                        .metadata()
                        .get(mpc_proto::LEADER_METADATA)
                        .and_then(|v| v.to_str().ok())
                    {
                        if leader != addr {
                            if !queue.iter().any(|a| a == leader) {
                                queue.push(leader.to_owned());
                            }
                            next = queue.iter().position(|a| a == leader).unwrap_or(next);
                            continue;
                        }
                    }
                    if next.is_multiple_of(queue.len()) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(status) => return Err(ClientError::Status(status)),
            }
        }
    }
}

fn retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown)
        || (status.code() == Code::DeadlineExceeded && status.message().contains("leader"))
}
