//! What operators touch: HTTP health and metrics, mpcctl, membership changes.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use mpc_tests::{binary, http_get, Cluster};

#[tokio::test]
async fn health_readiness_metrics_and_status_over_http() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    for id in 1..=3 {
        let addr = cluster.http(id);
        for path in ["/health", "/-/healthy", "/ready"] {
            let (code, _) = http_get(addr, path).await?;
            assert_eq!(code, 200, "{path} on node {id}");
        }
        let (code, body) = http_get(addr, "/v1/cluster").await?;
        assert_eq!(code, 200);
        let view: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(view["id"], id);
        assert_eq!(view["leader"], leader);
        assert_eq!(view["members"], serde_json::json!([1, 2, 3]));
        assert!(view["term"].as_u64().unwrap_or(0) >= 1);
        assert!(view["last_applied"].as_u64().is_some());

        let (_, nodes) = http_get(addr, "/v1/nodes").await?;
        let nodes: serde_json::Value = serde_json::from_str(&nodes)?;
        assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3));
    }
    let (code, metrics) = http_get(cluster.http(leader), "/metrics").await?;
    assert_eq!(code, 200);
    for name in [
        "mpc_raft_has_leader 1",
        "mpc_raft_is_leader 1",
        "mpc_raft_term ",
        "mpc_raft_leader_changes_total",
        "mpc_raft_commit_index",
        "mpc_raft_applied_index",
        "mpc_raft_log_fsync_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // The node's own certificate, issued by the harness's PKI for DEFAULT_LEAF_VALIDITY when
    // the cluster was made: its expiry is that far from the issuance, so a little before
    // now + validity (an hour allows for a slow start).
    let series = format!(
        "{}{{role=\"coordinator\",name=\"{leader}\"}} ",
        mpc_tls::CERTIFICATE_EXPIRY
    );
    let not_after: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .ok_or_else(|| anyhow::anyhow!("{series}missing from /metrics:\n{metrics}"))?
        .parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let validity = mpc_tls::pki::DEFAULT_LEAF_VALIDITY.as_secs_f64();
    assert!(
        not_after > now + validity - 3600.0 && not_after <= now + validity,
        "certificate expiry {not_after} is not about {validity} s after now ({now})"
    );
    Ok(())
}

#[tokio::test]
async fn readiness_fails_without_a_quorum() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &others {
        cluster.kill(id)?;
    }
    // The lone node loses its leadership once its lease runs out, and says it is not ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, _) = http_get(cluster.http(leader), "/ready").await?;
        if code == 503 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "still ready without a quorum"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = http_get(cluster.http(leader), "/health").await?;
    assert_eq!(code, 200, "alive even when not ready");
    Ok(())
}

