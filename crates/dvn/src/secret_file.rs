//! Secrets the relayer reads from files (PINs, bearer tokens): only a file the secret-file rule
//! accepts ([`mpc_tls::secret_file`]), and the content lives in zeroized memory. Errors name
//! the file and the setting, never the content.

use std::path::Path;

use zeroize::Zeroizing;

use crate::signer::SignerError;

/// The trimmed content of the secret file at `path`; `what` names it in errors
/// (`signer.token_file`, `PIN file`).
pub fn read(path: &Path, what: &str) -> Result<Zeroizing<String>, SignerError> {
    let fail = |reason: String| SignerError::Config(format!("{what} {}: {reason}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    mpc_tls::secret_file::check_private(&meta).map_err(fail)?;
    let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let secret = Zeroizing::new(raw.trim().to_owned());
    if secret.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_file_is_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "pin", "  1234\n", 0o600);
        assert_eq!(read(&path, "PIN file").unwrap().as_str(), "1234");
    }

    #[test]
    fn a_shared_empty_or_missing_file_is_refused_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let shared = write(dir.path(), "shared", "s3cret-token", 0o640);
        let e = read(&shared, "signer.token_file").unwrap_err().to_string();
        assert!(
            e.contains("signer.token_file") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let empty = write(dir.path(), "empty", " \n", 0o600);
        let e = read(&empty, "PIN file").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(read(&dir.path().join("absent"), "PIN file").is_err());
    }
}
