//! The relayer's settings: a TOML file, then `MPC_DVN_*` variables over it (nested fields
//! joined with `__`, e.g. `MPC_DVN_TARGET__RPC_URLS='["http://…"]'` or
//! `MPC_DVN_SIGNER__PIN_FILE=/run/secrets/pin`). Unknown fields are errors, so a typo does not
//! silently leave a default in force; [`Config::validate`] checks what serde cannot.
//!
//! ```toml
//! instance = "dvn-1"
//! quorum = 2
//! signers = 3
//!
//! [cluster]
//! endpoints = ["https://127.0.0.1:50051"]
//! ca_cert = ".local-cluster/ca.pem"
//! client_cert = ".local-cluster/dvn-1.pem"
//! client_key = ".local-cluster/dvn-1-key.pem"
//!
//! [[sources]]
//! name = "ethereum"
//! chain_id = 1
//! eid = 30101
//! rpc_urls = ["http://127.0.0.1:8545"]
//! confirmations = 2
//! endpoint = "0x…"
//! send_library = "0x…"
//! dvn = "0x…"
//!
//! [target]
//! name = "conflux"
//! chain_id = 1030
//! eid = 30212
//! rpc_urls = ["http://127.0.0.1:8546"]
//! receive_library = "0x…"
//! dvn = "0x…"
//! vid = 1
//!
//! [signer]
//! kind = "hsm"
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "dvn-1"
//! key_label = "dvn-signer"
//! pin_file = "/run/secrets/dvn-1-pin"
//!
//! [submitter.key]
//! kind = "key_file"
//! path = "/run/secrets/dvn-1-submitter.key"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::Address;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// A configuration that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable did not parse.
    #[error("configuration: {0}")]
    Parse(String),
    /// A field holds a value that cannot work.
    #[error("configuration: {field}: {reason}")]
    Invalid {
        /// The field, as written in the file (e.g. `sources[0].eid`).
        field: String,
        /// Why.
        reason: String,
    },
}

/// A contract address left at zero (an example's placeholder) would watch and call nothing.
fn nonzero(field: &str, address: Address) -> Result<(), ConfigError> {
    if address == Address::ZERO {
        return Err(invalid(
            field,
            "the zero address: set the contract's address",
        ));
    }
    Ok(())
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Everything one relayer instance needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This instance's name in the job book (`dvn-1`): its verdicts and leases are kept
    /// under it. Unique per instance.
    pub instance: String,
    /// Signatures the DVN contract needs (its M of N).
    pub quorum: usize,
    /// Signers of the DVN contract, one per relayer instance (its N): more than N − M
    /// rejections mean no quorum can sign a job.
    pub signers: usize,
    /// How to reach the coordinators.
    pub cluster: ClusterConfig,
    /// The chains packets come from.
    pub sources: Vec<SourceChainConfig>,
    /// The chain packets are verified on.
    pub target: TargetChainConfig,
    /// Who signs execute hashes for this instance.
    pub signer: SignerConfig,
    /// How this instance submits `DVN.execute`.
    #[serde(default)]
    pub submitter: SubmitterConfig,
    /// Poll intervals, leases, expirations.
    #[serde(default)]
    pub timing: TimingConfig,
    /// The HTTP face.
    #[serde(default)]
    pub http: HttpConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// The coordinators and the relayer's credentials for them (a client certificate with the
/// `dvn` role, or a token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Coordinator gRPC addresses (any node; calls follow the leader).
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// The relayer's client certificate (PEM).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// A file holding a bearer token, instead of or besides the certificate.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Plain text, against a cluster started with `--insecure-plaintext` only.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// How long one call keeps trying the coordinators.
    #[serde(default = "defaults::cluster_timeout_ms")]
    pub timeout_ms: u64,
}

/// A source chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceChainConfig {
    /// A short name for logs and metric labels (`ethereum`).
    pub name: String,
    /// The EVM chain id (1 for Ethereum).
    pub chain_id: u64,
    /// The LayerZero endpoint id (30101 for Ethereum).
    pub eid: u32,
    /// JSON-RPC endpoints, tried in turn.
    pub rpc_urls: Vec<String>,
    /// Confirmations to wait at least, whatever the receiver asks for.
    #[serde(default)]
    pub confirmations: u64,
    /// The LayerZero EndpointV2 that emits `PacketSent`.
    pub endpoint: Address,
    /// The send library (SendUln302) whose packets we verify.
    pub send_library: Address,
    /// Our DVN's address on this chain, as senders name it in `DVNFeePaid`.
    pub dvn: Address,
    /// Where the first scan starts when the job book has no cursor; the safe head when
    /// unset.
    #[serde(default)]
    pub start_block: Option<u64>,
}

