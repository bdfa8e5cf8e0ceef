//! Signatures as the platform hands them out, and their verification with libraries other
//! than the ones that produced them (k256 for ECDSA and BIP-340, ed25519-dalek for Ed25519).

use cggmp21::supported_curves::Secp256k1;
use k256::ecdsa::{RecoveryId, VerifyingKey};
use sha3::Digest as _;

use crate::{Scheme, SigningInput, TssError};

/// A finished signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Low-s ECDSA. `v` is 27 + the recovery id, as Ethereum's `ecrecover` takes it.
    Ecdsa {
        /// The x coordinate of the nonce point, big-endian.
        r: [u8; 32],
        /// The proof scalar, big-endian, at most half the group order.
        s: [u8; 32],
        /// 27 or 28.
        v: u8,
    },
    /// 64-byte Schnorr signature (Ed25519: R || s; BIP-340: x(R) || s).
    Schnorr([u8; 64]),
}

impl Signature {
    /// ECDSA: r || s || v (65 bytes); Schnorr: 64 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Signature::Ecdsa { r, s, v } => {
                let mut out = Vec::with_capacity(65);
                out.extend_from_slice(r);
                out.extend_from_slice(s);
                out.push(*v);
                out
            }
            Signature::Schnorr(bytes) => bytes.to_vec(),
        }
    }

    /// Reads the [`to_bytes`](Signature::to_bytes) form of a `scheme` signature. Checks
    /// only the length; [`verify`](crate::verify) checks the rest.
    pub fn from_bytes(scheme: Scheme, bytes: &[u8]) -> Result<Self, TssError> {
        let wrong_length = |expected: usize| TssError::InvalidInput {
            field: "signature",
            reason: format!(
                "{scheme} signatures are {expected} bytes, got {}",
                bytes.len()
            ),
        };
        match scheme {
            Scheme::EcdsaSecp256k1 => {
                let b: &[u8; 65] = bytes.try_into().map_err(|_| wrong_length(65))?;
                let mut r = [0u8; 32];
                let mut s = [0u8; 32];
                r.copy_from_slice(&b[..32]);
                s.copy_from_slice(&b[32..64]);
                Ok(Signature::Ecdsa { r, s, v: b[64] })
            }
            Scheme::SchnorrEd25519 | Scheme::SchnorrBip340 => {
                let b: [u8; 64] = bytes.try_into().map_err(|_| wrong_length(64))?;
                Ok(Signature::Schnorr(b))
            }
        }
    }
}

/// Normalises a protocol output to low-s, attaches the recovery id and verifies it.
pub(crate) fn ecdsa_signature(
    signature: cggmp21::Signature<Secp256k1>,
    public_key: &[u8],
    digest: &[u8; 32],
) -> Result<Signature, TssError> {
    let signature = signature.normalize_s();
    let mut bytes = [0u8; 64];
    signature.write_to_slice(&mut bytes);
    let sig = k256::ecdsa::Signature::from_slice(&bytes)
        .map_err(|e| TssError::InvalidSignature(e.to_string()))?;
    let key = VerifyingKey::from_sec1_bytes(public_key)
        .map_err(|e| TssError::InvalidSignature(format!("public key: {e}")))?;
    let recovery = RecoveryId::trial_recovery_from_prehash(&key, digest, &sig)
        .map_err(|e| TssError::InvalidSignature(e.to_string()))?;
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    s.copy_from_slice(&bytes[32..]);
    Ok(Signature::Ecdsa {
        r,
        s,
        v: 27 + recovery.to_byte(),
    })
}

/// The Ethereum address of a secp256k1 public key (33-byte SEC1), as 0x-prefixed hex.
pub fn ethereum_address(public_key: &[u8]) -> Result<String, TssError> {
    let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|e| TssError::InvalidInput {
        field: "public_key",
        reason: e.to_string(),
    })?;
    let uncompressed = key.to_encoded_point(false);
    let hash = sha3::Keccak256::digest(&uncompressed.as_bytes()[1..]);
    Ok(format!("0x{}", hex::encode(&hash[12..])))
}

/// Verifies `signature` over `input` against `public_key` for `scheme`.
///
/// For ECDSA this also recovers the signer from (digest, r, s, v) and checks it is the key,
/// which is what a contract calling `ecrecover` relies on.
pub fn verify(
    scheme: Scheme,
    public_key: &[u8],
    input: &SigningInput,
    signature: &Signature,
) -> Result<(), TssError> {
    let invalid = |what: String| TssError::InvalidSignature(what);
    match (scheme, signature) {
        (Scheme::EcdsaSecp256k1, Signature::Ecdsa { r, s, v }) => {
            let digest = input.ecdsa_digest()?;
            let key = VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|e| invalid(format!("public key: {e}")))?;
            let sig =
                k256::ecdsa::Signature::from_scalars(*r, *s).map_err(|e| invalid(e.to_string()))?;
            if sig.normalize_s().is_some() {
                return Err(invalid("s is not in the lower half of the order".into()));
            }
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            key.verify_prehash(&digest, &sig)
                .map_err(|e| invalid(e.to_string()))?;
            let recovery = v
                .checked_sub(27)
                .and_then(RecoveryId::from_byte)
                .ok_or_else(|| invalid(format!("v = {v} is not 27 or 28")))?;
            let recovered = VerifyingKey::recover_from_prehash(&digest, &sig, recovery)
                .map_err(|e| invalid(format!("recovery: {e}")))?;
            if recovered != key {
                return Err(invalid("recovers to another key".into()));
            }
            Ok(())
        }
        (Scheme::SchnorrEd25519, Signature::Schnorr(bytes)) => {
            let key_bytes: [u8; 32] = public_key
                .try_into()
                .map_err(|_| invalid("Ed25519 public keys are 32 bytes".into()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
                .map_err(|e| invalid(format!("public key: {e}")))?;
            let sig = ed25519_dalek::Signature::from_bytes(bytes);
            key.verify_strict(input.schnorr_message(), &sig)
                .map_err(|e| invalid(e.to_string()))
        }
        (Scheme::SchnorrBip340, Signature::Schnorr(bytes)) => {
            // k256 asserts the length (a panic) rather than reporting it: check it first.
            if public_key.len() != 32 {
                return Err(invalid(format!(
                    "BIP-340 public keys are 32 bytes, got {}",
                    public_key.len()
                )));
            }
            let key = k256::schnorr::VerifyingKey::from_bytes(public_key)
                .map_err(|e| invalid(format!("public key: {e}")))?;
            let sig = k256::schnorr::Signature::try_from(&bytes[..])
                .map_err(|e| invalid(e.to_string()))?;
            key.verify_raw(input.schnorr_message(), &sig)
                .map_err(|e| invalid(e.to_string()))
        }
        (scheme, _) => Err(invalid(format!("not a {scheme} signature"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `tss_wire` fuzz target: a BIP-340 key of the wrong length made k256
    /// panic inside `verify`.
    #[test]
    fn a_public_key_of_the_wrong_length_is_an_error_for_every_scheme() {
        let input = SigningInput::Message {
            message: b"m".to_vec(),
            hash: None,
        };
        for scheme in [Scheme::SchnorrEd25519, Scheme::SchnorrBip340] {
            for len in [0, 16, 31, 33, 64] {
                let result = verify(scheme, &vec![2; len], &input, &Signature::Schnorr([1; 64]));
                assert!(
                    matches!(result, Err(TssError::InvalidSignature(_))),
                    "{scheme} {len}"
                );
            }
        }
    }
}
