use mpc_raft_store::{Rejection, StoreError, ValidationError};
use tonic::{Code, Status};

/// Everything that can go wrong in a coordinator, split by what the caller should do:
/// fix the input, retry elsewhere or later, or report a bug.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Rejected(Rejection),
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// No leader is known or reachable now; retry (at `leader_grpc_addr` when known).
    #[error("no leader available: {reason}")]
    NoLeader {
        reason: String,
        leader_grpc_addr: Option<String>,
    },
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("peer {peer} sent a message that cannot be decoded: {reason}")]
    BadPeerMessage { peer: String, reason: String },
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the Raft node stopped: {0}")]
    RaftStopped(String),
    /// This node's data directory is short of space ([`crate::disk`]); other members take
    /// writes.
    #[error(
        "this node's data directory has {free_mib} MiB free, below limits.min_free_disk_mib \
         ({min_free_mib}): it refuses writes until space returns; send them to another member"
    )]
    DiskSpaceLow { free_mib: u64, min_free_mib: u64 },
    #[error("server error: {0}")]
    Server(String),
}

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        let code = match &e {
            CoordinatorError::Invalid(_) => Code::InvalidArgument,
            CoordinatorError::Rejected(r) => match r {
                Rejection::NotFound { .. } => Code::NotFound,
                Rejection::AlreadyExists { .. }
                | Rejection::RequestIdReused { .. }
                | Rejection::KeyUpdateIdReused { .. } => Code::AlreadyExists,
                Rejection::PartyIdentityChanged { .. } | Rejection::Unauthorised { .. } => {
                    Code::PermissionDenied
                }
                Rejection::KeyNotActive { .. }
                | Rejection::PartyNotEnrolled { .. }
                | Rejection::InvalidTransition { .. }
                | Rejection::PresignatureUnavailable { .. } => Code::FailedPrecondition,
                Rejection::Invalid(_) => Code::InvalidArgument,
                Rejection::TooManyOpenSessions { .. } => Code::ResourceExhausted,
            },
            CoordinatorError::NotFound { .. } => Code::NotFound,
            CoordinatorError::NoLeader { .. } | CoordinatorError::RaftStopped(_) => {
                Code::Unavailable
            }
            CoordinatorError::Timeout(_) => Code::DeadlineExceeded,
            CoordinatorError::DiskSpaceLow { .. } => Code::ResourceExhausted,
            CoordinatorError::Membership(_) => Code::FailedPrecondition,
            CoordinatorError::Config(_)
            | CoordinatorError::Store(_)
            | CoordinatorError::BadPeerMessage { .. }
            | CoordinatorError::Bind { .. }
            | CoordinatorError::Server(_) => Code::Internal,
        };
        let mut status = Status::new(code, e.to_string());
        if let CoordinatorError::NoLeader {
            leader_grpc_addr: Some(addr),
            ..
        } = &e
        {
            if let Ok(value) = addr.parse() {
                status
                    .metadata_mut()
                    .insert(mpc_proto::LEADER_METADATA, value);
            }
        }
        status
    }
}

/// An input field that does not parse.
pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Invalid(ValidationError::new(field, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_leader_tells_the_client_where_the_leader_is() {
        let status = Status::from(CoordinatorError::NoLeader {
            reason: "forwarding failed".into(),
            leader_grpc_addr: Some("10.0.0.3:50051".into()),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status
                .metadata()
                .get(mpc_proto::LEADER_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("10.0.0.3:50051")
        );
    }

    #[test]
    fn rejections_map_to_the_codes_clients_branch_on() {
        let code = |r: Rejection| Status::from(CoordinatorError::Rejected(r)).code();
        assert_eq!(
            code(Rejection::NotFound {
                kind: "key".into(),
                id: "k".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            code(Rejection::RequestIdReused {
                request_id: "r".into(),
                session_id: "s".into()
            }),
            Code::AlreadyExists
        );
        assert_eq!(
            code(Rejection::InvalidTransition {
                session_id: "s".into(),
                from: "failed".into(),
                to: "completed".into()
            }),
            Code::FailedPrecondition
        );
        let invalid = Status::from(invalid("threshold", "must be at least 2"));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "invalid threshold: must be at least 2");
    }
}
