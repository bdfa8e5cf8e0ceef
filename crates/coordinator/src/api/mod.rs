//! The public gRPC services (`mpc.v1`).

mod cluster;
pub mod convert;
mod keys;
mod sessions;

pub use cluster::ClusterService;
pub use keys::KeysService;
pub use sessions::SessionsService;

use crate::error::invalid;
use crate::CoordinatorError;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Who made a request, for the audit trail. Until clients authenticate, the peer address.
pub(crate) fn actor<T>(request: &tonic::Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "anonymous".to_owned(), |a| format!("peer:{a}"))
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
