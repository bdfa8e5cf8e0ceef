//! The public API's contract: idempotent creates, field-naming errors, watches.

use std::time::Duration;

use mpc_proto::v1 as pb;
use mpc_tests::{approve, keygen_request, with_policy, Cluster};
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn a_retried_request_id_returns_the_same_session_on_any_node() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let first = cluster
        .sessions(1)?
        .create_keygen(keygen_request("retry-me"))
        .await?
        .into_inner();
    assert!(first.created);
    for via in [2, 3, 1] {
        let again = cluster
            .sessions(via)?
            .create_keygen(keygen_request("retry-me"))
            .await?
            .into_inner();
        assert!(!again.created);
        assert_eq!(again.session, first.session, "via node {via}");
    }
    // Only one session exists.
    let list = cluster
        .sessions(2)?
        .list_sessions(pb::ListSessionsRequest::default())
        .await?
        .into_inner();
    assert_eq!(list.sessions.len(), 1);

    // The same id with other parameters is refused, naming the id.
    let mut other = keygen_request("retry-me");
    other.threshold = 3;
    let other = with_policy(other);
    let err = cluster.sessions(3)?.create_keygen(other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("request_id"), "{}", err.message());
    Ok(())
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let mut sessions = cluster.sessions(2)?;

    let cases: Vec<(&str, pb::CreateKeygenRequest)> = vec![
        (
            "scheme",
            pb::CreateKeygenRequest {
                scheme: "rsa".into(),
                ..keygen_request("")
            },
        ),
        (
            "threshold",
            pb::CreateKeygenRequest {
                threshold: 4,
                ..keygen_request("")
            },
        ),
        (
            "threshold",
            pb::CreateKeygenRequest {
                threshold: 1,
                ..keygen_request("")
            },
        ),
        (
            "parties[2]",
            pb::CreateKeygenRequest {
                parties: vec!["a".into(), "b".into(), "a".into()],
                ..keygen_request("")
            },
        ),
        ("request_id", keygen_request("has space")),
        (
            "description",
            pb::CreateKeygenRequest {
                description: "x".repeat(5000),
                ..keygen_request("")
            },
        ),
        (
            "timeout_seconds",
            pb::CreateKeygenRequest {
                timeout_seconds: 999_999,
                ..keygen_request("")
            },
        ),
    ];
    for (field, req) in cases {
        let err = sessions.create_keygen(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().contains(field),
            "{field} not named in {:?}",
            err.message()
        );
    }

    let err = sessions
        .create_signing(pb::CreateSigningRequest {
            key_id: "k1".into(),
            digest: vec![0; 31],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("digest") && err.message().contains("32"));

    // Well formed, but the key does not exist: NotFound naming it.
    let err = sessions
        .create_signing(approve(pb::CreateSigningRequest {
            key_id: "no-such-key".into(),
            digest: vec![0; 32],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("no-such-key"));

    let err = sessions
        .list_sessions(pb::ListSessionsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_size"));

    let err = sessions
        .list_sessions(pb::ListSessionsRequest {
            page_token: "not a token/..".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"), "{err}");

    let err = sessions
        .get_session(pb::GetSessionRequest {
            session_id: "../etc".into(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("session_id"));

    // Nothing invalid reached the log.
    let list = sessions
        .list_sessions(pb::ListSessionsRequest::default())
        .await?
        .into_inner();
    assert!(list.sessions.is_empty());
    Ok(())
}

#[tokio::test]
async fn listing_pages_and_watching_a_session() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let mut sessions = cluster.sessions(3)?;
    let mut created = Vec::new();
    for i in 0..5 {
        let s = sessions
            .create_keygen(keygen_request(&format!("page-{i}")))
            .await?
            .into_inner();
        created.push(s.session.map(|s| s.session_id).unwrap_or_default());
    }
    let first = sessions
        .list_sessions(pb::ListSessionsRequest {
            page_size: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(first.sessions.len(), 3);
    assert_eq!(first.sessions[0].session_id, created[4], "newest first");
    let second = sessions
        .list_sessions(pb::ListSessionsRequest {
            page_size: 3,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(second.sessions.len(), 2);
    assert!(second.next_page_token.is_empty());

    let mut watch = cluster
        .sessions(1)?
        .watch_session(pb::WatchSessionRequest {
            session_id: created[0].clone(),
        })
        .await?
        .into_inner();
    let current = tokio::time::timeout(Duration::from_secs(5), watch.next()).await?;
    let current = current.ok_or_else(|| anyhow::anyhow!("watch ended at once"))??;
    assert_eq!(current.session_id, created[0]);
    assert_eq!(current.status, pb::SessionStatus::Pending as i32);

    let err = cluster
        .sessions(1)?
        .watch_session(pb::WatchSessionRequest {
            session_id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}
