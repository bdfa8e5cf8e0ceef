//! The 256-bit master key that encrypts everything the party stores.

use std::io::Read;
use std::path::Path;

use aes_gcm::{Aes256Gcm, KeyInit};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::PartyError;

/// A key file is 64 hex digits (and perhaps a newline and spaces) or 32 raw bytes.
const MAX_KEY_FILE: usize = 256;

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

    /// Reads a key file holding 64 hex digits or exactly 32 raw bytes. The file must be
    /// private ([`mpc_tls::secret_file`]): a key that others on the host can read protects
    /// nothing, so a file open to them stops the start (the error names the file and the
    /// fix, never the key).
    pub fn from_file(path: &Path) -> Result<Self, PartyError> {
        let config = |reason: String| PartyError::Config {
            field: "master_key_file".into(),
            reason: format!("{}: {reason}", path.display()),
        };
        let mut file = std::fs::File::open(path).map_err(|e| config(e.to_string()))?;
        // The mode of the file actually opened, not of whatever the path names a moment later.
        let meta = file.metadata().map_err(|e| config(e.to_string()))?;
        mpc_tls::secret_file::check_private(&meta)
            .map_err(|reason| config(format!("the master key file is {reason}")))?;
        // Read into one fixed buffer: a growing Vec would leave copies of the key behind.
        let mut buf = Zeroizing::new([0u8; MAX_KEY_FILE + 1]);
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(config(e.to_string())),
            }
        }
        if len > MAX_KEY_FILE {
            return Err(config("too long to be a key file".into()));
        }
        let bytes = &buf[..len];
        if bytes.len() == 32 {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(bytes);
            return Ok(MasterKey(key));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| config("neither 32 raw bytes nor hex text".into()))?;
        Self::from_hex("master_key_file", text)
    }

    /// The AES-256-GCM cipher keyed with it: the one use of the key, so its bytes never
    /// leave this type.
    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

/// Whether two keys are the same, in time independent of where they differ. There is no
/// `PartialEq`: `==` on secrets short-circuits.
impl ConstantTimeEq for MasterKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const HEX: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

    fn key_file(dir: &Path, contents: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join("master.key");
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_refused_without_showing_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            let path = key_file(dir.path(), format!("{HEX}\n").as_bytes(), mode);
            let err = MasterKey::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
            assert!(!err.contains("5eed"), "the key leaked: {err}");
        }
    }

    #[test]
    fn a_private_key_file_is_read_as_hex_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let hex_key =
            MasterKey::from_file(&key_file(dir.path(), format!("{HEX}\n").as_bytes(), 0o600))
                .unwrap();
        let raw = hex::decode(HEX).unwrap();
        let raw_key = MasterKey::from_file(&key_file(dir.path(), &raw, 0o400)).unwrap();
        assert!(bool::from(hex_key.ct_eq(&raw_key)));
        assert!(MasterKey::from_file(&key_file(dir.path(), &[b'a'; 300], 0o600)).is_err());
    }
}
