//! Coordinator clusters inside the test process (feature `test-utils`).
//!
//! [`InProcessCluster::start`] runs `n` coordinators as tokio tasks, as deployed in all but
//! the process boundary: their own RocksDB directories, a PKI of their own with TLS and
//! authentication on, Raft and the public API over loopback gRPC. Every listener is bound
//! on port 0 first ([`Listeners::bind_any`]), so that the members' addresses are known
//! before any configuration is written and no two tests can meet on a port.
//!
//! A node can be stopped, not killed: a task shares the process, its files and its runtime,
//! so a crash and a restart on the same data stay with the process tests (`tests/`).
//!
//! The helpers the process harness (`mpc-tests`) shares with these tests live here too: the
//! PKI, the admin's and initiator's keys, signed policies and approvals, a minimal HTTP GET.
//! Node logs go to the test's output (captured by the test runner) and are not scanned for
//! secrets, as the process harness scans its log files.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mpc_client::{ClientChannel, Credentials};
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_proto::v1::party_gateway_client::PartyGatewayClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tls::{pki, Identity, Role};
use mpc_types::AccessRole;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, LogSettings, Member, TlsSettings};
use crate::{CoordinatorError, Listeners};

/// The admin whose signature test parties trust (`--admin-keys`): signs enrolments and key
/// policies.
pub fn admin_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0xad; 32])
}

/// The initiator every test key's policy names: approves signings.
pub fn initiator_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x1e; 32])
}

/// An identity, as `mpc-party identity` prints it, that no party holds: enrolled for tests
/// whose keygens are created and never run. `seed` tells such parties apart.
pub fn placeholder_identity(seed: u8) -> String {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    format!(
        "{}{}",
        hex::encode(signing.verifying_key().to_bytes()),
        hex::encode([0x42u8; 32])
    )
}

/// Makes a PKI in `dir/pki` and the admin's client certificate: the PKI directory and the
/// admin's credentials.
pub fn new_pki(dir: &Path) -> anyhow::Result<(PathBuf, Credentials)> {
    let pki_dir = dir.join("pki");
    pki::init(&pki_dir)?;
    let admin = issue(&pki_dir, Role::Client, "admin", Some(AccessRole::Admin))?;
    let credentials = Credentials::tls(
        pki::ca_cert_path(&pki_dir),
        Some((admin.cert, admin.key)),
        None,
    )?;
    Ok((pki_dir, credentials))
}

/// Issues a certificate from the PKI in `dir`, as `mpcctl pki issue` does; coordinators are
/// named for loopback, where tests dial them.
pub fn issue(
    dir: &Path,
    role: Role,
    name: &str,
    grant: Option<AccessRole>,
) -> anyhow::Result<pki::Issued> {
    let identity = Identity::new(role, name, grant)?;
    let hosts = if role == Role::Coordinator {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        Vec::new()
    };
    Ok(pki::issue(
        dir,
        &identity,
        &hosts,
        pki::DEFAULT_LEAF_VALIDITY,
    )?)
}

/// A keygen request with the given request id, its key id derived from it (so a retry is the
/// same request) and the admin's policy: ECDSA, two of the placeholder parties p1..p3.
pub fn keygen_request(request_id: &str) -> pb::CreateKeygenRequest {
    use sha2::Digest;
    let key_id = if request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        format!(
            "key-{}",
            hex::encode(&sha2::Sha256::digest(request_id.as_bytes())[..8])
        )
    };
    with_policy(pb::CreateKeygenRequest {
        scheme: "ecdsa-secp256k1".into(),
        threshold: 2,
        parties: vec!["p1".into(), "p2".into(), "p3".into()],
        request_id: request_id.into(),
        description: "integration test".into(),
        tags: Default::default(),
        timeout_seconds: 0,
        key_id,
        policy: None,
    })
}

/// Signs the admin's policy for exactly this request (after a test changed its fields): one
/// initiator, one approval.
pub fn with_policy(mut req: pb::CreateKeygenRequest) -> pb::CreateKeygenRequest {
    req.policy = Some(mpc_client::authority::sign_policy(
        &admin_signing_key(),
        mpc_client::authority::PolicyTerms {
            key_id: req.key_id.clone(),
            scheme: req.scheme.clone(),
            threshold: u16::try_from(req.threshold).unwrap_or(u16::MAX),
            parties: req.parties.clone(),
            initiators: vec![initiator_signing_key().verifying_key().to_bytes()],
            approvals_needed: 1,
        },
    ));
    req
}

