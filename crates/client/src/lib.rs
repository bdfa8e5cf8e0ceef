//! Talking to an mpc cluster from outside it.
//!
//! 1. [`Credentials`] say how to reach the coordinators: the cluster CA, a client
//!    certificate and key, a bearer token, or (against a cluster started with
//!    `--insecure-plaintext`) nothing. [`Credentials::from_env`] reads the variables that
//!    `.local-cluster/admin.env` sets: `MPC_CA_CERT`, `MPC_CLIENT_CERT`, `MPC_CLIENT_KEY`,
//!    `MPC_TOKEN`.
//! 2. [`Credentials::channel`] dials one coordinator: TLS, the certificate presented, the
//!    token sent with every call ([`ClientChannel`]).
//! 3. [`Endpoints::call`] runs a call against whichever coordinator answers: it tries them in
//!    turn, follows the leader a node names in `x-mpc-leader`, and retries until its deadline.
//! 4. [`sessions::sign`] signs in one call (`CreateSigning` with `wait`) and
//!    [`sessions::watch`] follows a session to its end.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mpc_client::ClientError> {
//! use mpc_client::{Credentials, Endpoints};
//! let credentials = Credentials::from_env()?;
//! let endpoints = Endpoints::new(
//!     vec!["127.0.0.1:50051".into()],
//!     std::time::Duration::from_secs(10),
//!     credentials,
//! );
//! let status = endpoints
//!     .call(|ch| async move {
//!         mpc_proto::v1::cluster_client::ClusterClient::new(ch)
//!             .get_status(mpc_proto::v1::GetStatusRequest {})
//!             .await
//!     })
//!     .await?;
//! # let _ = status; Ok(()) }
//! ```

/// What admins and initiators sign for requests: key policies, approvals, enrolments.
pub mod authority;
/// Listings served a page at a time.
pub mod paging;
/// The DVN relay job book.
pub mod relay;
/// Signing through the cluster and following a session to its end.
pub mod sessions;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A channel to one coordinator that sends the caller's token with every request.
pub type ClientChannel = InterceptedService<Channel, TokenInterceptor>;

/// Why a call through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A coordinator answered with this status.
    #[error("{0}")]
    Status(Status),
    /// No coordinator answered in time.
    #[error("no coordinator answered within {timeout:?} (tried {tried}); last error: {last}")]
    Unreachable {
        /// How long the client kept trying.
        timeout: Duration,
        /// The addresses it tried.
        tried: String,
        /// The last error it saw.
        last: String,
    },
    /// An address that is not a usable endpoint.
    #[error("invalid endpoint {addr:?}: {reason}")]
    BadEndpoint {
        /// The address as given.
        addr: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Certificates, keys or the token could not be read or used.
    #[error("credentials: {0}")]
    Credentials(String),
}

/// Adds `authorization: Bearer <token>` to every request. Its `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenInterceptor")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// How this process proves who it is to the coordinators.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `None`: plain text, only against a cluster started with `--insecure-plaintext`.
    tls: Option<mpc_tls::ClientTls>,
    token: TokenInterceptor,
}

impl Credentials {
    /// TLS with the cluster CA, a client certificate when `identity` names one, and a token
    /// when given.
    pub fn tls(
        ca_cert: PathBuf,
        identity: Option<(PathBuf, PathBuf)>,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let tls = mpc_tls::ClientTls::load(ca_cert, identity)
            .map_err(|e| ClientError::Credentials(e.to_string()))?;
        Ok(Self {
            tls: Some(tls),
            token: interceptor(token)?,
        })
    }

    /// Plain text: for clusters started with `--insecure-plaintext` only.
    pub fn insecure_plaintext() -> Self {
        Self {
            tls: None,
            token: TokenInterceptor::default(),
        }
    }

