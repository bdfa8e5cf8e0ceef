//! The relayer's Prometheus metrics: their names and labels in one place, so dashboards and
//! alerts have a single list to follow.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::DvnError;

/// `dvn_events_received_total{chain,status}`: `PacketSent` logs seen by the listener, by
/// what became of them (`assigned`, `unassigned`, `malformed`).
pub const EVENTS_RECEIVED: &str = "dvn_events_received_total";
/// `dvn_verification_latency_seconds`: from a job's discovery to its verification on the
/// target.
pub const VERIFICATION_LATENCY: &str = "dvn_verification_latency_seconds";
/// `dvn_signing_errors_total{chain,error_type}`: signatures the signer did not give.
pub const SIGNING_ERRORS: &str = "dvn_signing_errors_total";
/// `dvn_submission_success_total{target_chain}`: jobs seen verified after a submission.
pub const SUBMISSION_SUCCESS: &str = "dvn_submission_success_total";
/// `mpc_dvn_cursor_lag_blocks{chain}`: blocks between the listener's cursor and the
/// confirmed head.
pub const CURSOR_LAG: &str = "mpc_dvn_cursor_lag_blocks";
/// `dvn_jobs{state}`: jobs by state, as the verifier and submitter last read them.
pub const JOBS: &str = "dvn_jobs";
/// `dvn_gas_spent_total{target_chain}`: wei paid for `execute` transactions.
pub const GAS_SPENT: &str = "dvn_gas_spent_total";
/// `mpc_tls_certificate_expiry_timestamp_seconds{role,name}`: the not-after time of the
/// relayer's client certificate, set by mpc-tls whenever it is loaded.
pub const CERTIFICATE_EXPIRY: &str = mpc_tls::CERTIFICATE_EXPIRY;

/// `PacketSent` log outcomes for [`EVENTS_RECEIVED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// A packet that assigns our DVN: recorded as a job.
    Assigned,
    /// A packet for other DVNs: ignored.
    Unassigned,
    /// A log that does not decode: ignored.
    Malformed,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            EventStatus::Assigned => "assigned",
            EventStatus::Unassigned => "unassigned",
            EventStatus::Malformed => "malformed",
        }
    }
}

/// Counts a `PacketSent` log.
pub fn event_received(chain: &str, status: EventStatus) {
    metrics::counter!(EVENTS_RECEIVED, "chain" => chain.to_owned(), "status" => status.as_str())
        .increment(1);
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> Result<PrometheusHandle, DvnError> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let buckets = [
        0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 300.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .map_err(|e| DvnError::Http(format!("metrics: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return PROMETHEUS
            .get()
            .cloned()
            .ok_or_else(|| DvnError::Http("another metrics recorder is installed".into()));
    }
    describe();
    Ok(PROMETHEUS.get_or_init(|| handle).clone())
}

fn describe() {
    metrics::describe_counter!(EVENTS_RECEIVED, "PacketSent logs seen, by outcome");
    metrics::describe_histogram!(
        VERIFICATION_LATENCY,
        metrics::Unit::Seconds,
        "time from a job's discovery to its verification on the target"
    );
    metrics::describe_counter!(SIGNING_ERRORS, "signatures the signer did not give");
    metrics::describe_counter!(SUBMISSION_SUCCESS, "jobs verified on the target");
    metrics::describe_gauge!(
        CURSOR_LAG,
        "blocks between the cursor and the confirmed head"
    );
    metrics::describe_gauge!(JOBS, "jobs by state");
    metrics::describe_counter!(GAS_SPENT, "wei paid for execute transactions");
    // mpc_tls_certificate_expiry_timestamp_seconds{role="dvn"}: the relayer loads its client
    // certificate (for the cluster's job book) before this recorder exists; describe_metrics
    // hands that load over.
    mpc_tls::describe_metrics();
}
