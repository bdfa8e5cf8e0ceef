use crate::wire::WireError;

/// Why a protocol run or an operation on protocol material failed.
///
/// `Protocol` names the parties (by their index in the run) whose messages caused the abort
/// where that is known; `Bug` is ours, never a peer's.
#[derive(Debug, thiserror::Error)]
pub enum TssError {
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("{protocol} aborted: {reason}")]
    Protocol {
        protocol: &'static str,
        reason: String,
        /// Indices (within the run) of the parties blamed for the abort.
        blamed: Vec<u16>,
    },
    #[error("transport: {0}")]
    Wire(#[from] WireError),
    #[error("{what} does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("{what} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("signature does not verify against the key: {0}")]
    InvalidSignature(String),
    #[error("internal error: {0}")]
    Bug(String),
}

impl TssError {
    pub fn blamed(&self) -> &[u16] {
        match self {
            TssError::Protocol { blamed, .. } => blamed,
            TssError::Wire(WireError::Malformed { sender, .. }) => std::slice::from_ref(sender),
            _ => &[],
        }
    }
}
