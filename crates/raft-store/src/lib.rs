//! The replicated half of an mpc coordinator: what every coordinator agrees on, and where it
//! lives on disk.
//!
//! A coordinator cluster is one Raft group ([openraft] 0.9, storage v2). This crate gives it
//! three things and nothing about networks:
//!
//! 1. [`TypeConfig`]: the Raft type configuration. A log entry carries a [`Proposal`]: the
//!    [`Command`]s a leader batched, each answered by its own [`CommandResponse`]. Nodes are described by [`NodeInfo`] (their advertised gRPC
//!    and HTTP addresses).
//! 2. [`Store`]: one RocksDB database opened from a directory, split into
//!    - a [`LogStore`] (the Raft log, vote, committed and purged ids). Appends are readable at
//!      once from an in-memory tail cache; one writer thread writes everything queued as a
//!      single synced batch and only then reports it durable to Raft, so concurrent appends
//!      share one fsync (group commit);
//!    - a [`StateMachine`] whose tables are RocksDB column families (keys, sessions, parties,
//!      idempotency, audit). Snapshots are a consistent dump of those families taken from a
//!      RocksDB snapshot; installing one replaces them in a single atomic batch. Snapshot data
//!      lives in files under `<dir>/snapshots/` ([`SnapshotFile`]), never past
//!      [`MAX_SNAPSHOT_BYTES`]; check every received chunk with [`check_snapshot_chunk`] before
//!      openraft sees it;
//!    - a [`StateReader`] for the read path, sharing the same database.
//! 3. The data model ([`model`]) and its commands ([`command`]): a command is validated with
//!    [`Command::validate`] before it is proposed, and [`apply`] is deterministic: it reads no
//!    clock and draws no randomness; the proposer stamps time and identifiers into the command.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mpc_raft_store::StoreError> {
//! let store = mpc_raft_store::Store::open("/var/lib/mpc/coordinator-1")?;
//! let (log_store, state_machine, reader) = store.into_parts()?;
//! // hand log_store and state_machine to openraft::Raft::new(..); serve reads from `reader`.
//! # let _ = (log_store, state_machine, reader);
//! # Ok(()) }
//! ```

pub mod apply;
pub mod codec;
pub mod command;
mod error;
pub(crate) mod index;
#[cfg(feature = "storage")]
mod log_store;
pub mod model;
mod node;
#[cfg(feature = "storage")]
mod reader;
pub mod relay;
#[cfg_attr(not(feature = "storage"), allow(dead_code))]
mod snapshot_file;
#[cfg(feature = "storage")]
mod snapshot_format;
#[cfg(feature = "storage")]
mod state_machine;
#[cfg(feature = "storage")]
mod store;

pub use command::{
    Command, CommandResponse, Operation, Proposal, ProposalResponse, Rejection, ValidationError,
};
pub use error::StoreError;
#[cfg(feature = "storage")]
pub use log_store::LogStore;
pub use node::NodeInfo;
#[cfg(feature = "storage")]
pub use reader::{AuditFilter, SessionFilter, StateReader};
pub use snapshot_file::{
    check_snapshot_chunk, SnapshotChunkError, SnapshotFile, MAX_SNAPSHOT_BYTES,
};
#[cfg(feature = "storage")]
pub use state_machine::{SessionUpdate, StateMachine};
#[cfg(feature = "storage")]
pub use store::Store;

openraft::declare_raft_types!(
    /// The Raft types of an mpc coordinator group.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a coordinator.
pub type Raft = openraft::Raft<TypeConfig>;
/// A coordinator's node id.
pub type NodeId = u64;
