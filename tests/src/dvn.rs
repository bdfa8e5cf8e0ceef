//! The DVN relayer's test world: the devnet's two EVM chains (`scripts/dvn-devnet.sh`, on
//! free ports in a directory of the test's own), SoftHSM2 tokens, and `mpc-dvn` processes
//! configured against a [`Cluster`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use mpc_tls::{pki, Role};
use serde_json::Value;

use crate::{binary, issue, loopback, write_private, Cluster, PortLease};

/// Where `scripts/` lives.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The PKCS#11 module SoftHSM2 installs.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Why the DVN tests cannot run here, if they cannot: python3 for the devnet, SoftHSM2 for
/// the HSM signers. Under `CI` a missing part is a failure, not a skip.
pub fn missing_parts() -> Option<String> {
    let mut missing = Vec::new();
    if Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        missing.push("python3 (the devnet's chains)");
    }
    if !Path::new(SOFTHSM_MODULE).exists() {
        missing.push("softhsm2 (apt-get install softhsm2)");
    }
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(", "))
    }
}

/// True when the test should skip (and says why); panics under CI, where nothing may skip.
pub fn skip_without_parts(test: &str) -> bool {
    match missing_parts() {
        None => false,
        Some(missing) if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must run it, but these are missing: {missing}")
        }
        Some(missing) => {
            eprintln!("SKIP {test}: missing {missing}");
            true
        }
    }
}

/// Both devnet chains, deployed; stopped when dropped.
#[derive(Debug)]
pub struct Devnet {
    pub dir: tempfile::TempDir,
    pub addresses: Value,
    source_port: u16,
    target_port: u16,
}

impl Devnet {
    /// Starts both chains on free ports and deploys the contracts.
    pub fn up() -> anyhow::Result<Self> {
        Self::up_with(&[])
    }

