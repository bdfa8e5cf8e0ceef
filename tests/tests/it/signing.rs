//! Threshold signing end to end: five coordinator processes, three party processes, real
//! gRPC on loopback, real RocksDB, real cryptography.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_tests::{admin_signing_key, approve, wait_session, Cluster, Parties};
use mpc_tss::{HashFunction, Scheme, Signature, SigningInput};

/// A hang guard, not a speed bound: generous for a loaded two-core machine.
const SESSION_WAIT: Duration = Duration::from_secs(240);

async fn keygen(cluster: &Cluster, node: u64, scheme: &str) -> anyhow::Result<pb::Key> {
    cluster
        .generate_key(node, scheme, &format!("key-{scheme}"), SESSION_WAIT)
        .await
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
    verified(
        key,
        &input,
        done,
        &format!("through node {node}, answered by the waiting call"),
    )
}

/// `done`, once it is checked completed with a signature that verifies against `key`.
fn verified(
    key: &pb::Key,
    input: &SigningInput,
    done: pb::Session,
    how: &str,
) -> anyhow::Result<pb::Session> {
    assert_eq!(
        done.status,
        pb::SessionStatus::Completed as i32,
        "{} signing {how}: {}",
        key.scheme,
        done.failure_reason
    );
    let scheme: Scheme = key.scheme.parse()?;
    let signature = Signature::from_bytes(scheme, &done.signature)?;
    mpc_tss::verify(scheme, &key.public_key, input, &signature)?;
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
    verified(key, &input, done, "through mpc_client")
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
    let started = Instant::now();
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

/// A hang guard for a session to be seen running after its creation, not a speed bound.
const RUNNING_WAIT: Duration = Duration::from_secs(30);

/// Polls `session_id` through the running nodes (linearizable reads) until the API reports it
/// running; an end before that is an error, as is `timeout` passing.
async fn wait_running(
    cluster: &Cluster,
    session_id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::Session> {
    mpc_tests::wait_session_until(cluster, session_id, timeout, "running", |s| {
        match pb::SessionStatus::try_from(s.status)? {
            pb::SessionStatus::Running => Ok(true),
            pb::SessionStatus::Pending => Ok(false),
            other => anyhow::bail!(
                "session {session_id} ended as {other:?} before it was seen running: {}",
                s.failure_reason
            ),
        }
    })
    .await
}

/// A log line without its ANSI colour codes (the parties log for a terminal by default).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, up to the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The attempt a party's log line says it finished with a result, if the line is one of
/// `session_id`: its `session finished` event with `outcome="completed"`, inside the
/// `session{session=… attempt=…}` span it runs each attempt in (crates/party/src/client.rs),
/// in the human format or in JSON (`MPC_LOG__FORMAT=json`).
fn completed_attempt(line: &str, session_id: &str) -> anyhow::Result<Option<u32>> {
    if line.starts_with('{') {
        let event: serde_json::Value = serde_json::from_str(line)?;
        let fields = &event["fields"];
        let span = &event["span"];
        let ours = fields["message"] == "session finished"
            && fields["outcome"] == "completed"
            && span["session"] == session_id;
        if !ours {
            return Ok(None);
        }
        let attempt = span["attempt"]
            .as_u64()
            .and_then(|a| u32::try_from(a).ok())
            .with_context(|| format!("no attempt in {line}"))?;
        return Ok(Some(attempt));
    }
    let line = without_ansi(line);
    if !line.contains("session finished") || !line.contains("outcome=\"completed\"") {
        return Ok(None);
    }
    let span = format!("session{{session={session_id} attempt=");
    let Some(at) = line.find(&span) else {
        return Ok(None);
    };
    let attempt = line[at + span.len()..]
        .split('}')
        .next()
        .and_then(|a| a.parse::<u32>().ok())
        .with_context(|| format!("no attempt in {line}"))?;
    Ok(Some(attempt))
}

/// The attempts of `session_id` that each party's own log says it finished with a result
/// ([`completed_attempt`]). For a full ECDSA signing, a party that finished an attempt held
/// the signature it then reported.
fn attempts_completed_by_parties(
    parties: &Parties,
    session_id: &str,
) -> anyhow::Result<BTreeMap<String, Vec<u32>>> {
    let mut out = BTreeMap::new();
    for (id, party) in &parties.parties {
        let log = std::fs::read_to_string(&party.log)?;
        let mut attempts = Vec::new();
        for line in log.lines() {
            if let Some(attempt) =
                completed_attempt(line, session_id).with_context(|| format!("{id}'s log"))?
            {
                attempts.push(attempt);
            }
        }
        out.insert(id.clone(), attempts);
    }
    Ok(out)
}

/// Which session each party's own records say spent the approvals of `request`: its
/// approval-use record (crates/party/src/authority.rs), opened from its store with its
/// master key while it runs. `None` for a party that never checked the request. A party
/// refuses the approvals to any other session, so this is the one session that can get a
/// signature (or a share of one) from it for this request.
fn approval_uses(
    parties: &Parties,
    request: &pb::CreateSigningRequest,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    use mpc_party::master_key::MasterKey;
    use mpc_party::store::{RecordKind, ShareStore};
    // The request as the parties rebuild it from their assignment (authority::approvals).
    let approval = mpc_types::statement::SigningApproval {
        key_id: request.key_id.clone(),
        digest: if request.message.is_empty() {
            request.digest.clone()
        } else {
            Vec::new()
        },
        message: request.message.clone(),
        hash: request.hash.clone(),
        derivation_path: Vec::new(),
        request_id: request.request_id.clone(),
        not_after_ms: request.not_after_ms,
    };
    let use_id = hex::encode(approval.fingerprint());
    let mut out = BTreeMap::new();
    for (id, party) in &parties.parties {
        let key_hex = zeroize::Zeroizing::new(std::fs::read_to_string(&party.key_file)?);
        let key = MasterKey::from_hex("master key", &key_hex)?;
        let record = ShareStore::peek(&party.data_dir, id, &key, RecordKind::ApprovalUse, &use_id)?;
        let session = match record {
            None => None,
            Some(bytes) => {
                let record: serde_json::Value = serde_json::from_slice(&bytes)?;
                let session = record["session_id"]
                    .as_str()
                    .with_context(|| format!("{id}'s approval-use record names no session"))?;
                Some(session.to_owned())
            }
        };
        out.insert(id.clone(), session);
    }
    Ok(out)
}

/// A leader dies with a signing running (started by it, as the API reports); the next leader
/// runs it again as a new attempt, and the request ends in one signature, which verifies.
///
/// Every party is paused (SIGSTOP) from before the signing is created until the leader is
/// dead: the session is seen running, and no party has done any of that attempt, so it
/// cannot end before the kill, nor after it (its leader is gone). Without the pause the
/// protocol could end between the look and the kill, and the test would prove nothing about a
/// kill. The parties are back as soon as the leader is dead, so the signing must succeed: a
/// failure is never accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_mid_session_ends_in_one_verified_signature() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(5, &[]).await?;
    let parties = Parties::start(&cluster, 3).await?;
    let key = keygen(&cluster, 1, "ecdsa-secp256k1").await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let follower = cluster
        .running()
        .into_iter()
        .find(|&n| n != leader)
        .context("no follower")?;

    // A raw digest: the full protocol (a presignature would end it in one local step).
    let digest = [0x5a; 32];
    let input = SigningInput::Digest(digest);
    let request = signing_request(&key, &input, "leader-kill-request");
    let names: Vec<String> = parties.parties.keys().cloned().collect();
    for p in &names {
        parties.pause(p)?;
    }
    let created = cluster
        .sessions(follower)?
        .create_signing(request.clone())
        .await?
        .into_inner();
    let session_id = created.session.context("no session")?.session_id;
    let running = wait_running(&cluster, &session_id, RUNNING_WAIT).await?;
    // The leader now: the one whose attempt is running (a re-election meanwhile would have
    // made it the new one's).
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    cluster.kill(leader)?;
    for p in &names {
        parties.resume(p)?;
    }

    let done = wait_session(&cluster, &session_id, SESSION_WAIT).await?;
    assert_eq!(
        pb::SessionStatus::try_from(done.status)?,
        pb::SessionStatus::Completed,
        "the signing failed after the leader was killed: {}",
        done.failure_reason
    );
    assert!(
        done.attempt > running.attempt,
        "attempt {} was running when leader {leader} died, and attempt {} ended the session",
        running.attempt,
        done.attempt
    );
    assert!(
        done.presignature_id.is_empty(),
        "a raw digest met presignature {}",
        done.presignature_id
    );
    assert_eq!(done.digest, digest.to_vec());
    // Verified against the key's public key from the keygen, over the digest as given: a
    // digest request is signed as it is, with no hash.
    let signature = Signature::from_bytes(Scheme::EcdsaSecp256k1, &done.signature)?;
    mpc_tss::verify(
        Scheme::EcdsaSecp256k1,
        &key.public_key,
        &SigningInput::Digest(digest),
        &signature,
    )?;

    // One signature, as the parties themselves tell it. Parties keep no signatures; what
    // they do keep is which session spent the request's approvals (their store), and what
    // each attempt ended in (their logs). Every signer of the final attempt holds the
    // approvals as spent on this session and no party on another one; only the final attempt
    // ended with a result at any party, and only at its signers.
    let uses = approval_uses(&parties, &request)?;
    for signer in &done.parties {
        assert_eq!(
            uses.get(signer),
            Some(&Some(session_id.clone())),
            "{signer}: {uses:?}"
        );
    }
    for (party, used_by) in &uses {
        assert!(
            used_by.as_ref().is_none_or(|s| *s == session_id),
            "{party}'s approvals went to {used_by:?}"
        );
    }
    let completed = attempts_completed_by_parties(&parties, &session_id)?;
    let mut finishers = Vec::new();
    for (party, attempts) in &completed {
        if attempts.is_empty() {
            continue;
        }
        assert_eq!(
            attempts,
            &[done.attempt],
            "{party} finished other attempts of {session_id}: {completed:?}"
        );
        assert!(
            done.parties.contains(party),
            "{party} is not a signer of the final attempt: {completed:?}"
        );
        finishers.push(party.clone());
    }
    assert!(
        !finishers.is_empty(),
        "no party log says it finished attempt {} of {session_id}",
        done.attempt
    );

    // The request retried on a node that did not take it is the same session with the same
    // outcome: a retry makes no second session.
    let survivor = cluster
        .running()
        .into_iter()
        .find(|&n| n != follower)
        .context("no other node")?;
    let again = cluster
        .sessions(survivor)?
        .create_signing(request)
        .await?
        .into_inner();
    assert!(!again.created);
    let again = again.session.context("no session")?;
    assert_eq!(again.session_id, session_id);
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
