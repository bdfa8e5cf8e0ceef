//! `mpcctl dvn`: the DVN relayers' cursors and jobs, as the replicated job book holds them.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mpc_client::relay::{RelayBook, RelayStatus};
use mpc_client::Endpoints;
use mpc_types::relay::{JobId, JobState, RelayJob, Verdict};
use serde_json::{json, Value};

use crate::commands::print;
use crate::page::Show as _;
use crate::Output;

#[derive(Debug, Subcommand)]
pub enum DvnCommand {
    /// Every relayer's cursor per source chain, and how many jobs each state holds.
    Status,
    /// Packet jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs: of one state oldest first, or all of them.
    List(ListArgs),
    /// One job, by its id (64 hex digits).
    Get {
        /// The job id, as `jobs list` shows it.
        job_id: String,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state: discovered, signed, submitting, verified, rejected, failed.
    #[arg(long, value_parser = |s: &str| s.parse::<JobState>())]
    state: Option<JobState>,
    #[command(flatten)]
    page: crate::page::PageArgs,
}

pub async fn run(endpoints: &Endpoints, output: Output, cmd: DvnCommand) -> anyhow::Result<()> {
    let book = RelayBook::new(endpoints.clone());
    match cmd {
        DvnCommand::Status => {
            let status = book.status().await.context("reading the relay status")?;
            print(output, &status_json(&status), || status_text(&status));
        }
        DvnCommand::Jobs(JobsCommand::Get { job_id }) => {
            let id: JobId = job_id
                .parse()
                .map_err(|reason| anyhow::anyhow!("invalid job_id: {reason}"))?;
            let job = book
                .job(id)
                .await
                .context("reading the job")?
                .ok_or_else(|| anyhow::anyhow!("relay job {id} does not exist"))?;
            print(output, &job_json(&job), || job_line(&job));
        }
        DvnCommand::Jobs(JobsCommand::List(args)) => {
            let state = args.state;
            let book = &book;
            args.page
                .collect(|page_size, page_token| async move {
                    let token =
                        match page_token.as_str() {
                            "" => None,
                            t => Some(t.parse::<JobId>().map_err(|reason| {
                                anyhow::anyhow!("--page-token {t:?}: {reason}")
                            })?),
                        };
                    let (jobs, next) = book
                        .jobs(state, page_size, token)
                        .await
                        .context("listing jobs")?;
                    Ok((jobs, next.map(|t| t.to_string()).unwrap_or_default()))
                })
                .await?
                .print(output, "jobs", job_json, job_line, "no jobs");
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    format!("0x{}", ::hex::encode(bytes))
}

/// The addresses that signed the job's current attempt, in ascending order.
fn signers(job: &RelayJob) -> Vec<String> {
    let mut signers: Vec<[u8; 20]> = job
        .verdicts
        .values()
        .filter_map(|v| match v {
            Verdict::Signed { signer, .. } => Some(*signer),
            Verdict::Rejected { .. } => None,
        })
        .collect();
    signers.sort();
    signers.dedup();
    signers.iter().map(|s| hex(s)).collect()
}

fn job_json(job: &RelayJob) -> Value {
    let p = &job.packet;
    json!({
        "job_id": job.job_id.to_string(),
        "guid": hex(&p.guid),
        "src_eid": p.src_eid,
        "dst_eid": p.dst_eid,
        "nonce": p.nonce,
        "payload_hash": hex(&p.payload_hash),
        "state": job.state.as_str(),
        "signers": signers(job),
        "tx_hash": job
            .verified_tx
            .or_else(|| job.submission.as_ref().and_then(|s| s.tx_hash))
            .map(|h| hex(&h)),
        "reason": job.reason,
        "attempt": job.attempt,
        "expiration": job.expiration,
        "source_tx": hex(&p.source_tx),
        "source_block": p.source_block,
        "discovered_by": job.discovered_by,
        "discovered_at_ms": job.discovered_at_ms,
        "updated_at_ms": job.updated_at_ms,
        "submitter": job.submission.as_ref().map(|s| s.submitter.clone()),
        "rejections": job.verdicts.iter().filter_map(|(instance, v)| match v {
            Verdict::Rejected { reason } => Some(json!({"instance": instance, "reason": reason})),
            Verdict::Signed { .. } => None,
        }).collect::<Vec<_>>(),
    })
}

fn job_line(job: &RelayJob) -> String {
    let p = &job.packet;
    let mut line = format!(
        "{}  {:<10} {}->{} nonce={} guid={} signers={}",
        job.job_id,
        job.state.as_str(),
        p.src_eid,
        p.dst_eid,
        p.nonce,
        hex(&p.guid),
        signers(job).len()
    );
    if let Some(tx) = job.verified_tx {
        line.push_str(&format!(" tx={}", hex(&tx)));
    }
    if let Some(reason) = &job.reason {
        line.push_str(&format!("  reason: {reason}"));
    }
    line
}

fn status_json(status: &RelayStatus) -> Value {
    json!({
        "cursors": status.cursors.iter().map(|c| json!({
            "instance": c.instance,
            "src_eid": c.src_eid,
            "block": c.block,
            "updated_at_ms": c.updated_at_ms,
        })).collect::<Vec<_>>(),
        "jobs": status.jobs.iter().map(|(state, n)| (state.as_str().to_owned(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn status_text(status: &RelayStatus) -> String {
    let mut lines = Vec::new();
    if status.cursors.is_empty() {
        lines.push("no relayer has scanned a source chain yet".to_owned());
    }
    for c in &status.cursors {
        lines.push(format!(
            "{:<12} source {:<6} scanned to block {}",
            c.instance,
            c.src_eid,
            c.block.map_or("-".into(), |b| b.to_string())
        ));
    }
    let counts: Vec<String> = status
        .jobs
        .iter()
        .map(|(state, n)| format!("{}={n}", state.as_str()))
        .collect();
    lines.push(format!("jobs: {}", counts.join(" ")));
    lines.join("\n")
}
