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
    check_private(path)?;
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

/// Refuses a private key's file that others than its owner may read, as every other secret
/// file is refused (the rule is [`crate::secret_file::check_private`]'s).
pub(crate) fn check_private(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::secret_file::check_private(&meta).map_err(|reason| TlsError::Exposed {
        path: path.to_path_buf(),
        reason,
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::{pki, Identity, Role};

    #[test]
    fn a_private_key_others_may_read_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir).unwrap();
        let leaf = pki::issue(
            &pki_dir,
            &Identity::new(Role::Party, "party-1", None).unwrap(),
            &[],
            pki::DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
        assert!(private_key(&leaf.key).is_ok());
        std::fs::set_permissions(&leaf.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = private_key(&leaf.key).unwrap_err();
        assert!(matches!(err, TlsError::Exposed { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("0644") && text.contains("chmod 600"),
            "{text}"
        );
        assert!(text.contains(&leaf.key.display().to_string()), "{text}");
    }
}
