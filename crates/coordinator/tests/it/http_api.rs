//! The HTTP face answers as its OpenAPI document (`/openapi.json`) says: every path, every
//! status code a node gave, every field of every JSON body, and nothing undocumented.

use std::time::{Duration, Instant};

use mpc_coordinator::http::OPENAPI;
use mpc_coordinator::test_utils::{http_get, InProcessCluster};
use serde_json::Value;

/// Checks `value` against `schema`, the part of JSON Schema the document uses: `$ref` to
/// its components, `type` (one or several), `enum`, integer `minimum`, `required`,
/// `properties` with `additionalProperties: false`, and `items`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: reference {reference} is not to a component"))?;
        let target = &doc["components"]["schemas"][name];
        if !target.is_object() {
            return Err(format!("{at}: reference {reference} resolves to nothing"));
        }
        return conforms(doc, target, value, at);
    }
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => return Err(format!("{at}: type {other} is not a type")),
        };
        let number_ok = actual == "integer" && allowed.contains(&"number");
        if !allowed.contains(&actual) && !number_ok {
            return Err(format!("{at}: {actual} {value}, documented as {allowed:?}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(value) {
            return Err(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_u64),
        value.as_u64(),
    ) {
        if n < min {
            return Err(format!("{at}: {n} is below the documented minimum {min}"));
        }
    }
    match value {
        Value::Object(fields) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    return Err(format!("{at}: the required field {name:?} is missing"));
                }
            }
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (name, field) in fields {
                match schema.get("properties").and_then(|p| p.get(name)) {
                    Some(property) => conforms(doc, property, field, &format!("{at}.{name}"))?,
                    None if closed => {
                        return Err(format!("{at}: the field {name:?} is not documented"))
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, element) in items.iter().enumerate() {
                    conforms(doc, item, element, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks one answer of `path` against the document: its code is documented, and a JSON
/// body conforms to the schema given for that code.
fn answers_as_documented(doc: &Value, path: &str, code: u16, body: &str) -> Result<(), String> {
    let response = &doc["paths"][path]["get"]["responses"][code.to_string()];
    if !response.is_object() {
        return Err(format!("{path}: status {code} is not documented"));
    }
    let content = &response["content"];
    if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
        let value: Value = serde_json::from_str(body)
            .map_err(|e| format!("{path}: {code} documented as JSON, got {e}: {body}"))?;
        conforms(doc, schema, &value, path)?;
    } else if content.get("text/plain").is_none() {
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
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
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
