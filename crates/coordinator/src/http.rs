//! The HTTP face of a coordinator: liveness, readiness, Prometheus metrics, cluster status.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::node::Coordinator;

#[derive(Debug, Clone)]
struct HttpState {
    node: Coordinator,
    prometheus: PrometheusHandle,
}

pub fn router(node: Coordinator, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/-/healthy", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster))
        .route("/v1/nodes", get(nodes))
        .with_state(HttpState { node, prometheus })
}

async fn health(State(s): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "role": "coordinator", "id": s.node.id() }))
}

/// Ready when a leader is known and everything known committed is applied.
async fn ready(State(s): State<HttpState>) -> Response {
    let view = s.node.cluster_view().await;
    let body = json!({
        "ready": view.ready,
        "leader": view.leader,
        "committed": view.committed,
        "last_applied": view.last_applied,
    });
    let code = if view.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render(&s.node, &s.prometheus).await,
    )
        .into_response()
}

async fn cluster(State(s): State<HttpState>) -> Json<crate::node::ClusterView> {
    Json(s.node.cluster_view().await)
}

async fn nodes(State(s): State<HttpState>) -> Json<serde_json::Value> {
    let view = s.node.cluster_view().await;
    Json(json!({ "leader": view.leader, "nodes": view.nodes }))
}
