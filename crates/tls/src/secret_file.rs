//! Which files may hold a secret (a master key, a signing key, a token, a PIN): one rule for
//! every binary that reads one.
//!
//! A file its owner alone may read is accepted. So is, for an unprivileged process, a file
//! root owns and lets one of the process's groups read, and nothing more (at most 0640 with
//! that group, as Kubernetes mounts Secrets for a pod's fsGroup and as PostgreSQL accepts its
//! keys): nobody but root could have made it so, for this process. A file others may read, or
//! its group write, is refused.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;

/// Whether a file with `meta` may hold a secret for this process: the reason it may not, to
/// go after the file's name in an error (it names the mode and the fix, never the content).
pub fn check_private(meta: &Metadata) -> Result<(), String> {
    let groups = || {
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        groups.push(rustix::process::getegid().as_raw());
        groups
    };
    check_mode(
        meta.mode(),
        (meta.uid(), meta.gid()),
        rustix::process::geteuid().as_raw(),
        groups,
    )
}

/// [`check_private`] for a file of `mode` owned by `owner` (user, group), read by a process
/// running as `euid` in `groups`.
fn check_mode(
    mode: u32,
    (owner, group): (u32, u32),
    euid: u32,
    groups: impl FnOnce() -> Vec<u32>,
) -> Result<(), String> {
    let mode = mode & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let handed_by_root = owner == 0 && euid != 0 && mode & 0o037 == 0 && groups().contains(&group);
    if handed_by_root {
        return Ok(());
    }
    Err(format!(
        "open to group or others (mode {mode:04o}); make it private to its user with chmod 600"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: fn() -> Vec<u32> = || vec![10001];

    #[test]
    fn a_file_private_to_its_owner_is_accepted() {
        for (mode, owner, euid) in [(0o600, 1000, 1000), (0o400, 0, 0), (0o600, 0, 10001)] {
            assert_eq!(check_mode(mode, (owner, 0), euid, POD), Ok(()), "{mode:o}");
        }
    }

    #[test]
    fn a_file_root_lets_the_process_group_read_is_accepted() {
        // How Kubernetes mounts a Secret for a pod with fsGroup 10001.
        assert_eq!(check_mode(0o100440, (0, 10001), 10001, POD), Ok(()));
        assert_eq!(check_mode(0o640, (0, 10001), 10001, POD), Ok(()));
    }

    #[test]
    fn a_file_others_may_read_or_its_group_write_is_refused() {
        for (mode, (owner, group), euid) in [
            (0o644, (1000, 1000), 1000),
            (0o640, (1000, 10001), 1000), // not root's: the group was the owner's choice
            (0o640, (0, 0), 0),           // root reading its own group-readable file
            (0o640, (0, 4), 10001),       // a group the process is not in
            (0o604, (0, 10001), 10001),
            (0o660, (0, 10001), 10001),
            (0o444, (0, 10001), 10001),
        ] {
            let e = check_mode(mode, (owner, group), euid, POD).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains(&format!("{:04o}", mode & 0o7777)), "{e}");
        }
    }
}
