//! Limits against a real coordinator: each principal's call rate and open watches are bounded
//! (RESOURCE_EXHAUSTED naming the setting, other principals unaffected), and finished history
//! is forgotten after the retention age.

use std::time::{Duration, Instant};

use mpc_proto::v1 as pb;
use mpc_proto::v1::access_client::AccessClient;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tests::{http_get, keygen_request, Cluster};
use mpc_types::AccessRole;
use tonic::Code;

#[tokio::test]
async fn each_principal_has_its_own_rate_and_watch_budget() -> anyhow::Result<()> {
    let cluster = Cluster::start(
        1,
        &[
            ("MPC_LIMITS__REQUESTS_PER_SECOND", "5"),
            ("MPC_LIMITS__BURST", "40"),
            ("MPC_LIMITS__MAX_WATCH_STREAMS", "2"),
        ],
    )
    .await?;
    let reader = cluster.client_credentials("reader-a", AccessRole::Reader)?;
    let mut status = ClusterClient::new(cluster.channel_as(1, &reader)?);
    let mut admitted = 0;
    let refused = loop {
        match status.get_status(pb::GetStatusRequest {}).await {
            Ok(_) => admitted += 1,
            Err(e) => break e,
        }
        assert!(
            admitted < 100,
            "100 calls in a burst of 40 were all admitted"
        );
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("limits.requests_per_second"),
        "{}",
        refused.message()
    );
    assert!(admitted >= 40, "only {admitted} calls admitted");
    // Another principal is not slowed down by reader-a.
    let other = cluster.client_credentials("reader-b", AccessRole::Reader)?;
    ClusterClient::new(cluster.channel_as(1, &other)?)
        .get_status(pb::GetStatusRequest {})
        .await?;

    // A keygen whose parties never connect stays pending: something to watch.
    let session = SessionsClient::new(cluster.channel(1)?)
        .create_keygen(keygen_request("watched"))
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("no session in the answer"))?;
    let watcher = cluster.client_credentials("watcher", AccessRole::Reader)?;
    let mut sessions = SessionsClient::new(cluster.channel_as(1, &watcher)?);
    let watch = || pb::WatchSessionRequest {
        session_id: session.session_id.clone(),
    };
    let first = sessions.watch_session(watch()).await?.into_inner();
    let _second = sessions.watch_session(watch()).await?.into_inner();
    let refused = sessions.watch_session(watch()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("limits.max_watch_streams"),
        "{}",
        refused.message()
    );
    // Closing a watch gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sessions.watch_session(watch()).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => anyhow::bail!("the closed watch was not given back: {e}"),
        }
    }
    let (_, metrics) = http_get(cluster.http(1), "/metrics").await?;
    assert!(
        metrics.contains("mpc_limit_refusals_total{limit=\"max_watch_streams\"}"),
        "no refusal metric"
    );
    Ok(())
}

#[tokio::test]
async fn finished_sessions_and_their_request_ids_are_forgotten_after_the_retention_age(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(
        1,
        &[
            ("MPC_SESSIONS__RETENTION_SECS", "2"),
            ("MPC_SESSIONS__RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await?;
    let mut sessions = SessionsClient::new(cluster.channel(1)?);
    let mut request = keygen_request("short-lived");
    request.timeout_seconds = 1;
    let first = sessions
        .create_keygen(request.clone())
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("no session in the answer"))?;
    let get = pb::GetSessionRequest {
        session_id: first.session_id.clone(),
        ..Default::default()
    };

    // Its parties never connect: it expires after a second, and is pruned two seconds later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_finished = false;
    loop {
        match sessions.get_session(get.clone()).await {
            Ok(s) => saw_finished |= s.into_inner().status == pb::SessionStatus::Expired as i32,
            Err(e) if e.code() == Code::NotFound => break,
            Err(e) => return Err(e.into()),
        }
        anyhow::ensure!(Instant::now() < deadline, "session never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        saw_finished,
        "the session was gone before it was seen finished"
    );
    let listed = sessions
        .list_sessions(pb::ListSessionsRequest {
            key_id: request.key_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed.sessions.is_empty(), "{:?}", listed.sessions);

    // The request id is forgotten with it: the same request now makes a new session.
    let again = sessions.create_keygen(request).await?.into_inner();
    assert!(again.created);
    assert_ne!(
        again.session.map(|s| s.session_id),
        Some(first.session_id.clone())
    );

    // The prune is in the audit log, by the retention run.
    let audit = AccessClient::new(cluster.channel(1)?)
        .list_audit(pb::ListAuditRequest::default())
        .await?
        .into_inner();
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.action == "retention.prune" && e.actor == "retention"),
        "no prune in the audit log"
    );
    let (_, metrics) = http_get(cluster.http(1), "/metrics").await?;
    assert!(metrics.contains("mpc_retention_pruned_total{kind=\"session\"}"));
    Ok(())
}
