//! mpc-chaos: the client side of the chaos scenarios in `chaos/*.sh`.
//!
//!   load         keys, then register writes/reads and signings, all recorded, for a bounded time
//!   observe      who claims leadership, from nodes the load cannot reach (cut-off containers)
//!   probe-write  one write with an expected outcome (minority: refused; majority: acknowledged)
//!   leader       the current leader's id and term
//!   check        final reads after healing, then the verdict, a summary line and a report

mod authority;
mod check;
mod client;
mod history;
mod linearizable;
mod load;
mod report;
mod settle;

use mpc_client::Credentials;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::client::Coordinators;
use crate::history::{Event, Op, Outcome, Recorder};

#[derive(Debug, Parser)]
#[command(
    name = "mpc-chaos",
    version,
    about = "Load, observation and history checking for the chaos scenarios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Coordinator gRPC endpoints.
    #[arg(long, env = "MPC_ENDPOINTS", value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Deadline of a single RPC.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    rpc_timeout: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Expect {
    Ok,
    Fail,
}

#[derive(Debug, Subcommand)]
enum Command {
    Load {
        #[command(flatten)]
        target: Target,
        /// History file to append to.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        settings: load::LoadSettings,
    },
    Observe {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Appends here; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    ProbeWrite {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        key_id: String,
        #[arg(long, value_enum)]
        expect: Expect,
        /// Names the probe in the history, e.g. "minority@coordinator-2".
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        budget: Duration,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    Leader {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    Check {
        /// History files (load, nemesis events, probes, observations).
        #[arg(long = "history", required = true)]
        histories: Vec<PathBuf>,
        /// Make the final reads against these coordinators first (else judge the files as
        /// they are).
        #[arg(long, env = "MPC_ENDPOINTS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Where the final reads are recorded.
        #[arg(long)]
        final_out: Option<PathBuf>,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        patience: Duration,
        #[arg(long)]
        scenario: String,
        /// Markdown report; a JSON twin is written beside it.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Search steps per key before the linearizability check gives up.
        #[arg(long, default_value_t = 20_000_000)]
        max_steps: u64,
        #[command(flatten)]
        floors: FloorArgs,
        /// Approves the final re-sending of signing requests never acknowledged (needed
        /// with endpoints).
        #[arg(long, env = "MPC_INITIATOR_KEY")]
        initiator_key: Option<PathBuf>,
    },
}

/// The least work the run must show (`check::Floors`). No defaults: every scenario states its
/// own, so that a load that did nothing cannot pass by omission. Every fault must in any case
/// be followed by an acknowledged write, and (unless the parties were cut off from the
/// majority) by a completed signing begun after it.
#[derive(Debug, Clone, clap::Args)]
struct FloorArgs {
    /// Acknowledged writes of the load.
    #[arg(long)]
    min_writes: usize,
    /// Answered linearizable reads of the load.
    #[arg(long)]
    min_reads: usize,
    /// Completed ECDSA signings.
    #[arg(long)]
    min_signed_ecdsa: usize,
    /// Completed Ed25519 signings.
    #[arg(long)]
    min_signed_ed25519: usize,
    /// Completed BIP-340 signings.
    #[arg(long)]
    min_signed_bip340: usize,
    /// Completed ECDSA signings served from a presignature.
    #[arg(long)]
    min_presigned: usize,
    /// Partition probes the scenario makes: exactly this many must be recorded.
    #[arg(long)]
    probes: usize,
}

impl From<FloorArgs> for check::Floors {
    fn from(a: FloorArgs) -> Self {
        check::Floors {
            writes_acked: a.min_writes,
            reads_ok: a.min_reads,
            signed_ecdsa: a.min_signed_ecdsa,
            signed_ed25519: a.min_signed_ed25519,
            signed_bip340: a.min_signed_bip340,
            presigned: a.min_presigned,
            probes: a.probes,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Load {
            target,
            out,
            settings,
        } => {
            let coords = Coordinators::new(
                &target.endpoints,
                target.rpc_timeout,
                &Credentials::from_env()?,
            )?;
            let (rec, writer) = Recorder::start(Some(&out))?;
            let result = load::run(coords, settings, rec).await;
            let written = writer.finish()?;
            result?;
            eprintln!("load: {written} events in {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Observe {
            target,
            duration,
            out,
        } => {
            let coords = Coordinators::new(
                &target.endpoints,
                target.rpc_timeout,
                &Credentials::from_env()?,
            )?;
            let (rec, writer) = Recorder::start(out.as_deref())?;
            load::observe(coords, duration, Duration::from_millis(100), rec).await;
            writer.finish()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ProbeWrite {
            target,
            key_id,
            expect,
            label,
            budget,
            out,
        } => {
            let coords = Coordinators::new(
                &target.endpoints,
                target.rpc_timeout,
                &Credentials::from_env()?,
            )?;
            let value = format!("{label}-{}", uuid::Uuid::new_v4().simple());
            let op =
                load::write_description(&coords, 0, &key_id, value.clone(), value, budget).await;
            let expect = match expect {
                Expect::Ok => Outcome::Ok,
                Expect::Fail => Outcome::Fail,
            };
            let met = (expect == Outcome::Ok) == (op.outcome == Outcome::Ok);
            eprintln!(
                "probe {label}: {:?} (expected {}) {}",
                op.outcome,
                if expect == Outcome::Ok {
                    "acknowledged"
                } else {
                    "refused"
                },
                op.error.as_deref().unwrap_or("")
            );
            let (rec, writer) = Recorder::start(out.as_deref())?;
            rec.record(Event::Op(Box::new(Op {
                client: label,
                expect: Some(expect),
                ..op
            })));
            drop(rec);
            writer.finish()?;
            Ok(if met {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Leader { target, wait } => {
            let coords = Coordinators::new(
                &target.endpoints,
                target.rpc_timeout,
                &Credentials::from_env()?,
            )?;
            let (id, term) = load::current_leader(&coords, wait).await?;
            println!("{id} {term}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            histories,
            endpoints,
            final_out,
            patience,
            scenario,
            report,
            max_steps,
            floors,
            initiator_key,
        } => {
            let mut files = histories.clone();
            if !endpoints.is_empty() {
                let initiator = authority::Initiator::load(&authority::InitiatorKeyFile {
                    initiator_key: initiator_key.context(
                        "initiator_key: required with endpoints (--initiator-key or \
                         MPC_INITIATOR_KEY): the final reads re-send unacknowledged signings",
                    )?,
                })?;
                let events = history::read(&histories)?;
                let coords = Coordinators::new(
                    &endpoints,
                    Duration::from_secs(2),
                    &Credentials::from_env()?,
                )?;
                let path = final_out.context(
                    "final_out: required with endpoints (the final reads are recorded there)",
                )?;
                let (rec, writer) = Recorder::start(Some(&path))?;
                settle::final_reads(&coords, &events, &initiator, patience, &rec).await;
                drop(rec);
                writer.finish()?;
                files.push(path);
            }
            let events = history::read(&files)?;
            let findings = tokio::task::spawn_blocking(move || {
                check::check(
                    &events,
                    check::CheckOptions {
                        max_steps,
                        floors: floors.into(),
                    },
                )
            })
            .await
            .context("the checker panicked")?;
            let line = findings.summary(&scenario);
            if let Some(path) = report {
                report::write(&path, &scenario, &files, &findings, &line)?;
            }
            println!("{line}");
            Ok(if findings.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
