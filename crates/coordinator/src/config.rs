//! Coordinator configuration: defaults, then a TOML file, then `MPC_*` environment variables,
//! then command-line flags. Nested keys use a double underscore in the environment:
//! `MPC_RAFT__HEARTBEAT_MS=50`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;

/// Settings the environment may give. `insecure_plaintext` is not among them: a variable
/// exported for a developer's mpcctl must never turn a coordinator started from the same
/// shell into one where every caller is an admin (flag or file only).
const TOP_LEVEL_KEYS: [&str; 15] = [
    "node_id",
    "grpc_listen",
    "http_listen",
    "raft_listen",
    "advertise_grpc",
    "advertise_http",
    "advertise_raft",
    "data_dir",
    "initial_members",
    "tls",
    "raft",
    "sessions",
    "log",
    "auth",
    "limits",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's Raft id; must appear in `initial_members` when that is set.
    pub node_id: u64,
    /// Where the public gRPC server (clients, parties) listens.
    pub grpc_listen: SocketAddr,
    /// Where the HTTP server (health, readiness, metrics, status) listens: plain text,
    /// read-only, no secrets, so probes and scrapers need no credentials.
    pub http_listen: SocketAddr,
    /// Where the Raft server listens: mutual TLS, coordinators of the current membership
    /// only.
    pub raft_listen: SocketAddr,
    /// The gRPC address clients and parties use to reach this node; defaults to
    /// `grpc_listen`.
    pub advertise_grpc: Option<String>,
    pub advertise_http: Option<String>,
    /// The Raft address other coordinators dial; defaults to `raft_listen`.
    pub advertise_raft: Option<String>,
    /// RocksDB lives here.
    pub data_dir: PathBuf,
    /// The members a new cluster starts with, as a list or as the compact string
    /// `"1=host:grpc_port=host:http_port,2=..."`. Every member may be given the same list: the
    /// first start of an empty node initialises it, later starts ignore it.
    #[serde(deserialize_with = "members::deserialize")]
    pub initial_members: Vec<Member>,
    /// Turns TLS and authentication off: every link is plain text and every caller is an
    /// admin. For a throwaway cluster on one machine only; the node says so loudly.
    pub insecure_plaintext: bool,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub raft: RaftSettings,
    pub sessions: SessionSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub grpc_addr: String,
    pub http_addr: String,
    pub raft_addr: String,
}

/// This node's certificate (its name is the node id), its key, and the cluster CA. Files are
/// reloaded when they change and on SIGHUP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca_cert: None,
            cert: None,
            key: None,
            reload_interval_ms: 2_000,
        }
    }
}

impl TlsSettings {
    /// The three files, or the setting that is missing.
    pub fn files(&self) -> Result<mpc_tls::TlsFiles, CoordinatorError> {
        let need = |field: &str, v: &Option<PathBuf>| {
            v.clone().ok_or_else(|| {
                CoordinatorError::Config(format!(
                    "tls.{field}: required (MPC_TLS__{}), or run with --insecure-plaintext",
                    field.to_uppercase()
                ))
            })
        };
        Ok(mpc_tls::TlsFiles::new(
            need("ca_cert", &self.ca_cert)?,
            need("cert", &self.cert)?,
            need("key", &self.key)?,
        ))
    }
}

/// Limits on what authenticated callers may ask.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The longest a token may be valid.
    pub max_token_lifetime_days: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            max_token_lifetime_days: 3650,
        }
    }
}

