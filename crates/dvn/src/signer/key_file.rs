//! A secp256k1 key in a private file ([`mpc_tls::secret_file`]): 64 hex digits (an optional `0x`
//! and surrounding whitespace allowed). Meant for the submitter's account, whose worst case
//! is paying for gas, and for tests; DVN signers belong on an HSM or the platform.

use std::path::Path;

use alloy::primitives::{Address, B256};
use k256::ecdsa::SigningKey;
use zeroize::Zeroizing;

use super::{address_of, eth_signature, EthSignature, Signer, SignerError};

/// A key read from a file. Its `Debug` shows the address only.
pub struct KeyFileSigner {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for KeyFileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFileSigner")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl KeyFileSigner {
    /// Reads the key at `path`, refusing a file that is not private ([`mpc_tls::secret_file`]).
    pub fn load(path: &Path) -> Result<Self, SignerError> {
        let fail =
            |reason: String| SignerError::Config(format!("key file {}: {reason}", path.display()));
        let text = crate::secret_file::read(path, "key file")?;
        let hex = text.trim();
        let hex = hex.strip_prefix("0x").unwrap_or(hex);
        let mut secret = Zeroizing::new([0u8; 32]);
        alloy::hex::decode_to_slice(hex, secret.as_mut_slice())
            .map_err(|_| fail("expected 64 hex digits".into()))?;
        let key = SigningKey::from_bytes(&(*secret).into())
            .map_err(|_| fail("not a secp256k1 private key".into()))?;
        Ok(Self::from_key(key))
    }

    /// A signer over a key already in memory.
    pub fn from_key(key: SigningKey) -> Self {
        let address = address_of(key.verifying_key());
        Self { key, address }
    }
}

impl Signer for KeyFileSigner {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_digest(&self, digest: B256) -> Result<EthSignature, SignerError> {
        let (sig, _) = self
            .key
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|e| SignerError::BadSignature(e.to_string()))?;
        let bytes = sig.to_bytes();
        eth_signature(digest, &bytes[..32], &bytes[32..], self.address)
    }

    async fn check(&self) -> Result<(), SignerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::signer::recover_address;
    use std::io::Write;

    fn write_key(dir: &Path, mode: u32, text: &str) -> std::path::PathBuf {
        let path = dir.join("key");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_private_key_file_signs_and_the_signature_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_key(
            dir.path(),
            0o600,
            "0x0000000000000000000000000000000000000000000000000000000000000001\n",
        );
        let signer = KeyFileSigner::load(&path).unwrap();
        assert_eq!(
            signer.address().to_string().to_lowercase(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
        let digest = B256::repeat_byte(4);
        let sig = signer.sign_digest(digest).await.unwrap();
        assert_eq!(
            recover_address(digest, &sig.to_bytes()).unwrap(),
            signer.address()
        );
        assert!(!format!("{signer:?}").contains("0000000001"));
    }

    #[test]
    fn a_readable_or_malformed_key_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_key(dir.path(), 0o644, &"11".repeat(32));
        let err = KeyFileSigner::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(KeyFileSigner::load(&path).is_ok());
        let path = write_key(dir.path(), 0o600, "zz");
        let err = KeyFileSigner::load(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        let path = write_key(dir.path(), 0o600, &"00".repeat(32));
        let err = KeyFileSigner::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a secp256k1"), "{err}");
    }
}
