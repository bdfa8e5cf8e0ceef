//! The 256-bit master key that encrypts everything the party stores.

use std::path::Path;

use zeroize::Zeroizing;

use crate::PartyError;

/// Never printed, zeroized on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 64 hex digits (surrounding whitespace ignored). `source` names where the value
    /// came from, for the error; the value itself never appears in one.
    pub fn from_hex(source: &str, hex_text: &str) -> Result<Self, PartyError> {
        let text = Zeroizing::new(hex_text.trim().to_owned());
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.as_bytes(), &mut key[..]).map_err(|_| PartyError::Config {
            field: source.to_owned(),
            reason: "must be 64 hex digits (a 256-bit key)".into(),
        })?;
        Ok(MasterKey(key))
    }

    /// Reads a key file holding 64 hex digits or exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Self, PartyError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| PartyError::Config {
            field: "master_key_file".into(),
            reason: format!("{}: {e}", path.display()),
        })?);
        if bytes.len() == 32 {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&bytes);
            return Ok(MasterKey(key));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| PartyError::Config {
            field: "master_key_file".into(),
            reason: format!("{}: neither 32 raw bytes nor hex text", path.display()),
        })?;
        Self::from_hex("master_key_file", text)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}
