//! The server side: a reloadable rustls configuration and the accept loop that hands tonic
//! handshaken connections with the peer's verified identity.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::Stream;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tonic::transport::server::Connected;

use crate::config::{certificates, private_key, roots};
use crate::expiry::Leaf;
use crate::reload::Reload;
use crate::{provider, Identity, MaybeTls, TlsError, TlsFiles, ALPN_H2};

/// Whether a client must present a certificate of the cluster CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS: no certificate, no connection (the Raft listener).
    Required,
    /// A certificate is verified when offered; without one the caller must bring a token
    /// (the public API).
    Optional,
}

/// A server configuration that can be rebuilt from its files while the server runs: new
/// connections use the newest one, established ones keep theirs.
#[derive(Debug, Clone)]
pub struct ServerTls {
    files: TlsFiles,
    client_auth: ClientAuth,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ServerTls {
    /// Builds the configuration from `files` (failing on unreadable or mismatched material),
    /// requiring client certificates as `client_auth` says.
    pub fn load(files: TlsFiles, client_auth: ClientAuth) -> Result<Self, TlsError> {
        let (config, leaf) = build(&files, client_auth)?;
        leaf.record();
        Ok(Self {
            files,
            client_auth,
            current: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// This server's own identity, from its certificate.
    pub fn identity(&self) -> Result<Identity, TlsError> {
        let chain = certificates(&self.files.cert)?;
        Identity::from_certificate(chain[0].as_ref())
    }
}

impl Reload for ServerTls {
    fn files(&self) -> Vec<std::path::PathBuf> {
        self.files.paths()
    }

    fn reload(&self) -> Result<(), TlsError> {
        let (config, leaf) = build(&self.files, self.client_auth)?;
        let config = Arc::new(config);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        leaf.record();
        Ok(())
    }
}

/// The configuration, and the certificate it presents (for [`Leaf::record`] once in use).
fn build(files: &TlsFiles, client_auth: ClientAuth) -> Result<(ServerConfig, Leaf), TlsError> {
    let provider = provider();
    let roots = Arc::new(roots(&files.ca_cert)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => verifier,
        ClientAuth::Optional => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let chain = certificates(&files.cert)?;
    let leaf = Leaf::parse(chain[0].as_ref()).map_err(|e| TlsError::Pem {
        path: files.cert.clone(),
        reason: e.to_string(),
    })?;
    let key = private_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", files.key.display())))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((config, leaf))
}

/// What tonic puts in every request's extensions: who is on the other end.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's TCP address, for logs and audit records.
    pub remote_addr: Option<SocketAddr>,
    /// The identity in the client's certificate, verified against the cluster CA; `None`
    /// when it presented none (or on a plain-text listener).
    pub identity: Option<Identity>,
}

/// A connection accepted by [`incoming`].
#[derive(Debug)]
pub struct Accepted {
    stream: MaybeTls,
    info: PeerInfo,
}

impl Connected for Accepted {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl tokio::io::AsyncRead for Accepted {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Accepted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A handshake that has not finished by then is dropped: a client that opens connections and
/// says nothing must not hold resources.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// Accepts connections on `listener`, performs the TLS handshake of each on its own task
/// (one slow client cannot stall the others), and yields them to the server. Without `tls`
/// the connections stay plain text. Failed handshakes are logged and dropped; they never end
/// the stream. The accept loop stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
) -> impl Stream<Item = Result<Accepted, std::io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Accepted>(64);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // Out of handshake slots: drop this connection rather than stall the loop, so
            // that idle sockets cannot keep every other client (and peer) waiting.
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(peer = %remote, "too many handshakes in progress; connection dropped");
                continue;
            };
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match handshake(tcp, remote, tls.as_ref()).await {
                    Ok(conn) => {
                        let _ = tx.send(conn).await;
                    }
                    Err(reason) => {
                        tracing::debug!(peer = %remote, %reason, "connection refused");
                    }
                }
            });
        }
    });
    futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, std::io::Error>,
    )
}

async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<&ServerTls>,
) -> Result<Accepted, String> {
    let Some(tls) = tls else {
        return Ok(Accepted {
            stream: MaybeTls::Plain(tcp),
            info: PeerInfo {
                remote_addr: Some(remote),
                identity: None,
            },
        });
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let identity = match stream.get_ref().1.peer_certificates() {
        Some([leaf, ..]) => Some(
            Identity::from_certificate(leaf.as_ref())
                .map_err(|e| format!("client certificate: {e}"))?,
        ),
        _ => None,
    };
    Ok(Accepted {
        stream: MaybeTls::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))),
        info: PeerInfo {
            remote_addr: Some(remote),
            identity,
        },
    })
}