    /// [`Devnet::up`] with options for `devnet/deploy.py` (`--confirmations N`).
    pub fn up_with(deploy_options: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // Taken and let go: the chains bind them a moment later.
        let (source_port, target_port) = {
            let (a, b) = (PortLease::take()?, PortLease::take()?);
            (a.port(), b.port())
        };
        let mut devnet = Self {
            dir,
            addresses: Value::Null,
            source_port,
            target_port,
        };
        let mut args = vec!["up"];
        args.extend_from_slice(deploy_options);
        let out = devnet.script(&args)?;
        if !out.status.success() {
            bail!(
                "dvn-devnet.sh up failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let addresses = std::fs::read_to_string(devnet.dir.path().join("addresses.json"))
            .context("addresses.json")?;
        devnet.addresses = serde_json::from_str(&addresses)?;
        Ok(devnet)
    }

    fn script(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(repo_root().join("scripts/dvn-devnet.sh"))
            .args(args)
            .env("DVN_DEVNET_DIR", self.dir.path())
            .env("DVN_DEVNET_SOURCE_PORT", self.source_port.to_string())
            .env("DVN_DEVNET_TARGET_PORT", self.target_port.to_string())
            .output()?)
    }

    /// Runs `devnet/ctl.py` and returns the JSON lines it printed.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let mut full = vec!["ctl"];
        full.extend_from_slice(args);
        let out = self.script(&full)?;
        if !out.status.success() {
            bail!(
                "ctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("ctl printed {l:?}")))
            .collect()
    }

    /// Every verification our DVN made on the target, by guid (a guid verified twice shows
    /// twice).
    pub fn verified(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let mut seen = BTreeMap::new();
        for v in self.ctl(&["verified", "all"])? {
            let guid = v["guid"].as_str().context("verified: guid")?.to_owned();
            *seen.entry(guid).or_insert(0) += 1;
        }
        Ok(seen)
    }

    /// Sends `n` packets; their guids.
    pub fn send(&self, n: usize) -> anyhow::Result<Vec<String>> {
        self.ctl(&["send", "--count", &n.to_string()])?
            .iter()
            .map(|p| p["guid"].as_str().map(str::to_owned).context("send: guid"))
            .collect()
    }

    /// Mines `n` empty blocks on `chain` (`source` or `target`).
    pub fn mine(&self, chain: &str, n: u64) -> anyhow::Result<()> {
        self.ctl(&["mine", &n.to_string(), "--chain", chain])
            .map(|_| ())
    }

    /// Takes a snapshot of `chain`; its id, for [`Devnet::revert`].
    pub fn snapshot(&self, chain: &str) -> anyhow::Result<String> {
        let out = self.ctl(&["snapshot", "--chain", chain])?;
        let id = out
            .first()
            .map(|v| &v["snapshot"])
            .context("snapshot: no answer")?;
        match id {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => bail!("snapshot printed {other}"),
        }
    }

    /// Reverts `chain` to a snapshot: every block mined since is replaced (a reorg).
    pub fn revert(&self, chain: &str, snapshot: &str) -> anyhow::Result<()> {
        self.ctl(&["revert", snapshot, "--chain", chain])
            .map(|_| ())
    }

    /// Waits until every guid in `guids` is verified, at most `limit`.
    pub fn wait_verified(
        &self,
        guids: &[String],
        limit: Duration,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        let deadline = Instant::now() + limit;
        loop {
            // A live chain keeps making blocks: the last packets reach their confirmations
            // only under blocks that come after them (the devnet mines on transactions only).
            self.ctl(&["mine", "1", "--chain", "source"])?;
            let seen = self.verified()?;
            let missing: Vec<&String> = guids.iter().filter(|g| !seen.contains_key(*g)).collect();
            if missing.is_empty() {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} packets not verified within {limit:?}: {missing:?}",
                    missing.len(),
                    guids.len()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn field(&self, path: &[&str]) -> anyhow::Result<String> {
        let mut v = &self.addresses;
        for p in path {
            v = &v[*p];
        }
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => bail!("addresses.json {path:?} is {other}"),
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

/// How one relayer signs.
#[derive(Debug, Clone)]
pub enum SignerKind {
    /// Its own SoftHSM2 token.
    Hsm,
    /// A cluster key, approving its requests with an initiator key file.
    Platform {
        key_id: String,
        token_file: PathBuf,
        initiator_key_file: PathBuf,
    },
}

/// One `mpc-dvn` process.
#[derive(Debug)]
pub struct RelayerProc {
    pub name: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub http: std::net::SocketAddr,
    pub address: String,
    softhsm_conf: Option<PathBuf>,
    child: Option<Child>,
    _port: PortLease,
}

impl RelayerProc {
    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        if let Some(conf) = &self.softhsm_conf {
            cmd.env("SOFTHSM2_CONF", conf);
        }
        cmd
    }
}

/// Relayers against one cluster and one devnet; killed when dropped.
#[derive(Debug)]
pub struct Relayers {
    pub relayers: BTreeMap<String, RelayerProc>,
    dir: tempfile::TempDir,
}

impl Relayers {
    /// Prepares relayers `dvn-1..` with these signers (HSM tokens are made and their keys
    /// created), sets the devnet DVN's signer set to them with `quorum`, and starts them.
    pub async fn start(
        cluster: &Cluster,
        devnet: &Devnet,
        signers: &[SignerKind],
        quorum: usize,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let bin = binary("mpc-dvn")?;
        let mut relayers = BTreeMap::new();
        for (i, kind) in signers.iter().enumerate() {
            let name = format!("dvn-{}", i + 1);
            let port = PortLease::take()?;
            let home = dir.path().join(&name);
            std::fs::create_dir_all(&home)?;
            let mut proc = RelayerProc {
                name: name.clone(),
                config: home.join("dvn.toml"),
                log: home.join("dvn.log"),
                http: loopback(&port),
                address: String::new(),
                softhsm_conf: None,
                child: None,
                _port: port,
            };
            let signer_toml = match kind {
                SignerKind::Hsm => {
                    let tokens = home.join("tokens");
                    std::fs::create_dir_all(&tokens)?;
                    let conf = home.join("softhsm2.conf");
                    std::fs::write(
                        &conf,
                        format!(
                            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                            tokens.display()
                        ),
                    )?;
                    proc.softhsm_conf = Some(conf);
                    write_private(&home.join("pin"), format!("pin-{name}").as_bytes())?;
                    write_private(&home.join("so-pin"), format!("so-{name}").as_bytes())?;
                    let out = proc
                        .command(&bin)
                        .args(["hsm", "init", "--module", SOFTHSM_MODULE])
                        .args(["--token-label", &name, "--key-label", "dvn-signer"])
                        .arg("--pin-file")
                        .arg(home.join("pin"))
                        .arg("--so-pin-file")
                        .arg(home.join("so-pin"))
                        .output()?;
                    if !out.status.success() {
                        bail!(
                            "mpc-dvn hsm init for {name}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    proc.address = String::from_utf8(out.stdout)?.trim().to_owned();
                    format!(
                        "[signer]\nkind = \"hsm\"\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"{name}\"\nkey_label = \"dvn-signer\"\npin_file = \"{}\"\n",
                        home.join("pin").display()
                    )
                }
                SignerKind::Platform {
                    key_id,
                    token_file,
                    initiator_key_file,
                } => format!(
                    "[signer]\nkind = \"platform\"\nkey_id = \"{key_id}\"\ntoken_file = \"{}\"\ninitiator_key = \"{}\"\n",
                    token_file.display(),
                    initiator_key_file.display()
                ),
            };
            let leaf = issue(cluster.pki_dir(), Role::Dvn, &name, None)?;
            let endpoints = cluster
                .nodes
                .values()
                .map(|n| format!("\"https://{}\"", n.grpc))
                .collect::<Vec<_>>()
                .join(", ");
            let config = format!(
                r#"instance = "{name}"
quorum = {quorum}
signers = {signers}

[cluster]
endpoints = [{endpoints}]
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"

[[sources]]
name = "ethereum"
chain_id = {src_chain}
eid = {src_eid}
rpc_urls = ["{src_rpc}"]
confirmations = 1
endpoint = "{endpoint}"
send_library = "{send_library}"
dvn = "{src_dvn}"

[target]
name = "conflux"
chain_id = {dst_chain}
eid = {dst_eid}
rpc_urls = ["{dst_rpc}"]
receive_library = "{receive_library}"
dvn = "{dst_dvn}"
vid = {vid}

{signer_toml}
[submitter.key]
kind = "key_file"
path = "{submitter_key}"

[timing]
poll_interval_ms = 200
lease_ms = 3000

[http]
listen = "{http}"
"#,
                signers = signers.len(),
                ca = pki::ca_cert_path(cluster.pki_dir()).display(),
                cert = leaf.cert.display(),
                key = leaf.key.display(),
                src_chain = devnet.field(&["source", "chain_id"])?,
                src_eid = devnet.field(&["source", "eid"])?,
                src_rpc = devnet.field(&["source", "rpc_url"])?,
                endpoint = devnet.field(&["source", "endpoint"])?,
                send_library = devnet.field(&["source", "send_library"])?,
                src_dvn = devnet.field(&["source", "dvn"])?,
                dst_chain = devnet.field(&["target", "chain_id"])?,
                dst_eid = devnet.field(&["target", "eid"])?,
                dst_rpc = devnet.field(&["target", "rpc_url"])?,
                receive_library = devnet.field(&["target", "receive_library"])?,
                dst_dvn = devnet.field(&["target", "dvn"])?,
                vid = devnet.field(&["target", "vid"])?,
                submitter_key = devnet.field(&["target", "submitter_key_file"])?,
                http = proc.http,
            );
            std::fs::write(&proc.config, config)?;
            if proc.address.is_empty() {
                let out = proc
                    .command(&bin)
                    .arg("address")
                    .arg("--config")
                    .arg(&proc.config)
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "mpc-dvn address for {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                proc.address = String::from_utf8(out.stdout)?.trim().to_owned();
            }
            relayers.insert(name, proc);
        }
        let addresses: Vec<&str> = relayers.values().map(|r| r.address.as_str()).collect();
        devnet.ctl(&[
            "set-signers",
            "--signers",
            &addresses.join(","),
            "--quorum",
            &quorum.to_string(),
        ])?;
        let mut relayers = Self { relayers, dir };
        let names: Vec<String> = relayers.relayers.keys().cloned().collect();
        for name in &names {
            relayers.spawn(name)?;
        }
        for name in &names {
            relayers.wait_ready(name, Duration::from_secs(30)).await?;
        }
        Ok(relayers)
    }

    /// Starts (or restarts) one relayer.
    pub fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let bin = binary("mpc-dvn")?;
        let proc = self.relayers.get_mut(name).context("no such relayer")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&proc.log)?;
        let child = proc
            .command(&bin)
            .arg("run")
            .arg("--config")
            .arg(&proc.config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        proc.child = Some(child);
        Ok(())
    }

    /// Kills one relayer (SIGKILL: no goodbye).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let proc = self.relayers.get_mut(name).context("no such relayer")?;
        if let Some(mut child) = proc.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Waits until the relayer's `/ready` answers 200.
    pub async fn wait_ready(&self, name: &str, limit: Duration) -> anyhow::Result<()> {
        let proc = self.relayers.get(name).context("no such relayer")?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = crate::http_get(proc.http, "/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} not ready within {limit:?}; its log:\n{}",
                    self.log_tail(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of a relayer's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let Some(proc) = self.relayers.get(name) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&proc.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The directory that holds the relayers' configs, tokens and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Relayers {
    fn drop(&mut self) {
        let names: Vec<String> = self.relayers.keys().cloned().collect();
        for name in names {
            let _ = self.kill(&name);
        }
    }
}
