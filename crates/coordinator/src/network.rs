//! openraft's network: Raft RPCs to peers over the internal `mpc.raft.v1.Raft` gRPC service.
//! Messages travel as postcard with a version byte (the store's codec).

use mpc_proto::raft::v1::{raft_client::RaftClient, Payload};
use mpc_raft_store::codec::{decode, encode};
use mpc_raft_store::{NodeId, NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::Channel;

/// Raft messages (AppendEntries batches, snapshot chunks) exceed tonic's 4 MiB default.
pub const MAX_RAFT_MESSAGE: usize = 256 << 20;

use crate::peer::Peers;

/// Creates one [`PeerConnection`] per replication target.
#[derive(Debug, Clone)]
pub struct Network {
    peers: Peers,
}

impl Network {
    pub fn new(peers: Peers) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        PeerConnection {
            target,
            client: self
                .peers
                .client(&node.raft_addr)
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    /// An unusable address is reported on every call rather than at creation, which openraft
    /// does not allow to fail.
    client: Result<RaftClient<Channel>, String>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(reason.clone()),
                )))
            }
        };
        let data = encode("raft request", request)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(Payload { data });
        req.set_timeout(option.hard_ttl());
        let mut client = client;
        let reply = match method {
            Method::AppendEntries => client.append_entries(req).await,
            Method::Vote => client.vote(req).await,
            Method::InstallSnapshot => client.install_snapshot(req).await,
        };
        let payload = reply.map_err(|status| match status.code() {
            // Refused, reset or not resolvable: openraft backs off before trying again.
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode("raft response", &payload.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, &option).await
    }
}