/// What one principal (a client certificate, a token, a party) may use of a node at once.
/// Each node counts its own callers: a client spread over five nodes gets five times these.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Calls per second, sustained (a token bucket); 0 turns the rate limit off.
    pub requests_per_second: u32,
    /// Calls that may arrive at once above the sustained rate.
    pub burst: u32,
    /// Calls in progress at once (streams count while they are being opened).
    pub max_concurrent_requests: u32,
    /// `WatchSession` streams open at once.
    pub max_watch_streams: u32,
    /// Sessions of one key not finished yet (pending or running): a new request beyond it
    /// is refused with RESOURCE_EXHAUSTED until some finish.
    pub max_open_sessions_per_key: u32,
    /// Free space kept in the data directory: below it the node refuses writes and hands
    /// over leadership, below half of it it refuses replicated entries too, so that RocksDB
    /// never meets a full disk (which stops a Raft node for good); 0 turns the reserve off.
    pub min_free_disk_mib: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 500,
            burst: 1_000,
            max_concurrent_requests: 256,
            max_watch_streams: 64,
            max_open_sessions_per_key: 1_000,
            min_free_disk_mib: 128,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot, so that a briefly lagging follower catches up
    /// from the log rather than from a snapshot.
    pub entries_kept_after_snapshot: u64,
    /// Entries per AppendEntries message.
    pub max_payload_entries: u64,
    /// How long a forwarded write or a read barrier may wait for a leader.
    pub leader_wait_ms: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_after_entries: 100_000,
            entries_kept_after_snapshot: 5_000,
            max_payload_entries: 512,
            leader_wait_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// A session's lifetime when the request names none.
    pub default_timeout_secs: u32,
    /// The longest lifetime a request may ask for.
    pub max_timeout_secs: u32,
    /// Presignatures the scheduler keeps ready per ECDSA key (0 turns the pool off).
    pub presignatures_per_key: usize,
    /// Presign sessions running at once across all keys.
    pub presign_concurrency: usize,
    /// Finished sessions (with their request ids) and applied key-update ids are forgotten
    /// this long after they finished; the leader prunes them. A client retrying a request id
    /// later than this gets a new session. 0 keeps history for ever.
    pub retention_secs: u64,
    /// How often the leader looks for history to prune.
    pub retention_interval_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            default_timeout_secs: 300,
            max_timeout_secs: 86_400,
            presignatures_per_key: 4,
            presign_concurrency: 2,
            retention_secs: 7 * 86_400,
            retention_interval_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,openraft=warn`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info,openraft=warn".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            raft_listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            advertise_grpc: None,
            advertise_http: None,
            advertise_raft: None,
            data_dir: PathBuf::from("./data"),
            initial_members: Vec::new(),
            insecure_plaintext: false,
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            limits: LimitSettings::default(),
            raft: RaftSettings::default(),
            sessions: SessionSettings::default(),
            log: LogSettings::default(),
        }
    }
}

/// Values given on the command line; each overrides the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_members: Option<String>,
    /// Only ever turns plain text on; the flag's absence leaves the file's setting alone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

impl Config {
    /// Loads and validates. An explicitly named file must exist: figment would skip it
    /// silently.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, CoordinatorError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(CoordinatorError::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("MPC_")
                    // Other MPC_ variables (MPC_ENDPOINTS for mpcctl, a party's secrets) are
                    // not ours: leave them out rather than fail on an unknown key.
                    .filter(|key| {
                        let top = key.as_str().split("__").next().unwrap_or_default();
                        TOP_LEVEL_KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| CoordinatorError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let bad = |field: &str, reason: String| {
            Err(CoordinatorError::Config(format!("{field}: {reason}")))
        };
        if !self.initial_members.is_empty() {
            if !self.initial_members.iter().any(|m| m.id == self.node_id) {
                return bad(
                    "initial_members",
                    format!("does not list this node (node_id {})", self.node_id),
                );
            }
            let mut ids: Vec<u64> = self.initial_members.iter().map(|m| m.id).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != self.initial_members.len() {
                return bad("initial_members", "lists a node id twice".into());
            }
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 {
            return bad("raft.heartbeat_ms", "must be above 0".into());
        }
        if r.election_timeout_min_ms <= r.heartbeat_ms * 2 {
            return bad(
                "raft.election_timeout_min_ms",
                format!(
                    "must be more than twice raft.heartbeat_ms ({}), got {}",
                    r.heartbeat_ms, r.election_timeout_min_ms
                ),
            );
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return bad(
                "raft.election_timeout_max_ms",
                "must be above raft.election_timeout_min_ms".into(),
            );
        }
        if r.max_payload_entries == 0 || r.snapshot_after_entries == 0 {
            return bad(
                "raft",
                "max_payload_entries and snapshot_after_entries must be above 0".into(),
            );
        }
        if !self.insecure_plaintext {
            self.tls.files()?;
        }
        let s = &self.sessions;
        if s.default_timeout_secs == 0 || s.default_timeout_secs > s.max_timeout_secs {
            return bad(
                "sessions.default_timeout_secs",
                "must be between 1 and sessions.max_timeout_secs".into(),
            );
        }
        if s.retention_interval_secs == 0 {
            return bad("sessions.retention_interval_secs", "must be above 0".into());
        }
        let l = &self.limits;
        if l.requests_per_second > 0 && l.burst == 0 {
            return bad(
                "limits.burst",
                "must be above 0 while limits.requests_per_second is".into(),
            );
        }
        for (field, value) in [
            ("limits.max_concurrent_requests", l.max_concurrent_requests),
            ("limits.max_watch_streams", l.max_watch_streams),
            (
                "limits.max_open_sessions_per_key",
                l.max_open_sessions_per_key,
            ),
        ] {
            if value == 0 {
                return bad(field, "must be above 0".into());
            }
        }
        Ok(())
    }

    pub fn advertised_grpc(&self) -> String {
        self.advertise_grpc
            .clone()
            .unwrap_or_else(|| self.grpc_listen.to_string())
    }

    pub fn advertised_http(&self) -> String {
        self.advertise_http
            .clone()
            .unwrap_or_else(|| self.http_listen.to_string())
    }

    pub fn advertised_raft(&self) -> String {
        self.advertise_raft
            .clone()
            .unwrap_or_else(|| self.raft_listen.to_string())
    }
}

mod members {
    use serde::{Deserialize, Deserializer};

    use super::Member;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<Member>),
        Compact(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Member>, D::Error> {
        match Form::deserialize(d)? {
            Form::List(list) => Ok(list),
            Form::Compact(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    /// `"1=h:50051=h:8080=h:50061,2=..."`; an empty string is no members.
    pub fn parse(text: &str) -> Result<Vec<Member>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut fields = part.split('=');
                let (Some(id), Some(grpc), Some(http), Some(raft), None) = (
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                ) else {
                    return Err(format!(
                        "member {part:?} is not id=grpc_host:port=http_host:port=raft_host:port"
                    ));
                };
                let id = id
                    .parse()
                    .map_err(|_| format!("member {part:?}: id {id:?} is not a number"))?;
                Ok(Member {
                    id,
                    grpc_addr: grpc.to_owned(),
                    http_addr: http.to_owned(),
                    raft_addr: raft.to_owned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_members_parse() {
        let members = members::parse("1=a:1=a:2=a:3, 2=b:1=b:2=b:3").unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].grpc_addr, "b:1");
        assert_eq!(members[1].raft_addr, "b:3");
        assert!(members::parse("1=a:1").is_err());
        assert!(members::parse("1=a:1=a:2").is_err());
        assert!(members::parse("x=a:1=a:2=a:3")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns its own error type
    fn env_overrides_file_and_flags_override_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "node_id = 2\ninsecure_plaintext = true\ninitial_members = \"1=a:1=a:2=a:3,2=b:1=b:2=b:3\"\n[raft]\nheartbeat_ms = 40\n",
            )?;
            jail.set_env("MPC_RAFT__ELECTION_TIMEOUT_MIN_MS", "200");
            jail.set_env("MPC_NODE_ID", "1");
            jail.set_env("MPC_ENDPOINTS", "not-ours");
            let overrides = Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("c.toml")), &overrides).unwrap();
            assert_eq!(c.node_id, 1);
            assert_eq!(c.raft.heartbeat_ms, 40);
            assert_eq!(c.raft.election_timeout_min_ms, 200);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(c.initial_members.len(), 2);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("tls.ca_cert"), "{err}");
        let mut c = Config {
            insecure_plaintext: true,
            ..Config::default()
        };
        c.raft.election_timeout_min_ms = 60;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("raft.election_timeout_min_ms"), "{err}");

        let missing = Config::load(
            Some(Path::new("/nonexistent/mpc.toml")),
            &Overrides::default(),
        );
        assert!(missing.unwrap_err().to_string().contains("does not exist"));

        let c = Config {
            node_id: 9,
            insecure_plaintext: true,
            initial_members: members::parse("1=a:1=a:2=a:3").unwrap(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("node_id 9"));
    }
}
