//! Load generator behind `scripts/bench-raft.sh` (and `scripts/bench-sign.sh`): the same
//! plain write workload and the same failover probe against an mpc coordinator cluster and
//! against etcd, over gRPC; signing sessions through a cluster whose parties run; the
//! resident memory of the processes under test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use mpc_client::{ClientChannel, Credentials};
use mpc_proto::v1::sessions_client::SessionsClient;

use crate::authority::{KeyFiles, Signers};
use crate::workload::{Pool, SigningClient, Tally, WriteOp, Writer};

mod authority;
mod rss;
mod sign;
mod workload;

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

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Workload {
    /// A plain replicated write of --value-size bytes: etcd `KV.Put` of a new key; mpc
    /// `Keys.UpdateKey` setting the description of --key-id.
    Write,
    /// mpc: `Sessions.CreateSigning` of a --value-size message with --key-id (a
    /// schnorr-ed25519 key of running parties), approved by the initiator before the timed
    /// phase; each client follows its session to the end before it creates the next.
    Signing,
    /// mpc: `Sessions.CreateKeygen` for parties that never run (the workload of the reports
    /// before December 2026): the sessions pile up as waiting, and the leader's scheduler
    /// work grows with them. Kept to reproduce those figures.
    KeygenUnrun,
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
    /// Concurrent clients for `duration`, each sending its next request when the last is
    /// answered; prints one JSON line.
    Write {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_enum, default_value_t = Workload::Write)]
        workload: Workload,
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// How long the clients run before the clock starts (connections made, caches and
        /// the leader's batching warm); nothing from it is counted.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// The key that mpc's write and signing workloads use (made before the run).
        #[arg(long)]
        key_id: Option<String>,
        /// Requests signed before the timed phase (signing: approvals; keygen-unrun: key
        /// policies); default 1000 (signing) or 5000 (keygen-unrun) per second of
        /// --duration, at most 200000. Requests beyond them are signed in the loop, counted
        /// as prepared_in_loop.
        #[arg(long, alias = "policies")]
        prepared: Option<usize>,
        /// Processes whose resident memory is sampled through the timed phase, LABEL=PID,
        /// comma separated; the maximum of each is printed as rss_max_kib.
        #[arg(long, value_delimiter = ',')]
        rss: Vec<String>,
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
        /// mpc: the key whose description the probe's writes set.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// The resident memory (VmRSS) of processes now; prints one JSON line.
    Rss {
        /// Named in the line, as the write lines name it.
        #[arg(long, value_enum)]
        target: Target,
        /// LABEL=PID, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        pids: Vec<String>,
        /// What the cluster is doing meanwhile, e.g. "idle".
        #[arg(long, default_value = "idle")]
        phase: String,
    },
}

