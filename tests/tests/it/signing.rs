//! Threshold signing end to end: five coordinator processes, three party processes, real
//! gRPC on loopback, real RocksDB, real cryptography.

use std::time::Duration;

use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_tests::{admin_signing_key, approve, wait_session, with_policy, Cluster, Parties};
use mpc_tss::{HashFunction, Scheme, Signature, SigningInput};

/// A hang guard, not a speed bound: generous for a loaded two-core machine.
const SESSION_WAIT: Duration = Duration::from_secs(240);

async fn keygen(cluster: &Cluster, node: u64, scheme: &str) -> anyhow::Result<pb::Key> {
    let created = cluster
        .sessions(node)?
        .create_keygen(with_policy(pb::CreateKeygenRequest {
            scheme: scheme.into(),
            threshold: 2,
            parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
            request_id: format!("keygen-{scheme}"),
            key_id: format!("key-{scheme}"),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let session = created
        .session
        .ok_or_else(|| anyhow::anyhow!("no session"))?;
    let done = wait_session(cluster, &session.session_id, SESSION_WAIT).await?;
    assert_eq!(
        done.status,
        pb::SessionStatus::Completed as i32,
        "keygen {scheme}: {}",
        done.failure_reason
    );
    let key = KeysClient::new(cluster.channel(node)?)
        .get_key(pb::GetKeyRequest {
            key_id: done.key_id,
            consistency: 0,
        })
        .await?
        .into_inner();
    Ok(key)
}

fn signing_request(
    key: &pb::Key,
    input: &SigningInput,
    request_id: &str,
) -> pb::CreateSigningRequest {
    let (digest, message, hash) = match input {
        SigningInput::Digest(d) => (d.to_vec(), Vec::new(), String::new()),
        SigningInput::Message { message, hash } => (
            Vec::new(),
            message.clone(),
            hash.map(|h| h.as_str().to_owned()).unwrap_or_default(),
        ),
    };
    approve(pb::CreateSigningRequest {
        key_id: key.key_id.clone(),
        digest,
        request_id: request_id.into(),
        message,
        hash,
        ..Default::default()
    })
}

/// Signs through `node` in one call (`wait`: the answer carries the signature) and checks
/// the signature with the independent verifiers.
async fn sign_and_verify(
    cluster: &Cluster,
    node: u64,
    key: &pb::Key,
    input: SigningInput,
) -> anyhow::Result<pb::Session> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let created = cluster
        .sessions_waiting(node, SESSION_WAIT)?
        .create_signing(pb::CreateSigningRequest {
            wait: true,
            ..signing_request(key, &input, &request_id)
        })
        .await?
        .into_inner();
    assert!(created.created);
    let done = created
        .session
        .ok_or_else(|| anyhow::anyhow!("no session"))?;
    assert_eq!(
        done.status,
        pb::SessionStatus::Completed as i32,
        "{} signing through node {node}, answered by the waiting call: {}",
        key.scheme,
        done.failure_reason
    );
    let scheme: Scheme = key.scheme.parse()?;
    let signature = Signature::from_bytes(scheme, &done.signature)?;
    mpc_tss::verify(scheme, &key.public_key, &input, &signature)?;
    Ok(done)
}

/// Signs as a client library user does (`mpc_client::sessions::sign`: the waiting call on
/// whichever node answers, a watch only if it came back unfinished) and checks the signature.
async fn sign_as_client(
    cluster: &Cluster,
    key: &pb::Key,
    input: SigningInput,
) -> anyhow::Result<pb::Session> {
    let endpoints = mpc_client::Endpoints::new(
        cluster
            .running()
            .iter()
            .map(|&id| cluster.grpc(id))
            .collect(),
        Duration::from_secs(10),
        cluster.admin().clone(),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    let request = signing_request(key, &input, &request_id);
    let done = mpc_client::sessions::sign(&endpoints, request, SESSION_WAIT, |_| {}).await?;
    assert_eq!(
        done.status,
        pb::SessionStatus::Completed as i32,
        "{} signing through mpc_client: {}",
        key.scheme,
        done.failure_reason
    );
    let scheme: Scheme = key.scheme.parse()?;
    let signature = Signature::from_bytes(scheme, &done.signature)?;
    mpc_tss::verify(scheme, &key.public_key, &input, &signature)?;
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scheme_generates_a_key_and_signs_and_two_parties_suffice() -> anyhow::Result<()> {
    let cluster = Cluster::start(5, &[("MPC_LIMITS__MAX_OPEN_SESSIONS_PER_KEY", "2")]).await?;
    let mut parties = Parties::start(&cluster, 3).await?;

    let mut keys = Vec::new();
    for (node, scheme) in [
        (1, "ecdsa-secp256k1"),
        (2, "schnorr-ed25519"),
        (3, "schnorr-bip340"),
    ] {
        let key = keygen(&cluster, node, scheme).await?;
        if scheme == "ecdsa-secp256k1" {
            assert_eq!(key.public_key.len(), 33);
            assert_eq!(key.address, mpc_tss::ethereum_address(&key.public_key)?);
        } else {
            assert_eq!(key.public_key.len(), 32);
        }
        keys.push(key);
    }

    let ecdsa = &keys[0];
    // A raw digest runs the full protocol; verify() also recovers (ecrecover) to the key.
    let full = sign_and_verify(&cluster, 4, ecdsa, SigningInput::Digest([0x42; 32])).await?;
    assert!(
        full.presignature_id.is_empty(),
        "a raw digest met a presignature"
    );
    // A message with its hash may be served from the presignature pool.
    let message = SigningInput::Message {
        message: b"transfer 1 ETH".to_vec(),
        hash: Some(HashFunction::Keccak256),
    };
    sign_and_verify(&cluster, 5, ecdsa, message.clone()).await?;
    for key in &keys[1..] {
        let input = SigningInput::Message {
            message: b"frost message".to_vec(),
            hash: None,
        };
        sign_and_verify(&cluster, 1, key, input).await?;
    }

    // One party down: the other two still sign, with every scheme.
    parties.kill("party-3")?;
    for key in &keys {
        let input = if key.scheme == "ecdsa-secp256k1" {
            SigningInput::Digest([0x17; 32])
        } else {
            SigningInput::Message {
                message: b"two of three".to_vec(),
                hash: None,
            }
        };
        let done = sign_as_client(&cluster, key, input).await?;
        assert!(
            !done.parties.contains(&"party-3".to_string()),
            "{:?}",
            done.parties
        );
    }

    // Two parties left. An admin hands the Ed25519 key to another initiator: the coordinators
    // refuse the old one at once, and the parties adopt the new policy with the signing that
    // brings it.
    let bob = ed25519_dalek::SigningKey::from_bytes(&[0xb0; 32]);
    let key = &keys[1];
    let policy = mpc_client::authority::sign_policy_version(
        &admin_signing_key(),
        mpc_client::authority::PolicyTerms {
            key_id: key.key_id.clone(),
            scheme: key.scheme.clone(),
            threshold: 2,
            parties: key.parties.clone(),
            initiators: vec![bob.verifying_key().to_bytes()],
            approvals_needed: 1,
        },
        2,
    );
    let changed = KeysClient::new(cluster.channel(2)?)
        .set_policy(pb::SetKeyPolicyRequest {
            policy: Some(policy),
        })
        .await?
        .into_inner();
    let held = changed.policy.and_then(|p| p.policy).map(|p| p.version);
    assert_eq!(held, Some(2));
    let input = SigningInput::Message {
        message: b"approved by bob".to_vec(),
        hash: None,
    };
    let refused = cluster
        .sessions(1)?
        .create_signing(signing_request(key, &input, "old-initiator"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let mut by_bob = signing_request(key, &input, "bob");
    by_bob.approvals.clear();
    mpc_client::authority::approve_signing(
        &mut by_bob,
        &bob,
        mpc_client::authority::expiry_after(Duration::from_secs(300)),
    )?;
    let session = cluster
        .sessions(1)?
        .create_signing(by_bob)
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("no session"))?;
    let done = wait_session(&cluster, &session.session_id, SESSION_WAIT).await?;
    assert_eq!(
        done.status,
        pb::SessionStatus::Completed as i32,
        "signing under the new policy: {}",
        done.failure_reason
    );
    let signature = Signature::from_bytes(Scheme::SchnorrEd25519, &done.signature)?;
    mpc_tss::verify(Scheme::SchnorrEd25519, &key.public_key, &input, &signature)?;

    // One party left: signings wait, and a key takes only so many waiting ones.
    parties.kill("party-2")?;

    // A waiting call for a signing that cannot start ends at the session's deadline, with
    // the session as it ended (expired, or still pending if the expiry came after the grace);
    // the same request again answers at once with that session.
    let ecdsa = &keys[0];
    let input = SigningInput::Digest([0x33; 32]);
    let stuck = pb::CreateSigningRequest {
        timeout_seconds: 2,
        wait: true,
        ..signing_request(ecdsa, &input, "waits-until-its-deadline")
    };
    let started = std::time::Instant::now();
    let ended = cluster
        .sessions_waiting(4, SESSION_WAIT)?
        .create_signing(stuck.clone())
        .await?
        .into_inner();
    let waited = started.elapsed();
    let ended = ended.session.ok_or_else(|| anyhow::anyhow!("no session"))?;
    let status = pb::SessionStatus::try_from(ended.status)?;
    assert!(
        matches!(
            status,
            pb::SessionStatus::Expired | pb::SessionStatus::Pending
        ),
        "{status:?}: {}",
        ended.failure_reason
    );
    assert!(ended.signature.is_empty());
    // Its deadline is two seconds out and the grace two more: it waited, and not for ever.
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    if status == pb::SessionStatus::Expired {
        let again = cluster
            .sessions_waiting(5, SESSION_WAIT)?
            .create_signing(stuck)
            .await?
            .into_inner();
        assert!(!again.created);
        let again = again.session.ok_or_else(|| anyhow::anyhow!("no session"))?;
        assert_eq!(again.session_id, ended.session_id);
        assert_eq!(again.status, pb::SessionStatus::Expired as i32);
    }
    let key = &keys[2];
    let input = SigningInput::Message {
        message: b"waits".to_vec(),
        hash: None,
    };
    let mut sessions = cluster.sessions(3)?;
    let mut waiting = Vec::new();
    for i in 0..2 {
        let request = signing_request(key, &input, &format!("waiting-{i}"));
        sessions.create_signing(request.clone()).await?;
        waiting.push(request);
    }
    let refused = sessions
        .create_signing(signing_request(key, &input, "one-too-many"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&key.key_id),
        "{}",
        refused.message()
    );
    // A retry of a request already taken still finds its session.
    let retried = sessions
        .create_signing(waiting[0].clone())
        .await?
        .into_inner();
    assert!(!retried.created);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_mid_session_ends_in_one_signature_or_a_clear_failure() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(5, &[]).await?;
    let _parties = Parties::start(&cluster, 3).await?;
    let key = keygen(&cluster, 1, "ecdsa-secp256k1").await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let follower = cluster
        .running()
        .into_iter()
        .find(|&n| n != leader)
        .unwrap_or(1);

    // The full protocol takes long enough to be cut in the middle.
    let input = SigningInput::Digest([0x5a; 32]);
    let request = signing_request(&key, &input, "leader-kill-request");
    let created = cluster
        .sessions(follower)?
        .create_signing(request.clone())
        .await?
        .into_inner();
    let session_id = created.session.map(|s| s.session_id).unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.kill(leader)?;

    let done = wait_session(&cluster, &session_id, SESSION_WAIT).await?;
    let status = pb::SessionStatus::try_from(done.status)?;
    match status {
        pb::SessionStatus::Completed => {
            let signature = Signature::from_bytes(Scheme::EcdsaSecp256k1, &done.signature)?;
            mpc_tss::verify(Scheme::EcdsaSecp256k1, &key.public_key, &input, &signature)?;
        }
        pb::SessionStatus::Failed | pb::SessionStatus::Expired => {
            assert!(!done.failure_reason.is_empty() || status == pb::SessionStatus::Expired);
        }
        other => anyhow::bail!("session ended as {other:?}"),
    }

    // The request retried on another node is the same session with the same outcome: never
    // a second signature for one request.
    let survivor = cluster
        .running()
        .into_iter()
        .find(|&n| n != follower)
        .unwrap_or(follower);
    let again = cluster
        .sessions(survivor)?
        .create_signing(request)
        .await?
        .into_inner();
    let again = again.session.ok_or_else(|| anyhow::anyhow!("no session"))?;
    assert_eq!(again.session_id, session_id);
    let again = wait_session(&cluster, &session_id, SESSION_WAIT).await?;
    assert_eq!(again.signature, done.signature);
    assert_eq!(again.status, done.status);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_given_a_wrong_master_key_refuses_to_start() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let mut parties = Parties::start(&cluster, 2).await?;
    parties.kill("party-1")?;
    let key_file = parties.parties["party-1"].key_file.clone();
    mpc_tests::write_private(&key_file, "ff".repeat(32).as_bytes())?;
    parties.spawn("party-1", None)?;
    let (success, log) =
        tokio::task::block_in_place(|| parties.wait_exit("party-1", Duration::from_secs(20)))?;
    assert!(!success, "a party started with a wrong master key");
    assert!(log.contains("wrong master key"), "{log}");
    assert!(!log.contains(&"ff".repeat(32)), "the key reached the log");
    Ok(())
}
