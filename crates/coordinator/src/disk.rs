//! Free space in the data directory.
//!
//! openraft treats a failed log write as fatal: a node whose disk fills up stops for good,
//! until someone restarts it. So a node watches its free space and stops taking new data
//! well before RocksDB could meet a full disk:
//!
//! - below `limits.min_free_disk_mib` ([`SpaceLevel::Low`]) it refuses writes with a clear
//!   error, answers not ready, stops campaigning and, when it leads, stops its heartbeats so
//!   that a member with room takes over; it still follows, so it keeps serving linearizable
//!   reads;
//! - below half of that ([`SpaceLevel::Critical`]) it also refuses replicated entries and
//!   snapshots, and waits like a member cut off by a partition;
//! - once space returns (with a margin, so that it does not flap) it takes everything again
//!   and the leader catches it up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpc_raft_store::Raft;
use tokio::sync::watch;

use crate::error::CoordinatorError;

/// How often the free space is read.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

const MIB: u64 = 1 << 20;

/// How short of space the data directory is; ordered from fine to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpaceLevel {
    Ample,
    /// Below the reserve: no writes, no leadership.
    Low,
    /// Below half the reserve: not even replicated entries.
    Critical,
}

impl SpaceLevel {
    /// The level after reading `free` bytes with a reserve of `reserve` bytes, coming from
    /// `self`: a level is entered below its threshold and left only an eighth of the reserve
    /// above it.
    pub fn next(self, free: u64, reserve: u64) -> Self {
        if reserve == 0 {
            return Self::Ample;
        }
        let level_at = |low: u64, critical: u64| {
            if free < critical {
                Self::Critical
            } else if free < low {
                Self::Low
            } else {
                Self::Ample
            }
        };
        let margin = reserve / 8;
        let entered = level_at(reserve, reserve / 2);
        let kept = level_at(reserve + margin, reserve / 2 + margin);
        entered.max(self.min(kept))
    }

