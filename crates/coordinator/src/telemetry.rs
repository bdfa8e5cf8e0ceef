//! Logs and Prometheus metrics.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{LogFormat, LogSettings};
use crate::node::Coordinator;
use crate::CoordinatorError;

/// Installs the `tracing` subscriber; a second call (tests) keeps the first.
pub fn init_logging(settings: &LogSettings) -> Result<(), CoordinatorError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.filter)
        .map_err(|e| CoordinatorError::Config(format!("log.filter: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
    if result.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
    Ok(())
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Result<PrometheusHandle, CoordinatorError> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let latency_buckets = [
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
        0.512, 1.024, 2.048, 5.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("mpc_raft_log_group_commit_entries".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("mpc_raft_proposal_batch_commands".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )
        })
        .map_err(|e| CoordinatorError::Server(format!("metrics: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return PROMETHEUS.get().cloned().ok_or_else(|| {
            CoordinatorError::Server("another metrics recorder is installed".into())
        });
    }
    describe();
    Ok(PROMETHEUS.get_or_init(|| handle).clone())
}

fn describe() {
    metrics::describe_gauge!("mpc_raft_has_leader", "1 when this node knows a leader");
    metrics::describe_gauge!("mpc_raft_is_leader", "1 when this node is the leader");
    metrics::describe_gauge!("mpc_raft_term", "current Raft term");
    metrics::describe_counter!("mpc_raft_leader_changes_total", "leaders seen by this node");
    metrics::describe_gauge!("mpc_raft_ready", "1 when /ready answers 200");
    metrics::describe_gauge!("mpc_raft_last_log_index", "last index in this node's log");
    metrics::describe_gauge!("mpc_raft_commit_index", "last index known committed");
    metrics::describe_gauge!(
        "mpc_raft_applied_index",
        "last index applied to the state machine"
    );
    metrics::describe_histogram!(
        "mpc_raft_proposal_seconds",
        "time from proposal to applied answer"
    );
    metrics::describe_histogram!(
        "mpc_raft_log_fsync_seconds",
        "duration of each Raft log sync"
    );
    metrics::describe_histogram!(
        "mpc_raft_proposal_batch_commands",
        "commands carried by one Raft entry"
    );
    metrics::describe_histogram!(
        "mpc_raft_log_group_commit_entries",
        "appends made durable by one log sync"
    );
    // mpc_tls_certificate_expiry_timestamp_seconds, set by every load of the node's
    // certificate: describe_metrics also hands over a load that came before this recorder.
    mpc_tls::describe_metrics();
}

/// Refreshes what is cheaper to read at scrape time than to track, then renders.
pub async fn render(node: &Coordinator, handle: &PrometheusHandle) -> String {
    let view = node.cluster_view().await;
    if let Some(committed) = view.committed {
        metrics::gauge!("mpc_raft_commit_index").set(committed as f64);
    }
    metrics::gauge!("mpc_raft_ready").set(f64::from(u8::from(view.ready)));
    handle.render()
}

/// Mirrors openraft's metrics into Prometheus gauges until the node stops.
pub async fn export_raft_metrics(node: Coordinator, handle: PrometheusHandle) {
    let mut watch = node.raft().metrics();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_leader = None;
    loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
                let m = watch.borrow_and_update().clone();
                if m.current_leader.is_some() && m.current_leader != last_leader {
                    metrics::counter!("mpc_raft_leader_changes_total").increment(1);
                }
                last_leader = m.current_leader;
                metrics::gauge!("mpc_raft_has_leader").set(f64::from(u8::from(m.current_leader.is_some())));
                metrics::gauge!("mpc_raft_is_leader").set(f64::from(u8::from(m.current_leader == Some(m.id))));
                metrics::gauge!("mpc_raft_term").set(m.current_term as f64);
                metrics::gauge!("mpc_raft_last_log_index").set(m.last_log_index.unwrap_or_default() as f64);
            }
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}
