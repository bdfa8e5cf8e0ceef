//! A key generated and used end to end, in one process.

use std::time::Duration;

use mpc_coordinator::test_utils::{approve, http_get, with_policy, InProcessCluster};
use mpc_openapi_check::{conforms, response_schema};
use mpc_party::http::OPENAPI;
use mpc_party::test_utils::InProcessParties;
use mpc_proto::v1 as pb;
use mpc_tss::{Scheme, Signature, SigningInput};

/// A hang guard, not a speed bound: FROST takes well under a second of a core.
const SESSION_WAIT: Duration = Duration::from_secs(60);

async fn keygen(cluster: &InProcessCluster, via: u64, scheme: &str) -> anyhow::Result<pb::Key> {
    let created = cluster
        .sessions(via)?
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
    let done = cluster
        .wait_session(&session.session_id, SESSION_WAIT)
        .await?;
    anyhow::ensure!(
        done.status == pb::SessionStatus::Completed as i32,
        "keygen {scheme}: {}",
        done.failure_reason
    );
    Ok(cluster
        .keys(via)?
        .get_key(pb::GetKeyRequest {
            key_id: done.key_id,
            consistency: 0,
        })
        .await?
        .into_inner())
}

/// Signs `message` through node `via`, waits for the session and checks the signature with
/// the scheme's verifier; the finished session.
async fn sign_and_verify(
    cluster: &InProcessCluster,
    via: u64,
    key: &pb::Key,
    message: &[u8],
) -> anyhow::Result<pb::Session> {
    let created = cluster
        .sessions(via)?
        .create_signing(approve(pb::CreateSigningRequest {
            key_id: key.key_id.clone(),
            message: message.to_vec(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let session = created
        .session
        .ok_or_else(|| anyhow::anyhow!("no session"))?;
    let done = cluster
        .wait_session(&session.session_id, SESSION_WAIT)
        .await?;
    anyhow::ensure!(
        done.status == pb::SessionStatus::Completed as i32,
        "signing through node {via}: {}",
        done.failure_reason
    );
    let scheme: Scheme = key.scheme.parse()?;
    let signature = Signature::from_bytes(scheme, &done.signature)?;
    let input = SigningInput::Message {
        message: message.to_vec(),
        hash: None,
    };
    mpc_tss::verify(scheme, &key.public_key, &input, &signature)?;
    Ok(done)
}

/// Every party's `/v1/status`, `/health` and `/ready` answer as the party's OpenAPI document
/// says (every field, and nothing undocumented), and `/openapi.json` serves that document.
async fn http_answers_as_documented(parties: &InProcessParties) -> anyhow::Result<()> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI)?;
    for (id, party) in parties.parties() {
        for path in ["/v1/status", "/health", "/ready"] {
            let (code, body) = http_get(party.http, path).await?;
            let schema = response_schema(&doc, path, code).ok_or_else(|| {
                anyhow::anyhow!("{id} {path}: no JSON body documented for {code}: {body}")
            })?;
            let value: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| anyhow::anyhow!("{id} {path}: {e}: {body}"))?;
            conforms(&doc, schema, &value, path).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        }
        let (_, served) = http_get(party.http, "/openapi.json").await?;
        anyhow::ensure!(
            serde_json::from_str::<serde_json::Value>(&served)? == doc,
            "{id}: /openapi.json is not the document built in"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frost_ed25519_key_is_generated_and_signs_and_two_parties_suffice() -> anyhow::Result<()> {
    let cluster = InProcessCluster::start(3).await?;
    let mut parties = InProcessParties::start(&cluster, 3).await?;

    let key = keygen(&cluster, 1, "schnorr-ed25519").await?;
    assert_eq!(key.public_key.len(), 32);
    assert_eq!(key.parties, ["party-1", "party-2", "party-3"]);
    // With a key share stored, so that /v1/status counts something.
    http_answers_as_documented(&parties).await?;

    // Through a follower as well as the leader: the request is forwarded, the leader runs it.
    for via in 1..=3 {
        sign_and_verify(&cluster, via, &key, format!("message {via}").as_bytes()).await?;
    }

    // One party stopped: the other two still sign (threshold 2), and only they take part.
    parties.stop("party-3").await?;
    let done = sign_and_verify(&cluster, 2, &key, b"two of three").await?;
    assert!(
        !done.parties.contains(&"party-3".to_owned()),
        "{:?}",
        done.parties
    );

    parties.shutdown().await?;
    cluster.shutdown().await
}
