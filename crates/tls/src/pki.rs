//! The operator PKI behind `mpcctl pki`: one cluster CA, and leaf certificates that name an
//! [`Identity`]. Everything is written 0600 inside 0700 directories, atomically (a temporary
//! file, then a rename), and keys are wiped from memory once written.
//!
//! Layout of a PKI directory:
//!
//! ```text
//! D/ca.crt  D/ca.key                       the cluster CA (keep ca.key offline)
//! D/<role>/<name>.crt  D/<role>/<name>.key  a leaf: coordinator/1, party/party-1, client/admin
//! ```

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use zeroize::Zeroizing;

use crate::{Identity, Role, TlsError};

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaves are valid for a year unless asked otherwise.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Issued a little in the past, so that a peer whose clock is behind accepts it at once.
const BACKDATE: Duration = Duration::from_secs(300);

/// The files of one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (PEM), readable by anyone who needs it.
    pub cert: PathBuf,
    /// Its private key (PEM), written 0600.
    pub key: PathBuf,
}

/// Where [`init`] puts the CA certificate in `dir`: the file every node and client is given
/// as its trust anchor.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// Where `issue` writes the leaf of `role`/`name` in `dir`.
pub fn leaf_paths(dir: &Path, role: Role, name: &str) -> Issued {
    let sub = dir.join(role.as_str());
    Issued {
        cert: sub.join(format!("{name}.crt")),
        key: sub.join(format!("{name}.key")),
    }
}

fn pki_error(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate(format!("{what}: {e}"))
}

fn io_error(path: &Path, e: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Makes the cluster CA in `dir`. An existing CA is never overwritten: it would orphan every
/// certificate it issued.
pub fn init(dir: &Path) -> Result<Issued, TlsError> {
    let cert = ca_cert_path(dir);
    let key = ca_key_path(dir);
    if key.exists() || cert.exists() {
        return Err(TlsError::Io {
            path: key,
            reason: "a CA already exists here; remove the directory to start a new PKI".into(),
        });
    }
    make_private_dir(dir)?;
    let key_pair = KeyPair::generate().map_err(|e| pki_error("CA key", e))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "mpc cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let ca = params
        .self_signed(&key_pair)
        .map_err(|e| pki_error("CA certificate", e))?;
    write_private(&key, Zeroizing::new(key_pair.serialize_pem()).as_bytes())?;
    write_private(&cert, ca.pem().as_bytes())?;
    Ok(Issued { cert, key })
}

/// Issues a leaf certificate for `identity`, signed by the CA in `dir`. `hosts` are the DNS
/// names and IP addresses a server is dialled by (coordinators); they are added to the
/// subject alternative names beside the identity URI. Issuing again for the same identity
/// replaces the files (rotation).
pub fn issue(
    dir: &Path,
    identity: &Identity,
    hosts: &[String],
    validity: Duration,
) -> Result<Issued, TlsError> {
    let ca_cert = ca_cert_path(dir);
    let ca_key = ca_key_path(dir);
    let ca_cert_pem = std::fs::read_to_string(&ca_cert).map_err(|e| io_error(&ca_cert, e))?;
    crate::config::check_private(&ca_key)?;
    let ca_key_pem =
        Zeroizing::new(std::fs::read_to_string(&ca_key).map_err(|e| io_error(&ca_key, e))?);
    let ca_key_pair = KeyPair::from_pem(&ca_key_pem).map_err(|_| TlsError::Pem {
        path: ca_key.clone(),
        reason: "holds no usable private key".into(),
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key_pair).map_err(|e| TlsError::Pem {
            path: ca_cert.clone(),
            reason: e.to_string(),
        })?;

    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, identity.to_string());
    let uri = identity
        .uri()
        .try_into()
        .map_err(|e| pki_error("identity URI", e))?;
    params.subject_alt_names.push(SanType::URI(uri));
    for host in hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.as_str()
                    .try_into()
                    .map_err(|e| pki_error(&format!("host {host:?}"), e))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Coordinators are servers to clients and clients to each other; everyone else dials.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if identity.role == Role::Coordinator || !hosts.is_empty() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    set_validity(&mut params, validity);
    let key_pair = KeyPair::generate().map_err(|e| pki_error("key", e))?;
    let cert = params
        .signed_by(&key_pair, &issuer)
        .map_err(|e| pki_error("certificate", e))?;

    let out = leaf_paths(dir, identity.role, &identity.name);
    if let Some(parent) = out.cert.parent() {
        make_private_dir(parent)?;
    }
    write_private(
        &out.key,
        Zeroizing::new(key_pair.serialize_pem()).as_bytes(),
    )?;
    write_private(&out.cert, cert.pem().as_bytes())?;
    Ok(out)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

/// Creates `dir` (and its parents) as 0700, and tightens it if it already exists.
pub fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_error(dir, e))
}

/// Writes `bytes` to `path` as 0600 through a temporary file and a rename, so that a reader
/// (a reloading server) never sees half a file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpc_types::AccessRole;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn issued_certificates_carry_their_identity_and_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = init(&pki).unwrap();
        assert!(init(&pki).is_err(), "a second init must not replace the CA");
        let alice = Identity::new(Role::Client, "alice", Some(AccessRole::Reader)).unwrap();
        let leaf = issue(&pki, &alice, &[], DEFAULT_LEAF_VALIDITY).unwrap();
        let coordinator = Identity::new(Role::Coordinator, "1", None).unwrap();
        let server = issue(
            &pki,
            &coordinator,
            &["localhost".into(), "127.0.0.1".into()],
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();

        let der = crate::config::certificates(&leaf.cert).unwrap();
        assert_eq!(Identity::from_certificate(der[0].as_ref()).unwrap(), alice);
        let der = crate::config::certificates(&server.cert).unwrap();
        assert_eq!(
            Identity::from_certificate(der[0].as_ref()).unwrap(),
            coordinator
        );
        for file in [&ca.cert, &ca.key, &leaf.cert, &leaf.key, &server.key] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(mode(&pki), 0o700);
        assert_eq!(mode(leaf.cert.parent().unwrap()), 0o700);
    }
}
