//! Coordinator-to-coordinator messages: the wire forms of forwarded writes and the cache of
//! gRPC channels to peers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpc_proto::raft::v1::raft_client::RaftClient;
use mpc_raft_store::{Command, CommandResponse, NodeId, NodeInfo};
use mpc_tls::ClientTls;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// A write that a follower carries to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Box<Command>),
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

/// One lazily connected channel per peer Raft address, shared by Raft replication and
/// forwarding. Every channel is mutual TLS with this node's coordinator certificate (plain
/// text only with `--insecure-plaintext`); a reloaded certificate serves new connections.
#[derive(Debug, Clone)]
pub struct Peers {
    tls: Option<ClientTls>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    pub fn new(tls: Option<ClientTls>) -> Self {
        Self {
            tls,
            channels: Arc::default(),
        }
    }

    pub fn client(&self, raft_addr: &str) -> Result<RaftClient<Channel>, mpc_tls::TlsError> {
        let mut channels = match self.channels.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let client = |channel: Channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(crate::network::MAX_RAFT_MESSAGE)
                .max_encoding_message_size(crate::network::MAX_RAFT_MESSAGE)
        };
        if let Some(channel) = channels.get(raft_addr) {
            return Ok(client(channel.clone()));
        }
        let channel = mpc_tls::channel(raft_addr, self.tls.as_ref(), |e| {
            e.connect_timeout(Duration::from_millis(500))
                // A peer that restarts under a new address (a replaced container or pod)
                // leaves the old connection silent, not closed: pings find that within about
                // three seconds, and the channel reconnects by name. Every RPC fails until
                // then.
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true)
        })?;
        channels.insert(raft_addr.to_owned(), channel.clone());
        Ok(client(channel))
    }
}
