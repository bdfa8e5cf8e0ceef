//! Running one assignment: the protocol on a blocking thread, its messages pumped through the
//! envelope codec to and from the coordinator stream.

use mpc_types::statement::{Endorsed, KeyPolicy, PublicKey, Signed, SigningApproval, Statement};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use futures::channel::mpsc as fmpsc;
use futures::{FutureExt, StreamExt};
use mpc_proto::v1 as pb;
use mpc_tss::{AuxInfo, Channel, Incoming, KeyShare, Presignature, Scheme, SigningInput, TssError};
use sha2::Digest as _;
use tokio::sync::mpsc;

use crate::authority;
use crate::envelope::{EnvelopeCodec, PeerKeys};
use crate::identity::Identity;
use crate::store::RecordKind;
use crate::{blocking, PartyError, PartyState};

const PHASE_AUX: u32 = 0;
const PHASE_MAIN: u32 = 1;

/// Why this party's part of a session failed, and whom it blames.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub blamed: Vec<String>,
}

impl Failure {
    fn new(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            blamed: Vec::new(),
        }
    }
}

impl From<PartyError> for Failure {
    fn from(e: PartyError) -> Self {
        Failure::new(e)
    }
}

enum Output {
    PublicKey(Vec<u8>),
    Signature(Vec<u8>),
    Partial(Vec<u8>),
    PresignatureStored,
}

/// The parsed assignment.
struct Run {
    session_id: String,
    attempt: u32,
    kind: pb::SessionKind,
    scheme: Scheme,
    key_id: String,
    threshold: u16,
    key_parties: Vec<String>,
    participants: Vec<String>,
    my_position: u16,
    generate_aux: bool,
    input: Option<SigningInput>,
    presignature_id: Option<String>,
    peers: HashMap<String, PeerKeys>,
    /// Keygen: the admin-signed policy, checked. Signing: the policy the coordinator holds
    /// for the key, not yet checked.
    policy: Option<Endorsed<KeyPolicy>>,
    /// Signing: the request the approvals must approve, and the approvals.
    approvals: Option<(SigningApproval, Vec<Signed>)>,
}

/// Reads an assignment and makes every check that needs no disk: the identities' enrolments,
/// a keygen's policy, the presence of a signing's approvals.
fn parse(
    me: &str,
    identity: &Identity,
    admins: &[PublicKey],
    a: &pb::Assignment,
) -> Result<Run, Failure> {
    let kind =
        pb::SessionKind::try_from(a.kind).map_err(|_| Failure::new("unknown session kind"))?;
    let scheme: Scheme = a.scheme.parse().map_err(Failure::new)?;
    let position = |list: &[String], who: &str| {
        list.iter()
            .position(|p| p == who)
            .and_then(|p| u16::try_from(p).ok())
    };
    let my_position = position(&a.participants, me)
        .ok_or_else(|| Failure::new("this party is not among the participants"))?;
    for p in &a.participants {
        if position(&a.key_parties, p).is_none() {
            return Err(Failure::new(format!(
                "participant {p} does not hold the key"
            )));
        }
    }
    authority::check_identities(
        admins,
        me,
        (
            &identity.signing_public_key(),
            &identity.encryption_public_key(),
        ),
        &a.identities,
    )
    .map_err(Failure::new)?;
    for p in &a.participants {
        if !a.identities.iter().any(|id| id.party_id == *p) {
            return Err(Failure::new(format!(
                "unauthorised: participant {p} comes without an enrolled identity"
            )));
        }
    }
    let policy = match kind {
        pb::SessionKind::Keygen => Some(authority::keygen_policy(admins, a).map_err(Failure::new)?),
        // The key's current policy as the coordinator has it: adopted only if an admin signed
        // it as a successor of the one this party holds; anything else is ignored.
        pb::SessionKind::Sign => {
            mpc_proto::statements::policy_from("policy", a.policy.as_ref()).ok()
        }
        _ => None,
    };
    let approvals = match kind {
        pb::SessionKind::Sign => Some(authority::approvals(a).map_err(Failure::new)?),
        _ => None,
    };
    let mut peers = HashMap::new();
    for id in &a.identities {
        let keys = PeerKeys::parse(
            identity,
            &id.party_id,
            &id.signing_public_key,
            &id.encryption_public_key,
        )
        .map_err(Failure::new)?;
        peers.insert(id.party_id.clone(), keys);
    }
    let input = if kind == pb::SessionKind::Sign {
        Some(SigningInput::from_fields(&a.digest, &a.message, &a.hash).map_err(Failure::new)?)
    } else {
        None
    };
    Ok(Run {
        session_id: a.session_id.clone(),
        attempt: a.attempt,
        kind,
        scheme,
        key_id: a.key_id.clone(),
        threshold: u16::try_from(a.threshold)
            .map_err(|_| Failure::new("threshold out of range"))?,
        key_parties: a.key_parties.clone(),
        participants: a.participants.clone(),
        my_position,
        generate_aux: a.generate_aux_info,
        input,
        presignature_id: (!a.presignature_id.is_empty()).then(|| a.presignature_id.clone()),
        peers,
        policy,
        approvals,
    })
}

