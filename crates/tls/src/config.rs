//! Reading PEM material from disk.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::TlsError;

/// Where a node's TLS material lives: the cluster CA, and this node's certificate chain and
/// private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate that peers' certificates must chain to.
    pub ca_cert: PathBuf,
    /// This node's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The three paths, in the order of the fields; nothing is read until a configuration is
    /// loaded from them.
    pub fn new(
        ca_cert: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            ca_cert: ca_cert.into(),
            cert: cert.into(),
            key: key.into(),
        }
    }

    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        vec![self.ca_cert.clone(), self.cert.clone(), self.key.clone()]
    }
}

pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The parse error may quote the file: say only that it is not a key.
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(io) => TlsError::Io {
            path: path.to_path_buf(),
            reason: io.to_string(),
        },
        _ => TlsError::Pem {
            path: path.to_path_buf(),
            reason: "holds no PEM private key".into(),
        },
    })
}

pub(crate) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(io) => TlsError::Io {
            path: path.to_path_buf(),
            reason: io.to_string(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}
