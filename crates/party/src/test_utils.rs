//! Parties inside the test process, attached to an in-process coordinator cluster (feature
//! `test-utils`).
//!
//! [`InProcessParties::start`] does for each party what an operator does, as the process
//! harness (`mpc-tests`) does with the binaries: a private master key file, a party
//! certificate from the cluster's PKI, the identity printed and enrolled by the admin, one
//! prime pair from the fixtures imported; then it runs the party as a task on an HTTP
//! listener bound on port 0 and waits until the party holds a stream to the leader.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mpc_coordinator::test_utils::{admin_signing_key, http_get, issue, InProcessCluster};
use mpc_tls::{pki, Role};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::PartyConfig;

/// The fixture prime pairs (`crates/tss/testdata/primes.jsonl`), one encoded pair a line.
pub fn fixture_primes() -> anyhow::Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tss/testdata/primes.jsonl");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| path.display().to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

/// How long a party gets to stop before its task is aborted.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// One party running as a task of the test process.
#[derive(Debug)]
pub struct InProcessParty {
    pub id: String,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    /// Ends the party: dropping it completes the shutdown future too.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// How the party's run ended (`None` while it runs): its error as text.
    ended: watch::Receiver<Option<Result<(), String>>>,
}

impl InProcessParty {
    /// Whether the party still runs.
    pub fn is_running(&self) -> bool {
        self.task.is_some() && self.ended.borrow().is_none()
    }
}

/// Parties party-1..=n as tasks of this process, attached to an [`InProcessCluster`].
/// Dropping it stops them; [`InProcessParties::shutdown`] also waits for them.
#[derive(Debug)]
pub struct InProcessParties {
    parties: BTreeMap<String, InProcessParty>,
    /// Key files, primes and stores; `None` once handed to the cleanup after the parties.
    dir: Option<tempfile::TempDir>,
}

impl InProcessParties {
    /// Starts party-1..=n against every node of `cluster`, each enrolled by the admin of
    /// [`admin_signing_key`], and waits until each is attached to the leader.
    pub async fn start(cluster: &InProcessCluster, n: usize) -> anyhow::Result<Self> {
        Self::start_with(cluster, n, |_| {}).await
    }

    /// As [`InProcessParties::start`], with each party's configuration changed by
    /// `configure` first. The prime pool's target is 0: the imported fixture pair serves one
    /// ECDSA keygen, and no pair is generated in the background (a minute of a core each,
    /// taken from the test's other tasks); set `prime_pool_size` for more.
    pub async fn start_with(
        cluster: &InProcessCluster,
        n: usize,
        configure: impl Fn(&mut PartyConfig),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let primes = fixture_primes()?;
        let admin_key = hex::encode(admin_signing_key().verifying_key().to_bytes());
        let mut parties = BTreeMap::new();
        for i in 1..=n {
            let id = format!("party-{i}");
            let key_file = dir.path().join(format!("{id}.key"));
            let master_key_hex = zeroize::Zeroizing::new(format!("{:064x}", 0x5eed_0000 + i));
            // 0600: a party refuses a key file others may read.
            pki::write_private(&key_file, master_key_hex.as_bytes())?;
            let primes_file = dir.path().join(format!("{id}.primes"));
            let pair = primes
                .get(i - 1)
                .context("not enough fixture prime pairs")?;
            std::fs::write(&primes_file, pair)?;
            let tls = issue(cluster.pki_dir(), Role::Party, &id, None)?;
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            let mut config = PartyConfig {
                party_id: id.clone(),
                data_dir: dir.path().join(&id),
                coordinators: cluster.endpoints(),
                http_listen: listener.local_addr()?,
                master_key_file: Some(key_file.clone()),
                prime_pool_size: 0,
                import_primes: Some(primes_file),
                ca_cert: Some(pki::ca_cert_path(cluster.pki_dir())),
                tls_cert: Some(tls.cert),
                tls_key: Some(tls.key),
                admin_keys: vec![admin_key.clone()],
                insecure_plaintext: false,
            };
            configure(&mut config);
            config.validate()?;
            let identity = {
                let config = config.clone();
                tokio::task::spawn_blocking(move || crate::identity(&config)).await??
            };
            cluster.enroll(&id, &identity).await?;
            let party = spawn_party(config, listener, key_file);
            parties.insert(id, party);
        }
        let parties = Self {
            parties,
            dir: Some(dir),
        };
        for id in parties.parties.keys() {
            parties.wait_ready(id, Duration::from_secs(30)).await?;
        }
        Ok(parties)
    }