    /// The value of the `mpc_data_dir_space_level` gauge.
    fn gauge(self) -> f64 {
        match self {
            Self::Ample => 0.0,
            Self::Low => 1.0,
            Self::Critical => 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    level: SpaceLevel,
    free_bytes: u64,
}

/// This node's view of its data directory's free space, shared by the write path, the Raft
/// service and readiness; one task ([`DiskGuard::watch`]) keeps it current.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    reserve_bytes: u64,
    reading: watch::Sender<Reading>,
    /// Set once the start-up grace is over (`enable_elections`): only then may the space
    /// watch turn elections back on.
    elections_allowed: AtomicBool,
    /// Serialises the Raft switches, which two tasks set.
    switches: Mutex<()>,
}

impl DiskGuard {
    /// A guard of `dir` keeping `min_free_disk_mib` free (0: no reserve, never refuses).
    pub fn new(dir: &Path, min_free_disk_mib: u64) -> Self {
        let (reading, _) = watch::channel(Reading {
            level: SpaceLevel::Ample,
            free_bytes: u64::MAX,
        });
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                reserve_bytes: min_free_disk_mib.saturating_mul(MIB),
                reading,
                elections_allowed: AtomicBool::new(false),
                switches: Mutex::new(()),
            }),
        }
    }

    pub fn level(&self) -> SpaceLevel {
        self.inner.reading.borrow().level
    }

    /// Whether this node may accept replicated entries and snapshots.
    pub fn takes_entries(&self) -> bool {
        self.level() < SpaceLevel::Critical
    }

    /// `Ok` when this node may take writes, else the error its caller gets.
    pub fn check_write(&self) -> Result<(), CoordinatorError> {
        let reading = *self.inner.reading.borrow();
        if reading.level == SpaceLevel::Ample {
            return Ok(());
        }
        Err(CoordinatorError::DiskSpaceLow {
            free_mib: reading.free_bytes / MIB,
            min_free_mib: self.inner.reserve_bytes / MIB,
        })
    }

    /// The error a peer gets for entries this node cannot store now.
    pub fn entries_refused(&self) -> String {
        let reading = *self.inner.reading.borrow();
        format!(
            "this node's data directory has {} MiB free, under half of limits.min_free_disk_mib \
             ({}): it takes no entries until space returns",
            reading.free_bytes / MIB,
            self.inner.reserve_bytes / MIB
        )
    }

    /// Called once the start-up grace is over: elections on, unless space is short.
    pub fn allow_elections(&self, raft: &Raft) {
        self.inner.elections_allowed.store(true, Ordering::SeqCst);
        self.apply(raft, self.level());
    }

    fn apply(&self, raft: &Raft, level: SpaceLevel) {
        let _switching = self
            .inner
            .switches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ample = level == SpaceLevel::Ample;
        let config = raft.runtime_config();
        config.elect(ample && self.inner.elections_allowed.load(Ordering::SeqCst));
        // A leader without heartbeats lets its followers' leases run out: one with room is
        // elected, and its first message makes this node a follower.
        config.heartbeat(ample);
    }

    /// Reads the free space every [`CHECK_INTERVAL`] for the life of the node and acts on
    /// each change of level. Without a reserve it reads nothing.
    pub async fn watch(self, raft: Raft) {
        if self.inner.reserve_bytes == 0 {
            return;
        }
        let mut ticker = tokio::time::interval(CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            ticker.tick().await;
            let dir = self.inner.dir.clone();
            let free = match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
                Ok(Ok(free)) => free,
                Ok(Err(e)) => {
                    // Keep the last reading: a passing error should not stop the node.
                    let error = e.to_string();
                    if last_error.as_ref() != Some(&error) {
                        tracing::warn!(
                            dir = %self.inner.dir.display(),
                            error = %error,
                            "cannot read the data directory's free space"
                        );
                        last_error = Some(error);
                    }
                    continue;
                }
                Err(_) => return,
            };
            last_error = None;
            let before = self.level();
            let level = before.next(free, self.inner.reserve_bytes);
            self.inner.reading.send_replace(Reading {
                level,
                free_bytes: free,
            });
            metrics::gauge!("mpc_data_dir_free_bytes").set(free as f64);
            metrics::gauge!("mpc_data_dir_space_level").set(level.gauge());
            if level != before {
                self.announce(before, level, free);
                self.apply(&raft, level);
            }
        }
    }

    fn announce(&self, before: SpaceLevel, level: SpaceLevel, free: u64) {
        let dir = self.inner.dir.display();
        let (free_mib, reserve_mib) = (free / MIB, self.inner.reserve_bytes / MIB);
        match level {
            SpaceLevel::Ample => tracing::info!(
                %dir, free_mib, reserve_mib,
                "space returned to the data directory: taking writes and entries again"
            ),
            SpaceLevel::Low if before == SpaceLevel::Critical => tracing::warn!(
                %dir, free_mib, reserve_mib,
                "the data directory is still short of space: taking replicated entries again, \
                 not writes"
            ),
            SpaceLevel::Low => tracing::error!(
                %dir, free_mib, reserve_mib,
                "the data directory is short of space: refusing writes and giving up leadership"
            ),
            SpaceLevel::Critical => tracing::error!(
                %dir, free_mib, reserve_mib,
                "the data directory is nearly full: refusing replicated entries too"
            ),
        }
    }
}

/// Bytes an unprivileged writer may still use in `dir`'s filesystem.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::SpaceLevel::{self, Ample, Critical, Low};

    const RESERVE: u64 = 800;

    fn after(level: SpaceLevel, free: u64) -> SpaceLevel {
        level.next(free, RESERVE)
    }

    #[test]
    fn levels_are_entered_below_their_thresholds() {
        assert_eq!(after(Ample, 800), Ample);
        assert_eq!(after(Ample, 799), Low);
        assert_eq!(after(Ample, 400), Low);
        assert_eq!(after(Ample, 399), Critical);
        assert_eq!(after(Low, 399), Critical);
        assert_eq!(after(Ample, 0), Critical);
    }

    #[test]
    fn levels_are_left_only_a_margin_above_them() {
        // The margin is an eighth of the reserve: 100.
        assert_eq!(after(Low, 850), Low);
        assert_eq!(after(Low, 899), Low);
        assert_eq!(after(Low, 900), Ample);
        assert_eq!(after(Critical, 450), Critical);
        assert_eq!(after(Critical, 500), Low);
        assert_eq!(after(Critical, 10_000), Ample);
    }

    #[test]
    fn no_reserve_never_refuses() {
        assert_eq!(Critical.next(0, 0), Ample);
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = std::env::temp_dir();
        assert!(super::free_bytes(&dir).is_ok_and(|free| free > 0));
        assert!(super::free_bytes(&dir.join("no-such-dir-mpc")).is_err());
    }
}