    /// From `MPC_CA_CERT`, `MPC_CLIENT_CERT` + `MPC_CLIENT_KEY` and `MPC_TOKEN`, or plain
    /// text when `MPC_INSECURE_PLAINTEXT` is `1`, `true`, `yes` or `on` (as mpcctl reads it).
    pub fn from_env() -> Result<Self, ClientError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if var("MPC_INSECURE_PLAINTEXT")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        {
            return Ok(Self::insecure_plaintext());
        }
        let token = var("MPC_TOKEN").map(zeroize::Zeroizing::new);
        Self::from_parts(
            var("MPC_CA_CERT").map(PathBuf::from),
            var("MPC_CLIENT_CERT").map(PathBuf::from),
            var("MPC_CLIENT_KEY").map(PathBuf::from),
            token.as_deref().map(String::as_str),
        )
    }

    /// From optional parts, as flags and variables give them; says which part is missing.
    pub fn from_parts(
        ca_cert: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let Some(ca_cert) = ca_cert else {
            return Err(ClientError::Credentials(
                "no cluster CA: set MPC_CA_CERT (or --ca-cert); for the local cluster, \
                 `source .local-cluster/admin.env`"
                    .into(),
            ));
        };
        let identity = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ClientError::Credentials(
                    "MPC_CLIENT_CERT is set but MPC_CLIENT_KEY is not".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ClientError::Credentials(
                    "MPC_CLIENT_KEY is set but MPC_CLIENT_CERT is not".into(),
                ))
            }
        };
        if identity.is_none() && token.is_none() {
            return Err(ClientError::Credentials(
                "no credential: set MPC_CLIENT_CERT and MPC_CLIENT_KEY, or MPC_TOKEN".into(),
            ));
        }
        Self::tls(ca_cert, identity, token)
    }

    /// The TLS configuration, shared by every clone of these credentials: reloading it (as
    /// [`mpc_tls::Reloader`] does when the files change) serves all of them. `None` in plain
    /// text.
    pub fn client_tls(&self) -> Option<&mpc_tls::ClientTls> {
        self.tls.as_ref()
    }

    /// The same credentials with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Result<Self, ClientError> {
        Ok(Self {
            tls: self.tls.clone(),
            token: interceptor(token)?,
        })
    }

    /// Whether the channels these credentials make use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A lazily connecting channel to `addr`; `configure` sets timeouts and keep-alives.
    pub fn channel(
        &self,
        addr: &str,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<ClientChannel, ClientError> {
        let channel = mpc_tls::channel(addr, self.tls.as_ref(), configure).map_err(|e| {
            ClientError::BadEndpoint {
                addr: addr.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(InterceptedService::new(channel, self.token.clone()))
    }

    /// A channel that connects now, within `timeout` (name resolution, TCP and TLS).
    pub async fn connect(
        &self,
        addr: &str,
        timeout: Duration,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<ClientChannel, ClientError> {
        let endpoint =
            configure(
                mpc_tls::endpoint(addr).map_err(|e| ClientError::BadEndpoint {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })?,
            );
        let connect = endpoint.connect_with_connector(mpc_tls::Connector::new(self.tls.clone()));
        let channel = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::Unreachable {
                timeout,
                tried: addr.to_owned(),
                last: "no connection in time".into(),
            })?
            .map_err(|e| ClientError::Unreachable {
                timeout,
                tried: addr.to_owned(),
                last: e.to_string(),
            })?;
        Ok(InterceptedService::new(channel, self.token.clone()))
    }
}

fn interceptor(token: Option<&str>) -> Result<TokenInterceptor, ClientError> {
    let header = token
        .map(|t| {
            let mut value: MetadataValue<Ascii> = format!("Bearer {t}")
                .parse()
                .map_err(|_| ClientError::Credentials("the token is not printable ASCII".into()))?;
            value.set_sensitive(true);
            Ok::<_, ClientError>(value)
        })
        .transpose()?;
    Ok(TokenInterceptor { header })
}

/// The coordinators a client knows, and how long it keeps trying.
#[derive(Debug, Clone)]
pub struct Endpoints {
    addrs: Vec<String>,
    timeout: Duration,
    credentials: Credentials,
}

impl Endpoints {
    /// `addrs` tried in turn (and the leader each names), for up to `timeout` per call.
    pub fn new(addrs: Vec<String>, timeout: Duration, credentials: Credentials) -> Self {
        Self {
            addrs,
            timeout,
            credentials,
        }
    }

    /// How long a call keeps trying.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The credentials every channel uses.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The same coordinators and timeout, calling with `token` as the bearer token instead.
    pub fn with_token(&self, token: Option<&str>) -> Result<Self, ClientError> {
        Ok(Self {
            addrs: self.addrs.clone(),
            timeout: self.timeout,
            credentials: self.credentials.with_token(token)?,
        })
    }

    /// The coordinators' addresses as given.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// A channel to one coordinator with this client's credentials and timeout.
    pub fn channel(&self, addr: &str) -> Result<ClientChannel, ClientError> {
        self.channel_for(addr, self.timeout)
    }

    /// A channel to one coordinator whose calls may each take `timeout`.
    fn channel_for(&self, addr: &str, timeout: Duration) -> Result<ClientChannel, ClientError> {
        self.credentials.channel(addr, |e| {
            e.connect_timeout(Duration::from_millis(500).min(timeout))
                .timeout(timeout)
        })
    }

    /// Runs `call` against a coordinator until one answers something other than
    /// "unavailable", following leader hints, until the timeout.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClientChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_for(self.timeout, call).await
    }

    /// [`Endpoints::call`] for a call that takes long by design (a create that waits for
    /// its session): each attempt may take `budget`, and attempts go on until `budget`.
    pub async fn call_for<T, F, Fut>(&self, budget: Duration, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClientChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + budget;
        let mut queue: Vec<String> = self.addrs.clone();
        let mut next = 0usize;
        let mut last = String::from("no endpoint given");
        loop {
            if queue.is_empty() || Instant::now() >= deadline {
                return Err(ClientError::Unreachable {
                    timeout: budget,
                    tried: self.addrs.join(","),
                    last,
                });
            }
            let addr = queue[next % queue.len()].clone();
            next += 1;
            match call(self.channel_for(&addr, budget)?).await {
                Ok(v) => return Ok(v),
                Err(status) if retryable(&status) => {
                    last = format!("{addr}: {}", status.message());
                    if let Some(leader) = leader_hint(&status) {
                        if leader != addr {
                            if !queue.contains(&leader) {
                                queue.push(leader.clone());
                            }
                            next = queue.iter().position(|a| *a == leader).unwrap_or(next);
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

/// The leader's address a node named in an answer, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(mpc_proto::LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Worth asking another node (or the same one again): no leader, a connection that failed, a
/// forward that timed out waiting for a leader.
pub fn retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown)
        || (status.code() == Code::DeadlineExceeded && status.message().contains("leader"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_say_what_is_missing() {
        let err = Credentials::from_parts(None, None, None, None).unwrap_err();
        assert!(err.to_string().contains("MPC_CA_CERT"), "{err}");
        let err =
            Credentials::from_parts(Some("/nonexistent/ca".into()), None, None, None).unwrap_err();
        assert!(err.to_string().contains("MPC_TOKEN"), "{err}");
        let err = Credentials::from_parts(
            Some("/nonexistent/ca".into()),
            Some("/c".into()),
            None,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("MPC_CLIENT_KEY"), "{err}");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let i = interceptor(Some("mpc_0123456789abcdef_secretsecret")).unwrap();
        let shown = format!("{i:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let mut i = i;
        let req = i.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer mpc_0123456789abcdef_secretsecret")
        );
    }
}
