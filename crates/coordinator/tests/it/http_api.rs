//! The HTTP face answers as its OpenAPI document (`/openapi.json`) says: every path, every
//! status code a node gave, every field of every JSON body, and nothing undocumented.

use std::time::{Duration, Instant};

use mpc_coordinator::http::OPENAPI;
use mpc_coordinator::test_utils::{http_get, InProcessCluster};
use mpc_openapi_check::{conforms, paths, response_schema};
use serde_json::Value;

/// Checks one answer of `path` against the document: its code is documented, and a JSON
/// body conforms to the schema given for that code.
fn answers_as_documented(doc: &Value, path: &str, code: u16, body: &str) -> Result<(), String> {
    let response = &doc["paths"][path]["get"]["responses"][code.to_string()];
    if !response.is_object() {
        return Err(format!("{path}: status {code} is not documented"));
    }
    if let Some(schema) = response_schema(doc, path, code) {
        let value: Value = serde_json::from_str(body)
            .map_err(|e| format!("{path}: {code} documented as JSON, got {e}: {body}"))?;
        conforms(doc, schema, &value, path)?;
    } else if response["content"].get("text/plain").is_none() {
        return Err(format!("{path}: {code} has no documented content"));
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_the_document_does_not_allow() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let health = |body: &str| answers_as_documented(&doc, "/health", 200, body);
    assert_eq!(
        health(r#"{"status":"ok","role":"coordinator","id":3}"#),
        Ok(())
    );
    for (body, why) in [
        (r#"{"status":"ok","role":"coordinator"}"#, "missing"),
        (
            r#"{"status":"ok","role":"coordinator","id":3,"x":1}"#,
            "not documented",
        ),
        (
            r#"{"status":"ok","role":"coordinator","id":"3"}"#,
            "documented as",
        ),
        (
            r#"{"status":"bad","role":"coordinator","id":3}"#,
            "not one of",
        ),
        (r#"{"status":"ok","role":"coordinator","id":0}"#, "minimum"),
        ("not json", "documented as JSON"),
    ] {
        let err = health(body).unwrap_err();
        assert!(err.contains(why), "{body}: {err}");
    }
    let err = answers_as_documented(&doc, "/health", 503, "{}").unwrap_err();
    assert!(err.contains("not documented"), "{err}");
    let err = answers_as_documented(&doc, "/v1/nodes", 200, r#"{"leader":1,"nodes":[{"id":1}]}"#)
        .unwrap_err();
    assert!(err.contains("/v1/nodes.nodes[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_its_openapi_document_says() -> anyhow::Result<()> {
    let doc: Value = serde_json::from_str(OPENAPI)?;
    let paths = paths(&doc);
    anyhow::ensure!(!paths.is_empty(), "the document names no paths");
    let mut cluster = InProcessCluster::start(3).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let follower = cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap_or(1);
    for id in [leader, follower] {
        for path in &paths {
            let (code, body) = http_get(cluster.http(id)?, path).await?;
            answers_as_documented(&doc, path, code, &body)
                .map_err(|e| anyhow::anyhow!("node {id}: {e}"))?;
        }
        // The document served is the document built in.
        let (_, served) = http_get(cluster.http(id)?, "/openapi.json").await?;
        assert_eq!(serde_json::from_str::<Value>(&served)?, doc);
    }

    // A node left alone loses its leader: /ready says 503, in the documented shape.
    let survivor = follower;
    for id in cluster.running() {
        if id != survivor {
            cluster.stop(id).await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = http_get(cluster.http(survivor)?, "/ready").await?;
        if code != 200 || Instant::now() > deadline {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 503, "{body}");
    answers_as_documented(&doc, "/ready", code, &body).map_err(anyhow::Error::msg)?;
    for path in ["/v1/cluster", "/v1/nodes", "/health"] {
        let (code, body) = http_get(cluster.http(survivor)?, path).await?;
        answers_as_documented(&doc, path, code, &body).map_err(anyhow::Error::msg)?;
    }
    cluster.shutdown().await
}
