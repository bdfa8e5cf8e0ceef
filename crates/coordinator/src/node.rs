//! A running coordinator's core: proposing writes (locally on the leader, forwarded in one hop
//! from a follower), read barriers for linearizable reads, and the node's view of the group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpc_proto::raft::v1::{Payload, ReadIndexRequest};
use mpc_raft_store::codec::{decode, encode};
use mpc_raft_store::{
    Command, CommandResponse, NodeId, NodeInfo, Operation, Raft, Rejection, StateReader,
};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{RaftMetrics, ServerState};

use crate::config::Config;
use crate::disk::{DiskGuard, SpaceLevel};
use crate::limits::Limiter;
use crate::peer::{ForwardError, ForwardRequest, ForwardResponse, MembershipOutcome, Peers};
use crate::proposer::{client_write_error, Proposer};
use crate::CoordinatorError;

/// How long a readiness probe waits for the node to apply what was committed when it asked.
const READY_APPLY_GRACE: Duration = Duration::from_millis(500);

/// How stale a read may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Local,
}

/// Shared by every server of the node (gRPC services, Raft RPC, HTTP).
#[derive(Debug, Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    reader: StateReader,
    peers: Peers,
    proposer: Proposer,
    limiter: Arc<Limiter>,
    disk: DiskGuard,
    config: Config,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// This node's view of the group, as `/v1/cluster` and `Cluster.GetStatus` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    pub id: NodeId,
    pub state: &'static str,
    pub leader: Option<NodeId>,
    pub leader_grpc_addr: Option<String>,
    pub term: u64,
    pub members: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes: Vec<NodeView>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub committed: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub ready: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub id: NodeId,
    pub grpc_addr: String,
    pub http_addr: String,
    pub raft_addr: String,
    pub role: &'static str,
    pub is_leader: bool,
    /// Known on the leader only.
    pub matched_index: Option<u64>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl Coordinator {
    pub fn new(config: Config, raft: Raft, reader: StateReader, peers: Peers) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: config.node_id,
                proposer: Proposer::start(
                    raft.clone(),
                    Duration::from_millis(config.raft.leader_wait_ms),
                ),
                raft,
                reader,
                peers,
                limiter: Limiter::new(config.limits.clone()),
                disk: DiskGuard::new(&config.data_dir, config.limits.min_free_disk_mib),
                config,
            }),
        }
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Per-principal limits of the public API.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.inner.limiter
    }

    /// The data directory's free space, and what this node refuses for the want of it.
    pub fn disk(&self) -> &DiskGuard {
        &self.inner.disk
    }

    fn metrics(&self) -> RaftMetrics<NodeId, NodeInfo> {
        self.inner.raft.metrics().borrow().clone()
    }

    fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.inner.config.raft.leader_wait_ms)
    }

    /// The term in which this node leads, or None when it does not lead.
    pub fn leading_term(&self) -> Option<u64> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.inner.id))
            .then_some(m.current_term)
    }

    /// The error a leader-only call answers on another node: UNAVAILABLE with the leader's
    /// address in `x-mpc-leader` when it is known.
    pub fn not_leader(&self, what: &str) -> CoordinatorError {
        CoordinatorError::NoLeader {
            reason: format!("{what} is served by the leader only"),
            leader_grpc_addr: self.leader().map(|(_, n)| n.grpc_addr),
        }
    }

    /// Whether `id` votes in the membership this node knows.
    pub fn is_voter(&self, id: NodeId) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
    }

    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Proposes a write (validated here first) and returns what applying it answered.
    ///
    /// Scheduler commands ([`Operation::is_scheduler_only`]) are proposed here only while
    /// this node leads; they are never forwarded (the leader refuses them from peers).
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, CoordinatorError> {
        cmd.validate()?;
        self.inner.disk.check_write()?;
        let started = Instant::now();
        let outcome = if cmd.op.is_scheduler_only() {
            match self.run_local(ForwardRequest::Write(Box::new(cmd))).await {
                Ok(resp) => Ok(resp),
                Err(ForwardError::NotLeader { .. }) => Err(self.not_leader("a scheduler command")),
                Err(ForwardError::Membership(m)) => Err(CoordinatorError::Membership(m)),
                Err(ForwardError::Failed(f)) => Err(CoordinatorError::RaftStopped(f)),
                Err(ForwardError::Unconfirmed) => Err(unconfirmed()),
            }
        } else {
            self.forward_or_run(ForwardRequest::Write(Box::new(cmd)))
                .await
        };
        metrics::histogram!("mpc_raft_proposal_seconds").record(started.elapsed().as_secs_f64());
        match outcome? {
            ForwardResponse::Written(resp) => match resp {
                CommandResponse::Rejected(rejection) => Err(CoordinatorError::Rejected(rejection)),
                other => Ok(other),
            },
            ForwardResponse::Membership(_) => Err(CoordinatorError::Server(
                "a write was answered with a membership outcome".into(),
            )),
        }
    }

    pub async fn add_learner(
        &self,
        node_id: NodeId,
        node: NodeInfo,
        wait_caught_up: bool,
    ) -> Result<MembershipOutcome, CoordinatorError> {
        self.membership(ForwardRequest::AddLearner {
            node_id,
            node,
            wait_caught_up,
        })
        .await
    }

    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<MembershipOutcome, CoordinatorError> {
        if voters.is_empty() {
            return Err(crate::error::invalid(
                "voters",
                "must name at least one node",
            ));
        }
        self.membership(ForwardRequest::ChangeMembership { voters, retain })
            .await
    }

    async fn membership(&self, req: ForwardRequest) -> Result<MembershipOutcome, CoordinatorError> {
        self.inner.disk.check_write()?;
        match self.forward_or_run(req).await? {
            ForwardResponse::Membership(outcome) => Ok(outcome),
            ForwardResponse::Written(_) => Err(CoordinatorError::Server(
                "a membership change was answered with a write outcome".into(),
            )),
        }
    }

    /// Runs `req` here when this node leads, else carries it to the leader; while there is
    /// no leader (an election is under way) waits for one, up to `raft.leader_wait_ms`.
    ///
    /// A forward that failed may still have reached the log, so the retry can meet its own
    /// earlier copy. Each kind of write must make that harmless: a create carries the ids its
    /// proposer chose and is answered "already exists" for that very id (which
    /// `SessionsService` reads as success); key updates and membership changes set values and
    /// land the same twice. Session transitions, which the scheduler will send, need the same
    /// care before they come through here.
    async fn forward_or_run(
        &self,
        req: ForwardRequest,
    ) -> Result<ForwardResponse, CoordinatorError> {
        let deadline = Instant::now() + self.leader_wait();
        loop {
            let leader = self.leader();
            let failed_leader = match &leader {
                Some((id, _)) if *id == self.id() => match self.run_local(req.clone()).await {
                    Err(ForwardError::NotLeader { .. }) => Some(*id),
                    Err(ForwardError::Membership(m)) => {
                        return Err(CoordinatorError::Membership(m))
                    }
                    Err(ForwardError::Failed(f)) => return Err(CoordinatorError::RaftStopped(f)),
                    Err(ForwardError::Unconfirmed) => return Err(unconfirmed()),
                    Ok(resp) => return Ok(resp),
                },
                // A forward to a leader that died can hang (a connection that went silent, a
                // name that no longer resolves) long after a successor is known: give it up
                // then and carry the request to the successor. Every write is safe to repeat.
                Some((id, node)) => match tokio::select! {
                    result = self.forward(node, &req) => result,
                    () = self.leader_other_than(*id) => Err(CoordinatorError::NoLeader {
                        reason: format!("leader {id} was replaced during the forward"),
                        leader_grpc_addr: None,
                    }),
                } {
                    Ok(Ok(resp)) => return Ok(resp),
                    Ok(Err(ForwardError::Membership(m))) => {
                        return Err(CoordinatorError::Membership(m))
                    }
                    Ok(Err(ForwardError::Failed(f))) => {
                        return Err(CoordinatorError::RaftStopped(f))
                    }
                    Ok(Err(ForwardError::Unconfirmed)) => return Err(unconfirmed()),
                    Ok(Err(ForwardError::NotLeader { .. })) | Err(_) => Some(*id),
                },
                None => None,
            };
            if Instant::now() >= deadline {
                return Err(CoordinatorError::NoLeader {
                    reason: match failed_leader {
                        Some(id) => format!("leader {id} did not accept the request"),
                        None => "no leader elected".into(),
                    },
                    leader_grpc_addr: leader.map(|(_, n)| n.grpc_addr),
                });
            }
            self.wait_for_leader_other_than(failed_leader, deadline)
                .await;
        }
    }

    /// Resolves once a leader other than `stale` is known (never, if Raft stops).
    async fn leader_other_than(&self, stale: NodeId) {
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.current_leader.is_some_and(|l| l != stale) {
                    return;
                }
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Waits until a leader other than `stale` is known, or `deadline`.
    async fn wait_for_leader_other_than(&self, stale: Option<NodeId>, deadline: Instant) {
        let mut metrics = self.inner.raft.metrics();
        let changed = async {
            loop {
                {
                    let m = metrics.borrow_and_update();
                    if m.current_leader.is_some() && m.current_leader != stale {
                        return;
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        // Also wake up now and then: a stale leader may come back without a metrics change.
        let wake = Instant::now() + Duration::from_millis(50);
        let _ = tokio::time::timeout_at(deadline.min(wake).into(), changed).await;
    }

    async fn forward(
        &self,
        leader: &NodeInfo,
        req: &ForwardRequest,
    ) -> Result<Result<ForwardResponse, ForwardError>, CoordinatorError> {
        let mut client = self
            .inner
            .peers
            .client(&leader.raft_addr)
            .map_err(|e| CoordinatorError::Server(e.to_string()))?;
        let data = encode("forwarded request", req)?;
        let mut request = tonic::Request::new(Payload { data });
        request.set_timeout(self.leader_wait());
        let reply = client
            .forward(request)
            .await
            .map_err(|s| CoordinatorError::NoLeader {
                reason: format!("forwarding to {} failed: {}", leader.raft_addr, s.message()),
                leader_grpc_addr: Some(leader.grpc_addr.clone()),
            })?;
        decode("forwarded response", &reply.into_inner().data).map_err(|e| {
            CoordinatorError::BadPeerMessage {
                peer: leader.raft_addr.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// Carries out a request on this node, which must be the leader.
    pub async fn run_local(&self, req: ForwardRequest) -> Result<ForwardResponse, ForwardError> {
        let raft = &self.inner.raft;
        // A leader short of space is handing its leadership over (`crate::disk`): the
        // forwarding node waits for the next leader, as for any leader that stepped down.
        if self.inner.disk.level() != SpaceLevel::Ample {
            return Err(ForwardError::NotLeader { leader: None });
        }
        match req {
            ForwardRequest::Write(cmd) => {
                if let Some(full) = self.open_sessions_full(&cmd).await? {
                    return Ok(ForwardResponse::Written(CommandResponse::Rejected(full)));
                }
                let response = self.inner.proposer.propose(*cmd).await?;
                Ok(ForwardResponse::Written(response))
            }
            ForwardRequest::AddLearner {
                node_id,
                node,
                wait_caught_up,
            } => match raft.add_learner(node_id, node, wait_caught_up).await {
                Ok(resp) => Ok(ForwardResponse::Membership(outcome(&resp))),
                Err(e) => Err(client_write_error(e)),
            },
            ForwardRequest::ChangeMembership { voters, retain } => {
                match raft.change_membership(voters, retain).await {
                    Ok(resp) => Ok(ForwardResponse::Membership(outcome(&resp))),
                    Err(e) => Err(client_write_error(e)),
                }
            }
        }
    }

    /// The leader refuses a new signing for a key that has `limits.max_open_sessions_per_key`
    /// signings not finished yet, so that one busy key cannot fill the queue (the scheduler's
    /// own presign sessions do not count). A retry of a
    /// request it already took is let through to find its session. Requests proposed at the
    /// same moment may pass the count together: the cap can be exceeded by one batch.
    async fn open_sessions_full(&self, cmd: &Command) -> Result<Option<Rejection>, ForwardError> {
        let Operation::CreateSigning(s) = &cmd.op else {
            return Ok(None);
        };
        let reader = &self.inner.reader;
        let failed = |e: mpc_raft_store::StoreError| ForwardError::Failed(e.to_string());
        if let Some(request_id) = &s.request_id {
            if reader.request(request_id).await.map_err(failed)?.is_some() {
                return Ok(None);
            }
        }
        let limit = self.inner.config.limits.max_open_sessions_per_key;
        let open = reader
            .open_sessions_of_key(
                &s.key_id,
                mpc_raft_store::model::SessionKind::Sign,
                limit as usize,
            )
            .await
            .map_err(failed)?;
        if open < limit as usize {
            return Ok(None);
        }
        metrics::counter!("mpc_limit_refusals_total", "limit" => "open_sessions_per_key")
            .increment(1);
        Ok(Some(Rejection::TooManyOpenSessions {
            key_id: s.key_id.clone(),
            limit,
        }))
    }

    /// Returns once this node has applied everything committed before the call, as confirmed
    /// by the leader with a quorum (linearizable), or at once (local).
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), CoordinatorError> {
        if consistency == Consistency::Local {
            return Ok(());
        }
        let deadline = Instant::now() + self.leader_wait();
        loop {
            let leader = self.leader();
            let failed = match &leader {
                Some((id, _)) if *id == self.id() => match self.local_read_index().await {
                    Ok(index) => return self.wait_applied(index, deadline).await,
                    Err(()) => Some(*id),
                },
                Some((id, node)) => match self.remote_read_index(node).await {
                    Ok(index) => return self.wait_applied(index, deadline).await,
                    Err(()) => Some(*id),
                },
                None => None,
            };
            if Instant::now() >= deadline {
                return Err(CoordinatorError::NoLeader {
                    reason: "cannot confirm the leader's commit index for a linearizable read"
                        .into(),
                    leader_grpc_addr: leader.map(|(_, n)| n.grpc_addr),
                });
            }
            self.wait_for_leader_other_than(failed, deadline).await;
        }
    }

    /// The leader's side of a read index: confirms leadership with a quorum and answers the
    /// index a reader must have applied.
    pub async fn local_read_index(&self) -> Result<Option<u64>, ()> {
        match self.inner.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(read_log_id.map(|l| l.index)),
            Err(e) => {
                if let RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) = e {
                    tracing::debug!("read index asked of a node that no longer leads");
                }
                Err(())
            }
        }
    }

    async fn remote_read_index(&self, leader: &NodeInfo) -> Result<Option<u64>, ()> {
        let mut client = self.inner.peers.client(&leader.raft_addr).map_err(|_| ())?;
        let mut request = tonic::Request::new(ReadIndexRequest {});
        request.set_timeout(self.leader_wait());
        let reply = client
            .read_index(request)
            .await
            .map_err(|_| ())?
            .into_inner();
        Ok(reply.has_index.then_some(reply.index))
    }

    async fn wait_applied(
        &self,
        index: Option<u64>,
        deadline: Instant,
    ) -> Result<(), CoordinatorError> {
        let Some(index) = index else { return Ok(()) };
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|_| CoordinatorError::Timeout("this node to apply the leader's commit index"))
    }

    /// This node's view of the group.
    pub async fn cluster_view(&self) -> ClusterView {
        let committed = self
            .inner
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .ok()
            .flatten();
        // A node under writes always has a commit or two it has not applied yet; it is
        // caught up if it applies what was committed when asked, within a moment.
        let caught_up = self
            .wait_applied(committed, Instant::now() + READY_APPLY_GRACE)
            .await
            .is_ok();
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let nodes = membership
            .nodes()
            .map(|(id, node)| NodeView {
                id: *id,
                grpc_addr: node.grpc_addr.clone(),
                http_addr: node.http_addr.clone(),
                raft_addr: node.raft_addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
                is_leader: m.current_leader == Some(*id),
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.map(|l| l.index)),
            })
            .collect();
        let last_applied = m.last_applied.map(|l| l.index);
        // openraft 0.9 keeps a leader that lost its quorum in place; such a node is not ready.
        let quorum_lost = m.state == ServerState::Leader
            && m.millis_since_quorum_ack
                .is_none_or(|ms| ms > self.inner.config.raft.election_timeout_max_ms);
        // A node short of disk space refuses writes: traffic should go to the others.
        let space_low = self.inner.disk.level() != SpaceLevel::Ample;
        let ready = m.current_leader.is_some() && caught_up && !quorum_lost && !space_low;
        ClusterView {
            id: m.id,
            state: state_name(m.state),
            leader: m.current_leader,
            leader_grpc_addr: self.leader().map(|(_, n)| n.grpc_addr),
            term: m.current_term,
            members: voters,
            learners,
            nodes,
            last_log_index: m.last_log_index,
            last_applied,
            committed,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            ready,
        }
    }

    /// Stamps a command with the time and the caller.
    pub fn command(&self, actor: String, op: Operation) -> Command {
        Command {
            at_ms: now_ms(),
            actor,
            op,
        }
    }
}

/// The membership a change committed, as its own log entry carries it (the metrics watch may
/// not show it yet).
fn outcome(
    resp: &openraft::raft::ClientWriteResponse<mpc_raft_store::TypeConfig>,
) -> MembershipOutcome {
    let (voters, learners) = resp.membership.as_ref().map_or_else(Default::default, |m| {
        (m.voter_ids().collect(), m.learner_ids().collect())
    });
    MembershipOutcome {
        log_index: resp.log_id.index,
        voters,
        learners,
    }
}

fn unconfirmed() -> CoordinatorError {
    CoordinatorError::Timeout(
        "a quorum to confirm the write (it may still commit: retry with the same request_id)",
    )
}
