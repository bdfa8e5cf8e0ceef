//! The server side of `mpc.raft.v1.Raft`: Raft RPCs from peers, forwarded writes, read
//! indexes.

use mpc_proto::raft::v1::raft_server::Raft as RaftRpc;
use mpc_proto::raft::v1::{Payload, ReadIndexRequest, ReadIndexResponse};
use mpc_raft_store::codec::{decode, encode};
use serde::{de::DeserializeOwned, Serialize};
use tonic::{Request, Response, Status};

use crate::node::Coordinator;
use crate::peer::{ForwardError, ForwardRequest, ForwardResponse};

#[derive(Debug, Clone)]
pub struct RaftService {
    node: Coordinator,
}

impl RaftService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
    }
}

fn decode_request<T: DeserializeOwned>(request: Request<Payload>) -> Result<T, Status> {
    let peer = request
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    decode("raft request", &request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable message from {peer}: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    encode("raft response", value)
        .map(|data| Response::new(Payload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<mpc_raft_store::TypeConfig> =
            decode_request(request)?;
        // Short of space, a member takes heartbeats (they keep it a follower and write
        // nothing) but no entries: the leader retries them once space returns.
        if !rpc.entries.is_empty() && !self.node.disk().takes_entries() {
            return Err(Status::resource_exhausted(
                self.node.disk().entries_refused(),
            ));
        }
        reply(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = decode_request(request)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<mpc_raft_store::TypeConfig> =
            decode_request(request)?;
        // openraft treats a storage error while receiving a chunk as fatal for the node: a
        // chunk that would take the snapshot past its bound is refused here, before it can.
        mpc_raft_store::check_snapshot_chunk(rpc.offset, rpc.data.len())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !self.node.disk().takes_entries() {
            return Err(Status::resource_exhausted(
                self.node.disk().entries_refused(),
            ));
        }
        reply(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        // Writes carry the principal the forwarding node authenticated: only voters, whose
        // membership the group agreed on, are trusted to forward them. A learner serves
        // reads and waits to be promoted.
        if !self.node.config().insecure_plaintext {
            let voter = request
                .extensions()
                .get::<mpc_tls::PeerInfo>()
                .and_then(|p| p.identity.as_ref())
                .and_then(|id| id.name.parse::<u64>().ok())
                .is_some_and(|id| self.node.is_voter(id));
            if !voter {
                return Err(Status::permission_denied(
                    "only a voting member forwards writes",
                ));
            }
        }
        let mut req: ForwardRequest = decode_request(request)?;
        if let ForwardRequest::Write(cmd) = &mut req {
            cmd.op.drop_leader_plan();
            // The scheduler's commands are proposed by the leader itself, never on another
            // node's word: a compromised follower must not be able to finish a session or
            // take a party offline.
            if cmd.op.is_scheduler_only() {
                return Err(Status::permission_denied(
                    "scheduler commands are proposed by the leader only, never forwarded",
                ));
            }
            // The proposer validated it; a peer running other code might not have.
            if let Err(e) = cmd.validate() {
                return Err(Status::invalid_argument(e.to_string()));
            }
        }
        let outcome: Result<ForwardResponse, ForwardError> = self.node.run_local(req).await;
        reply(&outcome)
    }

    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        match self.node.local_read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexResponse {
                index: index.unwrap_or_default(),
                has_index: index.is_some(),
            })),
            Err(()) => Err(Status::unavailable("not the leader")),
        }
    }
}
