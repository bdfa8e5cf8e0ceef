//! `mpc-bench sign`: the signing protocols in one process, then the same through a running
//! cluster, printing one JSON line per measurement for scripts/bench-sign.sh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::join_all;
use hdrhistogram::Histogram;
use mpc_client::{ClientChannel as GrpcChannel, Credentials};
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tss::{local, AuxInfo, Channel, HashFunction, KeyShare, Scheme, SigningInput, TssError};
use serde_json::json;

use crate::authority::Signers;

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn summary(
    name: &str,
    place: &str,
    hist: &Histogram<u64>,
    wall: Duration,
    extra: serde_json::Value,
) {
    let mut line = json!({
        "bench": name,
        "place": place,
        "count": hist.len(),
        "p50_ms": hist.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": hist.value_at_quantile(0.99) as f64 / 1000.0,
        "per_sec": hist.len() as f64 / wall.as_secs_f64(),
    });
    if let (Some(obj), Some(more)) = (line.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    println!("{line}");
}

async fn run_all<T, F, Fut>(n: u16, party: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(u16, Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
{
    let (channels, router) = local::network(n);
    let router = tokio::spawn(router);
    let handles: Vec<_> = channels
        .into_iter()
        .zip(0u16..)
        .map(|(ch, i)| {
            tokio::task::spawn_blocking({
                let fut = party(i, ch);
                move || futures::executor::block_on(fut)
            })
        })
        .collect();
    let mut out = Vec::new();
    for r in join_all(handles).await {
        out.push(r??);
    }
    router.await?;
    Ok(out)
}

fn primes(path: &str, count: usize) -> anyhow::Result<Vec<mpc_tss::PrimePair>> {
    let text = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
    let pairs = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(count)
        .map(|l| mpc_tss::PrimePair::from_bytes(l.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    if pairs.len() < count {
        bail!("{path} holds fewer than {count} prime pairs");
    }
    Ok(pairs)
}

async fn keygen(
    scheme: Scheme,
    aux: Option<&[Arc<AuxInfo>]>,
) -> anyhow::Result<Vec<Arc<KeyShare>>> {
    let aux: Option<Vec<Arc<AuxInfo>>> = aux.map(<[_]>::to_vec);
    let shares =
        run_all(3, move |i, ch| {
            let aux = aux.as_ref().map(|a| a[usize::from(i)].clone());
            async move {
                mpc_tss::generate_key(scheme, b"bench-keygen", i, 3, 2, aux.as_deref(), ch).await
            }
        })
        .await?;
    Ok(shares.into_iter().map(Arc::new).collect())
}

async fn sign_once(
    shares: &[Arc<KeyShare>],
    input: &SigningInput,
    eid: String,
) -> anyhow::Result<()> {
    let signers = vec![0u16, 1];
    let parts: Vec<_> = signers
        .iter()
        .map(|&s| shares[usize::from(s)].clone())
        .collect();
    let input = input.clone();
    run_all(2, move |pos, ch| {
        let share = parts[usize::from(pos)].clone();
        let (signers, input, eid) = (signers.clone(), input.clone(), eid.clone());
        async move { mpc_tss::sign(&share, eid.as_bytes(), &signers, &input, ch).await }
    })
    .await?;
    Ok(())
}

/// The protocols alone: every party in this process, messages through an in-memory router.
pub async fn in_process(primes_file: &str, iterations: usize) -> anyhow::Result<()> {
    let pairs = primes(primes_file, 3)?;
    let started = Instant::now();
    let pairs = Arc::new(std::sync::Mutex::new(
        pairs.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let aux: Vec<Arc<AuxInfo>> = run_all(3, move |i, ch| {
        let pair = pairs.lock().ok().and_then(|mut p| p[usize::from(i)].take());
        async move {
            let pair = pair.ok_or_else(|| TssError::Bug("prime pair taken twice".into()))?;
            mpc_tss::generate_aux_info(b"bench-aux", i, 3, pair, ch).await
        }
    })
    .await?
    .into_iter()
    .map(Arc::new)
    .collect();
    println!(
        "{}",
        json!({"bench": "aux_info", "place": "in-process", "ms": started.elapsed().as_secs_f64() * 1000.0})
    );

    for scheme in Scheme::ALL {
        let mut hist = histogram()?;
        let wall = Instant::now();
        for _ in 0..3 {
            let t = Instant::now();
            keygen(scheme, scheme.needs_aux_info().then_some(aux.as_slice())).await?;
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        summary(
            "keygen",
            "in-process",
            &hist,
            wall.elapsed(),
            json!({"scheme": scheme.as_str(), "aux_info": "existing"}),
        );
    }

    for scheme in Scheme::ALL {
        let shares = keygen(scheme, scheme.needs_aux_info().then_some(aux.as_slice())).await?;
        let input = match scheme {
            Scheme::EcdsaSecp256k1 => SigningInput::Digest([7; 32]),
            _ => SigningInput::Message {
                message: b"bench".to_vec(),
                hash: None,
            },
        };
        let n = if scheme == Scheme::EcdsaSecp256k1 {
            iterations.min(30)
        } else {
            iterations
        };
        let mut hist = histogram()?;
        let wall = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            sign_once(&shares, &input, format!("bench-sign-{i}")).await?;
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        let mode = if scheme == Scheme::EcdsaSecp256k1 {
            "full protocol"
        } else {
            "FROST"
        };
        summary(
            "sign",
            "in-process",
            &hist,
            wall.elapsed(),
            json!({"scheme": scheme.as_str(), "mode": mode, "concurrency": 1}),
        );

        // A burst: many signings at once.
        let burst = if scheme == Scheme::EcdsaSecp256k1 {
            8
        } else {
            64
        };
        let wall = Instant::now();
        let mut hist = histogram()?;
        let runs = (0..burst).map(|i| {
            let shares = shares.clone();
            let input = input.clone();
            async move {
                let t = Instant::now();
                sign_once(&shares, &input, format!("bench-burst-{i}"))
                    .await
                    .map(|()| t.elapsed())
            }
        });
        for d in join_all(runs).await {
            hist.record(d?.as_micros().max(1) as u64)?;
        }
        summary(
            "sign_burst",
            "in-process",
            &hist,
            wall.elapsed(),
            json!({"scheme": scheme.as_str(), "mode": mode, "concurrency": burst}),
        );

        if scheme == Scheme::EcdsaSecp256k1 {
            let mut presign = histogram()?;
            let mut from_presig = histogram()?;
            let wall = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                let signers = vec![0u16, 1];
                let parts = [shares[0].clone(), shares[1].clone()];
                let eid = format!("bench-presign-{i}");
                let presigs = run_all(2, move |pos, ch| {
                    let share = parts[usize::from(pos)].clone();
                    let (signers, eid) = (signers.clone(), eid.clone());
                    async move { mpc_tss::presign(&share, eid.as_bytes(), &signers, ch).await }
                })
                .await?;
                presign.record(t.elapsed().as_micros().max(1) as u64)?;
                let t = Instant::now();
                let message = format!("message {i}").into_bytes();
                let partials: Vec<_> = presigs
                    .into_iter()
                    .map(|p| p.issue_partial(&message, HashFunction::Keccak256))
                    .collect();
                let pk = shares[0].public_key()?;
                mpc_tss::PartialSignature::combine(
                    &partials,
                    &pk,
                    &message,
                    HashFunction::Keccak256,
                )?;
                from_presig.record(t.elapsed().as_micros().max(1) as u64)?;
            }
            summary(
                "presign",
                "in-process",
                &presign,
                wall.elapsed(),
                json!({"scheme": "ecdsa-secp256k1"}),
            );
            summary(
                "sign",
                "in-process",
                &from_presig,
                Duration::from_secs_f64(from_presig.mean() * n as f64 / 1e6),
                json!({"scheme": "ecdsa-secp256k1", "mode": "presignature", "concurrency": 1}),
            );
        }
    }
    Ok(())
}

/// A channel to the cluster with the caller's credentials (`MPC_CA_CERT`, …).
fn grpc(addr: &str) -> anyhow::Result<GrpcChannel> {
    Ok(Credentials::from_env()?.channel(addr, |e| e.timeout(Duration::from_secs(600)))?)
}

fn ended(status: i32) -> bool {
    mpc_client::sessions::is_terminal(status)
}

/// Follows a session to its end over WatchSession; the session as it ended.
async fn watch_to_end(
    sessions: &mut SessionsClient<GrpcChannel>,
    session: pb::Session,
) -> anyhow::Result<pb::Session> {
    if ended(session.status) {
        return Ok(session);
    }
    let mut watch = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: session.session_id.clone(),
        })
        .await?
        .into_inner();
    while let Some(s) = watch.message().await? {
        if ended(s.status) {
            return Ok(s);
        }
    }
    bail!("watch of {} ended early", session.session_id)
}

fn completed(s: pb::Session) -> anyhow::Result<pb::Session> {
    if s.status != pb::SessionStatus::Completed as i32 {
        bail!(
            "session {} ended {:?}: {}",
            s.session_id,
            pb::SessionStatus::try_from(s.status),
            s.failure_reason
        );
    }
    Ok(s)
}

/// Creates a session and follows it to its end (keygen has no `wait`); the session as it
/// ended.
async fn run_session(
    sessions: &mut SessionsClient<GrpcChannel>,
    create: impl std::future::Future<
        Output = Result<tonic::Response<pb::CreateSessionResponse>, tonic::Status>,
    >,
) -> anyhow::Result<pb::Session> {
    let created = create.await?.into_inner();
    let session = created.session.context("no session")?;
    completed(watch_to_end(sessions, session).await?)
}

/// One signing as a client sees it: CreateSigning with `wait`, whose answer carries the
/// signature. A session the call left unfinished (past its deadline with no expiry committed
/// yet) is followed to its end, so a slow cluster shows as slow rather than as an error.
async fn sign_waiting(
    sessions: &mut SessionsClient<GrpcChannel>,
    mut req: pb::CreateSigningRequest,
) -> anyhow::Result<pb::Session> {
    req.wait = true;
    let created = sessions.create_signing(req).await?.into_inner();
    let session = created.session.context("no session")?;
    completed(watch_to_end(sessions, session).await?)
}

/// A 2-of-3 keygen across party-1..3 under the admin's policy (signed before the clock
/// starts: the client's work).
async fn cluster_keygen(
    sessions: &mut SessionsClient<GrpcChannel>,
    signers: &Signers,
    scheme: &str,
) -> anyhow::Result<(pb::Session, Duration)> {
    let parties: Vec<String> = ["party-1", "party-2", "party-3"]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    let key_id = uuid::Uuid::new_v4().to_string();
    let req = pb::CreateKeygenRequest {
        scheme: scheme.into(),
        threshold: 2,
        policy: Some(signers.policy(&key_id, scheme, 2, &parties)?),
        parties,
        key_id,
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let t = Instant::now();
    let mut client = sessions.clone();
    let s = run_session(sessions, async move { client.create_keygen(req).await }).await?;
    Ok((s, t.elapsed()))
}

/// A signing request with the initiator's approval.
fn signing(
    signers: &Signers,
    key_id: &str,
    input: &SigningInput,
) -> anyhow::Result<pb::CreateSigningRequest> {
    let (digest, message, hash) = match input {
        SigningInput::Digest(d) => (d.to_vec(), Vec::new(), String::new()),
        SigningInput::Message { message, hash } => (
            Vec::new(),
            message.clone(),
            hash.map(|h| h.as_str().to_owned()).unwrap_or_default(),
        ),
    };
    signers.approve(pb::CreateSigningRequest {
        key_id: key_id.into(),
        digest,
        message,
        hash,
        request_id: uuid::Uuid::new_v4().to_string(),
        timeout_seconds: 0,
        approvals: Vec::new(),
        not_after_ms: 0,
        wait: true,
    })
}

/// The key a batch signs with, as the cluster reports it: what its signatures are checked
/// against.
struct BenchKey {
    key_id: String,
    scheme: Scheme,
    public_key: Vec<u8>,
}

impl BenchKey {
    async fn fetch(keys: &mut KeysClient<GrpcChannel>, key_id: &str) -> anyhow::Result<Self> {
        let key = keys
            .get_key(pb::GetKeyRequest {
                key_id: key_id.into(),
                consistency: 0,
            })
            .await?
            .into_inner();
        Ok(Self {
            scheme: key.scheme.parse()?,
            key_id: key.key_id,
            public_key: key.public_key,
        })
    }

    /// Checks a signature the cluster returned, as a client would before using it.
    fn verify(&self, input: &SigningInput, session: &pb::Session) -> anyhow::Result<()> {
        let signature = mpc_tss::Signature::from_bytes(self.scheme, &session.signature)?;
        mpc_tss::verify(self.scheme, &self.public_key, input, &signature).with_context(|| {
            format!(
                "session {}: the cluster returned a signature that does not verify",
                session.session_id
            )
        })
    }
}

/// What one batch of signings through the cluster did.
struct SignBatch {
    /// Times of the signings that completed, from request to verified answer.
    hist: Histogram<u64>,
    wall: Duration,
    presigned: usize,
    /// Requests that ended without a signature (refused, failed, expired, or cut off).
    failed: usize,
}

impl SignBatch {
    fn fields(&self) -> serde_json::Value {
        json!({"presignature_hits": self.presigned, "failed": self.failed})
    }
}

async fn cluster_sign(
    leader: &str,
    signers: &Signers,
    key: &BenchKey,
    input: SigningInput,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<SignBatch> {
    let channel = grpc(leader)?;
    // The connection (TCP, TLS, HTTP/2) is made before the clock starts.
    BenchKey::fetch(&mut KeysClient::new(channel.clone()), &key.key_id).await?;
    let wall = Instant::now();
    let per_worker = count.div_ceil(concurrency);
    let workers = (0..concurrency).map(|w| {
        let channel = channel.clone();
        let input = input.clone();
        async move {
            let mut sessions = SessionsClient::new(channel);
            let mut times = Vec::new();
            let mut presigned = 0usize;
            let mut failed = 0usize;
            for i in 0..per_worker {
                let input = match &input {
                    SigningInput::Message { message, hash } => {
                        let mut m = message.clone();
                        m.extend_from_slice(format!(" {w}/{i}").as_bytes());
                        SigningInput::Message {
                            message: m,
                            hash: *hash,
                        }
                    }
                    other => other.clone(),
                };
                // Approved before the clock starts: the initiator's work, not the cluster's.
                let req = signing(signers, &key.key_id, &input)?;
                let t = Instant::now();
                match sign_waiting(&mut sessions, req).await {
                    Ok(session) => {
                        key.verify(&input, &session)?;
                        times.push(t.elapsed());
                        presigned += usize::from(!session.presignature_id.is_empty());
                    }
                    Err(e) => {
                        eprintln!("signing failed: {e:#}");
                        failed += 1;
                    }
                }
            }
            anyhow::Ok((times, presigned, failed))
        }
    });
    let mut batch = SignBatch {
        hist: histogram()?,
        wall: Duration::ZERO,
        presigned: 0,
        failed: 0,
    };
    for r in join_all(workers).await {
        let (times, presigned, failed) = r?;
        batch.presigned += presigned;
        batch.failed += failed;
        for t in times {
            batch.hist.record(t.as_micros().max(1) as u64)?;
        }
    }
    batch.wall = wall.elapsed();
    Ok(batch)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every coordinator's last applied log index, read over Cluster.GetStatus, to count the
/// Raft entries a batch of signings cost.
struct RaftProbe {
    /// The node the benchmark talks to (the leader), then the others.
    nodes: Vec<(u64, ClusterClient<GrpcChannel>)>,
    sessions: SessionsClient<GrpcChannel>,
}

/// The log around one measured batch.
struct RaftWindow {
    before: Vec<(u64, u64)>,
    from_ms: u64,
}

impl RaftProbe {
    async fn connect(leader: &str) -> anyhow::Result<Self> {
        let mut first = ClusterClient::new(grpc(leader)?);
        let status = first
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        let mut nodes = vec![(status.id, first)];
        for n in status.nodes.iter().filter(|n| n.id != status.id) {
            nodes.push((n.id, ClusterClient::new(grpc(&n.grpc_addr)?)));
        }
        Ok(Self {
            nodes,
            sessions: SessionsClient::new(grpc(leader)?),
        })
    }

    /// Each node's last applied index, once all agree: a follower learns that the last
    /// entries are committed only with the leader's next message. With presignature refill
    /// running they may never agree at one instant: after two seconds, as they are.
    async fn applied(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let mut seen = Vec::new();
            for (id, client) in &self.nodes {
                let status = client
                    .clone()
                    .get_status(pb::GetStatusRequest {})
                    .await?
                    .into_inner();
                seen.push((*id, status.last_applied.unwrap_or_default()));
            }
            if seen.windows(2).all(|w| w[0].1 == w[1].1) || Instant::now() >= until {
                return Ok(seen);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn open(&self) -> anyhow::Result<RaftWindow> {
        let before = self.applied().await?;
        Ok(RaftWindow {
            before,
            from_ms: now_ms(),
        })
    }

    /// Log entries of presignature refill proposed between `from_ms` and `to_ms`: every
    /// presign session's creation, start and end stamped in the window, one entry each (a
    /// creation that also started the session carries one stamp for both). An entry that
    /// batched one of them with a signing's command is subtracted although the signing
    /// needed it too, so the figure errs low, by at most those few entries.
    async fn presign_entries(&self, from_ms: u64, to_ms: u64) -> anyhow::Result<u64> {
        let mut sessions = self.sessions.clone();
        let mut entries = 0u64;
        let mut token = String::new();
        loop {
            let page = sessions
                .list_sessions(pb::ListSessionsRequest {
                    status: pb::SessionStatus::Unspecified as i32,
                    kind: pb::SessionKind::Presign as i32,
                    key_id: String::new(),
                    page_size: 1000,
                    page_token: token.clone(),
                    consistency: 0,
                })
                .await?
                .into_inner();
            for s in &page.sessions {
                let mut stamps: Vec<u64> = [s.created_at_ms, s.started_at_ms, s.finished_at_ms]
                    .into_iter()
                    .filter(|t| (from_ms..=to_ms).contains(t))
                    .collect();
                stamps.dedup();
                entries += stamps.len() as u64;
            }
            if page.next_page_token.is_empty() {
                return Ok(entries);
            }
            token = page.next_page_token;
        }
    }

    /// The batch's Raft cost for its summary line: entries applied on each node, those of
    /// presignature refill, and entries per signing without them (from the leader's count).
    async fn close(
        &self,
        window: RaftWindow,
        signings: usize,
    ) -> anyhow::Result<serde_json::Value> {
        let after = self.applied().await?;
        let to_ms = now_ms();
        let per_node: Vec<u64> = window
            .before
            .iter()
            .zip(&after)
            .map(|((_, b), (_, a))| a.saturating_sub(*b))
            .collect();
        let leader = per_node.first().copied().unwrap_or_default();
        let refill = self.presign_entries(window.from_ms, to_ms).await?;
        let per_signing = leader.saturating_sub(refill) as f64 / signings.max(1) as f64;
        Ok(json!({
            "raft_entries": leader,
            "raft_entries_per_node": per_node,
            "presign_entries": refill,
            "raft_commits_per_signing": per_signing,
        }))
    }
}

fn with(extra: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    let mut extra = extra;
    if let (Some(obj), Some(more)) = (extra.as_object_mut(), more.as_object()) {
        obj.extend(more.clone());
    }
    extra
}

/// What every measured batch of the cluster run shares.
struct ClusterBench<'a> {
    probe: RaftProbe,
    leader: &'a str,
    signers: &'a Signers,
}

impl ClusterBench<'_> {
    /// [`cluster_sign`] with its Raft cost measured around it, printed as one summary line.
    async fn measure(
        &self,
        key: &BenchKey,
        input: SigningInput,
        (count, concurrency): (usize, usize),
        bench: &str,
        labels: serde_json::Value,
    ) -> anyhow::Result<()> {
        let window = self.probe.open().await?;
        let batch = cluster_sign(self.leader, self.signers, key, input, count, concurrency).await?;
        let raft = self.probe.close(window, batch.hist.len() as usize).await?;
        summary(
            bench,
            "cluster",
            &batch.hist,
            batch.wall,
            with(with(labels, batch.fields()), raft),
        );
        Ok(())
    }
}

async fn presignatures_done(
    sessions: &mut SessionsClient<GrpcChannel>,
    key_id: &str,
) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut token = String::new();
    loop {
        let page = sessions
            .list_sessions(pb::ListSessionsRequest {
                status: pb::SessionStatus::Completed as i32,
                kind: pb::SessionKind::Presign as i32,
                key_id: key_id.into(),
                page_size: 1000,
                page_token: token.clone(),
                consistency: 0,
            })
            .await?
            .into_inner();
        count += page.sessions.len();
        if page.next_page_token.is_empty() {
            return Ok(count);
        }
        token = page.next_page_token;
    }
}

/// The same through a running cluster of coordinators and parties on loopback.
///
/// FROST runs first, before any ECDSA key exists, so that no presignature refill shares its
/// cores; the presignature pool is then measured with one ECDSA key refilling; the keygens
/// with existing auxiliary info come last, since each new ECDSA key starts a pool of its own.
pub async fn cluster(
    leader: &str,
    iterations: usize,
    presign_pool: usize,
    signers: &Signers,
) -> anyhow::Result<()> {
    let mut sessions = SessionsClient::new(grpc(leader)?);
    let mut keys = KeysClient::new(grpc(leader)?);
    let bench = ClusterBench {
        probe: RaftProbe::connect(leader).await?,
        leader,
        signers,
    };

    for scheme in [Scheme::SchnorrEd25519, Scheme::SchnorrBip340] {
        let (s, _) = cluster_keygen(&mut sessions, signers, scheme.as_str()).await?;
        let key = BenchKey::fetch(&mut keys, &s.key_id).await?;
        let input = SigningInput::Message {
            message: b"bench".to_vec(),
            hash: None,
        };
        bench
            .measure(
                &key,
                input.clone(),
                (iterations, 1),
                "sign",
                json!({"scheme": scheme.as_str(), "mode": "FROST", "concurrency": 1}),
            )
            .await?;
        bench
            .measure(
                &key,
                input,
                (4 * iterations, 64),
                "sign_burst",
                json!({"scheme": scheme.as_str(), "mode": "FROST", "concurrency": 64}),
            )
            .await?;
    }

    let (first, took) = cluster_keygen(&mut sessions, signers, "ecdsa-secp256k1").await?;
    println!(
        "{}",
        json!({"bench": "keygen", "place": "cluster", "scheme": "ecdsa-secp256k1", "aux_info": "generated", "ms": took.as_secs_f64() * 1000.0})
    );
    let ecdsa_key = BenchKey::fetch(&mut keys, &first.key_id).await?;

    // The presignature pool of the first key: its refill rate, then signing from it.
    let t0 = presignatures_done(&mut sessions, &ecdsa_key.key_id).await?;
    let wait = Instant::now();
    loop {
        let done = presignatures_done(&mut sessions, &ecdsa_key.key_id).await?;
        if done >= presign_pool || wait.elapsed() > Duration::from_secs(120) {
            println!(
                "{}",
                json!({"bench": "presign_refill", "place": "cluster", "per_sec": (done - t0) as f64 / wait.elapsed().as_secs_f64(), "count": done - t0})
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let message = SigningInput::Message {
        message: b"bench message".to_vec(),
        hash: Some(HashFunction::Keccak256),
    };
    bench
        .measure(
            &ecdsa_key,
            message,
            (presign_pool.min(iterations), 1),
            "sign",
            json!({"scheme": "ecdsa-secp256k1", "mode": "presignature", "concurrency": 1}),
        )
        .await?;
    bench
        .measure(
            &ecdsa_key,
            SigningInput::Digest([9; 32]),
            (iterations.min(30), 1),
            "sign",
            json!({"scheme": "ecdsa-secp256k1", "mode": "full protocol", "concurrency": 1}),
        )
        .await?;
    bench
        .measure(
            &ecdsa_key,
            SigningInput::Digest([9; 32]),
            (8, 8),
            "sign_burst",
            json!({"scheme": "ecdsa-secp256k1", "mode": "full protocol", "concurrency": 8}),
        )
        .await?;

    for scheme in Scheme::ALL {
        let mut hist = histogram()?;
        let wall = Instant::now();
        for _ in 0..3 {
            let (_, took) = cluster_keygen(&mut sessions, signers, scheme.as_str()).await?;
            hist.record(took.as_micros().max(1) as u64)?;
        }
        summary(
            "keygen",
            "cluster",
            &hist,
            wall.elapsed(),
            json!({"scheme": scheme.as_str(), "aux_info": "existing"}),
        );
    }
    Ok(())
}