/// The target chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetChainConfig {
    /// A short name for logs and metric labels (`conflux`).
    pub name: String,
    /// The EVM chain id (1030 for Conflux eSpace).
    pub chain_id: u64,
    /// The LayerZero endpoint id (30212 for Conflux eSpace).
    pub eid: u32,
    /// JSON-RPC endpoints, tried in turn.
    pub rpc_urls: Vec<String>,
    /// The LayerZero EndpointV2 (not called; recorded for operators and checks).
    #[serde(default)]
    pub endpoint: Option<Address>,
    /// The receive library (ReceiveUln302) that `verify` is called on.
    pub receive_library: Address,
    /// Our DVN contract, which `execute` is sent to.
    pub dvn: Address,
    /// Our DVN's verifier id on this chain.
    pub vid: u32,
}

/// Where a PKCS#11 PIN comes from. Never from the file itself: a PIN in a config file ends
/// up in backups and tickets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label; or give `slot`.
    #[serde(default)]
    pub token_label: Option<String>,
    /// The slot id; or give `token_label`.
    #[serde(default)]
    pub slot: Option<u64>,
    /// The label of the secp256k1 private key (and its public key).
    pub key_label: String,
    /// A file whose content (trimmed) is the user PIN.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// An environment variable that holds the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
}

/// Who signs execute hashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SignerConfig {
    /// A key on a PKCS#11 token.
    Hsm(HsmConfig),
    /// A threshold key of the cluster.
    Platform {
        /// The key's id in the cluster.
        key_id: String,
        /// How long one signing may take.
        #[serde(default = "defaults::platform_timeout_ms")]
        timeout_ms: u64,
        /// An initiator's Ed25519 key file (64 hex digits, private: mpc_tls::secret_file), when
        /// the key's policy asks for approvals.
        #[serde(default)]
        initiator_key: Option<PathBuf>,
        /// A private file (mode 0600) holding a bearer token with the signer role for this
        /// key. The relayer's `dvn` certificate writes to the job book but cannot request
        /// signatures: that right is granted apart, by an admin, and can be revoked apart.
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// A private secp256k1 key file (mode 0600). For tests and the devnet.
    KeyFile {
        /// The file: 64 hex digits.
        path: PathBuf,
    },
}

/// The account that sends `DVN.execute` (it needs the DVN contract's admin role).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SubmitterKeyConfig {
    /// A private secp256k1 key file (mode 0600).
    KeyFile {
        /// The file: 64 hex digits.
        path: PathBuf,
    },
    /// A key on a PKCS#11 token.
    Hsm(HsmConfig),
}

/// How this instance submits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitterConfig {
    /// The sending account's key; without one this instance verifies and signs but never
    /// submits.
    #[serde(default)]
    pub key: Option<SubmitterKeyConfig>,
    /// The gas limit never exceeds this.
    #[serde(default = "defaults::max_gas")]
    pub max_gas: u64,
    /// Percent added to the gas estimate.
    #[serde(default = "defaults::gas_margin_percent")]
    pub gas_margin_percent: u64,
    /// Jobs carried by one `execute` at most.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Attempts (signing rounds with a fresh expiration) before a job fails.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// How long to wait for a sent transaction's receipt before looking again later.
    #[serde(default = "defaults::receipt_timeout_ms")]
    pub receipt_timeout_ms: u64,
}

impl Default for SubmitterConfig {
    fn default() -> Self {
        Self {
            key: None,
            max_gas: defaults::max_gas(),
            gas_margin_percent: defaults::gas_margin_percent(),
            max_batch: defaults::max_batch(),
            max_attempts: defaults::max_attempts(),
            receipt_timeout_ms: defaults::receipt_timeout_ms(),
        }
    }
}