fn target_name(target: Target) -> String {
    format!("{target:?}").to_lowercase()
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

fn channels(target: Target, endpoints: &[String]) -> anyhow::Result<Vec<ClientChannel>> {
    if endpoints.is_empty() {
        bail!("--endpoints must name at least one member");
    }
    let credentials = credentials(target)?;
    endpoints.iter().map(|e| channel(&credentials, e)).collect()
}

fn key_id_for(key_id: Option<&str>, what: &str) -> anyhow::Result<String> {
    key_id
        .map(str::to_owned)
        .with_context(|| format!("mpc's {what} needs --key-id: a key made before the run"))
}

/// The plain write a target takes: what `write` measures and the failover probe sends.
fn plain_write(target: Target, key_id: Option<&str>) -> anyhow::Result<WriteOp> {
    Ok(match target {
        Target::Etcd => WriteOp::EtcdPut,
        Target::Mpc => WriteOp::KeyUpdate {
            key_id: key_id_for(key_id, "write workload")?,
        },
    })
}

/// The requests signed before a timed phase of `duration`, at `per_second`.
fn pool_size(prepared: Option<usize>, duration: Duration, per_second: u64) -> usize {
    prepared.unwrap_or_else(|| {
        usize::try_from(
            duration
                .as_secs()
                .saturating_add(1)
                .saturating_mul(per_second),
        )
        .unwrap_or(usize::MAX)
        .min(200_000)
    })
}

/// One client of a timed phase.
enum Client {
    Write(Writer),
    Signing(SigningClient),
}

/// What the clients of a timed phase share, made before it.
enum Prepared {
    Writes(Arc<WriteOp>),
    Signings(Arc<Pool<mpc_proto::v1::CreateSigningRequest>>),
}

impl Client {
    async fn once(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        // A client's ordinary deadline for one call.
        let timeout = Duration::from_secs(5);
        match self {
            Client::Write(w) => w.once(timeout, tally).await,
            Client::Signing(s) => s.once(timeout, tally).await,
        }
    }
}

#[derive(Debug)]
struct Load {
    target: Target,
    workload: Workload,
    endpoints: Vec<String>,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    value_size: usize,
    key_id: Option<String>,
    prepared: Option<usize>,
    rss: Vec<String>,
    keys: KeyFiles,
}

async fn write_load(load: Load) -> anyhow::Result<()> {
    if load.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if load.target == Target::Etcd && load.workload != Workload::Write {
        bail!("etcd takes only the write workload");
    }
    let watched = load
        .rss
        .iter()
        .map(|s| rss::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let channels = channels(load.target, &load.endpoints)?;
    let value = "x".repeat(load.value_size);
    // Everything the clients need, signed before the clock starts.
    let prepared = match load.workload {
        Workload::Write => {
            Prepared::Writes(Arc::new(plain_write(load.target, load.key_id.as_deref())?))
        }
        Workload::Signing => {
            // Approvals are valid five minutes from their signing (Signers::approve): a
            // longer phase would run out of valid ones.
            if load.duration + load.warmup > Duration::from_secs(240) {
                bail!("the signing workload runs at most 240 s with its warm-up (its approvals last 5 min)");
            }
            let signers = Arc::new(Signers::load(&load.keys)?);
            let key_id = key_id_for(load.key_id.as_deref(), "signing workload")?;
            let count = pool_size(load.prepared, load.duration + load.warmup, 1000);
            let size = load.value_size;
            let pool = tokio::task::spawn_blocking(move || {
                workload::signing_requests(signers, key_id, size, count)
            })
            .await??;
            Prepared::Signings(Arc::new(pool))
        }
        Workload::KeygenUnrun => {
            let signers = Signers::load(&load.keys)?;
            signers
                .enrol_absent(&channels, &workload::ABSENT_PARTIES)
                .await?;
            let count = pool_size(load.prepared, load.duration + load.warmup, 5000);
            let signers = Arc::new(signers);
            let policies =
                tokio::task::spawn_blocking(move || workload::keygen_policies(signers, count))
                    .await??;
            Prepared::Writes(Arc::new(WriteOp::KeygenUnrun {
                policies: Arc::new(policies),
            }))
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let warming = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for id in 0..load.clients {
        let channel = channels[id % channels.len()].clone();
        let mut client = match &prepared {
            Prepared::Signings(requests) => Client::Signing(SigningClient {
                sessions: SessionsClient::new(channel),
                requests: requests.clone(),
            }),
            Prepared::Writes(op) => Client::Write(Writer {
                op: op.clone(),
                channel,
                value: value.clone(),
                seq: 0,
                id,
            }),
        };
        let stop = stop.clone();
        let warming = warming.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            let mut warm_up = true;
            while !stop.load(Ordering::Relaxed) {
                // What the warm-up did (and a call in flight when the clock started) is
                // dropped.
                if warm_up && !warming.load(Ordering::Relaxed) {
                    tally = Tally::new()?;
                    warm_up = false;
                }
                client.once(&mut tally).await?;
            }
            anyhow::Ok(tally)
        }));
    }
    tokio::time::sleep(load.warmup).await;
    warming.store(false, Ordering::Relaxed);
    let sampler = rss::sample_until(watched.clone(), stop.clone());
    let started = Instant::now();
    tokio::time::sleep(load.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new()?;
    for t in tasks {
        total.add(&t.await??)?;
    }
    // Every client's last call is in: the phase ends here.
    let elapsed = started.elapsed().as_secs_f64();
    let rss_max = sampler.await?;
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (op_name, made_in_loop) = match &prepared {
        Prepared::Signings(requests) => ("Sessions.CreateSigning", Some(requests.made_in_loop())),
        Prepared::Writes(op) => match op.as_ref() {
            WriteOp::KeygenUnrun { policies } => (op.name(), Some(policies.made_in_loop())),
            _ => (op.name(), None),
        },
    };
    let workload = load
        .workload
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mut line = serde_json::json!({
        "target": target_name(load.target),
        "workload": workload,
        "op": op_name,
        "clients": load.clients,
        "value_size": load.value_size,
        "seconds": elapsed,
        "writes": total.acked.len(),
        "errors": total.errors,
        "writes_per_sec": total.acked.len() as f64 / elapsed,
        "p50_ms": ms(&total.acked, 0.50),
        "p99_ms": ms(&total.acked, 0.99),
        "max_ms": total.acked.max() as f64 / 1000.0,
    });
    if let Some(obj) = line.as_object_mut() {
        if !watched.is_empty() {
            obj.insert("rss_max_kib".into(), serde_json::json!(rss_max));
        }
        if let Some(n) = made_in_loop {
            obj.insert("prepared_in_loop".into(), n.into());
        }
        if matches!(prepared, Prepared::Signings(_)) {
            obj.insert("sessions".into(), total.done.len().into());
            obj.insert(
                "sessions_per_sec".into(),
                (total.done.len() as f64 / elapsed).into(),
            );
            obj.insert("done_p50_ms".into(), ms(&total.done, 0.50).into());
            obj.insert("done_p99_ms".into(), ms(&total.done, 0.99).into());
            obj.insert("failed".into(), total.failed.into());
            obj.insert("unfinished".into(), total.unfinished.into());
        }
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
    key_id: Option<&str>,
) -> anyhow::Result<()> {
    let op = Arc::new(plain_write(target, key_id)?);
    let mut writers = channels(target, endpoints)?
        .into_iter()
        .enumerate()
        .map(|(id, channel)| Writer {
            op: op.clone(),
            channel,
            value: "x".repeat(1024),
            seq: 0,
            id: 10_000 + id,
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
                "target": target_name(target),
                "op": op.name(),
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

fn rss_now(target: Target, pids: &[String], phase: &str) -> anyhow::Result<()> {
    let watched = pids
        .iter()
        .map(|s| rss::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let line = serde_json::json!({
        "target": target_name(target),
        "phase": phase,
        "rss_kib": rss::now(&watched),
    });
    println!("{line}");
    Ok(())
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
            workload,
            endpoints,
            clients,
            duration,
            warmup,
            value_size,
            key_id,
            prepared,
            rss,
            keys,
        } => {
            write_load(Load {
                target,
                workload,
                endpoints,
                clients,
                duration,
                warmup,
                value_size,
                key_id,
                prepared,
                rss,
                keys,
            })
            .await
        }
        Cmd::Failover {
            target,
            endpoints,
            kill_pid,
            timeout,
            attempt_timeout,
            key_id,
        } => {
            failover(
                target,
                &endpoints,
                kill_pid,
                timeout,
                attempt_timeout,
                key_id.as_deref(),
            )
            .await
        }
        Cmd::Rss {
            target,
            pids,
            phase,
        } => rss_now(target, &pids, &phase),
    }
}
