//! The client side: dialling coordinators over TLS with a certificate or none.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::config::{certificates, private_key, roots};
use crate::expiry::Leaf;
use crate::reload::Reload;
use crate::{provider, Identity, MaybeTls, Role, TlsError, ALPN_H2};

/// How a process dials coordinators: the CA that must have issued their certificates and,
/// for mutual TLS, this process's own certificate and key. Reloadable like [`ServerTls`]
/// (crate::ServerTls): new connections use the newest files.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca_cert: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    current: Arc<RwLock<Arc<ClientConfig>>>,
}

impl ClientTls {
    /// `identity` is the certificate and key files to present, if any.
    pub fn load(ca_cert: PathBuf, identity: Option<(PathBuf, PathBuf)>) -> Result<Self, TlsError> {
        let (config, leaf) = build(&ca_cert, identity.as_ref())?;
        if let Some(leaf) = leaf {
            leaf.record();
        }
        Ok(Self {
            ca_cert,
            identity,
            current: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    fn config(&self) -> Arc<ClientConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Reload for ClientTls {
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.ca_cert.clone()];
        if let Some((cert, key)) = &self.identity {
            files.push(cert.clone());
            files.push(key.clone());
        }
        files
    }

    fn reload(&self) -> Result<(), TlsError> {
        let (config, leaf) = build(&self.ca_cert, self.identity.as_ref())?;
        let config = Arc::new(config);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        if let Some(leaf) = leaf {
            leaf.record();
        }
        Ok(())
    }
}

/// The configuration, and the certificate it presents if any (for [`Leaf::record`] once in
/// use).
fn build(
    ca_cert: &std::path::Path,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<(ClientConfig, Option<Leaf>), TlsError> {
    let provider = provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_cert)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CoordinatorVerifier { inner }));
    let (mut config, leaf) = match identity {
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let leaf = Leaf::parse(chain[0].as_ref()).map_err(|e| TlsError::Pem {
                path: cert.clone(),
                reason: e.to_string(),
            })?;
            let config = builder
                .with_client_auth_cert(chain, private_key(key)?)
                .map_err(|e| TlsError::Config(format!("{}: {e}", key.display())))?;
            (config, Some(leaf))
        }
        None => (builder.with_no_client_auth(), None),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((config, leaf))
}

/// The standard checks (chain to the cluster CA, the dialled host among the certificate's
/// names, validity) and one of ours: the certificate must name a coordinator. A party's or a
/// client's certificate is as much the CA's as a coordinator's; it must not serve as one.
#[derive(Debug)]
struct CoordinatorVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for CoordinatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match Identity::from_certificate(end_entity.as_ref()) {
            Ok(id) if id.role == Role::Coordinator => Ok(ServerCertVerified::assertion()),
            Ok(id) => Err(rustls::Error::General(format!(
                "the server's certificate names {id}, not a coordinator"
            ))),
            Err(e) => Err(rustls::Error::General(e.to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tonic's connector: TCP (Nagle off), then TLS when configured.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Option<ClientTls>,
}

impl Connector {
    /// `None` dials plain text: only for a cluster started with `--insecure-plaintext`.
    pub fn new(tls: Option<ClientTls>) -> Self {
        Self { tls }
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<MaybeTls>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.tls.as_ref().map(ClientTls::config);
        Box::pin(async move {
            let invalid = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {what}"))
            };
            let host = uri
                .host()
                .ok_or_else(|| invalid("no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let Some(config) = config else {
                return Ok(TokioIo::new(MaybeTls::Plain(tcp)));
            };
            let name = ServerName::try_from(host).map_err(|_| invalid("not a host name"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(MaybeTls::Tls(Box::new(
                tokio_rustls::TlsStream::Client(tls),
            ))))
        })
    }
}

/// The endpoint for `addr` (`host:port`, `https://host:port` or `http://host:port`). The
/// scheme given does not choose TLS: the [`Connector`] does; the returned endpoint's URI is
/// `http://` because the connector, not tonic, speaks TLS.
pub fn endpoint(addr: &str) -> Result<Endpoint, TlsError> {
    let bare = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    Endpoint::from_shared(format!("http://{bare}")).map_err(|e| TlsError::Endpoint {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })
}

/// A lazily connecting channel to `addr`, TLS unless `tls` is `None`; `configure` sets
/// timeouts and keep-alives on the endpoint.
pub fn channel(
    addr: &str,
    tls: Option<&ClientTls>,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, TlsError> {
    Ok(configure(endpoint(addr)?).connect_with_connector_lazy(Connector::new(tls.cloned())))
}