fn mpcctl(cluster: &Cluster, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let endpoints = cluster
        .running()
        .iter()
        .map(|&id| cluster.grpc(id))
        .collect::<Vec<_>>()
        .join(",");
    let admin = mpc_tls::pki::leaf_paths(cluster.pki_dir(), mpc_tls::Role::Client, "admin");
    let out = Command::new(binary("mpcctl")?)
        .env("MPC_CA_CERT", mpc_tls::pki::ca_cert_path(cluster.pki_dir()))
        .env("MPC_CLIENT_CERT", admin.cert)
        .env("MPC_CLIENT_KEY", admin.key)
        .arg("--endpoints")
        .arg(endpoints)
        .args(["--output", "json", "--timeout", "15s"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "mpcctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test]
async fn mpcctl_reports_status_and_grows_the_cluster() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;

    let status = mpcctl(&cluster, &["cluster", "status"])?;
    assert_eq!(status["leader"], leader);
    assert_eq!(status["members"], serde_json::json!([1, 2, 3]));
    assert!(status["term"].as_u64().is_some());
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert_eq!(n["role"], "voter");
        assert_eq!(n["ready"], true);
        assert!(n["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")));
        assert!(n["id"].as_u64().is_some());
    }

    // A fourth node joins as a learner, then becomes a voter.
    cluster.add_node_slot(4)?;
    cluster.spawn(4, false)?;
    let grpc = cluster.grpc(4);
    let http = cluster.http(4).to_string();
    let raft = cluster.raft(4).to_string();
    let added = mpcctl(
        &cluster,
        &[
            "cluster",
            "add-learner",
            "--node-id",
            "4",
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &http,
            "--raft-addr",
            &raft,
            "--wait",
        ],
    )?;
    assert_eq!(added["learners"], serde_json::json!([4]));
    let changed = mpcctl(
        &cluster,
        &["cluster", "change-membership", "--voters", "1,2,3,4"],
    )?;
    assert_eq!(changed["members"], serde_json::json!([1, 2, 3, 4]));
    cluster.wait_ready(&[4], Duration::from_secs(10)).await?;
    let status = mpcctl(&cluster, &["cluster", "status"])?;
    assert_eq!(status["members"], serde_json::json!([1, 2, 3, 4]));

    let sessions = mpcctl(&cluster, &["session", "list"])?;
    assert_eq!(sessions["sessions"], serde_json::json!([]));

    // Parties: listed (the cluster enrols three of its own at start), and one by name.
    let _parties = mpc_tests::Parties::start(&cluster, 1).await?;
    let listed = mpcctl(&cluster, &["party", "list"])?;
    assert_eq!(listed["next_page_token"], serde_json::Value::Null);
    let listed = listed["parties"].as_array().cloned().unwrap_or_default();
    let attached = listed
        .iter()
        .find(|p| p["party_id"] == "party-1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(attached["status"], "online", "{listed:?}");
    // A page at a time, as every listing pages: the pages add up to the whole list.
    let first = mpcctl(&cluster, &["party", "list", "--limit", "1"])?;
    assert_eq!(
        first["parties"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    let token = first["next_page_token"]
        .as_str()
        .context("a first page of one party ends with a page token")?;
    let rest = mpcctl(&cluster, &["party", "list", "--page-token", token])?;
    assert_eq!(rest["next_page_token"], serde_json::Value::Null);
    let paged: Vec<_> = first["parties"]
        .as_array()
        .into_iter()
        .chain(rest["parties"].as_array())
        .flatten()
        .map(|p| p["party_id"].clone())
        .collect();
    let whole: Vec<_> = listed.iter().map(|p| p["party_id"].clone()).collect();
    assert_eq!(paged, whole);
    let err = mpcctl(&cluster, &["party", "list", "--page-token", "no/such"]).unwrap_err();
    assert!(err.to_string().contains("page_token"), "{err}");
    let party = mpcctl(&cluster, &["party", "get", "party-1"])?;
    for field in ["party_id", "status", "signing_public_key", "enrolled_by"] {
        assert_eq!(party[field], attached[field], "{field}");
    }
    let err = mpcctl(&cluster, &["party", "get", "party-9"]).unwrap_err();
    assert!(
        err.to_string().contains("no party \"party-9\" is enrolled"),
        "{err}"
    );
    Ok(())
}

#[test]
fn mpcctl_prints_completion_scripts() -> anyhow::Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(binary("mpcctl")?)
            .args(["completions", shell])
            .output()?;
        anyhow::ensure!(out.status.success(), "completions {shell} failed");
        let script = String::from_utf8(out.stdout)?;
        for word in ["mpcctl", "keygen", "add-learner", "output"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn grpc_health_and_reflection_answer_like_grpcurl_expects() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let cluster = Cluster::start(3, &[]).await?;
    let mut health = HealthClient::new(cluster.channel(2)?);
    for service in ["", "mpc.v1.Sessions", "mpc.v1.Keys", "mpc.v1.Cluster"] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(cluster.channel(2)?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer = answers
        .message()
        .await?
        .and_then(|a| a.message_response)
        .ok_or_else(|| anyhow::anyhow!("no reflection answer"))?;
    let MessageResponse::ListServicesResponse(list) = answer else {
        anyhow::bail!("unexpected reflection answer: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "mpc.v1.Sessions",
        "mpc.v1.Keys",
        "mpc.v1.Cluster",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    Ok(())
}
