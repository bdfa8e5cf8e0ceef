//! The HTTP face of a coordinator: liveness, readiness, Prometheus metrics, cluster status,
//! and its own OpenAPI description at `/openapi.json` (`openapi.json` beside this file; a
//! test holds the two to the same paths, and another each answer to its schema).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::disk::SpaceLevel;
use crate::node::Coordinator;

#[derive(Debug, Clone)]
struct HttpState {
    node: Coordinator,
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
        ("/v1/cluster", get(cluster)),
        ("/v1/nodes", get(nodes)),
        ("/openapi.json", get(openapi)),
    ]
}

pub fn router(node: Coordinator, prometheus: PrometheusHandle) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .with_state(HttpState { node, prometheus })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(s): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "role": "coordinator", "id": s.node.id() }))
}

/// Ready when a leader is known, a leader still hears from a quorum, the node applies what was
/// committed when asked within a moment, and its data directory has its reserve of free space.
async fn ready(State(s): State<HttpState>) -> Response {
    let view = s.node.cluster_view().await;
    let body = json!({
        "ready": view.ready,
        "leader": view.leader,
        "committed": view.committed,
        "last_applied": view.last_applied,
        "disk_space_low": s.node.disk().level() != SpaceLevel::Ample,
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
