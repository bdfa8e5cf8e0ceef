//! The load a scenario runs under: register clients writing and reading key descriptions,
//! signers creating signing sessions with keys of every scheme (ECDSA both from messages the
//! signers hash with keccak256, which a presignature may serve, and from raw digests, which it
//! may not) and waiting for their outcome, and an observer asking every coordinator who leads.
//! Every operation is recorded with its invocation and response times; the run is bounded in
//! time and in operations.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_proto::v1::party_gateway_client::PartyGatewayClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tss::{HashFunction, Scheme, SigningInput};
use rand::Rng;

use crate::authority::{expiry_after, Admin, AdminKeyFile, Initiator, InitiatorKeyFile};
use crate::client::{CallError, Coordinators};
use crate::history::{now_us, Event, LoadPhase, Op, OpKind, Outcome, Recorder, SignDetail};

#[derive(Debug, Clone, clap::Args)]
pub struct LoadSettings {
    /// Names this run's keys and request ids; a fresh id by default.
    #[arg(long, default_value_t = uuid::Uuid::new_v4().simple().to_string(), hide_default_value = true)]
    pub run_id: String,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations even if time is left.
    #[arg(long, default_value_t = 50_000)]
    pub max_ops: u64,
    /// Clients writing and reading key descriptions.
    #[arg(long = "clients", value_name = "N", default_value_t = 4)]
    pub register_clients: usize,
    /// Signers; signer i signs with the i-th scheme of `--schemes` (cyclically), so at least
    /// one per scheme.
    #[arg(long, default_value_t = 3)]
    pub signers: usize,
    /// Keys generated per scheme; every key is also a register.
    #[arg(long, default_value_t = 2)]
    pub keys_per_scheme: usize,
    /// Schemes of the run's keys, generated in this order (Schnorr keys take milliseconds,
    /// an ECDSA key seconds, or minutes when the parties must first make auxiliary info).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "schnorr-ed25519,schnorr-bip340,ecdsa-secp256k1",
        value_parser = parse_scheme
    )]
    pub schemes: Vec<Scheme>,
    /// Pause between one client's operations.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub think: Duration,
    /// Budget of one operation, retries on other coordinators included.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub op_budget: Duration,
    #[arg(long, default_value_t = 15)]
    pub sign_timeout_secs: u32,
    /// Before the load starts, wait up to this long until every ECDSA key has a presignature
    /// made (the pool refills in the background after keygen), so that the first ECDSA
    /// signing, a message, can be served from one; 0 does not wait.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub presignature_wait: Duration,
    /// How long each signing's approval stays valid: past the load's end, so that the
    /// final reads can re-send an unacknowledged request unchanged.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub approval_ttl: Duration,
    #[command(flatten)]
    pub admin: AdminKeyFile,
    #[command(flatten)]
    pub initiator: InitiatorKeyFile,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse::<Scheme>().map_err(|e| e.to_string())
}

#[derive(Debug, Clone)]
pub struct RegisterKey {
    pub key_id: String,
    pub scheme: Scheme,
}

/// Operation budget shared by every client.
#[derive(Debug)]
struct Budget {
    deadline: Instant,
    ops_left: AtomicU64,
    /// Set by SIGTERM or SIGINT: clients finish the operation in hand and stop.
    stopped: AtomicBool,
    /// When the first client was refused: the load's end for the checker, which would
    /// otherwise count the signers' last waits as time without writes.
    closed_at_us: AtomicU64,
}

