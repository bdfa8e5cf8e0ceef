//! The mpc gRPC API, generated from `proto/` at build time.
//!
//! - [`v1`]: the public services (`mpc.v1.Sessions`, `Keys`, `Cluster`); clients and servers.
//! - [`raft::v1`]: coordinator-to-coordinator Raft transport; never exposed to clients.
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, for gRPC server reflection.
//!
//! Generated types stay at the edge: servers convert them into domain types on arrival.

#![allow(missing_debug_implementations, clippy::all)]

pub mod v1 {
    tonic::include_proto!("mpc.v1");
}

pub mod raft {
    pub mod v1 {
        tonic::include_proto!("mpc.raft.v1");
    }
}

/// Descriptors of every service above, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mpc_descriptor");

/// Response metadata naming the leader's gRPC address when a node cannot serve a write.
pub const LEADER_METADATA: &str = "x-mpc-leader";

/// What a party signs to answer a coordinator's challenge on `PartyGateway.Attach`: the
/// nonce and node id of that coordinator, and the party id.
pub fn hello_message(nonce: &[u8], node_id: u64, party_id: &str) -> Vec<u8> {
    let mut m = b"mpc-party-hello-v1".to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(&node_id.to_be_bytes());
    m.extend_from_slice(party_id.as_bytes());
    m
}
