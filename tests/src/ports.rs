//! Loopback ports for test processes, leased so that no two tests (nextest runs each in its
//! own process) and no outgoing connection can be handed the same one.
//!
//! Binding port 0 and closing the socket is not enough: the kernel may give that port to the
//! next test asking, or to an outgoing connection as its local port, before our node binds it
//! (and again while a killed node is down before its restart). Then a test talks to another
//! test's node. Leases are taken below the kernel's ephemeral range, which outgoing
//! connections draw from, and held as an exclusive lock on a file per port under the temp
//! directory: the lock is unique across processes, and the kernel drops it when the holder
//! exits, however it exits.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// A port reserved for this process until dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    // The lock lives as long as the open file. The file itself stays: removing it would let
    // the next process lock a fresh file of the same name while this lock still stands.
    _lock: File,
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
        let span = end - first;
        let mut offset = seed() % span;
        for _ in 0..span {
            let port = first + offset;
            offset = (offset + 1) % span;
            let Some(lock) = lock(&dir.join(port.to_string()))? else {
                continue;
            };
            // Something outside the tests may listen there.
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(Self { port, _lock: lock });
            }
        }
        bail!("no free port left in {first}..{end}")
    }
}

/// The file locked for this process, or `None` when another process holds it.
fn lock(path: &Path) -> anyhow::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
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
fn seed() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = std::process::id().wrapping_mul(7_919) ^ nanos;
    // Truncation is the point: any 16 bits of the mix will do.
    (mixed ^ (mixed >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_and_in_range() {
        let a = PortLease::take().unwrap();
        let b = PortLease::take().unwrap();
        assert_ne!(a.port(), b.port());
        let (first, end) = lease_range();
        assert!((first..end).contains(&a.port()));
    }

    #[test]
    fn a_held_lock_refuses_others_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20000");
        let held = lock(&path).unwrap().expect("a fresh file locks");
        // A second open file description conflicts like another process would.
        assert!(lock(&path).unwrap().is_none());
        drop(held);
        assert!(lock(&path).unwrap().is_some());
    }
}
