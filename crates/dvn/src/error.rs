//! The relayer's error: one enum over the failures of its parts, each kept whole with its
//! context, so a caller can tell a chain or cluster outage (try again later) from a
//! configuration to fix.

use crate::chain::ChainError;
use crate::config::ConfigError;
use crate::execute::ExecuteError;
use crate::jobs::JobStoreError;
use crate::signer::SignerError;

/// Why a relayer step failed.
#[derive(Debug, thiserror::Error)]
pub enum DvnError {
    /// The settings cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A chain did not answer, or answered nonsense.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The job book (the cluster) did not take a read or a write.
    #[error(transparent)]
    Store(#[from] JobStoreError),
    /// The signer did not sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// A quorum's signatures could not be assembled.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    /// The HTTP face could not start.
    #[error("http: {0}")]
    Http(String),
}

impl DvnError {
    /// Worth trying again later as it is: an outage, not a setting to change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DvnError::Chain(ChainError::Rpc { .. })
                | DvnError::Store(JobStoreError::Unavailable(_))
                | DvnError::Signer(SignerError::Cluster(_) | SignerError::Hsm { .. })
        )
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
