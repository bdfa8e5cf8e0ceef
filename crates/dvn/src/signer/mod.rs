//! Who signs: a DVN signer over execute hashes, and the submitter's account over
//! transactions. Three kinds behind one trait: a PKCS#11 token ([`hsm`]), a threshold key of
//! the platform itself ([`platform`]), and a key file ([`key_file`], for the submitter's
//! account and for tests).
//!
//! Every kind hands back the same thing: a 65-byte r ‖ s ‖ v with s in the lower half of the
//! group order and v = 27/28, and only after the signature was seen to recover to the
//! signer's own address. A signer that answers with something else (a token with another key,
//! a cluster that signed with the wrong share) is caught here, not by the chain.

pub mod hsm;
pub mod key_file;
pub mod platform;

use std::future::Future;

use alloy::primitives::{keccak256, Address, B256};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

use crate::execute::eip191_digest;

/// Why a signer could not sign, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signer's settings are wrong (a file, a label, a PIN): fix them and restart.
    #[error("signer configuration: {0}")]
    Config(String),
    /// The PKCS#11 module refused an operation.
    #[error("HSM: {operation}: {reason}")]
    Hsm {
        /// The PKCS#11 call, e.g. `C_Login`.
        operation: &'static str,
        /// What the module answered.
        reason: String,
    },
    /// The cluster did not sign (unreachable, refused, or the session failed).
    #[error("platform signer: {0}")]
    Cluster(String),
    /// The signer answered with a signature that is not the signer's over the digest.
    #[error("signer returned an unusable signature: {0}")]
    BadSignature(String),
}

impl SignerError {
    /// A short, fixed name for metric labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            SignerError::Config(_) => "config",
            SignerError::Hsm { .. } => "hsm",
            SignerError::Cluster(_) => "cluster",
            SignerError::BadSignature(_) => "bad_signature",
        }
    }
}

/// A recoverable secp256k1 signature as Ethereum contracts take it: r ‖ s ‖ v, low-s,
/// v = 27 or 28.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EthSignature([u8; 65]);

impl std::fmt::Debug for EthSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EthSignature(0x{})", alloy::hex::encode(self.0))
    }
}

impl EthSignature {
    /// The 65 bytes.
    pub fn to_bytes(&self) -> [u8; 65] {
        self.0
    }

    /// The x coordinate of the nonce point.
    pub fn r(&self) -> B256 {
        B256::from_slice(&self.0[..32])
    }

    /// The low-s proof scalar.
    pub fn s(&self) -> B256 {
        B256::from_slice(&self.0[32..64])
    }

    /// The recovery parity: false for v = 27, true for v = 28.
    pub fn y_parity(&self) -> bool {
        self.0[64] == 28
    }
}

/// A key that signs 32-byte digests.
pub trait Signer: Send + Sync {
    /// The Ethereum address of the key.
    fn address(&self) -> Address;

    /// Signs `digest` as it is (a transaction's signing hash).
    fn sign_digest(
        &self,
        digest: B256,
    ) -> impl Future<Output = Result<EthSignature, SignerError>> + Send;

    /// Signs the EIP-191 digest of `hash` (what the DVN contract recovers execute signatures
    /// with). Signers that hash messages themselves override this to be given the message.
    fn sign_eip191(
        &self,
        hash: B256,
    ) -> impl Future<Output = Result<EthSignature, SignerError>> + Send {
        self.sign_digest(eip191_digest(hash))
    }

    /// Whether the signer can sign now (for `/ready`): the token's session is alive, the
    /// cluster answers.
    fn check(&self) -> impl Future<Output = Result<(), SignerError>> + Send;
}

/// The Ethereum address of a public key: the last 20 bytes of the keccak256 of its
/// uncompressed coordinates.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    Address::from_slice(&keccak256(xy)[12..])
}

/// Turns a raw `r ‖ s` over `digest` into the Ethereum form: s normalised to the lower half
/// (the other half is the same signature to ECDSA but refused by Ethereum), and v the
/// recovery id under which it recovers to `expected`. Fails when it recovers to neither.
pub fn eth_signature(
    digest: B256,
    r: &[u8],
    s: &[u8],
    expected: Address,
) -> Result<EthSignature, SignerError> {
    let bad = |reason: String| SignerError::BadSignature(reason);
    let r: [u8; 32] = r
        .try_into()
        .map_err(|_| bad(format!("r is {} bytes, not 32", r.len())))?;
    let s: [u8; 32] = s
        .try_into()
        .map_err(|_| bad(format!("s is {} bytes, not 32", s.len())))?;
    let sig =
        Signature::from_scalars(r, s).map_err(|e| bad(format!("r or s out of range: {e}")))?;
    let sig = sig.normalize_s().unwrap_or(sig);
    for id in 0u8..2 {
        let Some(recovery) = RecoveryId::from_byte(id) else {
            continue;
        };
        let Ok(key) = VerifyingKey::recover_from_prehash(digest.as_slice(), &sig, recovery) else {
            continue;
        };
        if address_of(&key) == expected {
            let mut out = [0u8; 65];
            out[..64].copy_from_slice(&sig.to_bytes());
            out[64] = 27 + id;
            return Ok(EthSignature(out));
        }
    }
    Err(bad(format!(
        "it does not recover to the signer's address {expected}"
    )))
}

