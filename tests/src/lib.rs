//! Test harness: real `mpc-coordinator` processes on loopback, each with its own RocksDB
//! directory, driven over real gRPC and HTTP.
//!
//! The binaries come from `MPC_BIN_DIR`, or else from the cargo target directory this test
//! binary was built into (`cargo build --bins` first; the README's test command does).
//!
//! Every log the harness writes is scanned for secrets when its [`Cluster`] or [`Parties`] is
//! dropped ([`secret_scan`]): the PKI's private keys, the admin's and initiator's signing
//! keys, the parties' master keys, identity keys and share secrets, and whatever the tests
//! remembered ([`secrets::remember`], [`secrets::remember_token`]). A secret found fails the
//! test with the report (file, line, which secret, which encoding; never the secret) and keeps
//! the temporary directory with the logs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mpc_client::{ClientChannel, Credentials};
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tls::{pki, Role};
use mpc_types::AccessRole;

/// Where the project's binaries are.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("MPC_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // target/<profile>/deps/it-<hash> -> target/<profile>
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no grandparent directory")?;
    Ok(dir.to_path_buf())
}

pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --bins` first (or set MPC_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

pub mod dvn;
mod ports;
pub mod secret_scan;
pub mod secrets;
// Shared with the in-process tests of the coordinator and party crates, which own them.
pub use mpc_coordinator::test_utils::{
    admin_signing_key, approve, http_get, initiator_signing_key, issue, keygen_request, new_pki,
    with_policy,
};
pub use mpc_party::test_utils::fixture_primes;
pub use ports::PortLease;

use secret_scan::{Scanner, Secret};

/// The secrets the harness knows wherever it scans: the admin's and the initiator's signing
/// keys, every private key of the PKI in `pki` (the CA's, every node's and client's), and what
/// the tests remembered.
fn harness_secrets(pki: &Path) -> anyhow::Result<Vec<Secret>> {
    let mut secrets = vec![
        Secret::bytes("admin signing key", &admin_signing_key().to_bytes()),
        Secret::bytes("initiator signing key", &initiator_signing_key().to_bytes()),
    ];
    secrets.extend(secret_scan::secrets_dir(pki)?.secrets);
    secrets.extend(secrets::remembered());
    Ok(secrets)
}

/// Scans the logs of `logs` that exist for `secrets`: the report as the error when one holds
/// a secret.
fn scan_logs(logs: &[PathBuf], secrets: &[Secret]) -> anyhow::Result<()> {
    let logs: Vec<PathBuf> = logs.iter().filter(|l| l.is_file()).cloned().collect();
    let report = Scanner::new(secrets)?.scan_paths(&logs)?;
    if !report.clean() {
        bail!("{report}");
    }
    Ok(())
}

fn loopback(lease: &PortLease) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lease.port()))
}

#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub raft: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub tls: pki::Issued,
    /// Settings of this node alone, after the cluster's (e.g. a fake clock), taken at each
    /// start.
    pub env: Vec<(String, String)>,
    /// A command the node is started under, its own command line appended (e.g. one that
    /// mounts a small filesystem on its data directory); empty: none.
    pub launcher: Vec<String>,
    child: Option<Child>,
    /// gRPC, HTTP and Raft, held for the life of the cluster: a restart binds them again.
    _ports: [PortLease; 3],
}

/// `len` printable bytes that compress poorly, different for each `seed`.
fn noise(seed: &str, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len);
    let mut block = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes());
    while bytes.len() * 4 / 3 < len {
        bytes.extend_from_slice(&block);
        block = <sha2::Sha256 as sha2::Digest>::digest(block);
    }
    let mut text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, bytes);
    text.truncate(len);
    text
}

/// A keygen request at the size limits (a 4096-byte description and 32 tags of 256 bytes, about
/// 12 KiB that compress poorly), named `name` as [`keygen_request`] names it.
pub fn large_keygen_request(name: &str) -> pb::CreateKeygenRequest {
    let mut req = keygen_request(name);
    req.description = noise(name, mpc_raft_store::command::MAX_DESCRIPTION_LEN);
    req.tags = (0..mpc_raft_store::command::MAX_TAGS)
        .map(|t| {
            (
                format!("tag-{t:02}"),
                noise(
                    &format!("{name}/{t}"),
                    mpc_raft_store::command::MAX_TAG_VALUE_LEN,
                ),
            )
        })
        .collect();
    with_policy(req)
}

/// A coordinator cluster of processes, with its own PKI (TLS and authentication on, as in
/// production); killed when dropped.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    members: String,
    env: Vec<(String, String)>,
    pki: PathBuf,
    admin: Credentials,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members that bootstrap together, with extra `MPC_*` settings.
    pub async fn start(n: u64, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with_node_env(n, env, |_| Vec::new()).await
    }

    /// [`Self::start`], with settings of each node's own (`node_env(id)`) on top.
    pub async fn start_with_node_env(
        n: u64,
        env: &[(&str, &str)],
        node_env: impl Fn(u64) -> Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_with_nodes(n, env, |node| {
            node.env = node_env(node.id);
            Ok(())
        })
        .await
    }

    /// [`Self::start`], with each node prepared by `prepare` before its first start (its own
    /// settings, a launcher).
    pub async fn start_with_nodes(
        n: u64,
        env: &[(&str, &str)],
        prepare: impl Fn(&mut NodeProc) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (pki, admin) = new_pki(dir.path())?;
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let mut node = Self::node(dir.path(), &pki, id)?;
            prepare(&mut node)?;
            nodes.insert(id, node);
        }
        let members = nodes
            .values()
            .map(|p| format!("{}={}={}={}", p.id, p.grpc, p.http, p.raft))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            nodes,
            members,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pki,
            admin,
            _dir: dir,
        };
        for id in 1..=n {
            cluster.spawn(id, true)?;
        }
        cluster
            .wait_ready(&(1..=n).collect::<Vec<_>>(), Duration::from_secs(30))
            .await?;
        // Keygens of tests that run no parties name p1..p3: enrol them with keys nobody
        // holds (their sessions are created, never run).
        for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
            let identity = mpc_coordinator::test_utils::placeholder_identity(0x70 + i as u8);
            cluster.enroll(p, &identity).await?;
        }
        Ok(cluster)
    }

    /// Enrols a party's identity (as `mpc-party identity` prints it) as the admin.
    pub async fn enroll(&self, party_id: &str, identity: &str) -> anyhow::Result<pb::Party> {
        let req = mpc_client::authority::enrol(&admin_signing_key(), party_id, identity)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut last = String::new();
            for id in self.running() {
                let mut client =
                    mpc_proto::v1::party_gateway_client::PartyGatewayClient::new(self.channel(id)?);
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

    fn node(dir: &Path, pki: &Path, id: u64) -> anyhow::Result<NodeProc> {
        let ports = [PortLease::take()?, PortLease::take()?, PortLease::take()?];
        Ok(NodeProc {
            id,
            grpc: loopback(&ports[0]),
            http: loopback(&ports[1]),
            raft: loopback(&ports[2]),
            _ports: ports,
            data_dir: dir.join(format!("node{id}")),
            log: dir.join(format!("node{id}.log")),
            tls: issue(pki, Role::Coordinator, &id.to_string(), None)?,
            env: Vec::new(),
            launcher: Vec::new(),
            child: None,
        })
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

    /// Credentials that present no certificate, only `token` (if any).
    pub fn token_credentials(&self, token: Option<&str>) -> anyhow::Result<Credentials> {
        Ok(Credentials::tls(pki::ca_cert_path(&self.pki), None, token)?)
    }

    /// Generates a 2-of-3 key of `scheme` over `party-1..3` through `node`, under the test
    /// admin's policy (the test initiator approves its signings); the key once completed.
    pub async fn generate_key(
        &self,
        node: u64,
        scheme: &str,
        key_id: &str,
        limit: Duration,
    ) -> anyhow::Result<pb::Key> {
        let created = self
            .sessions(node)?
            .create_keygen(with_policy(pb::CreateKeygenRequest {
                scheme: scheme.into(),
                threshold: 2,
                parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
                request_id: format!("keygen-{key_id}"),
                key_id: key_id.into(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        let session = created
            .session
            .context("CreateKeygen answered no session")?;
        let done = wait_session(self, &session.session_id, limit).await?;
        if done.status != pb::SessionStatus::Completed as i32 {
            bail!("keygen {scheme} {key_id}: {}", done.failure_reason);
        }
        Ok(
            mpc_proto::v1::keys_client::KeysClient::new(self.channel(node)?)
                .get_key(pb::GetKeyRequest {
                    key_id: done.key_id,
                    consistency: 0,
                })
                .await?
                .into_inner(),
        )
    }

    /// Registers a token made like `mpcctl token create` does (remembered for the secret
    /// scan); returns the token string.
    pub async fn make_token(
        &self,
        name: &str,
        role: AccessRole,
        keys: &[&str],
    ) -> anyhow::Result<String> {
        let token_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let token = mpc_types::token::format(&token_id, &secret);
        secrets::remember_token(&format!("token {name}"), &token);
        let leader = self.leader(Duration::from_secs(10)).await?;
        mpc_proto::v1::access_client::AccessClient::new(self.channel(leader)?)
            .create_token(pb::CreateTokenRequest {
                token_id,
                name: name.into(),
                role: role.as_str().into(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
                secret_hash: mpc_types::token::token_hash(&token).to_vec(),
                expires_at_ms: 0,
            })
            .await?;
        Ok(token)
    }

    /// Prepares (does not start) a node that is not among the initial members.
    pub fn add_node_slot(&mut self, id: u64) -> anyhow::Result<()> {
        let node = Self::node(self._dir.path(), &self.pki, id)?;
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Starts node `id`; `bootstrap` gives it the initial member list.
    pub fn spawn(&mut self, id: u64, bootstrap: bool) -> anyhow::Result<()> {
        let bin = binary("mpc-coordinator")?;
        let members = self.members.clone();
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut cmd = match node.launcher.split_first() {
            Some((launcher, args)) => {
                let mut cmd = Command::new(launcher);
                cmd.args(args).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.arg("--node-id")
            .arg(id.to_string())
            .arg("--grpc-listen")
            .arg(node.grpc.to_string())
            .arg("--http-listen")
            .arg(node.http.to_string())
            .arg("--raft-listen")
            .arg(node.raft.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("MPC_TLS__CA_CERT", pki::ca_cert_path(&self.pki))
            .env("MPC_TLS__CERT", &node.tls.cert)
            .env("MPC_TLS__KEY", &node.tls.key)
            .env("MPC_LOG__FILTER", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if bootstrap {
            cmd.arg("--initial-members").arg(members);
        }
        for (k, v) in self.env.iter().chain(&node.env) {
            cmd.env(k, v);
        }
        node.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        if let Some(mut child) = node.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Restarts a killed node on its data.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn(id, true)
    }

    /// Waits up to `limit` for node `id`'s process to end by itself: its exit status, or
    /// `None` if it still runs (or was never started).
    pub fn wait_exit(
        &mut self,
        id: u64,
        limit: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let Some(child) = node.child.as_mut() else {
            return Ok(None);
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn grpc(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(|n| n.grpc.to_string())
            .unwrap_or_default()
    }

    pub fn raft(&self, id: u64) -> SocketAddr {
        self.nodes
            .get(&id)
            .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |n| n.raft)
    }

    pub fn http(&self, id: u64) -> SocketAddr {
        self.nodes
            .get(&id)
            .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |n| n.http)
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// A channel to node `id` as the admin.
    pub fn channel(&self, id: u64) -> anyhow::Result<ClientChannel> {
        self.channel_as(id, &self.admin)
    }

    /// A channel to node `id` with other credentials.
    pub fn channel_as(&self, id: u64, credentials: &Credentials) -> anyhow::Result<ClientChannel> {
        Ok(credentials.channel(&self.grpc(id), |e| {
            e.connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(10))
        })?)
    }

    pub fn sessions(&self, id: u64) -> anyhow::Result<SessionsClient<ClientChannel>> {
        Ok(SessionsClient::new(self.channel(id)?))
    }

    /// Sessions of node `id` as the admin, each call given `timeout`: for a create with
    /// `wait`, which answers only when its session ends (or at its deadline).
    pub fn sessions_waiting(
        &self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<SessionsClient<ClientChannel>> {
        let channel = self.admin.channel(&self.grpc(id), |e| {
            e.connect_timeout(Duration::from_millis(500))
                .timeout(timeout)
        })?;
        Ok(SessionsClient::new(channel))
    }

    pub async fn status(&self, id: u64) -> anyhow::Result<pb::ClusterStatus> {
        let mut client = ClusterClient::new(self.channel(id)?);
        let mut req = tonic::Request::new(pb::GetStatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(client.get_status(req).await?.into_inner())
    }

    /// Waits until node `id` has applied the log up to `target` (a node that does not answer
    /// yet is waited for too); its status then. Names the node's log if it does not, by `limit`.
    pub async fn wait_caught_up(
        &self,
        id: u64,
        target: Option<u64>,
        limit: Duration,
    ) -> anyhow::Result<pb::ClusterStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.status(id).await {
                Ok(s) if s.last_applied >= target => return Ok(s),
                last => anyhow::ensure!(
                    Instant::now() < deadline,
                    "node {id} did not apply up to {target:?} within {limit:?} ({last:?}); its log:\n{}",
                    self.log_tail(id)
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node in `ids` reports ready.
    pub async fn wait_ready(&self, ids: &[u64], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for &id in ids {
            loop {
                if let Ok(s) = self.status(id).await {
                    if s.ready {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {id} not ready within {timeout:?}; log:\n{}",
                        self.log_tail(id)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The leader that the running nodes agree on, waiting up to `timeout` for one.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for id in self.running() {
                if let Ok(s) = self.status(id).await {
                    seen.push((s.term, s.leader));
                }
            }
            if let Some(&(term, Some(leader))) = seen.iter().max_by_key(|(t, _)| *t) {
                let agree = seen
                    .iter()
                    .filter(|(t, l)| *t == term && *l == Some(leader))
                    .count();
                if self.running().contains(&leader) && agree * 2 > self.nodes.len() {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                bail!("no agreed leader within {timeout:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self, id: u64) -> String {
        let text = self
            .nodes
            .get(&id)
            .and_then(|n| std::fs::read_to_string(&n.log).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Cluster {
    /// Scans every coordinator log for every secret the harness knows.
    fn scan_logs(&self) -> anyhow::Result<()> {
        let logs: Vec<PathBuf> = self.nodes.values().map(|n| n.log.clone()).collect();
        scan_logs(&logs, &harness_secrets(&self.pki)?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.scan_logs() {
            self._dir.disable_cleanup(true);
            panic!(
                "secret scan of the coordinator logs (kept in {}):\n{e:#}",
                self._dir.path().display()
            );
        }
    }
}

/// Writes a secret file as a careful operator would: 0600 (parties refuse looser key files).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    // `mode` applies only when the file is created: tighten one that already existed.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A party process.
#[derive(Debug)]
pub struct PartyProc {
    pub id: String,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub log: PathBuf,
    pub tls: pki::Issued,
    child: Option<Child>,
    _port: PortLease,
    /// The master key the party was started with (a test may replace the file later).
    master_key_hex: zeroize::Zeroizing<String>,
}

/// Party processes attached to a [`Cluster`]; killed when dropped. Each party imports one
/// prime pair from the test fixtures, so an ECDSA keygen does not wait for prime generation.
#[derive(Debug)]
pub struct Parties {
    pub parties: BTreeMap<String, PartyProc>,
    coordinators: String,
    ca_cert: PathBuf,
    /// The cluster's PKI and its nodes' logs: scanned with the parties' secrets too.
    pki: PathBuf,
    cluster_logs: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Parties {
    /// Starts party-1..=n against every node of `cluster` and waits until each is attached.
    pub async fn start(cluster: &Cluster, n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let primes = fixture_primes()?;
        let coordinators = cluster
            .nodes
            .values()
            .map(|p| p.grpc.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut parties = Self {
            parties: BTreeMap::new(),
            coordinators,
            ca_cert: pki::ca_cert_path(cluster.pki_dir()),
            pki: cluster.pki_dir().to_path_buf(),
            cluster_logs: cluster.nodes.values().map(|n| n.log.clone()).collect(),
            dir,
        };
        for i in 1..=n {
            let id = format!("party-{i}");
            let key_file = parties.dir.path().join(format!("{id}.key"));
            let master_key_hex = zeroize::Zeroizing::new(format!("{:064x}", 0x5eed_0000 + i));
            write_private(&key_file, master_key_hex.as_bytes())?;
            let primes_file = parties.dir.path().join(format!("{id}.primes"));
            let pair = primes
                .get(i - 1)
                .context("not enough fixture prime pairs")?;
            std::fs::write(&primes_file, pair)?;
            let port = PortLease::take()?;
            let proc = PartyProc {
                http: loopback(&port),
                _port: port,
                data_dir: parties.dir.path().join(&id),
                log: parties.dir.path().join(format!("{id}.log")),
                key_file,
                tls: issue(cluster.pki_dir(), Role::Party, &id, None)?,
                id: id.clone(),
                child: None,
                master_key_hex,
            };
            parties.parties.insert(id.clone(), proc);
            let identity = parties.identity(&id)?;
            cluster.enroll(&id, &identity).await?;
            parties.spawn(&id, Some(&primes_file))?;
        }
        for id in parties.parties.keys() {
            parties.wait_ready(id, Duration::from_secs(30)).await?;
        }
        Ok(parties)
    }

    /// What `mpc-party identity` prints for party `id` (creating its identity on first use).
    pub fn identity(&self, id: &str) -> anyhow::Result<String> {
        let party = self.parties.get(id).context("no such party")?;
        let out = Command::new(binary("mpc-party")?)
            .arg("--party-id")
            .arg(id)
            .arg("--data-dir")
            .arg(&party.data_dir)
            .arg("--master-key-file")
            .arg(&party.key_file)
            .arg("identity")
            .output()?;
        if !out.status.success() {
            bail!(
                "mpc-party identity for {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Starts (or restarts, on its data) one party; returns the process for the caller to
    /// watch when it is expected to exit.
    pub fn spawn(&mut self, id: &str, import_primes: Option<&Path>) -> anyhow::Result<()> {
        let bin = binary("mpc-party")?;
        let coordinators = self.coordinators.clone();
        let party = self.parties.get_mut(id).context("no such party")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&party.log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--party-id")
            .arg(id)
            .arg("--data-dir")
            .arg(&party.data_dir)
            .arg("--coordinators")
            .arg(coordinators)
            .arg("--http-listen")
            .arg(party.http.to_string())
            .arg("--master-key-file")
            .arg(&party.key_file)
            .arg("--ca-cert")
            .arg(&self.ca_cert)
            .arg("--tls-cert")
            .arg(&party.tls.cert)
            .arg("--tls-key")
            .arg(&party.tls.key)
            .arg("--admin-keys")
            .arg(hex::encode(admin_signing_key().verifying_key().to_bytes()))
            .env("MPC_LOG__FILTER", "info")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(p) = import_primes {
            cmd.arg("--import-primes").arg(p);
        }
        party.child = Some(cmd.spawn()?);
        Ok(())
    }

    pub fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        let party = self.parties.get_mut(id).context("no such party")?;
        if let Some(mut child) = party.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the party's process (SIGSTOP) without ending it: its connections stay open, it
    /// reads, computes and sends nothing until [`Self::resume`]. Its coordinator drops it
    /// after a few seconds of missed HTTP/2 keepalives: keep pauses short.
    pub fn pause(&self, id: &str) -> anyhow::Result<()> {
        self.signal(id, "STOP")
    }

    /// Lets a paused party go on (SIGCONT).
    pub fn resume(&self, id: &str) -> anyhow::Result<()> {
        self.signal(id, "CONT")
    }

    fn signal(&self, id: &str, signal: &str) -> anyhow::Result<()> {
        let party = self.parties.get(id).context("no such party")?;
        let pid = party.child.as_ref().context("not running")?.id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} (party {id}): {status}");
        }
        Ok(())
    }

    /// Waits for the party's process to exit on its own; its exit status and log tail.
    pub fn wait_exit(&mut self, id: &str, timeout: Duration) -> anyhow::Result<(bool, String)> {
        let deadline = Instant::now() + timeout;
        let party = self.parties.get_mut(id).context("no such party")?;
        let child = party.child.as_mut().context("not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                party.child = None;
                let log = std::fs::read_to_string(&party.log).unwrap_or_default();
                return Ok((status.success(), log));
            }
            if Instant::now() > deadline {
                bail!("party {id} still runs after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn wait_ready(&self, id: &str, timeout: Duration) -> anyhow::Result<()> {
        let party = self.parties.get(id).context("no such party")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(party.http, "/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&party.log).unwrap_or_default();
                bail!("party {id} not ready within {timeout:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Parties {
    /// The parties' own secrets: each one's master key (as started, and as its file holds it
    /// now), and its identity keys and share secrets from its store, opened read-only.
    fn party_secrets(&self) -> anyhow::Result<Vec<Secret>> {
        let mut secrets = Vec::new();
        for (id, party) in &self.parties {
            let key = zeroize::Zeroizing::new(hex::decode(party.master_key_hex.as_bytes())?);
            secrets.push(Secret::bytes(format!("master key of {id}"), &key));
            if let Ok(now) = secret_scan::key_file(
                &format!("master key file of {id} (as last written)"),
                &party.key_file,
            ) {
                secrets.push(now);
            }
            secrets.extend(secret_scan::party_store(
                id,
                &party.data_dir,
                &party.master_key_hex,
            )?);
        }
        Ok(secrets)
    }

    /// Scans the parties' and the coordinators' logs for every secret the harness knows,
    /// the parties' own included (remembered, so that the cluster's scan looks for them too).
    fn scan_logs(&self) -> anyhow::Result<()> {
        secrets::remember_all(self.party_secrets()?);
        let mut logs: Vec<PathBuf> = self.parties.values().map(|p| p.log.clone()).collect();
        logs.extend(self.cluster_logs.iter().cloned());
        scan_logs(&logs, &harness_secrets(&self.pki)?)
    }
}

impl Drop for Parties {
    fn drop(&mut self) {
        for party in self.parties.values_mut() {
            if let Some(mut child) = party.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.scan_logs() {
            self.dir.disable_cleanup(true);
            panic!(
                "secret scan of the party and coordinator logs (party logs kept in {}):\n{e:#}",
                self.dir.path().display()
            );
        }
    }
}

/// Follows a session through any node until it ends (polling, so a leader change does not
/// cut it short).
pub async fn wait_session(
    cluster: &Cluster,
    session_id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::Session> {
    wait_session_until(cluster, session_id, timeout, "ended", |s| {
        Ok(mpc_proto::domain::is_terminal(s.status))
    })
    .await
}

/// Polls a session through any running node until `reached` says so (or fails the wait);
/// `what` names the awaited state in the timeout's error.
pub async fn wait_session_until(
    cluster: &Cluster,
    session_id: &str,
    timeout: Duration,
    what: &str,
    mut reached: impl FnMut(&pb::Session) -> anyhow::Result<bool>,
) -> anyhow::Result<pb::Session> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        for id in cluster.running() {
            let Ok(mut client) = cluster.sessions(id) else {
                continue;
            };
            let req = pb::GetSessionRequest {
                session_id: session_id.to_owned(),
                consistency: 0,
            };
            if let Ok(s) = client.get_session(req).await {
                let s = s.into_inner();
                if reached(&s)? {
                    return Ok(s);
                }
                last = Some(s);
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("session {session_id} not {what} within {timeout:?}: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
