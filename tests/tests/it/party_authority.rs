//! The parties decide, not the coordinator: two real party processes driven by a rogue
//! coordinator built for this test (it holds a valid coordinator certificate and routes
//! envelopes faithfully, but writes whatever assignments the test wants). A party refuses a
//! keygen without an admin's policy or for a key it holds, identities no trusted admin
//! enrolled, and signings whose approvals are missing, forged, expired or replayed. A newer
//! policy is adopted only when a trusted admin signed it, and never rolled back.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_proto::v1::party_gateway_server::{PartyGateway, PartyGatewayServer};
use mpc_tests::{
    admin_signing_key, binary, initiator_signing_key, issue, write_private, PortLease,
};
use mpc_tls::{pki, Role};
use mpc_types::statement::{self, Endorsed, Enrolment, KeyPolicy, SigningApproval};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

type Outbound = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// A coordinator that obeys the test: it answers every registration, keeps each party's
/// stream, routes envelopes between them and hands every outcome to the test.
#[derive(Clone)]
struct Rogue {
    streams: Arc<Mutex<HashMap<String, Outbound>>>,
    outcomes: mpsc::UnboundedSender<(String, pb::SessionOutcome)>,
}

impl Rogue {
    fn stream_of(&self, party: &str) -> Option<Outbound> {
        self.streams.lock().ok()?.get(party).cloned()
    }