/// The address a 65-byte r ‖ s ‖ v signature over `digest` recovers to, as `ecrecover`
/// would (v = 27/28, or 0/1).
pub fn recover_address(digest: B256, signature: &[u8]) -> Result<Address, SignerError> {
    let bad = |reason: String| SignerError::BadSignature(reason);
    let sig: &[u8; 65] = signature
        .try_into()
        .map_err(|_| bad(format!("{} bytes, not 65", signature.len())))?;
    let v = match sig[64] {
        v @ (27 | 28) => v - 27,
        v @ (0 | 1) => v,
        v => return Err(bad(format!("v is {v}, not 27 or 28"))),
    };
    let parsed = Signature::from_slice(&sig[..64]).map_err(|e| bad(e.to_string()))?;
    let recovery = RecoveryId::from_byte(v).ok_or_else(|| bad(format!("recovery id {v}")))?;
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &parsed, recovery)
        .map_err(|e| bad(e.to_string()))?;
    Ok(address_of(&key))
}

/// The signer this instance was configured with.
#[derive(Debug)]
pub enum ConfiguredSigner {
    /// A PKCS#11 token.
    Hsm(hsm::HsmSigner),
    /// A threshold key of the cluster (boxed: it carries the cluster's endpoints and
    /// credentials).
    Platform(Box<platform::PlatformSigner>),
    /// A key file.
    KeyFile(key_file::KeyFileSigner),
}

impl Signer for ConfiguredSigner {
    fn address(&self) -> Address {
        match self {
            ConfiguredSigner::Hsm(s) => s.address(),
            ConfiguredSigner::Platform(s) => s.address(),
            ConfiguredSigner::KeyFile(s) => s.address(),
        }
    }

    async fn sign_digest(&self, digest: B256) -> Result<EthSignature, SignerError> {
        match self {
            ConfiguredSigner::Hsm(s) => s.sign_digest(digest).await,
            ConfiguredSigner::Platform(s) => s.sign_digest(digest).await,
            ConfiguredSigner::KeyFile(s) => s.sign_digest(digest).await,
        }
    }

    async fn sign_eip191(&self, hash: B256) -> Result<EthSignature, SignerError> {
        match self {
            ConfiguredSigner::Hsm(s) => s.sign_eip191(hash).await,
            ConfiguredSigner::Platform(s) => s.sign_eip191(hash).await,
            ConfiguredSigner::KeyFile(s) => s.sign_eip191(hash).await,
        }
    }

    async fn check(&self) -> Result<(), SignerError> {
        match self {
            ConfiguredSigner::Hsm(s) => s.check().await,
            ConfiguredSigner::Platform(s) => s.check().await,
            ConfiguredSigner::KeyFile(s) => s.check().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k256::ecdsa::SigningKey;

    #[test]
    fn the_address_of_a_known_key_is_ethereum_s() {
        // The private key 1: its address is well known.
        let mut one = [0u8; 32];
        one[31] = 1;
        let key = SigningKey::from_bytes(&one.into()).unwrap();
        assert_eq!(
            address_of(key.verifying_key()).to_string().to_lowercase(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn high_s_is_normalised_and_v_found_by_recovery() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let addr = address_of(key.verifying_key());
        let digest = keccak256(b"digest");
        let (sig, _) = key.sign_prehash_recoverable(digest.as_slice()).unwrap();
        let bytes = sig.to_bytes();
        let low = eth_signature(digest, &bytes[..32], &bytes[32..], addr).unwrap();
        assert_eq!(recover_address(digest, &low.to_bytes()).unwrap(), addr);

        // The same signature with s replaced by n - s: normalised back to the low one.
        let high_s = -*sig.s().as_ref();
        let high = Signature::from_scalars(sig.r().to_bytes(), high_s.to_bytes()).unwrap();
        let hb = high.to_bytes();
        let again = eth_signature(digest, &hb[..32], &hb[32..], addr).unwrap();
        assert_eq!(again, low);
        assert!(matches!(low.to_bytes()[64], 27 | 28));

        // Another key's address: refused.
        let err = eth_signature(digest, &bytes[..32], &bytes[32..], Address::ZERO).unwrap_err();
        assert!(matches!(err, SignerError::BadSignature(_)), "{err}");
        assert!(eth_signature(digest, &bytes[..31], &bytes[32..], addr).is_err());
        assert!(recover_address(digest, &bytes).is_err());
    }
}