/// The share store id of a group's auxiliary info: the group is the ordered list of parties.
pub fn aux_group_id(key_parties: &[String]) -> String {
    let mut h = sha2::Sha256::new();
    for p in key_parties {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// How many started runs [`first_start`] remembers; past that the oldest are forgotten. The
/// per-run envelope keys (see `envelope.rs`) are what makes a repeated run safe; this refusal
/// only stops a coordinator that repeats itself from getting a second run at all.
const STARTED_RUNS_KEPT: usize = 1 << 20;

#[derive(Default)]
struct StartedRuns {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

static STARTED_RUNS: LazyLock<Mutex<StartedRuns>> = LazyLock::new(Default::default);

/// Whether party `party_id` starts attempt `attempt` of `session_id` for the first time. An
/// honest coordinator never sends one attempt twice (a retry is a new attempt); a second run
/// would repeat the protocol's randomness-dependent messages under the same execution id. The
/// party's id is part of the key: parties that share a process (in-process tests) each run
/// every attempt once.
fn first_start(party_id: &str, session_id: &str, attempt: u32) -> bool {
    let digest = sha2::Sha256::new()
        .chain_update(
            u64::try_from(party_id.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        )
        .chain_update(party_id.as_bytes())
        .chain_update(
            u64::try_from(session_id.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        )
        .chain_update(session_id.as_bytes())
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    // A poisoned lock cannot say whether the run started before: refuse.
    let Ok(mut runs) = STARTED_RUNS.lock() else {
        return false;
    };
    if !runs.seen.insert(key) {
        return false;
    }
    runs.order.push_back(key);
    if runs.order.len() > STARTED_RUNS_KEPT {
        if let Some(oldest) = runs.order.pop_front() {
            runs.seen.remove(&oldest);
        }
    }
    true
}

/// Runs an assignment to its end and returns the outcome to send to the leader.
pub async fn run(
    state: Arc<PartyState>,
    assignment: pb::Assignment,
    inbox: mpsc::UnboundedReceiver<pb::Envelope>,
    out: mpsc::Sender<pb::PartyMessage>,
) -> pb::SessionOutcome {
    let started = Instant::now();
    state.running_sessions.fetch_add(1, Ordering::Relaxed);
    let kind = pb::SessionKind::try_from(assignment.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("unknown");
    let result = match parse(
        &state.party_id,
        &state.identity,
        &state.admin_keys,
        &assignment,
    ) {
        Ok(run) if !first_start(&state.party_id, &run.session_id, run.attempt) => {
            Err(Failure::new(format!(
                "attempt {} of session {} was already started on this party; a second run is \
                 refused",
                run.attempt, run.session_id
            )))
        }
        Ok(run) => match authorise(&state, &run).await {
            Ok(()) => execute(&state, run, inbox, out).await,
            Err(f) => Err(f),
        },
        Err(f) => Err(f),
    };
    state.running_sessions.fetch_sub(1, Ordering::Relaxed);
    let outcome_label = if result.is_ok() {
        "completed"
    } else {
        "failed"
    };
    metrics::counter!("mpc_party_sessions_total", "kind" => kind, "outcome" => outcome_label)
        .increment(1);
    metrics::histogram!("mpc_party_session_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        kind,
        outcome = outcome_label,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "session finished"
    );
    let result = match result {
        Ok(Output::PublicKey(k)) => pb::session_outcome::Result::PublicKey(k),
        Ok(Output::Signature(s)) => pb::session_outcome::Result::Signature(s),
        Ok(Output::Partial(p)) => pb::session_outcome::Result::PartialSignature(p),
        Ok(Output::PresignatureStored) => pb::session_outcome::Result::PresignatureStored(true),
        Err(f) => {
            tracing::warn!(session = %assignment.session_id, reason = %f.reason, blamed = ?f.blamed, "session failed");
            pb::session_outcome::Result::Failure(pb::Failure {
                reason: f.reason,
                blamed_parties: f.blamed,
            })
        }
    };
    let report_signature = match &result {
        pb::session_outcome::Result::PublicKey(public_key) => state
            .identity
            .sign(
                &mpc_types::statement::KeygenReport {
                    session_id: &assignment.session_id,
                    key_id: &assignment.key_id,
                    public_key,
                }
                .signing_bytes(),
            )
            .to_vec(),
        _ => Vec::new(),
    };
    pb::SessionOutcome {
        session_id: assignment.session_id,
        attempt: assignment.attempt,
        result: Some(result),
        report_signature,
    }
}

/// The checks that need the disk: a keygen for a key this party already holds is refused (a
/// share is never overwritten); a signing's approvals are checked against the policy this
/// party holds and recorded as used by this session.
async fn authorise(state: &Arc<PartyState>, run: &Run) -> Result<(), Failure> {
    let store = state.store.clone();
    let key_id = run.key_id.clone();
    match run.kind {
        pb::SessionKind::Keygen => {
            if blocking(move || Ok(store.holds_share(&key_id))).await? {
                return Err(Failure::new(format!(
                    "unauthorised: this party already holds a share of key {}; it never \
                     overwrites one",
                    run.key_id
                )));
            }
            Ok(())
        }
        pb::SessionKind::Sign => {
            let Some((request, approvals)) = run.approvals.clone() else {
                return Err(Failure::new(
                    "unauthorised: the signing carries no approvals",
                ));
            };
            let admins = state.admin_keys.clone();
            let session_id = run.session_id.clone();
            let offered = run.policy.clone();
            let decided = blocking(move || {
                authority::authorise_signing(
                    &store,
                    &admins,
                    &session_id,
                    &request,
                    &approvals,
                    offered.as_ref(),
                    authority::now_ms(),
                )
            })
            .await?;
            decided.map_err(Failure::new)
        }
        _ => Ok(()),
    }
}

async fn load_share(state: &PartyState, key_id: &str) -> Result<Arc<KeyShare>, Failure> {
    let store = state.store.clone();
    let key_id = key_id.to_owned();
    let share = blocking(move || match store.get_share(&key_id)? {
        Some(bytes) => Ok(KeyShare::from_bytes(&bytes)?),
        None => Err(PartyError::Config {
            field: "key_id".into(),
            reason: format!("this party holds no share of key {key_id}"),
        }),
    })
    .await?;
    Ok(Arc::new(share))
}

async fn execute(
    state: &Arc<PartyState>,
    run: Run,
    inbox: mpsc::UnboundedReceiver<pb::Envelope>,
    out: mpsc::Sender<pb::PartyMessage>,
) -> Result<Output, Failure> {
    let eid = format!("{}/{}", run.session_id, run.attempt);
    let n = u16::try_from(run.participants.len()).map_err(|_| Failure::new("too many parties"))?;
    let i = run.my_position;
    match run.kind {
        pb::SessionKind::Keygen => {
            let (scheme, t) = (run.scheme, run.threshold);
            let group = aux_group_id(&run.key_parties);
            let primes = if scheme.needs_aux_info() && run.generate_aux {
                let session = run.session_id.clone();
                Some(
                    state
                        .primes
                        .take(|| tracing::info!(%session, "waiting for a prime pair"))
                        .await?,
                )
            } else {
                None
            };
            let stored_aux = if scheme.needs_aux_info() && primes.is_none() {
                let store = state.store.clone();
                let group = group.clone();
                let aux = blocking(move || match store.get(RecordKind::AuxInfo, &group)? {
                    Some(b) => Ok(AuxInfo::from_bytes(&b)?),
                    None => Err(PartyError::Config {
                        field: "aux_info".into(),
                        reason: "no auxiliary info for this group of parties on this party".into(),
                    }),
                })
                .await?;
                Some(aux)
            } else {
                None
            };
            let store = state.store.clone();
            let key_id = run.key_id.clone();
            let policy = run
                .policy
                .as_ref()
                .ok_or_else(|| Failure::new("unauthorised: the keygen carries no policy"))
                .and_then(|p| authority::encode_policy(p).map_err(Failure::from))?;
            let share = pump(state, &run, inbox, out, move |aux_channel, main_channel| {
                Box::pin(async move {
                    let aux = match (primes, stored_aux) {
                        (Some(primes), _) => {
                            let aux_eid = format!("{eid}/aux");
                            let aux = mpc_tss::generate_aux_info(
                                aux_eid.as_bytes(),
                                i,
                                n,
                                primes,
                                aux_channel,
                            )
                            .await?;
                            store
                                .put(RecordKind::AuxInfo, &group, &aux.to_bytes()?)
                                .map_err(|e| TssError::Bug(e.to_string()))?;
                            Some(aux)
                        }
                        (None, aux) => aux,
                    };
                    let share = mpc_tss::generate_key(
                        scheme,
                        eid.as_bytes(),
                        i,
                        n,
                        t,
                        aux.as_ref(),
                        main_channel,
                    )
                    .await?;
                    // The policy first: the share is sealed bound to it.
                    store
                        .put(RecordKind::KeyPolicy, &key_id, &policy)
                        .and_then(|()| store.put_share(&key_id, &share.to_bytes()?))
                        .map_err(|e| TssError::Bug(e.to_string()))?;
                    share.public_key()
                })
            })
            .await?;
            Ok(Output::PublicKey(share))
        }
        pb::SessionKind::Sign => {
            let input = run
                .input
                .clone()
                .ok_or_else(|| Failure::new("nothing to sign"))?;
            if let Some(presignature_id) = &run.presignature_id {
                // The presignature is all this path needs: no key share is read.
                return issue_partial(state, &run.key_id, presignature_id, &input).await;
            }
            let share = load_share(state, &run.key_id).await?;
            let signers = signer_indices(&run)?;
            let signature = pump(state, &run, inbox, out, move |_, channel| {
                Box::pin(async move {
                    mpc_tss::sign(&share, eid.as_bytes(), &signers, &input, channel)
                        .await
                        .map(|s| s.to_bytes())
                })
            })
            .await?;
            Ok(Output::Signature(signature))
        }
        pb::SessionKind::Presign => {
            let share = load_share(state, &run.key_id).await?;
            let signers = signer_indices(&run)?;
            let store = state.store.clone();
            let id = presignature_record_id(&run.key_id, &run.session_id);
            pump(state, &run, inbox, out, move |_, channel| {
                Box::pin(async move {
                    let presignature =
                        mpc_tss::presign(&share, eid.as_bytes(), &signers, channel).await?;
                    store
                        .put_presignature(&id, &presignature.to_bytes()?)
                        .map_err(|e| TssError::Bug(e.to_string()))?;
                    Ok(())
                })
            })
            .await?;
            Ok(Output::PresignatureStored)
        }
        other => Err(Failure::new(format!(
            "{} sessions are not supported by this party",
            other.as_str_name()
        ))),
    }
}

fn presignature_record_id(key_id: &str, presignature_id: &str) -> String {
    format!("{key_id}.{presignature_id}")
}

fn signer_indices(run: &Run) -> Result<Vec<u16>, Failure> {
    run.participants
        .iter()
        .map(|p| {
            run.key_parties
                .iter()
                .position(|k| k == p)
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| Failure::new(format!("{p} does not hold the key")))
        })
        .collect()
}

/// Signs from a presignature. The store hands a presignature out once ever: of concurrent
/// assignments naming it exactly one gets it, it is noted as used and gone from disk (synced)
/// before the partial signature exists, and a copy restored later is refused (see
/// `store/presignatures.rs`), so a crash, a race or a restore never leads to a second use.
async fn issue_partial(
    state: &PartyState,
    key_id: &str,
    presignature_id: &str,
    input: &SigningInput,
) -> Result<Output, Failure> {
    let SigningInput::Message {
        message,
        hash: Some(hash),
    } = input.clone()
    else {
        return Err(Failure::new(
            "a presignature serves only a message with its hash function, never a raw digest",
        ));
    };
    let store = state.store.clone();
    let id = presignature_record_id(key_id, presignature_id);
    let partial = blocking(move || {
        let bytes = store.take_presignature(&id)?;
        let presignature = Presignature::from_bytes(&bytes)?;
        Ok(presignature.issue_partial(&message, hash).to_bytes()?)
    })
    .await?;
    Ok(Output::Partial(partial))
}

type ProtocolFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, TssError>> + Send>>;

/// Runs `protocol` on a blocking thread with one channel per phase, moving its messages
/// through envelopes until it ends or an envelope is refused.
async fn pump<T, F>(
    state: &Arc<PartyState>,
    run: &Run,
    mut inbox: mpsc::UnboundedReceiver<pb::Envelope>,
    out: mpsc::Sender<pb::PartyMessage>,
    protocol: F,
) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(Channel, Channel) -> ProtocolFuture<T> + Send + 'static,
{
    let mut codec = EnvelopeCodec::new(
        &run.session_id,
        run.attempt,
        &state.party_id,
        state.identity.clone(),
        run.peers.clone(),
    );
    let (aux_in_tx, aux_in_rx) = fmpsc::unbounded::<Incoming>();
    let (main_in_tx, main_in_rx) = fmpsc::unbounded::<Incoming>();
    let (aux_out_tx, aux_out_rx) = fmpsc::unbounded();
    let (main_out_tx, main_out_rx) = fmpsc::unbounded();
    let aux_channel = Channel::new(aux_in_rx, aux_out_tx);
    let main_channel = Channel::new(main_in_rx, main_out_tx);
    let mut job = tokio::task::spawn_blocking(move || {
        futures::executor::block_on(protocol(aux_channel, main_channel))
    });
    let mut outgoing = futures::stream::select(
        aux_out_rx.map(|m| (PHASE_AUX, m)),
        main_out_rx.map(|m| (PHASE_MAIN, m)),
    );
    let mut inboxes = Some((aux_in_tx, main_in_tx));
    loop {
        tokio::select! {
            done = &mut job => {
                let result = done.map_err(|e| Failure::new(format!("protocol task: {e}")))?;
                // Flush what the protocol sent on its last step before reporting.
                while let Some(Some((phase, message))) = outgoing.next().now_or_never() {
                    send(&mut codec, run, &out, phase, message).await?;
                }
                return result.map_err(|e| {
                    let blamed = e
                        .blamed()
                        .iter()
                        .filter_map(|&i| run.participants.get(usize::from(i)).cloned())
                        .collect();
                    Failure { reason: e.to_string(), blamed }
                });
            }
            Some((phase, message)) = outgoing.next() => {
                send(&mut codec, run, &out, phase, message).await?;
            }
            envelope = inbox.recv(), if inboxes.is_some() => {
                let Some(envelope) = envelope else {
                    inboxes = None;
                    continue;
                };
                match codec.open(&envelope) {
                    Ok((phase, payload)) => {
                        let Some(sender) = run.participants.iter().position(|p| *p == envelope.sender)
                            .and_then(|p| u16::try_from(p).ok()) else { continue };
                        let incoming = Incoming { sender, broadcast: envelope.receiver.is_empty(), payload };
                        if let Some((aux, main)) = &inboxes {
                            let target = if phase == PHASE_AUX { aux } else { main };
                            let _ = target.unbounded_send(incoming);
                        }
                    }
                    Err(refused) => {
                        // Closing the inboxes ends the protocol run on its thread.
                        drop(inboxes.take());
                        let _ = job.await;
                        return Err(Failure { reason: refused.to_string(), blamed: vec![refused.sender] });
                    }
                }
            }
        }
    }
}

async fn send(
    codec: &mut EnvelopeCodec,
    run: &Run,
    out: &mpsc::Sender<pb::PartyMessage>,
    phase: u32,
    message: mpc_tss::Outgoing,
) -> Result<(), Failure> {
    let receiver = match message.receiver {
        Some(i) => Some(
            run.participants
                .get(usize::from(i))
                .ok_or_else(|| Failure::new(format!("protocol addressed unknown index {i}")))?
                .as_str(),
        ),
        None => None,
    };
    let envelope = codec
        .seal(phase, receiver, &message.payload)
        .map_err(Failure::new)?;
    out.send(pb::PartyMessage {
        body: Some(pb::party_message::Body::Envelope(envelope)),
    })
    .await
    .map_err(|_| Failure::new("the connection to the leader closed"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use mpc_tss::{PartialSignature, PrimePair};

    use super::*;
    use crate::master_key::MasterKey;
    use crate::primes::PrimePool;
    use crate::store::ShareStore;
    use mpc_tss::HashFunction;

    fn admin() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0xad; 32])
    }

    fn initiator() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0x1e; 32])
    }

    /// A party `id` on its own store under `dir`, holding the admin's policy of `key-1` (a
    /// 2-of-2 ECDSA key of p1 and p2 that the test initiator may have sign).
    fn party(dir: &std::path::Path, id: &str) -> Arc<PartyState> {
        let key = MasterKey::from_hex("t", &"22".repeat(32)).unwrap();
        let store = Arc::new(ShareStore::open(&dir.join(id), id, &key).unwrap());
        let identity = Arc::new(Identity::load_or_create(&store).unwrap());
        let policy = Endorsed::new(
            &admin(),
            KeyPolicy {
                key_id: "key-1".into(),
                scheme: Scheme::EcdsaSecp256k1.as_str().into(),
                threshold: 2,
                parties: vec!["p1".into(), "p2".into()],
                initiators: vec![initiator().verifying_key().to_bytes()],
                approvals_needed: 1,
                version: 1,
            },
        );
        store
            .put(
                RecordKind::KeyPolicy,
                "key-1",
                &authority::encode_policy(&policy).unwrap(),
            )
            .unwrap();
        Arc::new(PartyState {
            party_id: id.into(),
            primes: PrimePool::new(store.clone(), 0),
            store,
            identity,
            connected: AtomicBool::new(false),
            running_sessions: AtomicUsize::new(0),
            advertised_endpoint: String::new(),
            admin_keys: vec![admin().verifying_key().to_bytes()],
        })
    }

    /// Runs one protocol for two parties in process.
    async fn both<T, F, Fut>(protocol: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(u16, Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
    {
        let (channels, router) = mpc_tss::local::network(2);
        let router = tokio::spawn(router);
        let tasks: Vec<_> = channels
            .into_iter()
            .zip(0u16..)
            .map(|(ch, i)| tokio::spawn(protocol(i, ch)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        router.await.unwrap();
        out
    }

    /// A 2-of-2 ECDSA key and one presignature per party, with the test prime pairs.
    async fn presignatures() -> (Vec<u8>, Vec<Presignature>) {
        let primes: Vec<_> = include_str!("../../tss/testdata/primes.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(2)
            .map(|l| Mutex::new(Some(PrimePair::from_bytes(l.as_bytes()).unwrap())))
            .collect();
        let primes = Arc::new(primes);
        let aux = both(move |i, ch| {
            let pair = primes[usize::from(i)].lock().unwrap().take().unwrap();
            async move { mpc_tss::generate_aux_info(b"aux", i, 2, pair, ch).await }
        })
        .await;
        let aux = Arc::new(aux);
        let shares = both(move |i, ch| {
            let aux = aux.clone();
            async move {
                let aux = &aux[usize::from(i)];
                mpc_tss::generate_key(Scheme::EcdsaSecp256k1, b"keygen", i, 2, 2, Some(aux), ch)
                    .await
            }
        })
        .await;
        let public_key = shares[0].public_key().unwrap();
        let shares = Arc::new(shares);
        let presignatures = both(move |i, ch| {
            let shares = shares.clone();
            async move { mpc_tss::presign(&shares[usize::from(i)], b"presign", &[0, 1], ch).await }
        })
        .await;
        (public_key, presignatures)
    }

    fn sign_assignment(
        session_id: &str,
        presignature_id: &str,
        parties: &[&Arc<PartyState>],
        message: &[u8],
    ) -> pb::Assignment {
        let ids: Vec<String> = parties.iter().map(|p| p.party_id.clone()).collect();
        let hash = HashFunction::Sha256.as_str().to_owned();
        let not_after_ms = authority::now_ms() + 60_000;
        let approval = SigningApproval {
            key_id: "key-1".into(),
            digest: Vec::new(),
            message: message.to_vec(),
            hash: hash.clone(),
            derivation_path: Vec::new(),
            request_id: session_id.into(),
            not_after_ms,
        };
        let approved = mpc_types::statement::sign(&initiator(), &approval);
        pb::Assignment {
            session_id: session_id.into(),
            attempt: 1,
            kind: pb::SessionKind::Sign as i32,
            scheme: Scheme::EcdsaSecp256k1.as_str().into(),
            key_id: "key-1".into(),
            threshold: 2,
            key_parties: ids.clone(),
            participants: ids,
            identities: parties
                .iter()
                .map(|p| {
                    let enrolled = Endorsed::new(
                        &admin(),
                        mpc_types::statement::Enrolment {
                            party_id: p.party_id.clone(),
                            signing_public_key: p.identity.signing_public_key(),
                            encryption_public_key: p.identity.encryption_public_key(),
                        },
                    );
                    pb::PartyIdentity {
                        party_id: p.party_id.clone(),
                        signing_public_key: p.identity.signing_public_key().to_vec(),
                        encryption_public_key: p.identity.encryption_public_key().to_vec(),
                        enrolled_by: Some(mpc_proto::statements::signature_to(&enrolled.by)),
                    }
                })
                .collect(),
            message: message.to_vec(),
            hash,
            presignature_id: presignature_id.into(),
            approvals: vec![mpc_proto::statements::signature_to(&approved)],
            approvals_not_after_ms: not_after_ms,
            request_id: session_id.into(),
            ..Default::default()
        }
    }

    async fn run_assignment(state: &Arc<PartyState>, a: pb::Assignment) -> pb::SessionOutcome {
        let (_inbox_tx, inbox) = mpsc::unbounded_channel();
        let (out, _out_rx) = mpsc::channel(16);
        run(state.clone(), a, inbox, out).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_assignments_naming_one_presignature_issue_exactly_one_partial() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (party(dir.path(), "p1"), party(dir.path(), "p2"));
        let (public_key, presignatures) = presignatures().await;
        let mut presignatures = presignatures.into_iter();
        let (mine, theirs) = (presignatures.next().unwrap(), presignatures.next().unwrap());
        let id = presignature_record_id("key-1", "pre-1");
        p1.store
            .put_presignature(&id, &mine.to_bytes().unwrap())
            .unwrap();

        // A rogue coordinator: eight sessions, each with its own message, one presignature.
        let runs: Vec<_> = (0..8)
            .map(|n| {
                let a = sign_assignment(
                    &format!("race-{}-{n}", uuid::Uuid::new_v4()),
                    "pre-1",
                    &[&p1, &p2],
                    format!("pay bob {n}").as_bytes(),
                );
                let p1 = p1.clone();
                tokio::spawn(async move { run_assignment(&p1, a).await })
            })
            .collect();
        let mut partials = Vec::new();
        let mut refusals = Vec::new();
        for (n, r) in runs.into_iter().enumerate() {
            match r.await.unwrap().result {
                Some(pb::session_outcome::Result::PartialSignature(p)) => partials.push((n, p)),
                Some(pb::session_outcome::Result::Failure(f)) => refusals.push(f.reason),
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(partials.len(), 1, "{refusals:?}");
        assert_eq!(refusals.len(), 7);
        assert!(
            refusals.iter().all(|r| r.contains("presignature")),
            "{refusals:?}"
        );

        // The one partial is a real one: with p2's it makes a signature that verifies.
        let (n, partial) = &partials[0];
        let message = format!("pay bob {n}").into_bytes();
        let partials = [
            PartialSignature::from_bytes(partial).unwrap(),
            theirs.issue_partial(&message, HashFunction::Sha256),
        ];
        PartialSignature::combine(&partials, &public_key, &message, HashFunction::Sha256).unwrap();

        // And it stays used: a later assignment is refused too.
        let again = sign_assignment("after", "pre-1", &[&p1, &p2], b"pay eve");
        let outcome = run_assignment(&p1, again).await;
        assert!(
            matches!(
                outcome.result,
                Some(pb::session_outcome::Result::Failure(_))
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_second_run_of_the_same_attempt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (party(dir.path(), "p1"), party(dir.path(), "p2"));
        let session = format!("dup-{}", uuid::Uuid::new_v4());
        let a = sign_assignment(&session, "missing", &[&p1, &p2], b"m");
        let first = run_assignment(&p1, a.clone()).await;
        let Some(pb::session_outcome::Result::Failure(f)) = first.result else {
            panic!("{first:?}");
        };
        assert!(f.reason.contains("not on this party"), "{}", f.reason);
        let second = run_assignment(&p1, a.clone()).await;
        let Some(pb::session_outcome::Result::Failure(f)) = second.result else {
            panic!("{second:?}");
        };
        assert!(f.reason.contains("already started"), "{}", f.reason);

        // The next attempt is a new run.
        let mut next = a;
        next.attempt = 2;
        let third = run_assignment(&p1, next).await;
        let Some(pb::session_outcome::Result::Failure(f)) = third.result else {
            panic!("{third:?}");
        };
        assert!(!f.reason.contains("already started"), "{}", f.reason);
    }

    #[tokio::test]
    async fn an_assignment_with_a_low_order_peer_key_is_refused_naming_the_peer() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (party(dir.path(), "p1"), party(dir.path(), "p2"));
        let mut a = sign_assignment("low-order", "pre", &[&p1, &p2], b"m");
        // Even a key an admin enrolled (by mistake or malice) is refused if it has low order.
        let enrolled = Endorsed::new(
            &admin(),
            mpc_types::statement::Enrolment {
                party_id: "p2".into(),
                signing_public_key: p2.identity.signing_public_key(),
                encryption_public_key: [0; 32],
            },
        );
        a.identities[1].encryption_public_key = vec![0; 32];
        a.identities[1].enrolled_by = Some(mpc_proto::statements::signature_to(&enrolled.by));
        let outcome = run_assignment(&p1, a).await;
        let Some(pb::session_outcome::Result::Failure(f)) = outcome.result else {
            panic!("{outcome:?}");
        };
        assert!(
            f.reason.contains("p2") && f.reason.contains("low order"),
            "{}",
            f.reason
        );
    }
}
