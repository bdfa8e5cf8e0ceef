//! Signature schemes and what a signing request asks to sign.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::TssError;

/// A signature scheme a key is generated for.
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
    pub const ALL: [Scheme; 3] = [
        Scheme::EcdsaSecp256k1,
        Scheme::SchnorrEd25519,
        Scheme::SchnorrBip340,
    ];

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
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = TssError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| TssError::InvalidInput {
                field: "scheme",
                reason: format!(
                    "unknown scheme {s:?}; expected ecdsa-secp256k1, schnorr-ed25519 or schnorr-bip340"
                ),
            })
    }
}

/// The hash an ECDSA signer applies to a message before signing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashFunction {
    Keccak256,
    Sha256,
}

impl HashFunction {
    pub fn as_str(self) -> &'static str {
        match self {
            HashFunction::Keccak256 => "keccak256",
            HashFunction::Sha256 => "sha256",
        }
    }

    pub fn digest(self, message: &[u8]) -> [u8; 32] {
        match self {
            HashFunction::Keccak256 => sha3::Keccak256::digest(message).into(),
            HashFunction::Sha256 => sha2::Sha256::digest(message).into(),
        }
    }
}

impl FromStr for HashFunction {
    type Err = TssError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keccak256" => Ok(HashFunction::Keccak256),
            "sha256" => Ok(HashFunction::Sha256),
            other => Err(TssError::InvalidInput {
                field: "hash",
                reason: format!("unknown hash function {other:?}; expected keccak256 or sha256"),
            }),
        }
    }
}

/// What a signing request signs.
///
/// ECDSA signs a 32-byte digest. A request that carries the message and its hash function lets
/// every signer hash it itself, and only such a request may be served from a presignature
/// (CVE-2025-66017: presignatures applied to attacker-chosen digests allow forgeries). A raw
/// digest always runs the full protocol. Schnorr schemes sign the message bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningInput {
    Message {
        message: Vec<u8>,
        hash: Option<HashFunction>,
    },
    Digest([u8; 32]),
}

impl SigningInput {
    /// Checks that this input fits `scheme`, naming the offending field.
    pub fn validate_for(&self, scheme: Scheme) -> Result<(), TssError> {
        match (scheme, self) {
            (Scheme::EcdsaSecp256k1, SigningInput::Message { hash: None, .. }) => {
                Err(TssError::InvalidInput {
                    field: "hash",
                    reason: "ECDSA signs a digest: name the hash function (keccak256 or sha256)"
                        .into(),
                })
            }
            (
                Scheme::SchnorrEd25519 | Scheme::SchnorrBip340,
                SigningInput::Message { hash: Some(_), .. },
            ) => Err(TssError::InvalidInput {
                field: "hash",
                reason: format!(
                    "{scheme} signs the message itself; a hash function does not apply"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The 32 bytes an ECDSA signature is computed over.
    pub fn ecdsa_digest(&self) -> Result<[u8; 32], TssError> {
        match self {
            SigningInput::Digest(d) => Ok(*d),
            SigningInput::Message {
                message,
                hash: Some(h),
            } => Ok(h.digest(message)),
            SigningInput::Message { hash: None, .. } => Err(TssError::InvalidInput {
                field: "hash",
                reason: "ECDSA signs a digest: name the hash function".into(),
            }),
        }
    }

    /// The bytes a Schnorr signature is computed over.
    pub fn schnorr_message(&self) -> &[u8] {
        match self {
            SigningInput::Digest(d) => d,
            SigningInput::Message { message, .. } => message,
        }
    }

    /// Whether a presignature may serve this request.
    pub fn may_use_presignature(&self) -> bool {
        matches!(self, SigningInput::Message { hash: Some(_), .. })
    }
}
