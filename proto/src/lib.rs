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

/// The one translation between signed statements ([`mpc_types::statement`]) and their
/// protobuf form. Errors name the field and the reason.
pub mod statements {
    use mpc_types::statement::{Endorsed, KeyPolicy, Signed};

    use crate::v1 as pb;

    /// `(field, reason)` of a malformed message.
    pub type Malformed = (String, String);

    fn bytes32(field: &str, b: &[u8]) -> Result<[u8; 32], Malformed> {
        b.try_into().map_err(|_| {
            (
                field.to_owned(),
                format!("must be 32 bytes, got {}", b.len()),
            )
        })
    }

    pub fn signature_to(s: &Signed) -> pb::Signature {
        pb::Signature {
            signer: s.signer.to_vec(),
            signature: s.signature.to_vec(),
        }
    }

    pub fn signature_from(field: &str, s: &pb::Signature) -> Result<Signed, Malformed> {
        Ok(Signed {
            signer: bytes32(&format!("{field}.signer"), &s.signer)?,
            signature: s.signature.as_slice().try_into().map_err(|_| {
                (
                    format!("{field}.signature"),
                    format!("must be 64 bytes, got {}", s.signature.len()),
                )
            })?,
        })
    }

    pub fn signatures_from(field: &str, list: &[pb::Signature]) -> Result<Vec<Signed>, Malformed> {
        list.iter()
            .enumerate()
            .map(|(i, s)| signature_from(&format!("{field}[{i}]"), s))
            .collect()
    }

    pub fn policy_to(p: &Endorsed<KeyPolicy>) -> pb::EndorsedKeyPolicy {
        let s = &p.statement;
        pb::EndorsedKeyPolicy {
            policy: Some(pb::KeyPolicy {
                key_id: s.key_id.clone(),
                scheme: s.scheme.clone(),
                threshold: u32::from(s.threshold),
                parties: s.parties.clone(),
                initiators: s.initiators.iter().map(|k| k.to_vec()).collect(),
                approvals_needed: u32::from(s.approvals_needed),
                version: s.version,
            }),
            admin: Some(signature_to(&p.by)),
        }
    }

    pub fn policy_from(
        field: &str,
        p: Option<&pb::EndorsedKeyPolicy>,
    ) -> Result<Endorsed<KeyPolicy>, Malformed> {
        let missing = |what: &str| (format!("{field}{what}"), "required".to_owned());
        let p = p.ok_or_else(|| missing(""))?;
        let policy = p.policy.as_ref().ok_or_else(|| missing(".policy"))?;
        let admin = p.admin.as_ref().ok_or_else(|| missing(".admin"))?;
        let small = |what: &str, v: u32| {
            u16::try_from(v).map_err(|_| (format!("{field}.{what}"), format!("{v} is too large")))
        };
        Ok(Endorsed {
            statement: KeyPolicy {
                key_id: policy.key_id.clone(),
                scheme: policy.scheme.clone(),
                threshold: small("threshold", policy.threshold)?,
                parties: policy.parties.clone(),
                initiators: policy
                    .initiators
                    .iter()
                    .enumerate()
                    .map(|(i, k)| bytes32(&format!("{field}.initiators[{i}]"), k))
                    .collect::<Result<_, _>>()?,
                approvals_needed: small("approvals_needed", policy.approvals_needed)?,
                version: policy.version,
            },
            by: signature_from(&format!("{field}.admin"), admin)?,
        })
    }
}
