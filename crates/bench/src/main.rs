//! Load generator behind `scripts/bench-raft.sh`: the same write workload and the same
//! failover probe against an mpc coordinator cluster and against etcd, over gRPC.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use mpc_client::{ClientChannel, Credentials};
use mpc_proto::v1 as pb;

use crate::authority::{KeyFiles, Signers};

mod authority;
mod sign;

mod etcd {
    #![allow(missing_debug_implementations, clippy::all)]
    tonic::include_proto!("etcdserverpb");
}

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Target {
    Mpc,
    Etcd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The signing protocols in this process (all parties, no network); JSON lines.
    SignInProcess {
        /// Prime pairs (one per line) for the auxiliary info.
        #[arg(long)]
        primes: String,
        #[arg(long, default_value_t = 100)]
        iterations: usize,
    },
    /// The same through a running cluster with parties party-1..3; JSON lines.
    SignCluster {
        /// The leader's gRPC address.
        #[arg(long)]
        leader: String,
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Presignatures to wait for before signing from them (the pool size).
        #[arg(long, default_value_t = 32)]
        presign_pool: usize,
        #[command(flatten)]
        keys: KeyFiles,
    },
    /// Concurrent writes of about `value_size` bytes for `duration`; prints one JSON line.
    Write {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Key policies (mpc) signed before the timed phase; default 5000 per second of
        /// --duration, at most 200000. Writes beyond them sign theirs in the loop, counted
        /// as policies_signed_in_loop.
        #[arg(long)]
        policies: Option<usize>,
        #[command(flatten)]
        keys: KeyFiles,
    },
    /// SIGKILLs `kill_pid`, then writes through `endpoints` (the survivors) until one write
    /// is acknowledged; prints the milliseconds from the kill to that acknowledgement.
    Failover {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        #[arg(long)]
        kill_pid: u32,
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// How long one write may take before the probe gives up on it and tries the next
        /// member: a client's ordinary deadline. Much shorter deadlines measure the client's
        /// give-up-and-retry pattern more than the cluster.
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        attempt_timeout: Duration,
        #[command(flatten)]
        keys: KeyFiles,
    },
}

/// The parties every keygen of the write workload names. They do not run: an admin enrols
/// them with identities nobody holds, and their sessions are created, never run.
const PARTIES: [&str; 3] = ["party-1", "party-2", "party-3"];

/// Key ids with the admin's policies for the write workload's keygens, signed before the
/// timed phase: signing is the client's work, not the cluster's.
struct Policies {
    ready: std::sync::Mutex<Vec<(String, pb::EndorsedKeyPolicy)>>,
    signers: Signers,
    signed_in_loop: AtomicU64,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("signers", &self.signers)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Signs `count` policies, on every core.
    fn new(signers: Signers, count: usize) -> anyhow::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = count.div_ceil(threads);
        let signers_ref = &signers;
        let ready = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(move || sign_policies(signers_ref, per_thread)))
                .collect();
            let mut ready = Vec::with_capacity(count);
            for h in handles {
                let batch = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a policy-signing thread panicked"))??;
                ready.extend(batch);
            }
            anyhow::Ok(ready)
        })?;
        Ok(Self {
            ready: std::sync::Mutex::new(ready),
            signers,
            signed_in_loop: AtomicU64::new(0),
        })
    }

    fn next(&self) -> anyhow::Result<(String, pb::EndorsedKeyPolicy)> {
        let ready = self
            .ready
            .lock()
            .map_err(|_| anyhow::anyhow!("policy pool poisoned"))?
            .pop();
        match ready {
            Some(p) => Ok(p),
            None => {
                self.signed_in_loop.fetch_add(1, Ordering::Relaxed);
                sign_policies(&self.signers, 1)?
                    .pop()
                    .context("no policy was signed")
            }
        }
    }
}

