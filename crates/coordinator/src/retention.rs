//! Forgetting finished history: the leader looks for sessions that finished, key updates
//! applied, and DVN relay jobs that ended, more than `sessions.retention_secs` ago and
//! proposes [`Operation::Prune`] and [`Operation::PruneRelayJobs`] commands naming them.
//! Apply checks every record again, so a prune can only forget finished history; the state
//! and its snapshots stop growing with the number of requests ever served. The audit log is
//! kept whole.

use std::time::Duration;

use mpc_raft_store::command::{Prune, PruneRelayJobs, PrunedKeyUpdate, MAX_PRUNE_BATCH};
use mpc_raft_store::{CommandResponse, Operation};

use crate::node::{now_ms, Coordinator};
use crate::CoordinatorError;

/// Prune commands one run may propose, so that a large backlog is worked off over several
/// runs instead of crowding out client writes.
const MAX_BATCHES_PER_RUN: usize = 32;

/// How much one run forgot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub key_updates: u64,
    pub relay_jobs: u64,
}

/// Runs for the life of the node; prunes only while it leads.
pub async fn run(node: Coordinator) {
    let settings = node.config().sessions.clone();
    if settings.retention_secs == 0 {
        tracing::info!("sessions.retention_secs is 0: finished history is kept for ever");
        return;
    }
    let retention = Duration::from_secs(settings.retention_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(settings.retention_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node.leading_term().is_none() {
            continue;
        }
        match prune_once(&node, retention).await {
            Ok(p) if p != Pruned::default() => tracing::info!(
                sessions = p.sessions,
                key_updates = p.key_updates,
                relay_jobs = p.relay_jobs,
                "pruned finished history"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention run failed; next run retries"),
        }
    }
}

/// One retention run: proposes prunes until nothing older than `retention` is left (or
/// [`MAX_BATCHES_PER_RUN`] were proposed).
pub async fn prune_once(
    node: &Coordinator,
    retention: Duration,
) -> Result<Pruned, CoordinatorError> {
    let per_kind = MAX_PRUNE_BATCH / 2;
    let mut total = Pruned::default();
    for _ in 0..MAX_BATCHES_PER_RUN {
        let cutoff_ms = now_ms().saturating_sub(retention.as_millis() as u64);
        let (session_ids, key_updates) = node.reader().prunable(cutoff_ms, per_kind).await?;
        if session_ids.is_empty() && key_updates.is_empty() {
            break;
        }
        let more = session_ids.len() == per_kind || key_updates.len() == per_kind;
        let op = Operation::Prune(Prune {
            cutoff_ms,
            session_ids,
            key_updates: key_updates
                .into_iter()
                .map(|(update_id, applied_at_ms)| PrunedKeyUpdate {
                    update_id,
                    applied_at_ms,
                })
                .collect(),
        });
        if let CommandResponse::Pruned {
            sessions,
            key_updates,
        } = node.write(node.command("retention".into(), op)).await?
        {
            metrics::counter!("mpc_retention_pruned_total", "kind" => "session")
                .increment(sessions.into());
            metrics::counter!("mpc_retention_pruned_total", "kind" => "key_update")
                .increment(key_updates.into());
            total.sessions += u64::from(sessions);
            total.key_updates += u64::from(key_updates);
        }
        if !more {
            break;
        }
    }
    for _ in 0..MAX_BATCHES_PER_RUN {
        let cutoff_ms = now_ms().saturating_sub(retention.as_millis() as u64);
        let job_ids = node
            .reader()
            .prunable_relay_jobs(cutoff_ms, MAX_PRUNE_BATCH)
            .await?;
        if job_ids.is_empty() {
            break;
        }
        let more = job_ids.len() == MAX_PRUNE_BATCH;
        let op = Operation::PruneRelayJobs(PruneRelayJobs { cutoff_ms, job_ids });
        if let CommandResponse::PrunedRelayJobs { jobs } =
            node.write(node.command("retention".into(), op)).await?
        {
            metrics::counter!("mpc_retention_pruned_total", "kind" => "relay_job")
                .increment(jobs.into());
            total.relay_jobs += u64::from(jobs);
        }
        if !more {
            break;
        }
    }
    Ok(total)
}