impl Budget {
    fn take(&self) -> bool {
        let open = !self.stopped.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && self
                .ops_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        if !open {
            let _ = self.closed_at_us.compare_exchange(
                0,
                now_us(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        open
    }
}

pub async fn run(
    coords: Coordinators,
    settings: LoadSettings,
    rec: Recorder,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.keys_per_scheme > 0,
        "keys-per-scheme: must be at least 1"
    );
    anyhow::ensure!(!settings.schemes.is_empty(), "schemes: name at least one");
    anyhow::ensure!(
        settings.signers >= settings.schemes.len(),
        "signers: at least one per scheme ({} schemes)",
        settings.schemes.len()
    );
    let initiator = Initiator::load(&settings.initiator)?;
    let admin = Admin::load(&settings.admin)?;
    let keys = setup_keys(&coords, &settings, &admin, &initiator, &rec).await?;
    if !settings.presignature_wait.is_zero() {
        wait_for_presignatures(&coords, &keys, settings.presignature_wait).await?;
    }
    let budget = Arc::new(Budget {
        deadline: Instant::now() + settings.duration,
        ops_left: AtomicU64::new(settings.max_ops),
        stopped: AtomicBool::new(false),
        closed_at_us: AtomicU64::new(0),
    });
    // `docker stop` ends a scenario's load when its faults are done.
    let stopper = tokio::spawn({
        let budget = budget.clone();
        async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("load: stopping: finishing the operations in hand");
            budget.stopped.store(true, Ordering::Relaxed);
        }
    });
    rec.record(Event::Load {
        at_us: now_us(),
        phase: LoadPhase::Start,
    });
    let observer = tokio::spawn(observe(
        coords.clone(),
        settings.duration,
        Duration::from_millis(100),
        rec.clone(),
    ));
    let mut clients = Vec::new();
    for c in 0..settings.register_clients {
        clients.push(tokio::spawn(register_client(
            format!("r{c}"),
            c,
            coords.clone(),
            keys.clone(),
            settings.clone(),
            budget.clone(),
            rec.clone(),
        )));
    }
    for s in 0..settings.signers {
        clients.push(tokio::spawn(signer(
            format!("s{s}"),
            s,
            coords.clone(),
            keys.clone(),
            settings.clone(),
            initiator.clone(),
            budget.clone(),
            rec.clone(),
        )));
    }
    for c in clients {
        c.await.context("a load client panicked")?;
    }
    let closed = budget.closed_at_us.load(Ordering::Relaxed);
    rec.record(Event::Load {
        at_us: if closed == 0 { now_us() } else { closed },
        phase: LoadPhase::End,
    });
    observer.abort();
    stopper.abort();
    Ok(())
}

fn unreachable(e: CallError, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} (last tried {})", e.message, e.endpoint)
}

