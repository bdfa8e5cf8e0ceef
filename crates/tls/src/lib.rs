//! TLS for every mpc link.
//!
//! Every gRPC connection of the platform is TLS 1.3 (rustls, one crypto provider: aws-lc-rs)
//! under one operator PKI:
//!
//! 1. [`pki`] makes the cluster CA (`mpcctl pki init`) and issues leaf certificates
//!    (`mpcctl pki issue`) whose subject alternative name carries an [`Identity`]: a [`Role`]
//!    (coordinator, party, dvn, client) and a name (`mpc://party/party-1`), and for clients the
//!    [`AccessRole`](mpc_types::AccessRole) they are granted. Every file is written 0600 in a
//!    0700 directory.
//! 2. [`ServerTls`] is a server configuration built from PEM files that can be reloaded while
//!    connections keep flowing; [`incoming`] turns a TCP listener into a stream of handshaken
//!    connections whose [`PeerInfo`] (remote address and verified [`Identity`]) tonic hands
//!    to every request.
//! 3. [`ClientTls`] and [`channel`] dial coordinators: the server must present a certificate
//!    of our CA for the host dialled *and* name the coordinator role, so a party's or a
//!    client's certificate can never pass for a coordinator.
//! 4. [`Reloader`] re-reads the files on SIGHUP and when they change on disk.
//! 5. Every load and reload of a process's own certificate sets the gauge
//!    [`CERTIFICATE_EXPIRY`] (its not-after time, labelled with its role and name); a node
//!    calls [`describe_metrics`] once its metrics recorder is installed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mpc_tls::TlsError> {
//! use mpc_tls::{ClientAuth, ServerTls, TlsFiles};
//! let files = TlsFiles::new("pki/ca.crt", "pki/coordinator-1.crt", "pki/coordinator-1.key");
//! let server = ServerTls::load(files, ClientAuth::Optional)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await.map_err(|e| {
//!     mpc_tls::TlsError::Io { path: "127.0.0.1:50051".into(), reason: e.to_string() }
//! })?;
//! let connections = mpc_tls::incoming(listener, Some(server));
//! // tonic::transport::Server::builder().add_service(..).serve_with_incoming(connections)
//! # let _ = connections; Ok(()) }
//! ```

mod client;
mod config;
mod expiry;
mod identity;
pub mod pki;
mod reload;
pub mod secret_file;
mod server;
mod stream;

pub use client::{channel, endpoint, ClientTls, Connector};
pub use config::TlsFiles;
pub use expiry::{describe_metrics, CERTIFICATE_EXPIRY};
pub use identity::{Identity, Role};
pub use reload::{Reload, Reloader};
pub use server::{incoming, Accepted, ClientAuth, PeerInfo, ServerTls};
pub use stream::MaybeTls;

use std::path::PathBuf;

/// Why TLS material could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file or directory could not be read, written or created (or, for a listener, the
    /// address could not be bound).
    #[error("{path}: {reason}")]
    Io {
        /// The file, directory or address concerned.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A file was read but does not hold what it should: no PEM certificate or private key,
    /// a CA certificate rustls refuses, a certificate without a readable identity.
    #[error("{path}: {reason}")]
    Pem {
        /// The file whose contents are wrong.
        path: PathBuf,
        /// What is wrong with them.
        reason: String,
    },
    /// A private key's file may be read by others than its owner
    /// ([`secret_file::check_private`]): refused before it is read.
    #[error("{path}: {reason}")]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its mode and the fix.
        reason: String,
    },
    /// rustls refused to build a configuration from otherwise readable material, e.g. a
    /// private key that does not match its certificate.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A certificate could not be generated, or one presented does not parse or names no
    /// single `mpc://` identity.
    #[error("certificate: {0}")]
    Certificate(String),
    /// An [`Identity`] or its URI form breaks the naming rules.
    #[error("invalid identity {value:?}: {reason}")]
    Identity {
        /// The identity or URI as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// An address to dial is not `host:port` (optionally with an `http://` or `https://`
    /// scheme).
    #[error("invalid endpoint {addr:?}: {reason}")]
    Endpoint {
        /// The address as given.
        addr: String,
        /// Why it cannot be dialled.
        reason: String,
    },
}

/// The crypto provider of every configuration this crate builds: one, named, so that no
/// process-wide default has to be installed (two enabled providers panic at run time).
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// HTTP/2 is all gRPC speaks; grpcurl and other standard clients insist on it in ALPN.
const ALPN_H2: &[u8] = b"h2";
