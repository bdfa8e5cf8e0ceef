use crate::wire::WireError;

/// Why a protocol run or an operation on protocol material failed.
///
/// `Protocol` names the parties (by their index in the run) whose messages caused the abort
/// where that is known; `Bug` is ours, never a peer's.
#[derive(Debug, thiserror::Error)]
pub enum TssError {
    /// The caller's arguments cannot start a run or an operation (a signer set that does
    /// not fit the key, a malformed message to sign, ...); no peer is involved.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The argument at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The protocol itself aborted: a peer sent a message that fails its checks, or the
    /// result did not verify.
    #[error("{protocol} aborted: {reason}")]
    Protocol {
        /// Which protocol: key generation, auxiliary info, presigning or signing.
        protocol: &'static str,
        /// The protocol library's account of the abort.
        reason: String,
        /// Indices (within the run) of the parties blamed for the abort.
        blamed: Vec<u16>,
    },
    /// The transport failed the run: a payload that does not decode, or a closed channel.
    #[error("transport: {0}")]
    Wire(#[from] WireError),
    /// Stored or received bytes are not the encoding of what they claim to be.
    #[error("{what} does not decode: {reason}")]
    Decode {
        /// What the bytes should have held (key share, presignature, ...).
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// Stored material written by a build with another [`MATERIAL_FORMAT`](crate::MATERIAL_FORMAT):
    /// refused rather than misread.
    #[error("{what} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// What the record holds.
        what: &'static str,
        /// The version in the record.
        found: u16,
        /// The one version this build reads.
        supported: u16,
    },
    /// A signature that does not verify under the given key and input (or does not fit the
    /// scheme at all).
    #[error("signature does not verify against the key: {0}")]
    InvalidSignature(String),
    /// Something this crate should have prevented; never caused by a peer or by input.
    #[error("internal error: {0}")]
    Bug(String),
}

impl From<mpc_types::FieldError> for TssError {
    fn from(e: mpc_types::FieldError) -> Self {
        TssError::InvalidInput {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl TssError {
    /// The run indices of the parties whose messages caused this error: those a protocol
    /// abort names, or the sender of a payload that did not decode; empty otherwise.
    pub fn blamed(&self) -> &[u16] {
        match self {
            TssError::Protocol { blamed, .. } => blamed,
            TssError::Wire(WireError::Malformed { sender, .. }) => std::slice::from_ref(sender),
            _ => &[],
        }
    }
}