fn sign_policies(
    signers: &Signers,
    count: usize,
) -> anyhow::Result<Vec<(String, pb::EndorsedKeyPolicy)>> {
    let parties: Vec<String> = PARTIES.iter().map(|p| (*p).to_owned()).collect();
    (0..count)
        .map(|_| {
            let key_id = uuid::Uuid::new_v4().to_string();
            let policy = signers.policy(&key_id, "ecdsa-secp256k1", 2, &parties)?;
            Ok((key_id, policy))
        })
        .collect()
}

/// For mpc: the admin's and initiator's keys, the workload's parties enrolled, and
/// `count` policies signed. Nothing for etcd.
async fn prepare(
    target: Target,
    keys: &KeyFiles,
    channels: &[ClientChannel],
    count: usize,
) -> anyhow::Result<Option<Arc<Policies>>> {
    if target != Target::Mpc {
        return Ok(None);
    }
    let signers = Signers::load(keys)?;
    signers.enrol_absent(channels, &PARTIES).await?;
    let policies = tokio::task::spawn_blocking(move || Policies::new(signers, count)).await??;
    Ok(Some(Arc::new(policies)))
}

/// mpc with the caller's credentials (`MPC_CA_CERT`, … as `admin.env` sets them); etcd in
/// plain text, as the comparison runs it.
fn credentials(target: Target) -> anyhow::Result<Credentials> {
    Ok(match target {
        Target::Mpc => Credentials::from_env()?,
        Target::Etcd => Credentials::insecure_plaintext(),
    })
}

fn channel(credentials: &Credentials, addr: &str) -> anyhow::Result<ClientChannel> {
    Ok(credentials.channel(addr, |e| e.connect_timeout(Duration::from_millis(300)))?)
}

/// One client's connection and the payload it writes.
struct Writer {
    target: Target,
    channel: ClientChannel,
    value: String,
    seq: u64,
    id: usize,
    /// mpc: where each keygen's key id and policy come from.
    policies: Option<Arc<Policies>>,
}

