//! When the certificate a process presents stops being valid, as a Prometheus gauge: a node
//! whose certificate lapses is locked out of the cluster (peers refuse it in the handshake),
//! so the alerts must see the date weeks ahead, and see a rotation as soon as it is loaded.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::{Identity, Role, TlsError};

/// `mpc_tls_certificate_expiry_timestamp_seconds{role,name}`: the not-after time, in Unix
/// seconds, of the certificate this process presents (a coordinator's server certificate, a
/// party's or a relayer's client certificate), labelled with the identity it names
/// (`role="coordinator", name="1"`). Set whenever the certificate is loaded or reloaded.
pub const CERTIFICATE_EXPIRY: &str = "mpc_tls_certificate_expiry_timestamp_seconds";

/// The expiry of every certificate this process has loaded, by identity. A process may load
/// its certificate before it installs its metrics recorder (a relayer makes its cluster client
/// first); [`describe_metrics`] hands these to the recorder installed later.
static LOADED: Mutex<BTreeMap<(Role, String), i64>> = Mutex::new(BTreeMap::new());

/// Describes [`CERTIFICATE_EXPIRY`] to the metrics recorder installed now and sets it for
/// every certificate loaded so far. Call it once the process's recorder is installed.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        CERTIFICATE_EXPIRY,
        metrics::Unit::Seconds,
        "not-after time (Unix seconds) of the certificate this process presents, by the identity it names"
    );
    let loaded = LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for ((role, name), not_after) in loaded {
        set_gauge(role, name, not_after);
    }
}

fn set_gauge(role: Role, name: String, not_after: i64) {
    // f64 holds every second up to 2^53, far past any X.509 date.
    metrics::gauge!(CERTIFICATE_EXPIRY, "role" => role.as_str(), "name" => name)
        .set(not_after as f64);
}

/// What a process needs to know about the certificate it presents: who it names and until
/// when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub(crate) identity: Identity,
    /// The certificate's notAfter, in Unix seconds.
    pub(crate) not_after: i64,
}

impl Leaf {
    /// Reads a DER certificate, which must name one `mpc://` identity.
    pub(crate) fn parse(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Certificate(format!("does not parse: {e}")))?;
        Ok(Self {
            identity: Identity::from_x509(&cert)?,
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Publishes this certificate's expiry: called once its configuration is in use, so that
    /// a reload that failed leaves the gauge at the certificate still presented.
    pub(crate) fn record(&self) {
        let (role, name) = (self.identity.role, self.identity.name.clone());
        LOADED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((role, name.clone()), self.not_after);
        set_gauge(role, name, self.not_after);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    use super::*;
    use crate::reload::Reload;
    use crate::{pki, ClientAuth, ClientTls, ServerTls, TlsFiles};

    fn issue(pki_dir: &Path, role: Role, name: &str, validity: Duration) -> pki::Issued {
        let identity = Identity::new(role, name, None).unwrap();
        let hosts = ["localhost".to_owned()];
        let hosts: &[String] = if role == Role::Coordinator {
            &hosts
        } else {
            &[]
        };
        pki::issue(pki_dir, &identity, hosts, validity).unwrap()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// The gauge's line for `role`/`name` in the recorder's text, and its value.
    fn gauge(handle: &PrometheusHandle, role: &str, name: &str) -> Option<f64> {
        let prefix = format!("{CERTIFICATE_EXPIRY}{{role=\"{role}\",name=\"{name}\"}} ");
        handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
    }

    #[test]
    fn not_after_is_read_as_the_pki_issued_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir).unwrap();
        let validity = Duration::from_secs(3 * 86_400);
        let before = now();
        let issued = issue(&pki_dir, Role::Party, "party-1", validity);
        let after = now();

        let chain = crate::config::certificates(&issued.cert).unwrap();
        let leaf = Leaf::parse(chain[0].as_ref()).unwrap();
        assert_eq!(
            leaf.identity,
            Identity::new(Role::Party, "party-1", None).unwrap()
        );
        // X.509 times have whole seconds: issue() asked for now + validity, now being
        // somewhere between `before` and `after`.
        let validity = validity.as_secs() as i64;
        assert!(
            (before + validity..=after + validity).contains(&leaf.not_after),
            "notAfter {} is not {validity} s after issuance ({before}..={after})",
            leaf.not_after
        );
    }

    #[test]
    fn loading_and_reloading_a_certificate_sets_its_expiry_gauge() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let ca = pki::init(&pki_dir).unwrap();
        let year = pki::DEFAULT_LEAF_VALIDITY.as_secs() as i64;
        let server = issue(&pki_dir, Role::Coordinator, "7", pki::DEFAULT_LEAF_VALIDITY);
        let client = issue(
            &pki_dir,
            Role::Party,
            "expiry-party",
            pki::DEFAULT_LEAF_VALIDITY,
        );
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();

        let (server_tls, client_tls) = metrics::with_local_recorder(&recorder, || {
            describe_metrics();
            let files = TlsFiles::new(&ca.cert, &server.cert, &server.key);
            let server_tls = ServerTls::load(files, ClientAuth::Required).unwrap();
            let client_tls = ClientTls::load(
                ca.cert.clone(),
                Some((client.cert.clone(), client.key.clone())),
            )
            .unwrap();
            (server_tls, client_tls)
        });
        assert!(handle
            .render()
            .contains(&format!("# TYPE {CERTIFICATE_EXPIRY} gauge")));
        for (role, name) in [("coordinator", "7"), ("party", "expiry-party")] {
            let value = gauge(&handle, role, name)
                .unwrap_or_else(|| panic!("no {role}/{name} expiry in:\n{}", handle.render()));
            let left = value as i64 - now();
            assert!(
                (year - 60..=year).contains(&left),
                "{role}/{name}: {left} s left, not about a year"
            );
        }

        // Rotation: the files are replaced by certificates valid for two days; each reload
        // moves its gauge to the new date.
        let two_days = Duration::from_secs(2 * 86_400);
        issue(&pki_dir, Role::Coordinator, "7", two_days);
        issue(&pki_dir, Role::Party, "expiry-party", two_days);
        metrics::with_local_recorder(&recorder, || {
            server_tls.reload().unwrap();
            client_tls.reload().unwrap();
        });
        for (role, name) in [("coordinator", "7"), ("party", "expiry-party")] {
            let left = gauge(&handle, role, name).unwrap() as i64 - now();
            assert!(
                (2 * 86_400 - 60..=2 * 86_400).contains(&left),
                "{role}/{name}: {left} s left after the reload, not two days"
            );
        }

        // A recorder installed after the certificates were loaded is handed their expiry.
        let late = PrometheusBuilder::new().build_recorder();
        let late_handle = late.handle();
        metrics::with_local_recorder(&late, describe_metrics);
        assert_eq!(
            gauge(&late_handle, "coordinator", "7"),
            gauge(&handle, "coordinator", "7")
        );
    }
}
