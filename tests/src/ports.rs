//! Loopback ports for test processes, leased so that no two tests (nextest runs each in its
//! own process) and no outgoing connection can be handed the same one.
//!
//! Binding port 0 and closing the socket is not enough: the kernel may give that port to the
//! next test asking, or to an outgoing connection as its local port, before our node binds it
//! (and again while a killed node is down before its restart). Then a test talks to another
//! test's node. Leases are taken below the kernel's ephemeral range, which outgoing
//! connections draw from, and recorded as files under the temp directory that hold the
//! leasing process's id, so they are unique across processes and a crashed test's leases are
//! reclaimed.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// A port reserved for this process until dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    file: PathBuf,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Leases a port that is free now and that no other live test process holds.
    pub fn take() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join("mpc-test-ports");
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let (first, end) = lease_range();
        let span = u32::from(end - first);
        let mut offset = seed() % span;
        for _ in 0..span {
            // Lossless: offset < span, which fits in u16.
            let port = first + u16::try_from(offset).unwrap_or(0);
            offset = (offset + 1) % span;
            let file = dir.join(port.to_string());
            if !claim(&file)? {
                continue;
            }
            let lease = Self { port, file };
            // Something outside the tests may listen there.
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(lease);
            }
        }
        bail!("no free port left in {first}..{end}")
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Creates the lease file, or takes it over from a process that no longer runs.
fn claim(file: &Path) -> anyhow::Result<bool> {
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(file) {
            Ok(mut f) => {
                write!(f, "{}", std::process::id())?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(file).unwrap_or_default();
                let alive = holder
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                // A holder that has not written its id yet is treated as alive.
                if alive || holder.is_empty() {
                    return Ok(false);
                }
                let _ = std::fs::remove_file(file);
            }
            Err(e) => return Err(e).with_context(|| file.display().to_string()),
        }
    }
    Ok(false)
}

/// The 10 000 ports just below the ephemeral range (Linux: 32768–60999 by default).
fn lease_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let end = ephemeral_start.max(11_024);
    (end - 10_000, end)
}

/// Where a process starts looking, so concurrent tests rarely contend for the same files.
fn seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().wrapping_mul(7_919) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_until_dropped() {
        let a = PortLease::take().unwrap();
        let b = PortLease::take().unwrap();
        assert_ne!(a.port(), b.port());
        let (first, end) = lease_range();
        assert!((first..end).contains(&a.port()));
        let file = a.file.clone();
        assert!(file.exists());
        drop(a);
        assert!(!file.exists());
    }

    #[test]
    fn a_dead_holder_loses_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("20000");
        // No process has this id (above the kernel's pid_max limit of 2^22).
        std::fs::write(&file, "4194305").unwrap();
        assert!(claim(&file).unwrap());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            std::process::id().to_string()
        );
        assert!(!claim(&file).unwrap(), "a live holder keeps its lease");
    }
}