/// Intervals and lifetimes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingConfig {
    /// Between two scans, verifier passes and submitter passes when there was nothing to do.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The submission lease: how long another instance waits before taking a stalled
    /// submission over.
    #[serde(default = "defaults::lease_ms")]
    pub lease_ms: u64,
    /// Seconds an attempt's signatures stay valid on the DVN contract.
    #[serde(default = "defaults::expiration_ttl_secs")]
    pub expiration_ttl_secs: u64,
    /// The longest wait between tries after errors.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: defaults::poll_interval_ms(),
            lease_ms: defaults::lease_ms(),
            expiration_ttl_secs: defaults::expiration_ttl_secs(),
            max_backoff_ms: defaults::max_backoff_ms(),
        }
    }
}

impl TimingConfig {
    /// [`TimingConfig::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// [`TimingConfig::max_backoff_ms`] as a duration.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }
}

/// The HTTP face.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where `/health`, `/ready` and `/metrics` listen.
    #[serde(default = "defaults::http_listen")]
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: defaults::http_listen(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info,mpc_dvn=debug`).
    #[serde(default = "defaults::log_filter")]
    pub filter: String,
    /// JSON lines instead of human-readable text.
    #[serde(default)]
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: defaults::log_filter(),
            json: false,
        }
    }
}

mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};

    pub(super) fn cluster_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn platform_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn max_gas() -> u64 {
        3_000_000
    }
    pub(super) fn gas_margin_percent() -> u64 {
        20
    }
    pub(super) fn max_batch() -> usize {
        32
    }
    pub(super) fn max_attempts() -> u32 {
        3
    }
    pub(super) fn receipt_timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn poll_interval_ms() -> u64 {
        1_000
    }
    pub(super) fn lease_ms() -> u64 {
        30_000
    }
    pub(super) fn expiration_ttl_secs() -> u64 {
        600
    }
    pub(super) fn max_backoff_ms() -> u64 {
        30_000
    }
    pub(super) fn http_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 9464))
    }
    pub(super) fn log_filter() -> String {
        "info".into()
    }
}

impl Config {
    /// Reads `path` (which must exist: figment would skip a missing file silently) with the
    /// `MPC_DVN_*` variables over it, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Parse(format!(
                "{}: no such file",
                path.display()
            )));
        }
        Self::from_figment(Figment::new().merge(Toml::file(path)))
    }

    /// Parses TOML text (with the environment over it), for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment
            // MPC_DVN_CONFIG names this file (the `--config` flag's variable), not a setting.
            .merge(Env::prefixed("MPC_DVN_").ignore(&["CONFIG"]).split("__"))
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.instance.is_empty() || self.instance.len() > 64 {
            return Err(invalid("instance", "1 to 64 characters"));
        }
        if self.quorum == 0 {
            return Err(invalid("quorum", "at least 1"));
        }
        if self.signers < self.quorum {
            return Err(invalid(
                "signers",
                format!(
                    "{} signers cannot reach a quorum of {}",
                    self.signers, self.quorum
                ),
            ));
        }
        if self.cluster.endpoints.is_empty() {
            return Err(invalid("cluster.endpoints", "at least one coordinator"));
        }
        if self.sources.is_empty() {
            return Err(invalid("sources", "at least one source chain"));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.rpc_urls.is_empty() {
                return Err(invalid(
                    format!("sources[{i}].rpc_urls"),
                    "at least one URL",
                ));
            }
            if s.eid == self.target.eid {
                return Err(invalid(
                    format!("sources[{i}].eid"),
                    format!("{} is the target's eid too", s.eid),
                ));
            }
            if self.sources[..i].iter().any(|o| o.eid == s.eid) {
                return Err(invalid(format!("sources[{i}].eid"), "named twice"));
            }
            for (field, address) in [
                ("endpoint", s.endpoint),
                ("send_library", s.send_library),
                ("dvn", s.dvn),
            ] {
                nonzero(&format!("sources[{i}].{field}"), address)?;
            }
        }
        nonzero("target.receive_library", self.target.receive_library)?;
        nonzero("target.dvn", self.target.dvn)?;
        if let Some(endpoint) = self.target.endpoint {
            nonzero("target.endpoint", endpoint)?;
        }
        if self.target.rpc_urls.is_empty() {
            return Err(invalid("target.rpc_urls", "at least one URL"));
        }
        if let SignerConfig::Hsm(h) = &self.signer {
            h.validate("signer")?;
        }
        if let Some(SubmitterKeyConfig::Hsm(h)) = &self.submitter.key {
            h.validate("submitter.key")?;
        }
        if self.submitter.max_batch == 0 {
            return Err(invalid("submitter.max_batch", "at least 1"));
        }
        if self.submitter.max_attempts == 0 {
            return Err(invalid("submitter.max_attempts", "at least 1"));
        }
        if self.submitter.max_gas < 21_000 {
            return Err(invalid("submitter.max_gas", "at least 21000"));
        }
        if self.timing.poll_interval_ms == 0 {
            return Err(invalid("timing.poll_interval_ms", "at least 1"));
        }
        if self.timing.lease_ms < 1_000 {
            return Err(invalid("timing.lease_ms", "at least 1000"));
        }
        if self.timing.expiration_ttl_secs < 60 {
            return Err(invalid("timing.expiration_ttl_secs", "at least 60"));
        }
        Ok(())
    }

    /// The source chain with endpoint id `eid`.
    pub fn source(&self, eid: u32) -> Option<&SourceChainConfig> {
        self.sources.iter().find(|s| s.eid == eid)
    }
}

impl HsmConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        match (&self.token_label, self.slot) {
            (None, None) => Err(invalid(
                format!("{at}.token_label"),
                "give token_label or slot",
            )),
            (Some(_), Some(_)) => Err(invalid(
                format!("{at}.slot"),
                "give token_label or slot, not both",
            )),
            _ => Ok(()),
        }?;
        match (&self.pin_file, &self.pin_env) {
            (None, None) => Err(invalid(
                format!("{at}.pin_file"),
                "give pin_file or pin_env",
            )),
            (Some(_), Some(_)) => Err(invalid(
                format!("{at}.pin_env"),
                "give pin_file or pin_env, not both",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
instance = "dvn-1"
quorum = 2
signers = 3

[cluster]
endpoints = ["127.0.0.1:50051"]
insecure_plaintext = true

[[sources]]
name = "ethereum"
chain_id = 1
eid = 30101
rpc_urls = ["http://127.0.0.1:8545"]
confirmations = 2
endpoint = "0x00000000000000000000000000000000000000e1"
send_library = "0x00000000000000000000000000000000000000a1"
dvn = "0x00000000000000000000000000000000000000d1"

[target]
name = "conflux"
chain_id = 1030
eid = 30212
rpc_urls = ["http://127.0.0.1:8546"]
receive_library = "0x00000000000000000000000000000000000000b2"
dvn = "0x00000000000000000000000000000000000000d2"
vid = 1

[signer]
kind = "hsm"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "dvn-1"
key_label = "dvn-signer"
pin_file = "/run/secrets/pin"

[submitter.key]
kind = "key_file"
path = "/run/secrets/submitter.key"
"#;

    #[test]
    fn the_example_parses_with_defaults() {
        let c = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(c.instance, "dvn-1");
        assert_eq!(c.sources[0].eid, 30101);
        assert_eq!(c.target.chain_id, 1030);
        assert!(matches!(c.signer, SignerConfig::Hsm(_)));
        assert!(matches!(
            c.submitter.key,
            Some(SubmitterKeyConfig::KeyFile { .. })
        ));
        assert_eq!(c.submitter.max_batch, 32);
        assert_eq!(c.timing.lease_ms, 30_000);
        assert!(c.source(30101).is_some());
        assert!(c.source(1).is_none());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = Config::from_toml(&EXAMPLE.replace("quorum = 2", "quorum = 2\nquorom = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("quorom"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace("key_label", "key_lable"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key_lable"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace("quorum = 2", "quorum = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("quorum: at least 1"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace("eid = 30101", "eid = 30212"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources[0].eid"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace("pin_file = \"/run/secrets/pin\"", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signer.pin_file"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace(
            "dvn = \"0x00000000000000000000000000000000000000d1\"",
            "dvn = \"0x12\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("dvn"), "{err}");
        let err = Config::from_toml(&EXAMPLE.replace(
            "dvn = \"0x00000000000000000000000000000000000000d2\"",
            "dvn = \"0x0000000000000000000000000000000000000000\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("target.dvn: the zero address"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns its own error type
    fn the_config_flags_variable_is_not_taken_for_a_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dvn.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("MPC_DVN_CONFIG", path.display());
            let c = Config::load(&path).map_err(|e| e.to_string())?;
            assert_eq!(c.instance, "dvn-1");
            Ok(())
        });
    }
}
