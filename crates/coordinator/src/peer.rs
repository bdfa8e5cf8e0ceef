//! Coordinator-to-coordinator messages: the wire forms of forwarded writes and the cache of
//! gRPC channels to peers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpc_proto::raft::v1::raft_client::RaftClient;
use mpc_raft_store::{Command, CommandResponse, NodeId, NodeInfo};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

/// A write that a follower carries to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Command),
    AddLearner {
        node_id: NodeId,
        node: NodeInfo,
        wait_caught_up: bool,
    },
    ChangeMembership {
        voters: BTreeSet<NodeId>,
        retain: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResponse {
    Written(CommandResponse),
    Membership(MembershipOutcome),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipOutcome {
    pub log_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// Why the receiving node did not carry out a forwarded request.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("{0}")]
    Failed(String),
    /// The leader proposed it but no quorum confirmed it in time.
    #[error("not confirmed by a quorum in time")]
    Unconfirmed,
}

/// One lazily connected channel per peer address, shared by Raft replication and forwarding.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    pub fn client(&self, grpc_addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let mut channels = match self.channels.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(channel) = channels.get(grpc_addr) {
            return Ok(RaftClient::new(channel.clone()));
        }
        let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            // A peer that restarts under a new address (a replaced container or pod) leaves
            // the old connection silent, not closed: pings find that within about three
            // seconds, and the channel reconnects by name. Every RPC fails until then.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(grpc_addr.to_owned(), channel.clone());
        // Snapshots and large batches exceed tonic's 4 MiB default.
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20))
    }
}