impl Writer {
    async fn write(&mut self, timeout: Duration) -> Result<(), tonic::Status> {
        self.seq += 1;
        match self.target {
            Target::Mpc => {
                let (key_id, policy) = self
                    .policies
                    .as_ref()
                    .ok_or_else(|| tonic::Status::internal("no key policies for mpc writes"))?
                    .next()
                    .map_err(|e| tonic::Status::internal(format!("{e:#}")))?;
                let mut req = tonic::Request::new(pb::CreateKeygenRequest {
                    scheme: "ecdsa-secp256k1".into(),
                    threshold: 2,
                    parties: PARTIES.iter().map(|p| (*p).to_owned()).collect(),
                    request_id: String::new(),
                    description: self.value.clone(),
                    tags: Default::default(),
                    timeout_seconds: 0,
                    key_id,
                    policy: Some(policy),
                });
                req.set_timeout(timeout);
                pb::sessions_client::SessionsClient::new(self.channel.clone())
                    .create_keygen(req)
                    .await
                    .map(|_| ())
            }
            Target::Etcd => {
                let mut req = tonic::Request::new(etcd::PutRequest {
                    key: format!("bench/{}/{}", self.id, self.seq).into_bytes(),
                    value: self.value.clone().into_bytes(),
                    ..Default::default()
                });
                req.set_timeout(timeout);
                etcd::kv_client::KvClient::new(self.channel.clone())
                    .put(req)
                    .await
                    .map(|_| ())
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_load(
    target: Target,
    endpoints: &[String],
    clients: usize,
    duration: Duration,
    value_size: usize,
    policies: Option<usize>,
    keys: &KeyFiles,
) -> anyhow::Result<()> {
    if endpoints.is_empty() || clients == 0 {
        bail!("--endpoints and --clients must not be empty");
    }
    let credentials = credentials(target)?;
    let channels = endpoints
        .iter()
        .map(|e| channel(&credentials, e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let count = policies.unwrap_or_else(|| {
        usize::try_from(duration.as_secs().saturating_add(1).saturating_mul(5000))
            .unwrap_or(usize::MAX)
            .min(200_000)
    });
    let policies = prepare(target, keys, &channels, count).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..clients {
        let mut writer = Writer {
            target,
            channel: channels[id % channels.len()].clone(),
            value: "x".repeat(value_size),
            seq: 0,
            id,
            policies: policies.clone(),
        };
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match writer.write(Duration::from_secs(5)).await {
                    Ok(()) => hist.record(t.elapsed().as_micros().max(1) as u64)?,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            anyhow::Ok(hist)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        total.add(t.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut line = serde_json::json!({
        "target": format!("{target:?}").to_lowercase(),
        "clients": clients,
        "value_size": value_size,
        "seconds": elapsed,
        "writes": total.len(),
        "errors": errors.load(Ordering::Relaxed),
        "writes_per_sec": total.len() as f64 / elapsed,
        "p50_ms": total.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": total.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": total.max() as f64 / 1000.0,
    });
    if let (Some(p), Some(obj)) = (&policies, line.as_object_mut()) {
        obj.insert(
            "policies_signed_in_loop".into(),
            p.signed_in_loop.load(Ordering::Relaxed).into(),
        );
    }
    println!("{line}");
    Ok(())
}

async fn failover(
    target: Target,
    endpoints: &[String],
    kill_pid: u32,
    timeout: Duration,
    attempt_timeout: Duration,
    keys: &KeyFiles,
) -> anyhow::Result<()> {
    if endpoints.is_empty() {
        bail!("--endpoints must name the surviving nodes");
    }
    let credentials = credentials(target)?;
    let channels = endpoints
        .iter()
        .map(|e| channel(&credentials, e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The warm-up writes, then at most one attempt per 5 ms until the timeout.
    let attempts = usize::try_from(timeout.as_millis() / 5).unwrap_or(usize::MAX);
    let policies = prepare(target, keys, &channels, endpoints.len() + attempts).await?;
    let mut writers = channels
        .into_iter()
        .enumerate()
        .map(|(id, channel)| Writer {
            target,
            channel,
            value: "x".repeat(1024),
            seq: 0,
            id: 10_000 + id,
            policies: policies.clone(),
        })
        .collect::<Vec<_>>();
    // Warm the connections so that the measurement is the failover, not TCP setup.
    for w in &mut writers {
        w.write(Duration::from_secs(5))
            .await
            .context("warm-up write")?;
    }
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &kill_pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -9 {kill_pid} failed");
    }
    let mut attempt = 0usize;
    while killed.elapsed() < timeout {
        let w = &mut writers[attempt % endpoints.len()];
        attempt += 1;
        let outcome = w.write(attempt_timeout).await;
        if let Err(status) = &outcome {
            eprintln!(
                "attempt {attempt} at {:.0} ms: {:?} {}",
                killed.elapsed().as_secs_f64() * 1000.0,
                status.code(),
                status.message()
            );
        }
        if outcome.is_ok() {
            let line = serde_json::json!({
                "target": format!("{target:?}").to_lowercase(),
                "failover_ms": killed.elapsed().as_secs_f64() * 1000.0,
                "attempts": attempt,
            });
            println!("{line}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("no write was acknowledged within {timeout:?} of the kill")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::SignInProcess { primes, iterations } => sign::in_process(&primes, iterations).await,
        Cmd::SignCluster {
            leader,
            iterations,
            presign_pool,
            keys,
        } => sign::cluster(&leader, iterations, presign_pool, &Signers::load(&keys)?).await,
        Cmd::Write {
            target,
            endpoints,
            clients,
            duration,
            value_size,
            policies,
            keys,
        } => {
            write_load(
                target, &endpoints, clients, duration, value_size, policies, &keys,
            )
            .await
        }
        Cmd::Failover {
            target,
            endpoints,
            kill_pid,
            timeout,
            attempt_timeout,
            keys,
        } => {
            failover(
                target,
                &endpoints,
                kill_pid,
                timeout,
                attempt_timeout,
                &keys,
            )
            .await
        }
    }
}
