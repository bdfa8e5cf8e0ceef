//! What one client of `mpc-bench write` sends: a plain replicated write (etcd `KV.Put`, our
//! `Keys.UpdateKey`), a signing session followed to its end, or the keygen sessions of the
//! earlier reports whose parties never run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use mpc_client::ClientChannel;
use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_proto::v1::sessions_client::SessionsClient;

use crate::authority::Signers;
use crate::etcd;

/// The parties every `keygen-unrun` session names. Nothing runs them: an admin enrols them
/// with identities nobody holds, and their sessions are created, never run. Not the running
/// party-1..3, whose protocols such sessions would start.
pub const ABSENT_PARTIES: [&str; 3] = ["absent-1", "absent-2", "absent-3"];

/// Requests signed before the timed phase (key policies, approvals): signing is the client's
/// work, not the cluster's. Requests beyond them are made in the loop and counted.
pub struct Pool<T> {
    ready: Mutex<Vec<T>>,
    make: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
    made_in_loop: AtomicU64,
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("made_in_loop", &self.made_in_loop)
            .finish_non_exhaustive()
    }
}

impl<T: Send> Pool<T> {
    /// Makes `count` requests with `make`, on every core.
    pub fn fill(
        count: usize,
        make: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
    ) -> anyhow::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = count.div_ceil(threads);
        let make_ref = &make;
        let ready = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(move || {
                        (0..per_thread)
                            .map(|_| make_ref())
                            .collect::<anyhow::Result<Vec<T>>>()
                    })
                })
                .collect();
            let mut ready = Vec::with_capacity(count);
            for h in handles {
                let batch = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a request-signing thread panicked"))??;
                ready.extend(batch);
            }
            anyhow::Ok(ready)
        })?;
        Ok(Self {
            ready: Mutex::new(ready),
            make,
            made_in_loop: AtomicU64::new(0),
        })
    }

    pub fn next(&self) -> anyhow::Result<T> {
        let ready = self
            .ready
            .lock()
            .map_err(|_| anyhow::anyhow!("request pool poisoned"))?
            .pop();
        match ready {
            Some(r) => Ok(r),
            None => {
                self.made_in_loop.fetch_add(1, Ordering::Relaxed);
                (self.make)()
            }
        }
    }

    pub fn made_in_loop(&self) -> u64 {
        self.made_in_loop.load(Ordering::Relaxed)
    }
}

/// The admin's policies for `keygen-unrun` sessions, each with its new key id.
pub fn keygen_policies(
    signers: Arc<Signers>,
    count: usize,
) -> anyhow::Result<Pool<(String, pb::EndorsedKeyPolicy)>> {
    let parties: Vec<String> = ABSENT_PARTIES.iter().map(|p| (*p).to_owned()).collect();
    Pool::fill(
        count,
        Box::new(move || {
            let key_id = uuid::Uuid::new_v4().to_string();
            let policy = signers.policy(&key_id, "ecdsa-secp256k1", 2, &parties)?;
            Ok((key_id, policy))
        }),
    )
}

/// Signing requests for `key_id`, each of a distinct message of `value_size` bytes, with
/// the initiator's approval (valid five minutes, as `Signers::approve` makes it).
pub fn signing_requests(
    signers: Arc<Signers>,
    key_id: String,
    value_size: usize,
    count: usize,
) -> anyhow::Result<Pool<pb::CreateSigningRequest>> {
    Pool::fill(
        count,
        Box::new(move || {
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut message = format!("bench {request_id} ").into_bytes();
            message.resize(value_size.max(message.len()), b'x');
            signers.approve(pb::CreateSigningRequest {
                key_id: key_id.clone(),
                message,
                request_id,
                ..Default::default()
            })
        }),
    )
}

/// What a plain write changes.
#[derive(Debug)]
pub enum WriteOp {
    /// etcd: `KV.Put` of a new key per write.
    EtcdPut,
    /// mpc: `Keys.UpdateKey`, the key's description set to the value.
    KeyUpdate { key_id: String },
    /// mpc: `Sessions.CreateKeygen` for [`ABSENT_PARTIES`] with the value as description.
    KeygenUnrun {
        policies: Arc<Pool<(String, pb::EndorsedKeyPolicy)>>,
    },
}

impl WriteOp {
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::EtcdPut => "KV.Put",
            WriteOp::KeyUpdate { .. } => "Keys.UpdateKey",
            WriteOp::KeygenUnrun { .. } => "Sessions.CreateKeygen",
        }
    }
}

/// One client's connection and the payload it writes.
#[derive(Debug)]
pub struct Writer {
    pub op: Arc<WriteOp>,
    pub channel: ClientChannel,
    pub value: String,
    pub seq: u64,
    pub id: usize,
}

