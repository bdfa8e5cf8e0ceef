use std::fmt;

use serde::{Deserialize, Serialize};

/// How the other members reach a coordinator: what it advertises, not what it binds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the public gRPC listener (the API clients and parties use).
    pub grpc_addr: String,
    /// `host:port` of the HTTP listener (health, metrics, cluster status).
    pub http_addr: String,
    /// `host:port` of the Raft listener (mutual TLS, coordinators only).
    pub raft_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grpc={} http={} raft={}",
            self.grpc_addr, self.http_addr, self.raft_addr
        )
    }
}
