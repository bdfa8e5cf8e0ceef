//! Test harness: real `mpc-coordinator` processes on loopback, each with its own RocksDB
//! directory, driven over real gRPC and HTTP.
//!
//! The binaries come from `MPC_BIN_DIR`, or else from the cargo target directory this test
//! binary was built into (`cargo build --bins` first; the README's test command does).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

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

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// A coordinator cluster of processes; killed when dropped.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    members: String,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members that bootstrap together, with extra `MPC_*` settings.
    pub async fn start(n: u64, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(id, Self::node(dir.path(), id)?);
        }
        let members = nodes
            .values()
            .map(|p| format!("{}={}={}", p.id, p.grpc, p.http))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            nodes,
            members,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _dir: dir,
        };
        for id in 1..=n {
            cluster.spawn(id, true)?;
        }
        cluster
            .wait_ready(&(1..=n).collect::<Vec<_>>(), Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    fn node(dir: &Path, id: u64) -> anyhow::Result<NodeProc> {
        Ok(NodeProc {
            id,
            grpc: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            http: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            data_dir: dir.join(format!("node{id}")),
            log: dir.join(format!("node{id}.log")),
            child: None,
        })
    }

    /// Prepares (does not start) a node that is not among the initial members.
    pub fn add_node_slot(&mut self, id: u64) -> anyhow::Result<()> {
        let node = Self::node(self._dir.path(), id)?;
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
        let mut cmd = Command::new(bin);
        cmd.arg("--node-id")
            .arg(id.to_string())
            .arg("--grpc-listen")
            .arg(node.grpc.to_string())
            .arg("--http-listen")
            .arg(node.http.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("MPC_LOG__FILTER", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if bootstrap {
            cmd.arg("--initial-members").arg(members);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        node.child = Some(cmd.spawn()?);
        Ok(())
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

    pub fn grpc(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(|n| n.grpc.to_string())
            .unwrap_or_default()
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

    pub fn channel(&self, id: u64) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.grpc(id)))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
            .connect_lazy())
    }

    pub fn sessions(&self, id: u64) -> anyhow::Result<SessionsClient<Channel>> {
        Ok(SessionsClient::new(self.channel(id)?))
    }

    pub async fn status(&self, id: u64) -> anyhow::Result<pb::ClusterStatus> {
        let mut client = ClusterClient::new(self.channel(id)?);
        let mut req = tonic::Request::new(pb::GetStatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(client.get_status(req).await?.into_inner())
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

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A keygen request with the given request id.
pub fn keygen_request(request_id: &str) -> pb::CreateKeygenRequest {
    pb::CreateKeygenRequest {
        scheme: "ecdsa-secp256k1".into(),
        threshold: 2,
        parties: vec!["p1".into(), "p2".into(), "p3".into()],
        request_id: request_id.into(),
        description: "integration test".into(),
        tags: Default::default(),
        timeout_seconds: 0,
    }
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