impl Writer {
    /// One write, acknowledged once the cluster has committed it.
    pub async fn write(&mut self, timeout: Duration) -> Result<(), tonic::Status> {
        self.seq += 1;
        match self.op.as_ref() {
            WriteOp::EtcdPut => {
                let mut req = tonic::Request::new(etcd::PutRequest {
                    key: format!("bench/{}/{}", self.id, self.seq).into_bytes(),
                    value: self.value.clone().into_bytes(),
                    ..Default::default()
                });
                req.set_timeout(timeout);
                etcd::kv_client::KvClient::new(self.channel.clone())
                    .put(req)
                    .await
                    .map(|_| ())
            }
            WriteOp::KeyUpdate { key_id } => {
                // No request id: the coordinator that takes the call assigns one, as it does
                // for any client that sends none.
                let mut req = tonic::Request::new(pb::UpdateKeyRequest {
                    key_id: key_id.clone(),
                    description: Some(self.value.clone()),
                    ..Default::default()
                });
                req.set_timeout(timeout);
                KeysClient::new(self.channel.clone())
                    .update_key(req)
                    .await
                    .map(|_| ())
            }
            WriteOp::KeygenUnrun { policies } => {
                let (key_id, policy) = policies
                    .next()
                    .map_err(|e| tonic::Status::internal(format!("{e:#}")))?;
                let mut req = tonic::Request::new(pb::CreateKeygenRequest {
                    scheme: "ecdsa-secp256k1".into(),
                    threshold: 2,
                    parties: ABSENT_PARTIES.iter().map(|p| (*p).to_owned()).collect(),
                    description: self.value.clone(),
                    key_id,
                    policy: Some(policy),
                    ..Default::default()
                });
                req.set_timeout(timeout);
                SessionsClient::new(self.channel.clone())
                    .create_keygen(req)
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// What the clients of one timed phase saw.
#[derive(Debug)]
pub struct Tally {
    /// From sending a write to its acknowledgement (for signings: the session created).
    pub acked: Histogram<u64>,
    /// Signings: from sending the request to the completed session.
    pub done: Histogram<u64>,
    /// Calls refused or timed out.
    pub errors: u64,
    /// Signings that ended failed or expired.
    pub failed: u64,
    /// Signings whose end the client did not see (the watch broke or took too long).
    pub unfinished: u64,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            acked: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            done: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            errors: 0,
            failed: 0,
            unfinished: 0,
        })
    }

    pub fn add(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.acked.add(&other.acked)?;
        self.done.add(&other.done)?;
        self.errors += other.errors;
        self.failed += other.failed;
        self.unfinished += other.unfinished;
        Ok(())
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// After a refused or timed-out call: a pause, so that a client of a cluster that refuses
/// everything does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// How long a signing client follows its session before it counts it unfinished and moves
/// on: far above a FROST signing's time even on a loaded machine.
const SESSION_WAIT: Duration = Duration::from_secs(30);

impl Writer {
    /// One write into the tally.
    pub async fn once(&mut self, timeout: Duration, tally: &mut Tally) -> anyhow::Result<()> {
        let t = Instant::now();
        match self.write(timeout).await {
            Ok(()) => tally.acked.record(micros(t))?,
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        Ok(())
    }
}

/// One client of the signing workload: creates a signing, follows it on `WatchSession` to
/// its end, then the next. At most one session per client is open at a time, so sessions
/// never pile up beyond the client count.
#[derive(Debug)]
pub struct SigningClient {
    pub sessions: SessionsClient<ClientChannel>,
    pub requests: Arc<Pool<pb::CreateSigningRequest>>,
}

impl SigningClient {
    pub async fn once(&mut self, timeout: Duration, tally: &mut Tally) -> anyhow::Result<()> {
        // Taken before the clock starts: a pooled request was approved before the timed
        // phase; one made here (pool empty) costs the client, and is counted.
        let req = self.requests.next()?;
        let t = Instant::now();
        let mut req = tonic::Request::new(req);
        req.set_timeout(timeout);
        let created = match self.sessions.create_signing(req).await {
            Ok(r) => r.into_inner(),
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
                return Ok(());
            }
        };
        tally.acked.record(micros(t))?;
        let session_id = created
            .session
            .context("CreateSigning answered no session")?
            .session_id;
        match tokio::time::timeout(SESSION_WAIT, self.follow(session_id)).await {
            Ok(Ok(true)) => tally.done.record(micros(t))?,
            Ok(Ok(false)) => tally.failed += 1,
            Ok(Err(_)) | Err(_) => tally.unfinished += 1,
        }
        Ok(())
    }

    /// Whether the session completed (`false`: failed or expired).
    async fn follow(&mut self, session_id: String) -> Result<bool, tonic::Status> {
        let mut watch = self
            .sessions
            .watch_session(pb::WatchSessionRequest { session_id })
            .await?
            .into_inner();
        while let Some(s) = watch.message().await? {
            match pb::SessionStatus::try_from(s.status) {
                Ok(pb::SessionStatus::Completed) => return Ok(true),
                Ok(pb::SessionStatus::Failed | pb::SessionStatus::Expired) => return Ok(false),
                _ => {}
            }
        }
        Err(tonic::Status::unavailable(
            "the watch ended before the session",
        ))
    }
}
