//! The HTTP face of one relayer: `/health` (the process answers), `/ready` (the cluster, every
//! chain and the signer answer: each a named probe the caller passes in), `/metrics`
//! (Prometheus text) and its own OpenAPI description at `/openapi.json` (`openapi.json` beside
//! this file; tests hold the two to the same paths and `/ready`'s answer to its schema).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::error::DvnError;

/// A readiness check: answers why it is not ready, or nothing.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`Probe`].
pub fn probe<F, Fut>(f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

#[derive(Clone)]
struct Face {
    probes: Arc<Vec<(String, Probe)>>,
    prometheus: Option<PrometheusHandle>,
}

/// The OpenAPI 3.1 description of [`router`], served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, by path: [`router`] serves these, and `openapi.json` documents exactly them.
fn routes() -> Vec<(&'static str, MethodRouter<Face>)> {
    vec![
        ("/health", get(health)),
        ("/ready", get(ready)),
        ("/metrics", get(metrics)),
        ("/openapi.json", get(openapi)),
    ]
}

/// The router: `/health`, `/ready` over `probes` (by name), `/metrics` from `prometheus`,
/// `/openapi.json` ([`OPENAPI`]).
pub fn router(probes: Vec<(String, Probe)>, prometheus: Option<PrometheusHandle>) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .with_state(Face {
            probes: Arc::new(probes),
            prometheus,
        })
}

async fn health() -> &'static str {
    "ok"
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn ready(State(face): State<Face>) -> (StatusCode, Json<serde_json::Value>) {
    let checks = face.probes.iter().map(|(name, probe)| {
        let name = name.clone();
        let fut = probe();
        async move { (name, fut.await) }
    });
    let results = futures::future::join_all(checks).await;
    let mut body = serde_json::Map::new();
    let mut all_ok = true;
    for (name, result) in results {
        let value = match result {
            Ok(()) => serde_json::Value::String("ok".into()),
            Err(e) => {
                all_ok = false;
                serde_json::Value::String(e)
            }
        };
        body.insert(name, value);
    }
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::Value::Object(body)))
}

async fn metrics(State(face): State<Face>) -> (StatusCode, String) {
    match &face.prometheus {
        Some(handle) => {
            handle.run_upkeep();
            (StatusCode::OK, handle.render())
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n".into()),
    }
}

/// Serves `router` on `listen` until `shutdown` turns true. Answers the bound address
/// (port 0 picks one) once listening, and the serving task.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DvnError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DvnError::Http(format!("binding {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DvnError::Http(e.to_string()))?;
    let task = tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn get_status(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        (code, out)
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let served = routes().into_iter().map(|(path, _)| path);
        assert_eq!(mpc_openapi_check::check_document(&doc, served), Ok(()));
    }

    /// One passing and one failing probe: `/ready` is 503 naming the failing one, as the
    /// document's 503 answer says; `/health` is 200; `/openapi.json` serves the document; with
    /// metrics off `/metrics` is the documented 404.
    #[tokio::test]
    async fn every_route_answers_as_documented_with_a_probe_failing() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let (tx, rx) = watch::channel(false);
        let probes = vec![
            ("cluster".to_owned(), probe(|| async { Ok(()) })),
            (
                "target".to_owned(),
                probe(|| async { Err("rpc down".to_owned()) }),
            ),
        ];
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), router(probes, None), rx)
            .await
            .unwrap();
        assert_eq!(get_status(addr, "/health").await.0, 200);

        let (code, response) = get_status(addr, "/ready").await;
        assert_eq!(code, 503, "{response}");
        assert!(response.contains("\"target\":\"rpc down\""), "{response}");
        assert!(response.contains("\"cluster\":\"ok\""), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let schema = mpc_openapi_check::response_schema(&doc, "/ready", 503).unwrap();
        assert_eq!(
            mpc_openapi_check::conforms(&doc, schema, &value, "/ready"),
            Ok(())
        );
        // The 200 schema admits only "ok": a failing probe's reason is no ready answer.
        let ready = mpc_openapi_check::response_schema(&doc, "/ready", 200).unwrap();
        assert!(mpc_openapi_check::conforms(&doc, ready, &value, "/ready").is_err());

        let (code, response) = get_status(addr, "/openapi.json").await;
        assert_eq!(code, 200, "{response}");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            doc
        );

        let (code, _) = get_status(addr, "/metrics").await;
        assert_eq!(code, 404);
        assert!(doc["paths"]["/metrics"]["get"]["responses"]["404"].is_object());

        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