    /// The parties, by id.
    pub fn parties(&self) -> &BTreeMap<String, InProcessParty> {
        &self.parties
    }

    fn party(&self, id: &str) -> anyhow::Result<&InProcessParty> {
        self.parties
            .get(id)
            .with_context(|| format!("no party {id}"))
    }

    /// Party `id`'s HTTP address (health, readiness, metrics, status).
    pub fn http(&self, id: &str) -> anyhow::Result<SocketAddr> {
        Ok(self.party(id)?.http)
    }

    /// Waits until party `id` holds a stream to the leader (its `/ready`); a party that ended
    /// meanwhile fails the wait with its reason.
    pub async fn wait_ready(&self, id: &str, timeout: Duration) -> anyhow::Result<()> {
        let party = self.party(id)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ended) = party.ended.borrow().clone() {
                let reason = ended.err().unwrap_or_else(|| "stopped".into());
                bail!("party {id} ended before it was ready: {reason}");
            }
            if let Ok((200, _)) = http_get(party.http, "/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("party {id} not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops party `id` as its binary stops on SIGTERM and waits for it; its run's error, if
    /// it ended with one.
    pub async fn stop(&mut self, id: &str) -> anyhow::Result<()> {
        let party = self
            .parties
            .get_mut(id)
            .with_context(|| format!("no party {id}"))?;
        stop_party(party).await
    }

    /// Stops every party and waits for them, then removes their files; the first party's
    /// error, if any ended with one.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let stops = self.parties.values_mut().map(stop_party);
        let results = futures::future::join_all(stops).await;
        drop(self.dir.take());
        results.into_iter().collect()
    }
}

impl Drop for InProcessParties {
    /// Tells every party to stop; their files are removed once they have, or with the
    /// runtime's end.
    fn drop(&mut self) {
        let mut tasks = Vec::new();
        for party in self.parties.values_mut() {
            party.stop.take();
            tasks.extend(party.task.take());
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

/// Starts a party as a task of the current runtime.
fn spawn_party(
    config: PartyConfig,
    listener: tokio::net::TcpListener,
    key_file: PathBuf,
) -> InProcessParty {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ended_tx, ended_rx) = watch::channel(None);
    let id = config.party_id.clone();
    let http = config.http_listen;
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn({
        let id = id.clone();
        async move {
            // A dropped sender stops the party as a sent stop does.
            let shutdown = async {
                let _ = stop_rx.await;
            };
            let result = crate::run_with_listener(config, listener, shutdown).await;
            if let Err(e) = &result {
                tracing::error!(party = %id, error = %e, "in-process party failed");
            }
            let _ = ended_tx.send(Some(result.map_err(|e| e.to_string())));
        }
    });
    InProcessParty {
        id,
        http,
        data_dir,
        key_file,
        stop: Some(stop_tx),
        task: Some(task),
        ended: ended_rx,
    }
}

async fn stop_party(party: &mut InProcessParty) -> anyhow::Result<()> {
    let id = party.id.clone();
    party.stop.take();
    let Some(task) = party.task.take() else {
        return Ok(());
    };
    let abort = task.abort_handle();
    match tokio::time::timeout(STOP_WAIT, task).await {
        Ok(joined) => joined.with_context(|| format!("party {id}'s task"))?,
        Err(_) => {
            abort.abort();
            bail!("party {id} did not stop within {STOP_WAIT:?}");
        }
    }
    match party.ended.borrow().clone() {
        Some(Err(reason)) => bail!("party {id} ended with an error: {reason}"),
        Some(Ok(())) | None => Ok(()),
    }
}
