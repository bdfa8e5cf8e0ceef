//! The LayerZero V2 DVN relayer: packets sent on EVM source chains, verified on a target chain
//! (Conflux eSpace in the reference deployment) by a quorum of independent relayer instances.
//!
//! Each instance runs three stages over the job book that the coordinators' Raft state keeps
//! ([`jobs::JobStore`]); it keeps nothing durable of its own:
//!
//! 1. [`listener`]: scans each source chain for `PacketSent` logs that assign our DVN and
//!    records them as jobs, moving its cursor in the same write.
//! 2. [`verifier`]: checks each job from this instance's own RPC endpoints (receipt still
//!    canonical, packet well formed and addressed to the target, enough confirmations for
//!    the receiver, not already verified) and records a signature ([`signer`]: an HSM or a
//!    threshold key of the platform) over the execute hash ([`execute`]), or a rejection with
//!    its reason.
//! 3. [`submitter`]: once a quorum signed, one instance (holding a lease) sends
//!    `DVN.execute` and records the outcome read from the target: `PayloadVerified` or
//!    `hashLookup`, never the receipt status alone.
//!
//! [`packet`] and [`abi`](crate::execute) decode and encode what the chains carry;
//! [`chain`] talks JSON-RPC; [`config`], [`metrics`], [`http`] and [`service`] make the
//! binary `mpc-dvn`.

mod abi;
pub mod chain;
pub mod cluster_store;
pub mod config;
pub mod error;
pub mod execute;
pub mod http;
pub mod jobs;
pub mod listener;
#[cfg(test)]
mod memory_store;
pub mod metrics;
pub mod packet;
pub mod retry;
pub mod secret_file;
pub mod service;
pub mod signer;
pub mod submitter;
pub mod verifier;

pub use error::DvnError;
