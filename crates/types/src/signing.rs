//! Schemes, hash functions, what a signing signs, and where a session stands: one definition
//! of each, shared by the replicated state, the protocols, the parties and the clients.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A value that does not fit the field it was given for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field at fault, as the API names it.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl FieldError {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// A signature scheme a key is generated for.
///
/// The variants' order is part of the stored format (the replicated state encodes them by
/// position): add new ones at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// ECDSA on secp256k1 (CGGMP21); signatures recover to an Ethereum address.
    EcdsaSecp256k1,
    /// Ed25519 (FROST, RFC 9591).
    SchnorrEd25519,
    /// BIP-340 Schnorr on secp256k1 under a BIP-341 (taproot) tweaked key (FROST).
    SchnorrBip340,
}

impl Scheme {
    /// Every scheme, in their stored order.
    pub const ALL: [Scheme; 3] = [
        Scheme::EcdsaSecp256k1,
        Scheme::SchnorrEd25519,
        Scheme::SchnorrBip340,
    ];

    /// The scheme's name in the API, the CLI and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Scheme::SchnorrEd25519 => "schnorr-ed25519",
            Scheme::SchnorrBip340 => "schnorr-bip340",
        }
    }

    /// ECDSA needs auxiliary info (Paillier keys) beside the key share; FROST does not.
    pub fn needs_aux_info(self) -> bool {
        matches!(self, Scheme::EcdsaSecp256k1)
    }

    /// Only ECDSA signings can be served from a presignature.
    pub fn has_presignatures(self) -> bool {
        matches!(self, Scheme::EcdsaSecp256k1)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "scheme",
                    format!(
                        "unknown scheme {s:?}; expected ecdsa-secp256k1, schnorr-ed25519 or \
                         schnorr-bip340"
                    ),
                )
            })
    }
}

/// The hash an ECDSA signer applies to a message before signing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashFunction {
    /// Ethereum's hash.
    Keccak256,
    /// SHA-256 (FIPS 180-4).
    Sha256,
}

impl HashFunction {
    /// The hash function's name in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            HashFunction::Keccak256 => "keccak256",
            HashFunction::Sha256 => "sha256",
        }
    }

    /// The 32-byte digest of `message`.
    pub fn digest(self, message: &[u8]) -> [u8; 32] {
        match self {
            HashFunction::Keccak256 => sha3::Keccak256::digest(message).into(),
            HashFunction::Sha256 => sha2::Sha256::digest(message).into(),
        }
    }
}

impl fmt::Display for HashFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashFunction {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keccak256" => Ok(HashFunction::Keccak256),
            "sha256" => Ok(HashFunction::Sha256),
            other => Err(FieldError::new(
                "hash",
                format!("unknown hash function {other:?}; expected keccak256 or sha256"),
            )),
        }
    }
}

/// What a signing request signs.
///
/// ECDSA signs a 32-byte digest. A request that carries the message and its hash function lets
/// every signer hash it itself, and only such a request may be served from a presignature
/// (CVE-2025-66017: presignatures applied to attacker-chosen digests allow forgeries). A raw
/// digest always runs the full protocol. Schnorr schemes sign the message bytes themselves.
///
/// The variants' order and the digest's encoding as bytes are part of the stored format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningInput {
    /// A digest signed as it is.
    Digest(#[serde(with = "digest_bytes")] [u8; 32]),
    /// A message, with the hash an ECDSA signer applies to it (none for Schnorr schemes).
    Message {
        /// The bytes to sign.
        message: Vec<u8>,
        /// ECDSA only: how the signers hash the message.
        hash: Option<HashFunction>,
    },
}

impl SigningInput {
    /// The input of a request that gives a digest or a message (and a hash function for it),
    /// as the API's fields carry them: exactly one of `digest` and `message`.
    pub fn from_fields(digest: &[u8], message: &[u8], hash: &str) -> Result<Self, FieldError> {
        match (digest.is_empty(), message.is_empty()) {
            (false, true) if !hash.is_empty() => Err(FieldError::new(
                "hash",
                "a digest is signed as it is: leave hash empty",
            )),
            (false, true) => digest.try_into().map(SigningInput::Digest).map_err(|_| {
                FieldError::new("digest", format!("must be 32 bytes, got {}", digest.len()))
            }),
            (true, false) => Ok(SigningInput::Message {
                message: message.to_vec(),
                hash: (!hash.is_empty()).then(|| hash.parse()).transpose()?,
            }),
            (false, false) => Err(FieldError::new(
                "message",
                "give either a digest or a message, not both",
            )),
            (true, true) => Err(FieldError::new(
                "digest",
                "give a digest or a message to sign",
            )),
        }
    }

    /// The API's fields for this input: digest, message and hash name (empty when absent).
    pub fn to_fields(&self) -> (Vec<u8>, Vec<u8>, String) {
        match self {
            SigningInput::Digest(d) => (d.to_vec(), Vec::new(), String::new()),
            SigningInput::Message { message, hash } => (
                Vec::new(),
                message.clone(),
                hash.map(|h| h.as_str().to_owned()).unwrap_or_default(),
            ),
        }
    }

    /// Checks that this input fits `scheme`, naming the offending field.
    pub fn validate_for(&self, scheme: Scheme) -> Result<(), FieldError> {
        match (scheme, self) {
            (Scheme::EcdsaSecp256k1, SigningInput::Message { hash: None, .. }) => {
                Err(FieldError::new(
                    "hash",
                    "an ECDSA key signs a digest: name the hash (keccak256 or sha256)",
                ))
            }
            (
                Scheme::SchnorrEd25519 | Scheme::SchnorrBip340,
                SigningInput::Message { hash: Some(_), .. },
            ) => Err(FieldError::new(
                "hash",
                format!("a {scheme} key signs the message itself: leave hash empty"),
            )),
            _ => Ok(()),
        }
    }

