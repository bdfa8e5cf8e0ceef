//! The public gRPC services (`mpc.v1`).

mod access;
mod cluster;
pub mod convert;
mod keys;
mod relay;
mod sessions;

pub use access::AccessService;
pub use cluster::ClusterService;
pub use keys::KeysService;
pub use relay::RelayService;
pub use sessions::SessionsService;

use crate::error::invalid;
use crate::CoordinatorError;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Who made a request, as the audit trail names it.
pub(crate) fn actor<T>(request: &tonic::Request<T>) -> Result<String, tonic::Status> {
    crate::auth::Principal::of(request).map(|p| p.audit_name())
}

pub(crate) fn page_size(raw: u32) -> Result<usize, CoordinatorError> {
    match usize::try_from(raw) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(invalid(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}, got {raw}"),
        )),
    }
}

/// A listing's page token: the last id of the previous page, or nothing for the first page.
pub(crate) fn page_token(raw: String) -> Result<Option<String>, CoordinatorError> {
    if raw.is_empty() {
        return Ok(None);
    }
    mpc_raft_store::command::check_id("page_token", &raw).map_err(|e| {
        invalid(
            "page_token",
            format!("is not a token a listing returned ({})", e.reason),
        )
    })?;
    Ok(Some(raw))
}
