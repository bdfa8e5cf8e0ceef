//! The HTTP face of a party: liveness, readiness, metrics, status, and its own OpenAPI
//! description at `/openapi.json` (`openapi.json` beside this file; a test holds the two to
//! the same paths, and the in-process party tests each JSON answer to its schema).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::store::RecordKind;
use crate::{PartyError, PartyState};

#[derive(Clone)]
struct HttpState {
    party: Arc<PartyState>,
    prometheus: PrometheusHandle,
}

/// The OpenAPI 3.1 description of [`router`], served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, by path: [`router`] serves these, and `openapi.json` documents exactly them.
fn routes() -> Vec<(&'static str, MethodRouter<HttpState>)> {
    vec![
        ("/health", get(health)),
        ("/-/healthy", get(health)),
        ("/ready", get(ready)),
        ("/metrics", get(metrics)),
        ("/v1/status", get(status)),
        ("/openapi.json", get(openapi)),
    ]
}

pub fn router(party: Arc<PartyState>, prometheus: PrometheusHandle) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .with_state(HttpState { party, prometheus })
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Result<PrometheusHandle, PartyError> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let buckets = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .map_err(|e| PartyError::Server(format!("metrics: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return PROMETHEUS
            .get()
            .cloned()
            .ok_or_else(|| PartyError::Server("another metrics recorder is installed".into()));
    }
    // mpc_tls_certificate_expiry_timestamp_seconds, set by every load of the party's client
    // certificate: describe_metrics also hands over a load that came before this recorder.
    mpc_tls::describe_metrics();
    Ok(PROMETHEUS.get_or_init(|| handle).clone())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(s): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "role": "party", "id": s.party.party_id }))
}

/// Ready when the store is open (it is, or the process would not run) and the party holds a
/// stream to the leader.
async fn ready(State(s): State<HttpState>) -> Response {
    let connected = s.party.connected.load(Ordering::Relaxed);
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "ready": connected, "connected": connected })),
    )
        .into_response()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    s.prometheus.run_upkeep();
    metrics::gauge!("mpc_party_connected").set(f64::from(u8::from(
        s.party.connected.load(Ordering::Relaxed),
    )));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

async fn status(State(s): State<HttpState>) -> Json<serde_json::Value> {
    let party = s.party.clone();
    let counts = tokio::task::spawn_blocking(move || {
        let count = |k| party.store.list(k).map_or(0, |v| v.len());
        (
            count(RecordKind::KeyShare),
            count(RecordKind::Presignature),
            count(RecordKind::PrimePair),
            count(RecordKind::AuxInfo),
        )
    })
    .await
    .unwrap_or_default();
    Json(json!({
        "party_id": s.party.party_id,
        "connected": s.party.connected.load(Ordering::Relaxed),
        "running_sessions": s.party.running_sessions.load(Ordering::Relaxed),
        "key_shares": counts.0,
        "presignatures": counts.1,
        "prime_pool": counts.2,
        "aux_info_groups": counts.3,
        "signing_public_key": hex::encode(s.party.identity.signing_public_key()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let served = routes().into_iter().map(|(path, _)| path);
        assert_eq!(mpc_openapi_check::check_document(&doc, served), Ok(()));
    }
}