    /// The 32 bytes an ECDSA signature is computed over.
    pub fn ecdsa_digest(&self) -> Result<[u8; 32], FieldError> {
        match self {
            SigningInput::Digest(d) => Ok(*d),
            SigningInput::Message {
                message,
                hash: Some(h),
            } => Ok(h.digest(message)),
            SigningInput::Message { hash: None, .. } => Err(FieldError::new(
                "hash",
                "ECDSA signs a digest: name the hash function",
            )),
        }
    }

    /// The bytes a Schnorr signature is computed over.
    pub fn schnorr_message(&self) -> &[u8] {
        match self {
            SigningInput::Digest(d) => d,
            SigningInput::Message { message, .. } => message,
        }
    }

    /// The one presignature rule: a presignature may serve only a message with the hash
    /// function its signers apply themselves, never a raw digest.
    pub fn may_use_presignature(&self) -> bool {
        matches!(self, SigningInput::Message { hash: Some(_), .. })
    }
}

/// Encodes the digest as a byte string (length and bytes), as the stored format has it.
mod digest_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(d)?;
        bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!("a digest is 32 bytes, got {}", bytes.len()))
        })
    }
}

/// What kind of work a session is.
///
/// The variants' order is part of the stored format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKind {
    /// Distributed key generation.
    Keygen,
    /// A signing.
    Sign,
    /// Making one presignature for an ECDSA key's pool.
    Presign,
    /// Refreshing a key's shares.
    Refresh,
}

impl SessionKind {
    /// The kind's name in the API's JSON and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Keygen => "keygen",
            SessionKind::Sign => "sign",
            SessionKind::Presign => "presign",
            SessionKind::Refresh => "refresh",
        }
    }
}

/// Where a session stands.
///
/// The variants' order is part of the stored format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Created, waiting for its parties.
    Pending,
    /// Handed to its parties.
    Running,
    /// Finished with its result.
    Completed,
    /// Finished without one, with a reason.
    Failed,
    /// Ran out of time.
    Expired,
}

impl SessionStatus {
    /// The status's name in the API's JSON and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Running => "running",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Expired => "expired",
        }
    }

    /// A terminal session never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Completed | SessionStatus::Failed | SessionStatus::Expired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_name_their_field() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.as_str().parse::<Scheme>(), Ok(scheme));
        }
        assert_eq!(
            "ecdsa".parse::<Scheme>().map_err(|e| e.field),
            Err("scheme")
        );
        for hash in [HashFunction::Keccak256, HashFunction::Sha256] {
            assert_eq!(hash.as_str().parse::<HashFunction>(), Ok(hash));
        }
        assert_eq!(
            "md5".parse::<HashFunction>().map_err(|e| e.field),
            Err("hash")
        );
    }

    #[test]
    fn a_request_gives_exactly_one_input_and_each_mistake_names_its_field() {
        let field =
            |d: &[u8], m: &[u8], h: &str| SigningInput::from_fields(d, m, h).map_err(|e| e.field);
        assert_eq!(
            SigningInput::from_fields(&[1; 32], b"", ""),
            Ok(SigningInput::Digest([1; 32]))
        );
        assert_eq!(field(&[1; 31], b"", ""), Err("digest"));
        assert_eq!(field(&[1; 32], b"", "sha256"), Err("hash"));
        assert_eq!(field(&[1; 32], b"m", ""), Err("message"));
        assert_eq!(field(b"", b"", ""), Err("digest"));
        assert_eq!(field(b"", b"m", "md5"), Err("hash"));
        let input = SigningInput::from_fields(b"", b"pay", "keccak256");
        assert_eq!(
            input,
            Ok(SigningInput::Message {
                message: b"pay".to_vec(),
                hash: Some(HashFunction::Keccak256)
            })
        );
        if let Ok(input) = input {
            assert_eq!(
                input.to_fields(),
                (Vec::new(), b"pay".to_vec(), "keccak256".into())
            );
        }
    }

    #[test]
    fn only_a_hashed_message_may_use_a_presignature() {
        assert!(!SigningInput::Digest([0; 32]).may_use_presignature());
        let unhashed = SigningInput::Message {
            message: b"m".to_vec(),
            hash: None,
        };
        assert!(!unhashed.may_use_presignature());
        let hashed = SigningInput::Message {
            message: b"m".to_vec(),
            hash: Some(HashFunction::Sha256),
        };
        assert!(hashed.may_use_presignature());
        assert_eq!(hashed.ecdsa_digest(), Ok(HashFunction::Sha256.digest(b"m")));
        assert_eq!(
            unhashed
                .validate_for(Scheme::EcdsaSecp256k1)
                .map_err(|e| e.field),
            Err("hash")
        );
        assert_eq!(
            hashed
                .validate_for(Scheme::SchnorrEd25519)
                .map_err(|e| e.field),
            Err("hash")
        );
    }

    #[test]
    fn only_finished_sessions_are_terminal() {
        assert!(!SessionStatus::Pending.is_terminal());
        assert!(!SessionStatus::Running.is_terminal());
        assert!(SessionStatus::Completed.is_terminal());
        assert!(SessionStatus::Failed.is_terminal());
        assert!(SessionStatus::Expired.is_terminal());
    }
}
