//! Who gets in, and what they may do, against real coordinator processes: TLS on every link,
//! principals from certificates and tokens, deny by default, and a Raft port for members only.

use std::time::Duration;

use mpc_client::Credentials;
use mpc_proto::raft::v1::raft_client::RaftClient;
use mpc_proto::raft::v1::Payload;
use mpc_proto::v1 as pb;
use mpc_proto::v1::access_client::AccessClient;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tests::{admin_signing_key, approve, issue, keygen_request, Cluster};
use mpc_tls::{pki, Role};
use mpc_types::{token, AccessRole};
use tonic::Code;

fn signing_request(key_id: &str) -> pb::CreateSigningRequest {
    approve(pb::CreateSigningRequest {
        key_id: key_id.into(),
        digest: vec![7; 32],
        ..Default::default()
    })
}

async fn who(
    cluster: &Cluster,
    credentials: &Credentials,
) -> Result<pb::WhoAmIResponse, tonic::Status> {
    let channel = cluster
        .channel_as(1, credentials)
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    AccessClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

/// The call never reached a service: the connection failed (handshake refused or closed).
fn refused_by_transport(err: &tonic::Status) -> bool {
    std::error::Error::source(err)
        .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some())
}

#[tokio::test]
async fn strangers_are_refused_before_any_rpc() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    cluster.leader(Duration::from_secs(10)).await?;

    // Plain text to the TLS listeners: the connection dies in the handshake.
    let plain = Credentials::insecure_plaintext();
    let err = who(&cluster, &plain).await.unwrap_err();
    assert!(refused_by_transport(&err), "{err:?}");

    // TLS, but no credential at all.
    let anonymous = cluster.token_credentials(None)?;
    let err = who(&cluster, &anonymous).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("no credential"), "{err}");

    // A token that was never issued.
    let forged = token::format("0123456789abcdef", &[1; 32]);
    let err = who(&cluster, &cluster.token_credentials(Some(&forged))?)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // A client certificate of another CA: the handshake fails.
    let other = tempfile::tempdir()?;
    pki::init(other.path())?;
    let stranger = issue(other.path(), Role::Client, "admin", Some(AccessRole::Admin))?;
    let foreign = Credentials::tls(
        pki::ca_cert_path(cluster.pki_dir()),
        Some((stranger.cert, stranger.key)),
        None,
    )?;
    let err = who(&cluster, &foreign).await.unwrap_err();
    assert!(refused_by_transport(&err), "{err:?}");

    // Health stays open, for probes.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(cluster.channel_as(1, &anonymous)?);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn roles_decide_who_signs_makes_keys_and_reconfigures() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    cluster.leader(Duration::from_secs(10)).await?;
    let reader = cluster.client_credentials("auditor", AccessRole::Reader)?;
    let operator = cluster.client_credentials("ops", AccessRole::Operator)?;

    assert_eq!(who(&cluster, &reader).await?.principal, "client:auditor");
    let denied = |e: tonic::Status| {
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        e.message().to_owned()
    };

    // A reader reads, and nothing more.
    SessionsClient::new(cluster.channel_as(1, &reader)?)
        .list_sessions(pb::ListSessionsRequest::default())
        .await?;
    let msg = denied(
        SessionsClient::new(cluster.channel_as(1, &reader)?)
            .create_signing(signing_request("k1"))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("signer"), "{msg}");
    denied(
        SessionsClient::new(cluster.channel_as(2, &reader)?)
            .create_keygen(keygen_request("reader-keygen"))
            .await
            .unwrap_err(),
    );

    // An operator makes keys but neither signs nor changes the membership or tokens.
    SessionsClient::new(cluster.channel_as(2, &operator)?)
        .create_keygen(keygen_request("operator-keygen"))
        .await?;
    denied(
        SessionsClient::new(cluster.channel_as(2, &operator)?)
            .create_signing(signing_request("k1"))
            .await
            .unwrap_err(),
    );
    let msg = denied(
        ClusterClient::new(cluster.channel_as(3, &operator)?)
            .change_membership(pb::ChangeMembershipRequest {
                voters: vec![1, 2],
                retain: false,
            })
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("admin"), "{msg}");
    denied(
        AccessClient::new(cluster.channel_as(1, &operator)?)
            .list_tokens(pb::ListTokensRequest::default())
            .await
            .unwrap_err(),
    );
    // Nor enrols a party, even with a valid admin signature in hand: enrolment is an admin's
    // call on the API too.
    let identity = format!("{}{}", hex::encode([0x5au8; 32]), hex::encode([0x42u8; 32]));
    let signing = ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]);
    let identity = identity.replacen(
        &hex::encode([0x5au8; 32]),
        &hex::encode(signing.verifying_key().to_bytes()),
        1,
    );
    let enrolment = mpc_client::authority::enrol(&admin_signing_key(), "party-9", &identity)?;
    let msg = denied(
        pb::party_gateway_client::PartyGatewayClient::new(cluster.channel_as(1, &operator)?)
            .enroll(enrolment)
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("admin"), "{msg}");

    // A party's certificate has no client rights.
    let party = issue(cluster.pki_dir(), Role::Party, "party-1", None)?;
    let party = Credentials::tls(
        pki::ca_cert_path(cluster.pki_dir()),
        Some((party.cert, party.key)),
        None,
    )?;
    denied(
        SessionsClient::new(cluster.channel_as(1, &party)?)
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .unwrap_err(),
    );
    // ... and speaks only for itself.
    let msg = denied(
        pb::party_gateway_client::PartyGatewayClient::new(cluster.channel_as(1, &party)?)
            .register(pb::RegisterPartyRequest {
                party_id: "party-2".into(),
                signing_public_key: vec![1; 32],
                encryption_public_key: vec![2; 32],
                endpoint: "x:1".into(),
            })
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("party-2"), "{msg}");

    // The membership did not change.
    let status = ClusterClient::new(cluster.channel(1)?)
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.members, vec![1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn tokens_are_scoped_revocable_and_audited() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    cluster.leader(Duration::from_secs(10)).await?;

    let signer = cluster
        .make_token("hot-wallet-bot", AccessRole::Signer, &["k-hot"])
        .await?;
    let creds = cluster.token_credentials(Some(&signer))?;
    let me = who(&cluster, &creds).await?;
    assert_eq!(me.role, "signer");
    assert_eq!(me.keys, vec!["k-hot".to_owned()]);

    // Granted key: past authorisation (the key does not exist, so the write says so).
    let err = SessionsClient::new(cluster.channel_as(2, &creds)?)
        .create_signing(signing_request("k-hot"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    // Another key: refused, naming it.
    let err = SessionsClient::new(cluster.channel_as(2, &creds)?)
        .create_signing(signing_request("k-cold"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("k-cold"), "{err}");

    // Revoked: refused from then on, on every node.
    let token_id = token::id_of(&signer).map(str::to_owned).unwrap_or_default();
    AccessClient::new(cluster.channel(3)?)
        .revoke_token(pb::RevokeTokenRequest {
            token_id: token_id.clone(),
        })
        .await?;
    for node in 1..=3 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let channel = cluster.channel_as(node, &creds)?;
            match AccessClient::new(channel)
                .who_am_i(pb::WhoAmIRequest {})
                .await
            {
                Err(e) if e.code() == Code::Unauthenticated => {
                    assert!(e.message().contains("revoked"), "{e}");
                    break;
                }
                other => {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "node {node} still takes a revoked token: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    // The audit log names the principals, and its hash chain holds.
    let entries = AccessClient::new(cluster.channel(1)?)
        .list_audit(pb::ListAuditRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert!(entries
        .iter()
        .any(|e| e.action == "token.create" && e.actor == "client:admin"));
    assert!(entries
        .iter()
        .any(|e| e.action == "token.revoke" && e.subject == token_id));
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "chain broken at {}",
            pair[1].log_index
        );
    }
    // Nothing the audit shows holds the token's secret.
    let secret = signer.rsplit('_').next().unwrap_or_default();
    for e in &entries {
        assert!(!format!("{e:?}").contains(secret));
    }
    Ok(())
}

/// Sends `data` to node `node`'s Raft port as `Forward`, presenting `leaf` (or no
/// certificate).
async fn raft_forward(
    cluster: &Cluster,
    node: u64,
    leaf: Option<&pki::Issued>,
    data: Vec<u8>,
) -> anyhow::Result<Result<Payload, tonic::Status>> {
    let credentials = match leaf {
        Some(leaf) => Credentials::tls(
            pki::ca_cert_path(cluster.pki_dir()),
            Some((leaf.cert.clone(), leaf.key.clone())),
            None,
        )?,
        None => cluster.token_credentials(Some(&token::format("0123456789abcdef", &[0; 32])))?,
    };
    let channel = credentials.channel(&cluster.raft(node).to_string(), |e| {
        e.timeout(Duration::from_secs(5))
    })?;
    Ok(RaftClient::new(channel)
        .forward(tonic::Request::new(Payload { data }))
        .await
        .map(|r| r.into_inner()))
}

/// What a node that is not a member, or not a coordinator at all, gets from the Raft port.
#[tokio::test]
async fn the_raft_port_takes_member_coordinators_only() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let pki_dir = cluster.pki_dir();
    let strangers = [
        // The admin's client certificate is no coordinator's; a party's neither.
        pki::leaf_paths(pki_dir, Role::Client, "admin"),
        issue(pki_dir, Role::Party, "party-1", None)?,
        // A coordinator certificate of a node outside the membership.
        issue(pki_dir, Role::Coordinator, "9", None)?,
    ];
    for leaf in &strangers {
        let err = raft_forward(&cluster, leader, Some(leaf), vec![0])
            .await?
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "{}: {err}",
            leaf.cert.display()
        );
    }
    let err = raft_forward(&cluster, leader, Some(&strangers[2]), vec![0])
        .await?
        .unwrap_err();
    assert!(err.message().contains("not a member"), "{err}");
    // No certificate: the handshake itself fails (mutual TLS).
    let err = raft_forward(&cluster, leader, None, vec![0])
        .await?
        .unwrap_err();
    assert!(refused_by_transport(&err), "{err:?}");

    // A member (a compromised follower) may forward client writes, never the scheduler's.
    let follower = if leader == 1 { 2 } else { 1 };
    let forged = mpc_coordinator::peer::ForwardRequest::Write(Box::new(mpc_raft_store::Command {
        at_ms: 1,
        actor: "forged".into(),
        op: mpc_raft_store::Operation::CompleteSession {
            session_id: "s-1".into(),
            result: mpc_raft_store::model::SessionResult::PublicKey(vec![0xee; 33]),
            address: None,
            reports: Vec::new(),
        },
    }));
    let data = mpc_raft_store::codec::encode("forward", &forged)?;
    let member = &cluster.nodes[&follower].tls;
    let err = raft_forward(&cluster, leader, Some(member), data)
        .await?
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("leader only"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_snapshot_chunk_out_of_bounds_is_refused_and_the_node_lives() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let target = if leader == 1 { 2 } else { 1 };
    let sender = &cluster.nodes[&leader].tls;
    let member = Credentials::tls(
        pki::ca_cert_path(cluster.pki_dir()),
        Some((sender.cert.clone(), sender.key.clone())),
        None,
    )?;
    let rpc: openraft::raft::InstallSnapshotRequest<mpc_raft_store::TypeConfig> =
        openraft::raft::InstallSnapshotRequest {
            vote: openraft::Vote::new_committed(u64::MAX / 2, leader),
            meta: openraft::SnapshotMeta {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: "evil".into(),
            },
            offset: 1 << 40,
            data: vec![0xee; 16],
            done: false,
        };
    let data = mpc_raft_store::codec::encode("install", &rpc)?;
    let mut raft = RaftClient::new(member.channel(&cluster.raft(target).to_string(), |e| {
        e.timeout(Duration::from_secs(5))
    })?);
    let err = raft
        .install_snapshot(tonic::Request::new(Payload { data }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("bound"), "{err}");
    // Still a ready member of the group.
    cluster
        .wait_ready(&[target], Duration::from_secs(5))
        .await?;
    Ok(())
}