/// Adds the test initiator's approval to a signing request (and a request id if it has
/// none), valid for five minutes.
pub fn approve(mut req: pb::CreateSigningRequest) -> pb::CreateSigningRequest {
    if req.request_id.is_empty() {
        req.request_id = uuid::Uuid::new_v4().to_string();
    }
    let not_after_ms = mpc_client::authority::expiry_after(Duration::from_secs(300));
    // Only a request a test left malformed on purpose fails here; it then goes unapproved.
    let _ =
        mpc_client::authority::approve_signing(&mut req, &initiator_signing_key(), not_after_ms);
    req
}

/// A minimal HTTP/1.0 GET: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    Ok((code, body.to_owned()))
}

/// Whether a session has ended (completed, failed or expired).
pub fn session_ended(session: &pb::Session) -> bool {
    matches!(
        pb::SessionStatus::try_from(session.status),
        Ok(pb::SessionStatus::Completed | pb::SessionStatus::Failed | pb::SessionStatus::Expired)
    )
}

/// How long a node gets to stop cleanly (Raft, then each server's drain) before its task is
/// aborted.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// One coordinator running as a task of the test process.
#[derive(Debug)]
pub struct InProcessNode {
    pub id: u64,
    pub grpc: SocketAddr,
    pub raft: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// Ends the node: dropping it completes the shutdown future too.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// How the node's run ended (`None` while it runs): its error as text.
    ended: watch::Receiver<Option<Result<(), String>>>,
}

impl InProcessNode {
    /// Whether the node still runs.
    pub fn is_running(&self) -> bool {
        self.task.is_some() && self.ended.borrow().is_none()
    }
}

/// A coordinator cluster of tasks in this process, with its own PKI (TLS and authentication
/// on, as deployed). Dropping it stops every node; [`InProcessCluster::shutdown`] also waits
/// for them.
#[derive(Debug)]
pub struct InProcessCluster {
    nodes: BTreeMap<u64, InProcessNode>,
    pki: PathBuf,
    admin: Credentials,
    /// The PKI and the data directories; `None` once handed to the cleanup after the nodes.
    dir: Option<tempfile::TempDir>,
}

impl InProcessCluster {
    /// Starts `n` coordinators (ids 1..=n) that bootstrap together, and waits until every one
    /// is ready (a leader elected and known to all).
    pub async fn start(n: u64) -> anyhow::Result<Self> {
        Self::start_with(n, |_| {}).await
    }

    /// As [`InProcessCluster::start`], with each node's configuration changed by `configure`
    /// first (its addresses, data directory, members and TLS files are set already).
    pub async fn start_with(n: u64, configure: impl Fn(&mut Config)) -> anyhow::Result<Self> {
        init_logging();
        let dir = tempfile::tempdir()?;
        let (pki_dir, admin) = new_pki(dir.path())?;

        let mut bound = Vec::new();
        for id in 1..=n {
            let listeners = Listeners::bind_any(Ipv4Addr::LOCALHOST.into()).await?;
            let (grpc, raft, http) = listeners.local_addrs()?;
            bound.push((id, listeners, grpc, raft, http));
        }
        // Every member's addresses go into every configuration: Raft peers dial each other
        // from the first election on.
        let members: Vec<Member> = bound
            .iter()
            .map(|(id, _, grpc, raft, http)| Member {
                id: *id,
                grpc_addr: grpc.to_string(),
                http_addr: http.to_string(),
                raft_addr: raft.to_string(),
            })
            .collect();

        let mut cluster = Self {
            nodes: BTreeMap::new(),
            pki: pki_dir,
            admin,
            dir: None,
        };
        for (id, listeners, grpc, raft, http) in bound {
            let tls = issue(&cluster.pki, Role::Coordinator, &id.to_string(), None)?;
            let mut config = Config {
                node_id: id,
                grpc_listen: grpc,
                raft_listen: raft,
                http_listen: http,
                data_dir: dir.path().join(format!("node{id}")),
                initial_members: members.clone(),
                tls: TlsSettings {
                    ca_cert: Some(pki::ca_cert_path(&cluster.pki)),
                    cert: Some(tls.cert),
                    key: Some(tls.key),
                    ..TlsSettings::default()
                },
                ..Config::default()
            };
            configure(&mut config);
            config.validate()?;
            let node = spawn_node(config, listeners);
            cluster.nodes.insert(id, node);
        }
        cluster.dir = Some(dir);
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        cluster.wait_ready(&ids, Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<u64, InProcessNode> {
        &self.nodes
    }

    /// The ids of the nodes that still run.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    fn node(&self, id: u64) -> anyhow::Result<&InProcessNode> {
        self.nodes.get(&id).with_context(|| format!("no node {id}"))
    }

    /// Node `id`'s public gRPC address (`host:port`), as clients and parties dial it.
    pub fn grpc(&self, id: u64) -> anyhow::Result<String> {
        Ok(self.node(id)?.grpc.to_string())
    }

    /// Node `id`'s HTTP address (health, readiness, metrics, status).
    pub fn http(&self, id: u64) -> anyhow::Result<SocketAddr> {
        Ok(self.node(id)?.http)
    }

    /// Every node's gRPC address, as a party's `--coordinators` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.grpc.to_string()).collect()
    }

