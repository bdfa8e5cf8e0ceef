//! A party's settings: flags, each with an `MPC_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::master_key::MasterKey;
use crate::PartyError;

#[derive(Debug, Clone, clap::Args)]
pub struct PartyConfig {
    /// This party's id, as keygen requests name it.
    #[arg(long, env = "MPC_PARTY_ID")]
    pub party_id: String,
    /// Where the share store lives.
    #[arg(long, env = "MPC_DATA_DIR", default_value = "data/party")]
    pub data_dir: PathBuf,
    /// Coordinator gRPC endpoints, comma separated; the party follows them to the leader.
    #[arg(
        long,
        env = "MPC_COORDINATORS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub coordinators: Vec<String>,
    #[arg(long, env = "MPC_HTTP_LISTEN", default_value = "127.0.0.1:8091")]
    pub http_listen: SocketAddr,
    /// A file holding the 256-bit master key (64 hex digits or 32 raw bytes). Without it,
    /// MPC_MASTER_KEY (64 hex digits) is read.
    #[arg(long, env = "MPC_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Prime pairs kept ready for auxiliary info (each takes about a minute of one core).
    #[arg(long, env = "MPC_PRIME_POOL", default_value_t = 1)]
    pub prime_pool_size: usize,
    /// Imports prime pairs generated elsewhere (one encoded pair per line) into the pool.
    #[arg(long, env = "MPC_IMPORT_PRIMES")]
    pub import_primes: Option<PathBuf>,
    /// The cluster CA: coordinators must present a coordinator certificate it issued.
    #[arg(long, env = "MPC_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// This party's certificate; it must name `party/<party-id>`.
    #[arg(long, env = "MPC_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key.
    #[arg(long, env = "MPC_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The admins' Ed25519 public keys (64 hex digits each, comma separated): the party runs
    /// a keygen only under a policy one of them signed, and works only with parties one of
    /// them enrolled.
    #[arg(long, env = "MPC_ADMIN_KEYS", value_delimiter = ',')]
    pub admin_keys: Vec<String>,
    /// No TLS towards coordinators started with --insecure-plaintext. Never in production.
    #[arg(long, env = "MPC_INSECURE_PLAINTEXT",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_plaintext: bool,
}

impl PartyConfig {
    /// The master key from the key file, or else from `MPC_MASTER_KEY`.
    pub fn master_key(&self) -> Result<MasterKey, PartyError> {
        if let Some(file) = &self.master_key_file {
            return MasterKey::from_file(file);
        }
        match std::env::var("MPC_MASTER_KEY") {
            Ok(value) => {
                let value = zeroize::Zeroizing::new(value);
                MasterKey::from_hex("MPC_MASTER_KEY", &value)
            }
            Err(_) => Err(PartyError::Config {
                field: "master_key".into(),
                reason: "set MPC_MASTER_KEY (64 hex digits) or --master-key-file".into(),
            }),
        }
    }

    /// The admin keys, checked: at least one, each a valid Ed25519 public key.
    pub fn admin_keys(&self) -> Result<Vec<[u8; 32]>, PartyError> {
        let bad = |reason: String| PartyError::Config {
            field: "admin_keys".into(),
            reason,
        };
        if self.admin_keys.is_empty() {
            return Err(bad(
                "name at least one admin public key (--admin-keys or MPC_ADMIN_KEYS)".into(),
            ));
        }
        self.admin_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let bytes: [u8; 32] = hex::decode(k.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad(format!("key {} is not 64 hex digits", i + 1)))?;
                match ed25519_dalek::VerifyingKey::from_bytes(&bytes) {
                    Ok(key) if !key.is_weak() => Ok(bytes),
                    _ => Err(bad(format!("key {} is not an Ed25519 public key", i + 1))),
                }
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), PartyError> {
        let id_ok = !self.party_id.is_empty()
            && self.party_id.len() <= 64
            && self
                .party_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !id_ok {
            return Err(PartyError::Config {
                field: "party_id".into(),
                reason: "1 to 64 letters, digits, '-', '_' or '.'".into(),
            });
        }
        if !self.insecure_plaintext {
            for (field, value) in [
                ("ca_cert", &self.ca_cert),
                ("tls_cert", &self.tls_cert),
                ("tls_key", &self.tls_key),
            ] {
                if value.is_none() {
                    return Err(PartyError::Config {
                        field: field.into(),
                        reason: format!(
                            "required (--{} or MPC_{}), or run with --insecure-plaintext",
                            field.replace('_', "-"),
                            field.to_uppercase()
                        ),
                    });
                }
            }
        }
        if self.coordinators.is_empty() {
            return Err(PartyError::Config {
                field: "coordinators".into(),
                reason: "name at least one coordinator endpoint".into(),
            });
        }
        self.admin_keys().map(|_| ())
    }
}

impl PartyConfig {
    /// The TLS client configuration: the cluster CA and this party's certificate, which must
    /// name this party. `None` only with `--insecure-plaintext`.
    pub fn tls(&self) -> Result<Option<mpc_tls::ClientTls>, PartyError> {
        if self.insecure_plaintext {
            return Ok(None);
        }
        let (Some(ca), Some(cert), Some(key)) = (&self.ca_cert, &self.tls_cert, &self.tls_key)
        else {
            return Err(PartyError::Config {
                field: "ca_cert".into(),
                reason: "TLS needs --ca-cert, --tls-cert and --tls-key".into(),
            });
        };
        let tls = mpc_tls::ClientTls::load(ca.clone(), Some((cert.clone(), key.clone()))).map_err(
            |e| PartyError::Config {
                field: "tls_cert".into(),
                reason: e.to_string(),
            },
        )?;
        let chain = std::fs::read(cert).map_err(|e| PartyError::Config {
            field: "tls_cert".into(),
            reason: format!("{}: {e}", cert.display()),
        })?;
        let named = mpc_tls::Identity::from_pem(&chain).map_err(|e| PartyError::Config {
            field: "tls_cert".into(),
            reason: format!("{}: {e}", cert.display()),
        })?;
        if named.role != mpc_tls::Role::Party || named.name != self.party_id {
            return Err(PartyError::Config {
                field: "tls_cert".into(),
                reason: format!(
                    "{} names {named}, not party/{}",
                    cert.display(),
                    self.party_id
                ),
            });
        }
        Ok(Some(tls))
    }
}
