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
    },
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
}

impl Writer {
    async fn write(&mut self, timeout: Duration) -> Result<(), tonic::Status> {
        self.seq += 1;
        match self.target {
            Target::Mpc => {
                let mut req = tonic::Request::new(pb::CreateKeygenRequest {
                    scheme: "ecdsa-secp256k1".into(),
                    threshold: 2,
                    parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
                    request_id: String::new(),
                    description: self.value.clone(),
                    tags: Default::default(),
                    timeout_seconds: 0,
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

async fn write_load(
    target: Target,
    endpoints: &[String],
    clients: usize,
    duration: Duration,
    value_size: usize,
) -> anyhow::Result<()> {
    if endpoints.is_empty() || clients == 0 {
        bail!("--endpoints and --clients must not be empty");
    }
    let credentials = credentials(target)?;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..clients {
        let mut writer = Writer {
            target,
            channel: channel(&credentials, &endpoints[id % endpoints.len()])?,
            value: "x".repeat(value_size),
            seq: 0,
            id,
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
    let line = serde_json::json!({
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
    println!("{line}");
    Ok(())
}

async fn failover(
    target: Target,
    endpoints: &[String],
    kill_pid: u32,
    timeout: Duration,
    attempt_timeout: Duration,
) -> anyhow::Result<()> {
    if endpoints.is_empty() {
        bail!("--endpoints must name the surviving nodes");
    }
    let credentials = credentials(target)?;
    let mut writers = endpoints
        .iter()
        .enumerate()
        .map(|(id, e)| {
            Ok(Writer {
                target,
                channel: channel(&credentials, e)?,
                value: "x".repeat(1024),
                seq: 0,
                id: 10_000 + id,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
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
        } => sign::cluster(&leader, iterations, presign_pool).await,
        Cmd::Write {
            target,
            endpoints,
            clients,
            duration,
            value_size,
        } => write_load(target, &endpoints, clients, duration, value_size).await,
        Cmd::Failover {
            target,
            endpoints,
            kill_pid,
            timeout,
            attempt_timeout,
        } => failover(target, &endpoints, kill_pid, timeout, attempt_timeout).await,
    }
}
