//! Who a certificate speaks for: a role and a name, carried as one URI in the certificate's
//! subject alternative names (`mpc://<role>/<name>`, and `mpc://client/<name>?grant=<role>`
//! for clients), so that standard tools show it and nothing else in the certificate needs a
//! meaning of ours.

use std::fmt;
use std::str::FromStr;

use mpc_types::AccessRole;

use crate::TlsError;

const SCHEME: &str = "mpc://";

/// The kind of process a certificate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A member of the Raft group; its name is its node id.
    Coordinator,
    /// A party node; its name is its party id.
    Party,
    /// A DVN relayer.
    Dvn,
    /// An operator or application; it carries an [`AccessRole`].
    Client,
}

impl Role {
    /// Every role, for parsing and for listing the choices in messages.
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Party, Role::Dvn, Role::Client];

    /// The role's name as it appears in identity URIs (`mpc://party/...`) and on the command
    /// line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Party => "party",
            Role::Dvn => "dvn",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}; expected coordinator, party, dvn or client")
            })
    }
}

/// A verified certificate's subject: role, name, and for clients the access they hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// What kind of process holds the certificate.
    pub role: Role,
    /// Which one of that kind: a coordinator's node id, a party id, a client's or relayer's
    /// name.
    pub name: String,
    /// Clients only: what the certificate lets them do.
    pub grant: Option<AccessRole>,
}

impl Identity {
    /// Checks the parts: names are 1 to 64 of letters, digits, `-`, `_`, `.` (they become
    /// party ids, node ids and audit principals); a client needs a grant and only a client
    /// has one; a coordinator's name is its numeric node id.
    pub fn new(role: Role, name: &str, grant: Option<AccessRole>) -> Result<Self, TlsError> {
        let bad = |reason: &str| TlsError::Identity {
            value: format!("{SCHEME}{role}/{name}"),
            reason: reason.to_owned(),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(bad(
                "a name is 1 to 64 of letters, digits, '-', '_' and '.'",
            ));
        }
        match (role, grant) {
            (Role::Client, None) => return Err(bad("a client certificate needs a grant")),
            (Role::Client, Some(AccessRole::Signer)) => {
                return Err(bad(
                    "a signer is scoped to keys: give it a token (mpcctl token create --role signer --keys ...)",
                ))
            }
            (Role::Client, Some(_)) => {}
            (_, Some(_)) => return Err(bad("only client certificates carry a grant")),
            (_, None) => {}
        }
        // Canonical decimal only: "007" must not pass for node 7.
        if role == Role::Coordinator
            && name.parse::<u64>().map(|id| id.to_string()).as_deref() != Ok(name)
        {
            return Err(bad("a coordinator's name is its node id in decimal"));
        }
        Ok(Self {
            role,
            name: name.to_owned(),
            grant,
        })
    }

    /// The URI that names this identity in a certificate.
    pub fn uri(&self) -> String {
        match self.grant {
            Some(grant) => format!("{SCHEME}{}/{}?grant={grant}", self.role, self.name),
            None => format!("{SCHEME}{}/{}", self.role, self.name),
        }
    }

    /// Parses the URI form.
    pub fn from_uri(uri: &str) -> Result<Self, TlsError> {
        let bad = |reason: &str| TlsError::Identity {
            value: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("does not start with mpc://"))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let (role, name) = path
            .split_once('/')
            .ok_or_else(|| bad("is not mpc://<role>/<name>"))?;
        let role: Role = role.parse().map_err(|e: String| bad(&e))?;
        let grant = match query {
            None => None,
            Some(q) => {
                let value = q
                    .strip_prefix("grant=")
                    .ok_or_else(|| bad("the only query is grant=<role>"))?;
                Some(value.parse::<AccessRole>().map_err(|e| bad(&e))?)
            }
        };
        Self::new(role, name, grant)
    }

    /// The identity in the first certificate of a PEM file's contents.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
            .map_err(|e| TlsError::Certificate(format!("no PEM certificate: {e}")))?;
        Self::from_certificate(der.as_ref())
    }

    /// The identity in a DER certificate: its one `mpc://` URI among the subject alternative
    /// names. The certificate must already be verified; this only reads it.
    pub fn from_certificate(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Certificate(format!("does not parse: {e}")))?;
        Self::from_x509(&cert)
    }

    /// [`from_certificate`](Self::from_certificate) of a certificate already parsed.
    pub(crate) fn from_x509(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Self, TlsError> {
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Certificate(format!("subject alternative names: {e}")))?
            .ok_or_else(|| TlsError::Certificate("has no subject alternative names".into()))?;
        let mut found = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(SCHEME) => {
                    Some(*uri)
                }
                _ => None,
            });
        let uri = found
            .next()
            .ok_or_else(|| TlsError::Certificate("names no mpc:// identity".into()))?;
        if found.next().is_some() {
            return Err(TlsError::Certificate(
                "names more than one mpc:// identity".into(),
            ));
        }
        Self::from_uri(uri)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let cases = [
            Identity::new(Role::Party, "party-1", None),
            Identity::new(Role::Coordinator, "3", None),
            Identity::new(Role::Client, "alice", Some(AccessRole::Operator)),
            Identity::new(Role::Dvn, "dvn-2", None),
        ];
        for id in cases {
            let id = id.unwrap();
            assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        }
    }

    #[test]
    fn malformed_identities_are_refused() {
        for uri in [
            "https://party/p1",
            "mpc://party",
            "mpc://root/x",
            "mpc://party/a b",
            "mpc://party/",
            "mpc://client/alice",
            "mpc://client/alice?grant=root",
            "mpc://client/alice?grant=signer",
            "mpc://party/p1?grant=admin",
            "mpc://coordinator/one",
            "mpc://coordinator/007",
            "mpc://party/../../etc",
        ] {
            assert!(Identity::from_uri(uri).is_err(), "{uri} was accepted");
        }
    }
}