    fn others(&self, party: &str) -> Vec<Outbound> {
        self.streams
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(p, _)| p.as_str() != party)
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl PartyGateway for Rogue {
    async fn enroll(
        &self,
        _: Request<pb::EnrollPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        Err(Status::unimplemented("rogue"))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::Party {
            party_id: r.party_id,
            registered: true,
            ..Default::default()
        }))
    }

    async fn get_party(
        &self,
        _: Request<pb::GetPartyRequest>,
    ) -> Result<Response<pb::Party>, Status> {
        Err(Status::not_found("rogue"))
    }

    async fn list_parties(
        &self,
        _: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        Ok(Response::new(pb::ListPartiesResponse::default()))
    }

    type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::PartyMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let challenge = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Challenge(pb::Challenge {
                nonce: vec![7; 32],
                node_id: 1,
            })),
        };
        let _ = tx.send(Ok(challenge)).await;
        let rogue = self.clone();
        tokio::spawn(async move {
            let mut me = String::new();
            while let Some(Ok(message)) = inbound.next().await {
                match message.body {
                    Some(pb::party_message::Body::Hello(h)) => {
                        me = h.party_id.clone();
                        if let Ok(mut s) = rogue.streams.lock() {
                            s.insert(h.party_id, tx.clone());
                        }
                    }
                    Some(pb::party_message::Body::Envelope(e)) => {
                        let targets = if e.receiver.is_empty() {
                            rogue.others(&me)
                        } else {
                            rogue.stream_of(&e.receiver).into_iter().collect()
                        };
                        for t in targets {
                            let body = pb::coordinator_message::Body::Envelope(e.clone());
                            let _ = t
                                .send(Ok(pb::CoordinatorMessage { body: Some(body) }))
                                .await;
                        }
                    }
                    Some(pb::party_message::Body::Outcome(o)) => {
                        let _ = rogue.outcomes.send((me.clone(), o));
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

struct PartyUnderTest {
    id: String,
    identity: String,
    child: std::process::Child,
    _port: PortLease,
}

impl Drop for PartyUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    rogue: Rogue,
    outcomes: mpsc::UnboundedReceiver<(String, pb::SessionOutcome)>,
    parties: Vec<PartyUnderTest>,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir)?;
        let rogue_cert = issue(&pki_dir, Role::Coordinator, "1", None)?;
        let tls = mpc_tls::ServerTls::load(
            mpc_tls::TlsFiles::new(pki::ca_cert_path(&pki_dir), rogue_cert.cert, rogue_cert.key),
            mpc_tls::ClientAuth::Required,
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let rogue = Rogue {
            streams: Arc::default(),
            outcomes: outcomes_tx,
        };
        let server = tonic::transport::Server::builder()
            .add_service(PartyGatewayServer::new(rogue.clone()))
            .serve_with_incoming(mpc_tls::incoming(listener, Some(tls)));
        tokio::spawn(server);

        let admin = hex::encode(admin_signing_key().verifying_key().to_bytes());
        let mut parties = Vec::new();
        for i in 1..=2 {
            let id = format!("party-{i}");
            let key_file = dir.path().join(format!("{id}.key"));
            write_private(&key_file, format!("{:064x}", 0xa11ce + i).as_bytes())?;
            let data_dir = dir.path().join(&id);
            let cert = issue(&pki_dir, Role::Party, &id, None)?;
            let base = |cmd: &mut std::process::Command| {
                cmd.arg("--party-id")
                    .arg(&id)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--master-key-file")
                    .arg(&key_file);
            };
            let mut identity = std::process::Command::new(binary("mpc-party")?);
            base(&mut identity);
            let out = identity.arg("identity").output()?;
            anyhow::ensure!(out.status.success(), "mpc-party identity failed");
            let identity = String::from_utf8(out.stdout)?.trim().to_owned();
            let port = PortLease::take()?;
            let log = std::fs::File::create(dir.path().join(format!("{id}.log")))?;
            let mut cmd = std::process::Command::new(binary("mpc-party")?);
            base(&mut cmd);
            let child = cmd
                .arg("--coordinators")
                .arg(addr.to_string())
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{}", port.port()))
                .arg("--ca-cert")
                .arg(pki::ca_cert_path(&pki_dir))
                .arg("--tls-cert")
                .arg(&cert.cert)
                .arg("--tls-key")
                .arg(&cert.key)
                .arg("--admin-keys")
                .arg(&admin)
                .arg("--prime-pool-size")
                .arg("0")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            parties.push(PartyUnderTest {
                id,
                identity,
                child,
                _port: port,
            });
        }
        let bench = Self {
            rogue,
            outcomes,
            parties,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while bench.rogue.streams.lock().map(|s| s.len()).unwrap_or(0) < 2 {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the parties did not attach to the rogue coordinator"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(bench)
    }

    /// Both parties' identities, enrolled by `enroller`.
    fn identities(&self, enroller: &ed25519_dalek::SigningKey) -> Vec<pb::PartyIdentity> {
        self.parties
            .iter()
            .map(|p| {
                let keys = hex::decode(&p.identity).unwrap_or_default();
                let mut signing = [0u8; 32];
                let mut encryption = [0u8; 32];
                signing.copy_from_slice(&keys[..32]);
                encryption.copy_from_slice(&keys[32..64]);
                let enrolment = Endorsed::new(
                    enroller,
                    Enrolment {
                        party_id: p.id.clone(),
                        signing_public_key: signing,
                        encryption_public_key: encryption,
                    },
                );
                pb::PartyIdentity {
                    party_id: p.id.clone(),
                    signing_public_key: signing.to_vec(),
                    encryption_public_key: encryption.to_vec(),
                    enrolled_by: Some(statements::signature_to(&enrolment.by)),
                }
            })
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.parties.iter().map(|p| p.id.clone()).collect()
    }

    /// Hands `assignment` to both parties and returns each one's outcome.
    async fn run(
        &mut self,
        assignment: pb::Assignment,
    ) -> anyhow::Result<HashMap<String, pb::session_outcome::Result>> {
        for p in self.ids() {
            let stream = self.rogue.stream_of(&p).context("party not attached")?;
            let body = pb::coordinator_message::Body::Assignment(assignment.clone());
            stream
                .send(Ok(pb::CoordinatorMessage { body: Some(body) }))
                .await?;
        }
        let mut results = HashMap::new();
        while results.len() < 2 {
            let (party, outcome) =
                tokio::time::timeout(Duration::from_secs(60), self.outcomes.recv())
                    .await?
                    .context("outcomes closed")?;
            if outcome.session_id == assignment.session_id {
                results.insert(party, outcome.result.context("empty outcome")?);
            }
        }
        Ok(results)
    }
}

fn policy(key_id: &str, admin: &ed25519_dalek::SigningKey) -> pb::EndorsedKeyPolicy {
    policy_version(key_id, admin, &initiator_signing_key(), 1)
}

/// The key's policy at `version`, with `initiator` as its one initiator.
fn policy_version(
    key_id: &str,
    admin: &ed25519_dalek::SigningKey,
    initiator: &ed25519_dalek::SigningKey,
    version: u64,
) -> pb::EndorsedKeyPolicy {
    statements::policy_to(&Endorsed::new(
        admin,
        KeyPolicy {
            key_id: key_id.into(),
            scheme: "schnorr-ed25519".into(),
            threshold: 2,
            parties: vec!["party-1".into(), "party-2".into()],
            initiators: vec![initiator.verifying_key().to_bytes()],
            approvals_needed: 1,
            version,
        },
    ))
}

fn keygen(bench: &Bench, session: &str, key_id: &str) -> pb::Assignment {
    pb::Assignment {
        session_id: session.into(),
        attempt: 1,
        kind: pb::SessionKind::Keygen as i32,
        scheme: "schnorr-ed25519".into(),
        key_id: key_id.into(),
        threshold: 2,
        key_parties: bench.ids(),
        participants: bench.ids(),
        identities: bench.identities(&admin_signing_key()),
        policy: Some(policy(key_id, &admin_signing_key())),
        deadline_ms: u64::MAX,
        ..Default::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A signing of `message` with the initiator's approval valid until `not_after_ms`.
fn signing(bench: &Bench, session: &str, key_id: &str, not_after_ms: u64) -> pb::Assignment {
    signing_by(
        bench,
        session,
        key_id,
        not_after_ms,
        &initiator_signing_key(),
    )
}

/// A signing of `message` approved by `approver`, carrying the key's first policy (as a
/// coordinator holding it would send).
fn signing_by(
    bench: &Bench,
    session: &str,
    key_id: &str,
    not_after_ms: u64,
    approver: &ed25519_dalek::SigningKey,
) -> pb::Assignment {
    let message = b"pay 1 to alice".to_vec();
    let request_id = format!("req-{session}");
    let approval = SigningApproval {
        key_id: key_id.into(),
        digest: Vec::new(),
        message: message.clone(),
        hash: String::new(),
        derivation_path: Vec::new(),
        request_id: request_id.clone(),
        not_after_ms,
    };
    let approved = statement::sign(approver, &approval);
    pb::Assignment {
        session_id: session.into(),
        attempt: 1,
        kind: pb::SessionKind::Sign as i32,
        scheme: "schnorr-ed25519".into(),
        key_id: key_id.into(),
        threshold: 2,
        key_parties: bench.ids(),
        participants: bench.ids(),
        identities: bench.identities(&admin_signing_key()),
        message,
        approvals: vec![statements::signature_to(&approved)],
        approvals_not_after_ms: not_after_ms,
        request_id,
        policy: Some(policy(key_id, &admin_signing_key())),
        deadline_ms: u64::MAX,
        ..Default::default()
    }
}

/// Both parties refused, saying `unauthorised` and `why`, blaming nobody.
fn refused(results: &HashMap<String, pb::session_outcome::Result>, why: &str) {
    assert_eq!(results.len(), 2);
    for (party, result) in results {
        match result {
            pb::session_outcome::Result::Failure(f) => {
                assert!(
                    f.reason.starts_with("unauthorised") && f.reason.contains(why),
                    "{party}: {:?} (expected {why:?})",
                    f.reason
                );
                assert!(f.blamed_parties.is_empty(), "{party} blamed {f:?}");
            }
            other => panic!("{party} did not refuse: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_obey_admins_and_initiators_not_the_coordinator() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[0x66; 32]);

    // A keygen under a policy no trusted admin signed; one whose identities a stranger
    // enrolled; one without a policy at all.
    let mut a = keygen(&bench, "kg-stranger-policy", "k1");
    a.policy = Some(policy("k1", &stranger));
    refused(&bench.run(a).await?, "not signed by an admin");
    let mut a = keygen(&bench, "kg-stranger-enrolment", "k1");
    a.identities = bench.identities(&stranger);
    refused(&bench.run(a).await?, "not enrolled by an admin");
    let mut a = keygen(&bench, "kg-no-policy", "k1");
    a.policy = None;
    refused(&bench.run(a).await?, "policy");
    // A policy for another key than the keygen's.
    let mut a = keygen(&bench, "kg-other-key", "k1");
    a.policy = Some(policy("k-other", &admin_signing_key()));
    refused(&bench.run(a).await?, "another key id");

    // The real thing: both parties make the key.
    let made = bench.run(keygen(&bench, "kg-1", "k1")).await?;
    let mut public_keys = made.values().map(|r| match r {
        pb::session_outcome::Result::PublicKey(k) => Ok(k.clone()),
        other => Err(anyhow::anyhow!("keygen failed: {other:?}")),
    });
    let public_key = public_keys.next().context("no outcome")??;
    assert_eq!(public_keys.next().context("one outcome")??, public_key);

    // A second keygen of the same key id never overwrites the share.
    refused(
        &bench.run(keygen(&bench, "kg-2", "k1")).await?,
        "already holds a share",
    );

    // A signing approved by the initiator works (and the signature verifies)...
    let ok = signing(&bench, "sig-ok", "k1", now_ms() + 60_000);
    let signed = bench.run(ok.clone()).await?;
    for (party, result) in &signed {
        let pb::session_outcome::Result::Signature(s) = result else {
            anyhow::bail!("{party}: {result:?}");
        };
        let signature = mpc_tss::Signature::from_bytes(mpc_tss::Scheme::SchnorrEd25519, s)?;
        mpc_tss::verify(
            mpc_tss::Scheme::SchnorrEd25519,
            &public_key,
            &mpc_tss::SigningInput::Message {
                message: ok.message.clone(),
                hash: None,
            },
            &signature,
        )?;
    }

    // ... and its approvals are good for that session only.
    let mut replay = ok.clone();
    replay.session_id = "sig-replay".into();
    refused(&bench.run(replay).await?, "already used by session sig-ok");

    let mut missing = signing(&bench, "sig-missing", "k1", now_ms() + 60_000);
    missing.approvals.clear();
    refused(&bench.run(missing).await?, "no approvals");

    let mut forged = signing(&bench, "sig-forged", "k1", now_ms() + 60_000);
    forged.approvals[0].signature[5] ^= 1;
    refused(&bench.run(forged).await?, "valid approval");

    let expired = signing(&bench, "sig-expired", "k1", now_ms().saturating_sub(1_000));
    refused(&bench.run(expired).await?, "expired");

    // The approval of one message does not sign another.
    let mut swapped = signing(&bench, "sig-swapped", "k1", now_ms() + 60_000);
    swapped.message = b"pay 1000 to mallory".to_vec();
    refused(&bench.run(swapped).await?, "valid approval");

    // Identity keys other than the enrolled ones: the coordinator swaps party-2's signing
    // key for its own while keeping the admin's signature over the real enrolment.
    let mut swapped_keys = signing(&bench, "sig-swapped-keys", "k1", now_ms() + 60_000);
    swapped_keys.identities[1].signing_public_key = stranger.verifying_key().to_bytes().to_vec();
    refused(&bench.run(swapped_keys).await?, "not enrolled by an admin");

    // An admin hands the key to another initiator (policy version 2). The parties adopt it
    // with the signing that brings it...
    let bob = ed25519_dalek::SigningKey::from_bytes(&[0xb0; 32]);
    let mut by_bob = signing_by(&bench, "sig-bob", "k1", now_ms() + 60_000, &bob);
    refused(&bench.run(by_bob.clone()).await?, "valid approval");
    by_bob.session_id = "sig-bob-v2".into();
    by_bob.policy = Some(policy_version("k1", &admin_signing_key(), &bob, 2));
    for (party, result) in bench.run(by_bob).await? {
        anyhow::ensure!(
            matches!(result, pb::session_outcome::Result::Signature(_)),
            "{party}: {result:?}"
        );
    }
    // ... and a coordinator offering the old version again cannot bring the old initiator
    // back; nor can a newer policy that no trusted admin signed.
    let old = signing(&bench, "sig-old-initiator", "k1", now_ms() + 60_000);
    refused(&bench.run(old).await?, "valid approval");
    let mut stranger_policy = signing(&bench, "sig-stranger-policy", "k1", now_ms() + 60_000);
    stranger_policy.policy = Some(policy_version("k1", &stranger, &initiator_signing_key(), 3));
    refused(&bench.run(stranger_policy).await?, "not signed by an admin");
    Ok(())
}