    /// The PKI directory (`ca.crt`, and certificates by role).
    pub fn pki_dir(&self) -> &Path {
        &self.pki
    }

    /// The admin's credentials (a client certificate with the admin grant).
    pub fn admin(&self) -> &Credentials {
        &self.admin
    }

    /// Credentials of a new client certificate with `grant`.
    pub fn client_credentials(&self, name: &str, grant: AccessRole) -> anyhow::Result<Credentials> {
        let leaf = issue(&self.pki, Role::Client, name, Some(grant))?;
        Ok(Credentials::tls(
            pki::ca_cert_path(&self.pki),
            Some((leaf.cert, leaf.key)),
            None,
        )?)
    }

    /// A channel to node `id` as the admin.
    pub fn channel(&self, id: u64) -> anyhow::Result<ClientChannel> {
        self.channel_as(id, &self.admin)
    }

    /// A channel to node `id` with other credentials.
    pub fn channel_as(&self, id: u64, credentials: &Credentials) -> anyhow::Result<ClientChannel> {
        Ok(credentials.channel(&self.grpc(id)?, |e| {
            e.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(10))
        })?)
    }

    pub fn sessions(&self, id: u64) -> anyhow::Result<SessionsClient<ClientChannel>> {
        Ok(SessionsClient::new(self.channel(id)?))
    }

    pub fn keys(&self, id: u64) -> anyhow::Result<KeysClient<ClientChannel>> {
        Ok(KeysClient::new(self.channel(id)?))
    }

    /// Node `id`'s view of the cluster.
    pub async fn status(&self, id: u64) -> anyhow::Result<pb::ClusterStatus> {
        let mut client = ClusterClient::new(self.channel(id)?);
        let mut req = tonic::Request::new(pb::GetStatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(client.get_status(req).await?.into_inner())
    }

    /// Waits until every node in `ids` reports ready; a node that ended meanwhile fails the
    /// wait with its reason.
    pub async fn wait_ready(&self, ids: &[u64], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for &id in ids {
            loop {
                if let Some(ended) = self.node(id)?.ended.borrow().clone() {
                    let reason = ended.err().unwrap_or_else(|| "stopped".into());
                    bail!("node {id} ended before it was ready: {reason}");
                }
                if let Ok(s) = self.status(id).await {
                    if s.ready {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("node {id} not ready within {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The leader that a majority of the cluster agrees on among the running nodes, waiting up
    /// to `timeout` for one.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running();
            let mut seen = Vec::new();
            for &id in &running {
                if let Ok(s) = self.status(id).await {
                    seen.push((s.term, s.leader));
                }
            }
            if let Some(&(term, Some(leader))) = seen.iter().max_by_key(|(t, _)| *t) {
                let agree = seen
                    .iter()
                    .filter(|(t, l)| *t == term && *l == Some(leader))
                    .count();
                if running.contains(&leader) && agree * 2 > self.nodes.len() {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                bail!("no agreed leader within {timeout:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Enrols a party's identity (as `mpc-party identity` prints it) as the admin, through
    /// whichever running node answers.
    pub async fn enroll(&self, party_id: &str, identity: &str) -> anyhow::Result<pb::Party> {
        let req = mpc_client::authority::enrol(&admin_signing_key(), party_id, identity)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut last = String::new();
            for id in self.running() {
                let mut client = PartyGatewayClient::new(self.channel(id)?);
                match client.enroll(req.clone()).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                bail!("enrolling {party_id}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Follows a session through the running nodes until it ends (polling, so a leader
    /// change does not cut it short).
    pub async fn wait_session(
        &self,
        session_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<pb::Session> {
        let deadline = Instant::now() + timeout;
        loop {
            for id in self.running() {
                let req = pb::GetSessionRequest {
                    session_id: session_id.to_owned(),
                    consistency: pb::ReadConsistency::Linearizable as i32,
                };
                if let Ok(s) = self.sessions(id)?.get_session(req).await {
                    let s = s.into_inner();
                    if session_ended(&s) {
                        return Ok(s);
                    }
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("session {session_id} did not end within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops node `id` as its binary stops on SIGTERM (Raft first, then the servers drain)
    /// and waits for it; its run's error, if it ended with one.
    pub async fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self
            .nodes
            .get_mut(&id)
            .with_context(|| format!("no node {id}"))?;
        stop_node(node).await
    }

    /// Stops every node and waits for them, then removes their files; the first node's
    /// error, if any ended with one.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let stops = self.nodes.values_mut().map(stop_node);
        let results = futures::future::join_all(stops).await;
        drop(self.dir.take());
        results.into_iter().collect()
    }
}

impl Drop for InProcessCluster {
    /// Tells every node to stop. Their files are removed once they have (a store deleted
    /// under a running RocksDB makes it fail loudly), or with the runtime's end.
    fn drop(&mut self) {
        let mut tasks = Vec::new();
        for node in self.nodes.values_mut() {
            node.stop.take();
            tasks.extend(node.task.take());
        }
        let dir = self.dir.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(STOP_WAIT, futures::future::join_all(tasks)).await;
                drop(dir);
            });
        }
    }
}

/// Starts a node as a task of the current runtime.
fn spawn_node(config: Config, listeners: Listeners) -> InProcessNode {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ended_tx, ended_rx) = watch::channel(None);
    let id = config.node_id;
    let (grpc, raft, http) = (config.grpc_listen, config.raft_listen, config.http_listen);
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn(async move {
        // A dropped sender stops the node as a sent stop does.
        let shutdown = async {
            let _ = stop_rx.await;
        };
        let result: Result<(), CoordinatorError> =
            crate::run_with_listeners(config, listeners, shutdown).await;
        if let Err(e) = &result {
            tracing::error!(node = id, error = %e, "in-process coordinator failed");
        }
        let _ = ended_tx.send(Some(result.map_err(|e| e.to_string())));
    });
    InProcessNode {
        id,
        grpc,
        raft,
        http,
        data_dir,
        stop: Some(stop_tx),
        task: Some(task),
        ended: ended_rx,
    }
}

async fn stop_node(node: &mut InProcessNode) -> anyhow::Result<()> {
    let id = node.id;
    node.stop.take();
    let Some(task) = node.task.take() else {
        return Ok(());
    };
    let abort = task.abort_handle();
    match tokio::time::timeout(STOP_WAIT, task).await {
        Ok(joined) => joined.with_context(|| format!("node {id}'s task"))?,
        Err(_) => {
            abort.abort();
            bail!("node {id} did not stop within {STOP_WAIT:?}");
        }
    }
    match node.ended.borrow().clone() {
        Some(Err(reason)) => bail!("node {id} ended with an error: {reason}"),
        Some(Ok(())) | None => Ok(()),
    }
}

/// Node logs to the test's output (shown when a test fails), warnings and up, openraft's
/// errors only (its warnings about stale votes fill pages at every election), unless
/// `MPC_TEST_LOG` gives a filter (e.g. `info,openraft=warn`). The first cluster of the process
/// installs it.
fn init_logging() {
    let filter = std::env::var("MPC_TEST_LOG").unwrap_or_else(|_| "warn,openraft=error".into());
    let settings = LogSettings {
        filter,
        ..LogSettings::default()
    };
    if let Err(e) = crate::telemetry::init_logging(&settings) {
        eprintln!("MPC_TEST_LOG: {e}");
    }
}
