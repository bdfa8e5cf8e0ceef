//! Holds an HTTP face to its OpenAPI 3.1 document: the paths it names, the schema of each JSON
//! answer, its references, and whether a JSON value conforms to a schema.
//!
//! The coordinator, the party and the DVN relayer each serve such a document at
//! `/openapi.json`; their tests use this crate to keep the document and the answers the same.
//! The checker covers the part of JSON Schema those documents use and no more (see
//! [`conforms`]): a keyword outside it is ignored, so a document that starts using one needs
//! the checker extended first, or its answers go unchecked on that point.

use std::collections::BTreeSet;

use serde_json::{Number, Value};

/// Checks `value` against `schema`, the part of JSON Schema the documents use: boolean
/// schemas; `$ref` to a place in `doc` (`#/components/schemas/Name`), with any keyword beside
/// it applying too, as in JSON Schema 2020-12; `type` (one or several; an integer is also a
/// `number`); `enum`; `minimum`; `required`; `properties`; `additionalProperties` as `false`
/// (no field beyond `properties`), `true` or absent (any), or a schema every other field
/// conforms to; and `items`.
///
/// `at` names the value in the error (`/v1/status`, say); a nested value's error extends it
/// (`/v1/status.key_shares`, `/v1/nodes.nodes[0]`). The error is the first difference found.
pub fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: {value} is allowed by no schema")),
        Value::Object(_) => {}
        other => return Err(format!("{at}: {other} is not a schema")),
    }
    if let Some(reference) = schema.get("$ref") {
        let reference = reference
            .as_str()
            .ok_or_else(|| format!("{at}: the reference {reference} is not a string"))?;
        let target = resolve(doc, reference)
            .ok_or_else(|| format!("{at}: the reference {reference} resolves to nothing"))?;
        conforms(doc, target, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => return Err(format!("{at}: type {other} is not a type")),
        };
        let actual = type_of(value);
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
    if let (Some(Value::Number(min)), Value::Number(n)) = (schema.get("minimum"), value) {
        if below(n, min) {
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
            let others = schema.get("additionalProperties");
            for (name, field) in fields {
                let here = format!("{at}.{name}");
                match schema.get("properties").and_then(|p| p.get(name)) {
                    Some(property) => conforms(doc, property, field, &here)?,
                    None => match others {
                        None | Some(Value::Bool(true)) => {}
                        Some(Value::Bool(false)) => {
                            return Err(format!("{at}: the field {name:?} is not documented"))
                        }
                        Some(others) => conforms(doc, others, field, &here)?,
                    },
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

/// Checks that `doc` is an OpenAPI 3.1 document of exactly the `served` paths, each a GET
/// with a documented 200 answer (the HTTP faces serve GETs only), and that every `$ref` in it
/// resolves ([`check_refs`]). The error names the first difference.
pub fn check_document<'a>(
    doc: &Value,
    served: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.1") {
        return Err(format!("openapi {version:?}, expected 3.1"));
    }
    let served: BTreeSet<String> = served.into_iter().map(str::to_owned).collect();
    let documented = paths(doc);
    if documented != served {
        return Err(format!(
            "documented paths {documented:?}, served {served:?}"
        ));
    }
    for path in &documented {
        let item = &doc["paths"][path.as_str()];
        let methods: Vec<&String> = item
            .as_object()
            .into_iter()
            .flat_map(|i| i.keys())
            .collect();
        if methods != ["get"] {
            return Err(format!("{path}: methods {methods:?}, every route is a GET"));
        }
        if !item["get"]["responses"]["200"].is_object() {
            return Err(format!("{path}: no 200 answer documented"));
        }
    }
    check_refs(doc)
}

/// The paths `doc` documents (the keys of its `paths`), empty when it has none.
pub fn paths(doc: &Value) -> BTreeSet<String> {
    doc.get("paths")
        .and_then(Value::as_object)
        .map(|paths| paths.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schema `doc` gives the `application/json` body of the answer `status` to a GET of
/// `path`: the HTTP faces it describes serve GETs only. `None` when that path, that status or a
/// JSON body of it is not documented (a `text/plain` answer has none).
pub fn response_schema<'a>(doc: &'a Value, path: &str, status: u16) -> Option<&'a Value> {
    doc.get("paths")?
        .get(path)?
        .get("get")?
        .get("responses")?
        .get(status.to_string())?
        .get("content")?
        .get("application/json")?
        .get("schema")
}

/// Checks that every `$ref` in `doc` is a string naming a place in `doc` itself. The error
/// lists each one that does not, by where it stands (a JSON pointer into `doc`).
pub fn check_refs(doc: &Value) -> Result<(), String> {
    let mut unresolved = Vec::new();
    find_unresolved(doc, doc, "#", &mut unresolved);
    if unresolved.is_empty() {
        Ok(())
    } else {
        Err(unresolved.join("; "))
    }
}

/// The value a local reference (`#/components/schemas/Name`) points at. The documents are
/// self-contained, so a reference to another document resolves to nothing.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn find_unresolved(doc: &Value, node: &Value, at: &str, unresolved: &mut Vec<String>) {
    match node {
        Value::Object(fields) => {
            for (key, field) in fields {
                // A pointer escapes `~` and `/`, and path keys are full of slashes.
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key != "$ref" {
                    find_unresolved(doc, field, &here, unresolved);
                    continue;
                }
                match field.as_str() {
                    Some(reference) if resolve(doc, reference).is_some() => {}
                    Some(reference) => {
                        unresolved.push(format!("{here}: {reference} resolves to nothing"));
                    }
                    None => unresolved.push(format!("{here}: {field} is not a string")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_unresolved(doc, item, &format!("{at}/{i}"), unresolved);
            }
        }
        _ => {}
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `n` is below `min`, exactly for integers (through `f64` only when one of them is a
/// fraction or they fit no common integer type).
fn below(n: &Number, min: &Number) -> bool {
    if let (Some(n), Some(min)) = (n.as_i64(), min.as_i64()) {
        return n < min;
    }
    if let (Some(n), Some(min)) = (n.as_u64(), min.as_u64()) {
        return n < min;
    }
    match (n.as_f64(), min.as_f64()) {
        (Some(n), Some(min)) => n < min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/health": {
                    "get": {
                        "responses": {
                            "200": {
                                "description": "Alive.",
                                "content": {
                                    "application/json": {
                                        "schema": { "$ref": "#/components/schemas/Health" }
                                    }
                                }
                            }
                        }
                    }
                },
                "/metrics": {
                    "get": {
                        "responses": {
                            "200": {
                                "description": "Metrics.",
                                "content": { "text/plain": { "schema": { "type": "string" } } }
                            }
                        }
                    }
                }
            },
            "components": {
                "schemas": {
                    "Id": { "type": "integer", "minimum": 1 },
                    "Health": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["status", "id"],
                        "properties": {
                            "status": { "type": "string", "enum": ["ok"] },
                            "id": { "$ref": "#/components/schemas/Id" },
                            "tags": { "type": "array", "items": { "type": "string" } }
                        }
                    },
                    "Probes": {
                        "type": "object",
                        "additionalProperties": { "type": "string" }
                    }
                }
            }
        })
    }

    fn health(value: Value) -> Result<(), String> {
        let doc = doc();
        let schema = json!({ "$ref": "#/components/schemas/Health" });
        conforms(&doc, &schema, &value, "/health")
    }

    fn refused(result: Result<(), String>, why: &str) {
        let err = result.unwrap_err();
        assert!(err.contains(why), "{err} does not say {why:?}");
    }

    #[test]
    fn a_conforming_value_passes() {
        assert_eq!(health(json!({ "status": "ok", "id": 3 })), Ok(()));
        assert_eq!(
            health(json!({ "status": "ok", "id": 3, "tags": ["a", "b"] })),
            Ok(())
        );
    }

    #[test]
    fn a_missing_required_field_is_refused() {
        refused(health(json!({ "status": "ok" })), "\"id\" is missing");
    }

    #[test]
    fn an_undocumented_field_is_refused() {
        refused(
            health(json!({ "status": "ok", "id": 3, "extra": 1 })),
            "\"extra\" is not documented",
        );
    }

    #[test]
    fn a_wrong_type_is_refused_where_it_stands() {
        refused(health(json!({ "status": "ok", "id": "3" })), "/health.id");
        refused(
            health(json!({ "status": "ok", "id": 3, "tags": ["a", 2] })),
            "/health.tags[1]: integer 2, documented as",
        );
        refused(health(json!([])), "documented as");
    }

    #[test]
    fn an_integer_is_a_number_but_a_fraction_is_no_integer() {
        let doc = doc();
        let number = json!({ "type": "number" });
        assert_eq!(conforms(&doc, &number, &json!(3), "n"), Ok(()));
        let integer = json!({ "type": ["integer", "null"] });
        assert_eq!(conforms(&doc, &integer, &Value::Null, "n"), Ok(()));
        refused(conforms(&doc, &integer, &json!(1.5), "n"), "documented as");
    }

    #[test]
    fn an_enum_miss_is_refused() {
        refused(health(json!({ "status": "bad", "id": 3 })), "is not one of");
    }

    #[test]
    fn a_value_below_the_minimum_is_refused() {
        refused(health(json!({ "status": "ok", "id": 0 })), "minimum");
        refused(health(json!({ "status": "ok", "id": -1 })), "minimum");
    }

    #[test]
    fn an_unresolved_ref_is_refused() {
        let doc = doc();
        let schema = json!({ "$ref": "#/components/schemas/Nothing" });
        refused(
            conforms(&doc, &schema, &json!({}), "x"),
            "resolves to nothing",
        );
        let elsewhere = json!({ "$ref": "other.json#/components/schemas/Health" });
        refused(
            conforms(&doc, &elsewhere, &json!({}), "x"),
            "resolves to nothing",
        );
    }

    #[test]
    fn additional_properties_may_be_a_schema() {
        let doc = doc();
        let schema = json!({ "$ref": "#/components/schemas/Probes" });
        let probes = json!({ "cluster": "ok", "target": "rpc down" });
        assert_eq!(conforms(&doc, &schema, &probes, "/ready"), Ok(()));
        assert_eq!(conforms(&doc, &schema, &json!({}), "/ready"), Ok(()));
        refused(
            conforms(&doc, &schema, &json!({ "cluster": true }), "/ready"),
            "/ready.cluster: boolean true, documented as",
        );
        let open = json!({ "type": "object", "properties": {} });
        assert_eq!(conforms(&doc, &open, &json!({ "any": 1 }), "x"), Ok(()));
    }

    #[test]
    fn boolean_schemas_allow_everything_or_nothing() {
        let doc = doc();
        assert_eq!(
            conforms(&doc, &json!(true), &json!({ "a": 1 }), "x"),
            Ok(())
        );
        refused(conforms(&doc, &json!(false), &json!(1), "x"), "no schema");
    }

    #[test]
    fn paths_are_the_documented_paths() {
        let expected: BTreeSet<String> = ["/health", "/metrics"].map(String::from).into();
        assert_eq!(paths(&doc()), expected);
        assert!(paths(&json!({})).is_empty());
    }

    #[test]
    fn the_response_schema_is_the_json_one_of_that_status() {
        let doc = doc();
        assert_eq!(
            response_schema(&doc, "/health", 200),
            Some(&json!({ "$ref": "#/components/schemas/Health" }))
        );
        assert_eq!(response_schema(&doc, "/health", 503), None);
        assert_eq!(response_schema(&doc, "/metrics", 200), None);
        assert_eq!(response_schema(&doc, "/nowhere", 200), None);
    }

    #[test]
    fn check_refs_names_every_unresolved_ref() {
        assert_eq!(check_refs(&doc()), Ok(()));
        let mut broken = doc();
        broken["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"] = json!({ "$ref": "#/components/schemas/Gone" });
        broken["components"]["schemas"]["Health"]["properties"]["id"] = json!({ "$ref": 1 });
        let err = check_refs(&broken).unwrap_err();
        assert!(
            err.contains(
                "#/paths/~1health/get/responses/200/content/application~1json/schema/$ref: \
                 #/components/schemas/Gone resolves to nothing"
            ),
            "{err}"
        );
        assert!(
            err.contains("#/components/schemas/Health/properties/id/$ref: 1 is not a string"),
            "{err}"
        );
    }

    #[test]
    fn a_document_must_describe_exactly_the_served_routes_each_a_get() {
        let doc = doc();
        assert_eq!(check_document(&doc, ["/metrics", "/health"]), Ok(()));
        refused(check_document(&doc, ["/health"]), "documented paths");
        refused(
            check_document(&doc, ["/health", "/metrics", "/ready"]),
            "served",
        );
        let mut post = doc.clone();
        post["paths"]["/metrics"]["post"] = json!({});
        refused(
            check_document(&post, ["/health", "/metrics"]),
            "every route is a GET",
        );
        let mut no_ok = doc.clone();
        no_ok["paths"]["/metrics"]["get"]["responses"] = json!({ "404": {} });
        refused(check_document(&no_ok, ["/health", "/metrics"]), "no 200");
        let mut old = doc.clone();
        old["openapi"] = json!("3.0.3");
        refused(
            check_document(&old, ["/health", "/metrics"]),
            "expected 3.1",
        );
        let mut broken = doc;
        broken["components"]["schemas"]["Health"]["properties"]["id"] =
            json!({ "$ref": "#/components/schemas/Gone" });
        refused(
            check_document(&broken, ["/health", "/metrics"]),
            "resolves to nothing",
        );
    }
}