/// Generates the run's keys, `keys_per_scheme` of each scheme, each under the admin's policy
/// that lets the initiator alone approve its signings, and records each one's description
/// as the register's initial value.
async fn setup_keys(
    coords: &Coordinators,
    settings: &LoadSettings,
    admin: &Admin,
    initiator: &Initiator,
    rec: &Recorder,
) -> anyhow::Result<Vec<RegisterKey>> {
    let patience = Duration::from_secs(60);
    let parties = mpc_client::paging::all(|page_size, page_token| async move {
        let req = pb::ListPartiesRequest {
            page_size,
            page_token,
        };
        let (page, _) = coords
            .call(0, patience, |ch| {
                let req = req.clone();
                async move {
                    PartyGatewayClient::new(ch)
                        .list_parties(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
            .map_err(|e| unreachable(e, "list parties"))?;
        anyhow::Ok((page.parties, page.next_page_token))
    })
    .await?;
    // Enrolled parties that never registered could not take part.
    let mut party_ids: Vec<String> = parties
        .into_iter()
        .filter(|p| p.registered)
        .map(|p| p.party_id)
        .collect();
    party_ids.sort();
    if party_ids.len() < 2 {
        bail!(
            "the cluster has {} registered parties; keygen needs at least 2",
            party_ids.len()
        );
    }
    let mut keys = Vec::new();
    let plan = settings
        .schemes
        .iter()
        .flat_map(|scheme| std::iter::repeat_n(*scheme, settings.keys_per_scheme));
    for (i, scheme) in plan.enumerate() {
        // The first ECDSA key of a group of parties waits for their auxiliary info (a prime
        // pair each, about a minute of one core when none is ready).
        let (timeout_seconds, patience) = if scheme.needs_aux_info() {
            (600, Duration::from_secs(660))
        } else {
            (60, patience)
        };
        let req = admin.endorse(
            pb::CreateKeygenRequest {
                scheme: scheme.as_str().to_owned(),
                threshold: 2,
                parties: party_ids.clone(),
                request_id: format!("chaos-{}-key-{i}", settings.run_id),
                description: "initial".into(),
                tags: Default::default(),
                timeout_seconds,
                key_id: format!("chaos-{}-key-{i}", settings.run_id),
                policy: None,
            },
            initiator,
        )?;
        let (created, _) = coords
            .call(i, patience, |ch| {
                let req = req.clone();
                async move {
                    SessionsClient::new(ch)
                        .create_keygen(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
            .map_err(|e| unreachable(e, "create keygen"))?;
        let session_id = created
            .session
            .context("create keygen answered no session")?
            .session_id;
        let session = wait_terminal(coords, &session_id, patience).await?;
        if session.status != pb::SessionStatus::Completed as i32 {
            bail!(
                "keygen {session_id} did not complete: {}",
                session.failure_reason
            );
        }
        let (key, _) = get_key(coords, i, &session.key_id, patience)
            .await
            .map_err(|e| unreachable(e, "get key"))?;
        rec.record(Event::Register {
            key_id: key.key_id.clone(),
            scheme: key.scheme.clone(),
            public_key: hex::encode(&key.public_key),
            initial: key.description.clone(),
        });
        let recorded: Scheme = key
            .scheme
            .parse()
            .with_context(|| format!("key {}: scheme {:?}", key.key_id, key.scheme))?;
        anyhow::ensure!(
            recorded == scheme,
            "key {}: asked for {scheme}, got {recorded}",
            key.key_id
        );
        keys.push(RegisterKey {
            key_id: key.key_id,
            scheme,
        });
    }
    Ok(keys)
}

/// Waits until every ECDSA key of `keys` has at least one presignature made. Nothing signs
/// before the load starts, so a completed presign session is one presignature available.
async fn wait_for_presignatures(
    coords: &Coordinators,
    keys: &[RegisterKey],
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    for (i, key) in keys
        .iter()
        .filter(|k| k.scheme == Scheme::EcdsaSecp256k1)
        .enumerate()
    {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let req = pb::ListSessionsRequest {
                status: pb::SessionStatus::Completed as i32,
                kind: pb::SessionKind::Presign as i32,
                key_id: key.key_id.clone(),
                page_size: 1,
                page_token: String::new(),
                consistency: 0,
            };
            let listed = coords
                .call(i, left.min(Duration::from_secs(5)), |ch| {
                    let req = req.clone();
                    async move {
                        SessionsClient::new(ch)
                            .list_sessions(req)
                            .await
                            .map(|r| r.into_inner().sessions)
                    }
                })
                .await;
            let last_error = match &listed {
                Ok((made, _)) if !made.is_empty() => break,
                Ok(_) => None,
                Err(e) => Some(format!("{} (from {})", e.message, e.endpoint)),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "key {}: no presignature made within {patience:?} (--presignature-wait){}",
                key.key_id,
                last_error
                    .as_deref()
                    .map(|e| format!("; the last look failed: {e}"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

pub use mpc_proto::domain::is_terminal;

pub fn status_name(status: i32) -> String {
    pb::SessionStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SESSION_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("status-{status}"))
}

/// One linearizable read of a key from whichever coordinator answers.
async fn get_key(
    coords: &Coordinators,
    first: usize,
    key_id: &str,
    budget: Duration,
) -> Result<(pb::Key, String), CallError> {
    coords
        .call(first, budget, |ch| {
            let req = pb::GetKeyRequest {
                key_id: key_id.to_owned(),
                consistency: pb::ReadConsistency::Linearizable as i32,
            };
            async move {
                KeysClient::new(ch)
                    .get_key(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
}

/// One linearizable read of a session from whichever coordinator answers.
pub async fn get_session(
    coords: &Coordinators,
    first: usize,
    session_id: &str,
    budget: Duration,
) -> Result<(pb::Session, String), CallError> {
    coords
        .call(first, budget, |ch| {
            let session_id = session_id.to_owned();
            async move {
                SessionsClient::new(ch)
                    .get_session(pb::GetSessionRequest {
                        session_id,
                        consistency: pb::ReadConsistency::Linearizable as i32,
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
}

/// Polls a session (linearizable reads, any coordinator) until it ends or `patience` runs
/// out; returns the last state seen.
pub async fn wait_terminal(
    coords: &Coordinators,
    session_id: &str,
    patience: Duration,
) -> anyhow::Result<pb::Session> {
    let deadline = Instant::now() + patience;
    let mut last: Option<pb::Session> = None;
    let mut i = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = get_session(coords, i, session_id, left.min(Duration::from_secs(2))).await;
        i += 1;
        match got {
            Ok((session, _)) if is_terminal(session.status) => return Ok(session),
            Ok((session, _)) => last = Some(session),
            Err(e) if e.outcome == Outcome::Fail => {
                bail!("session {session_id}: {}", e.message)
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return last.with_context(|| {
                format!("session {session_id}: no coordinator answered within {patience:?}")
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client of the load: an operation at a time while the budget lasts, each recorded under
/// the client's name. `next` is given the operation's number, from 1.
async fn run_client<F, Fut>(
    name: String,
    budget: &Budget,
    rec: &Recorder,
    think: Duration,
    mut next: F,
) where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Op>,
{
    let mut n = 0u64;
    while budget.take() {
        n += 1;
        let op = next(n).await;
        rec.record(Event::Op(Box::new(Op {
            client: name.clone(),
            ..op
        })));
        tokio::time::sleep(think).await;
    }
}

async fn register_client(
    name: String,
    index: usize,
    coords: Coordinators,
    keys: Vec<RegisterKey>,
    settings: LoadSettings,
    budget: Arc<Budget>,
    rec: Recorder,
) {
    let (coords, keys, settings, prefix) = (&coords, &keys, &settings, name.clone());
    run_client(name, &budget, &rec, settings.think, |n| {
        let (key, write) = {
            let mut rng = rand::thread_rng();
            (
                keys[rng.gen_range(0..keys.len())].key_id.clone(),
                rng.gen_bool(0.5),
            )
        };
        let prefix = &prefix;
        // Each client starts at its own coordinator, so that followers forward too.
        async move {
            if write {
                let request_id = format!("chaos-{}-{prefix}-{n}", settings.run_id);
                let value = format!("{prefix}-{n}");
                write_description(coords, index, &key, value, request_id, settings.op_budget).await
            } else {
                read_description(coords, index, &key, settings.op_budget).await
            }
        }
    })
    .await;
}

/// Sets a key's description. Retries carry the same request id, so the update applies once
/// even when an attempt that seemed to fail was committed.
pub async fn write_description(
    coords: &Coordinators,
    first: usize,
    key_id: &str,
    value: String,
    request_id: String,
    budget: Duration,
) -> Op {
    let start_us = now_us();
    let result = coords
        .call(first, budget, |ch| {
            let req = pb::UpdateKeyRequest {
                key_id: key_id.to_owned(),
                description: Some(value.clone()),
                tags: None,
                status: 0,
                request_id: request_id.clone(),
            };
            async move { KeysClient::new(ch).update_key(req).await }
        })
        .await;
    let end_us = now_us();
    let (outcome, endpoint, error) = match result {
        Ok((_, endpoint)) => (Outcome::Ok, endpoint, None),
        Err(e) => (e.outcome, e.endpoint, Some(e.message)),
    };
    Op {
        client: String::new(),
        kind: OpKind::Write,
        key_id: key_id.to_owned(),
        value: Some(value),
        start_us,
        end_us,
        outcome,
        endpoint,
        error,
        expect: None,
        sign: None,
    }
}

pub async fn read_description(
    coords: &Coordinators,
    first: usize,
    key_id: &str,
    budget: Duration,
) -> Op {
    let start_us = now_us();
    let result = get_key(coords, first, key_id, budget).await;
    let end_us = now_us();
    let (outcome, value, endpoint, error) = match result {
        Ok((key, endpoint)) => (Outcome::Ok, Some(key.description), endpoint, None),
        Err(e) => (e.outcome, None, e.endpoint, Some(e.message)),
    };
    Op {
        client: String::new(),
        kind: OpKind::Read,
        key_id: key_id.to_owned(),
        value,
        start_us,
        end_us,
        outcome,
        endpoint,
        error,
        expect: None,
        sign: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn signer(
    name: String,
    index: usize,
    coords: Coordinators,
    keys: Vec<RegisterKey>,
    settings: LoadSettings,
    initiator: Initiator,
    budget: Arc<Budget>,
    rec: Recorder,
) {
    let (coords, keys, settings, initiator, prefix) =
        (&coords, &keys, &settings, &initiator, name.clone());
    // Signer i signs with the i-th scheme only: an ECDSA signing without a presignature
    // takes seconds (10 s on two busy cores), and signers taking the schemes in turn all
    // ended up waiting on ECDSA, leaving a handful of Schnorr signings per run.
    let scheme = settings.schemes[index % settings.schemes.len()];
    run_client(name, &budget, &rec, settings.think, |n| {
        let (key, input) = {
            let mut rng = rand::thread_rng();
            let of_scheme: Vec<&RegisterKey> = keys.iter().filter(|k| k.scheme == scheme).collect();
            let key = of_scheme[rng.gen_range(0..of_scheme.len())].key_id.clone();
            let bytes: [u8; 32] = rng.gen();
            // The first signing is a message, which a presignature ready before the load
            // (--presignature-wait) serves: the presignature path runs in every scenario.
            (
                key,
                signing_input(scheme, bytes, n > 1 && rng.gen_bool(0.5)),
            )
        };
        let request_id = format!("chaos-{}-{prefix}-{n}", settings.run_id);
        async move { sign(coords, index, &key, &input, request_id, settings, initiator).await }
    })
    .await;
}

/// What one signing of the load signs. Schnorr schemes sign the bytes themselves; ECDSA
/// either a message its signers hash with keccak256 (the only input a presignature may
/// serve: `SigningInput::may_use_presignature`) or, when `raw_digest`, the bytes as a digest
/// signed as it is (always the full protocol).
pub fn signing_input(scheme: Scheme, bytes: [u8; 32], raw_digest: bool) -> SigningInput {
    match scheme {
        Scheme::EcdsaSecp256k1 if raw_digest => SigningInput::Digest(bytes),
        Scheme::EcdsaSecp256k1 => SigningInput::Message {
            message: bytes.to_vec(),
            hash: Some(HashFunction::Keccak256),
        },
        Scheme::SchnorrEd25519 | Scheme::SchnorrBip340 => SigningInput::Message {
            message: bytes.to_vec(),
            hash: None,
        },
    }
}

/// Creates a signing session approved by the initiator (retrying the same request id, so at
/// most one session exists for it) and follows it to its end.
pub async fn sign(
    coords: &Coordinators,
    first: usize,
    key_id: &str,
    input: &SigningInput,
    request_id: String,
    settings: &LoadSettings,
    initiator: &Initiator,
) -> Op {
    let start_us = now_us();
    let not_after_ms = expiry_after(settings.approval_ttl);
    let (digest, message, hash) = input.to_fields();
    let mut detail = SignDetail {
        request_id: request_id.clone(),
        message: hex::encode(&message),
        hash: (!hash.is_empty()).then_some(hash),
        digest: (!digest.is_empty()).then(|| hex::encode(&digest)),
        session_id: None,
        status: None,
        signature: None,
        failure_reason: None,
        attempt: 0,
        not_after_ms,
        presignature_id: None,
        created_by_final_read: false,
    };
    let req = approved_signing(key_id, input, request_id, not_after_ms, initiator).map(|req| {
        pb::CreateSigningRequest {
            timeout_seconds: settings.sign_timeout_secs,
            ..req
        }
    });
    let created = match req {
        // Our own fault, before anything was sent: the request certainly did not happen.
        Err(e) => Err(CallError {
            code: tonic::Code::InvalidArgument,
            outcome: Outcome::Fail,
            message: format!("approving the request: {e:#}"),
            endpoint: String::new(),
        }),
        Ok(req) => {
            coords
                .call(first, settings.op_budget, |ch| {
                    let req = req.clone();
                    async move {
                        SessionsClient::new(ch)
                            .create_signing(req)
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await
        }
    };
    let (outcome, endpoint, error) = match created {
        Err(e) => (e.outcome, e.endpoint, Some(e.message)),
        Ok((resp, endpoint)) => match resp.session {
            None => (
                Outcome::Unknown,
                endpoint,
                Some("create signing answered no session".into()),
            ),
            Some(session) => {
                detail.session_id = Some(session.session_id.clone());
                // The session's own timeout, then a margin for a leader change.
                let patience = Duration::from_secs(u64::from(settings.sign_timeout_secs) + 10);
                match wait_terminal(coords, &session.session_id, patience).await {
                    Ok(s) => {
                        detail.status = Some(status_name(s.status));
                        detail.attempt = s.attempt;
                        detail.presignature_id =
                            (!s.presignature_id.is_empty()).then(|| s.presignature_id.clone());
                        if s.status == pb::SessionStatus::Completed as i32 {
                            detail.signature = Some(hex::encode(&s.signature));
                            (Outcome::Ok, endpoint, None)
                        } else if is_terminal(s.status) {
                            detail.failure_reason = Some(s.failure_reason.clone());
                            (Outcome::Fail, endpoint, Some(s.failure_reason))
                        } else {
                            (
                                Outcome::Unknown,
                                endpoint,
                                Some(format!("still {} at the end", status_name(s.status))),
                            )
                        }
                    }
                    Err(e) => (Outcome::Unknown, endpoint, Some(format!("{e:#}"))),
                }
            }
        },
    };
    Op {
        client: String::new(),
        kind: OpKind::Sign,
        key_id: key_id.to_owned(),
        value: None,
        start_us,
        end_us: now_us(),
        outcome,
        endpoint,
        error,
        expect: None,
        sign: Some(detail),
    }
}

/// The load's signing request of `input` with the initiator's approval: the same arguments
/// give the same request, so the final reads can re-send it.
pub fn approved_signing(
    key_id: &str,
    input: &SigningInput,
    request_id: String,
    not_after_ms: u64,
    initiator: &Initiator,
) -> anyhow::Result<pb::CreateSigningRequest> {
    let (digest, message, hash) = input.to_fields();
    initiator.approve(
        pb::CreateSigningRequest {
            key_id: key_id.to_owned(),
            digest,
            request_id,
            timeout_seconds: 0,
            message,
            hash,
            approvals: Vec::new(),
            not_after_ms: 0,
            // The load follows each session with linearizable reads (wait_terminal): a call
            // held open for the whole signing would be cut by the RPC timeout under faults.
            wait: false,
        },
        not_after_ms,
    )
}

/// Asks every coordinator for its state every `every`, recording each (node, term) that
/// claims leadership once.
pub async fn observe(coords: Coordinators, duration: Duration, every: Duration, rec: Recorder) {
    let deadline = Instant::now() + duration;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        let views = coords.statuses().await;
        let at_us = now_us();
        for view in views.into_iter().flatten() {
            if view.state == "leader" && seen.insert((view.id, view.term)) {
                rec.record(Event::Leader {
                    at_us,
                    node: view.id,
                    term: view.term,
                });
            }
        }
    }
}

/// The leader of the highest term any coordinator reports, waiting up to `wait` for one.
pub async fn current_leader(coords: &Coordinators, wait: Duration) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + wait;
    loop {
        let views = coords.statuses().await;
        let best = views
            .into_iter()
            .flatten()
            .filter(|v| v.state == "leader")
            .max_by_key(|v| v.term);
        if let Some(v) = best {
            return Ok((v.id, v.term));
        }
        if Instant::now() >= deadline {
            bail!("no coordinator reported itself leader within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
