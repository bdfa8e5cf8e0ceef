//! Resident memory of the cluster's processes, read from `/proc/PID/status` (VmRSS): once
//! when idle, and sampled through a timed load, keeping each process's maximum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// How often a load's sampler reads every process: often enough to catch the peak of a
/// load that lasts seconds, rarely enough to cost nothing beside it.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A process to watch, by the name the report gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub label: String,
    pub pid: u32,
}

/// Parses `label=pid` (the label may hold anything but `=` and `,`).
pub fn parse(spec: &str) -> anyhow::Result<Watched> {
    let (label, pid) = spec
        .rsplit_once('=')
        .with_context(|| format!("{spec:?}: expected LABEL=PID"))?;
    let pid = pid
        .trim()
        .parse()
        .with_context(|| format!("{spec:?}: the PID is not a number"))?;
    Ok(Watched {
        label: label.trim().to_owned(),
        pid,
    })
}

/// The VmRSS line of a `/proc/PID/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A process's resident memory now, in KiB; `None` once it is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(vm_rss_kib)
}

/// Every watched process's resident memory now, in KiB (a process gone is left out).
pub fn now(watched: &[Watched]) -> BTreeMap<String, u64> {
    watched
        .iter()
        .filter_map(|w| Some((w.label.clone(), rss_kib(w.pid)?)))
        .collect()
}

/// Samples every watched process until `stop`; the maximum of each, in KiB.
pub fn sample_until(
    watched: Vec<Watched>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, u64>> {
    tokio::spawn(async move {
        let mut max = BTreeMap::<String, u64>::new();
        loop {
            for (label, kib) in now(&watched) {
                let m = max.entry(label).or_default();
                *m = (*m).max(kib);
            }
            if stop.load(Ordering::Relaxed) {
                return max;
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status =
            "Name:\tmpc-coordinator\nVmHWM:\t  90000 kB\nVmRSS:\t   81234 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(81_234));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn parses_label_and_pid() -> anyhow::Result<()> {
        assert_eq!(
            parse("coordinator-2 (leader)=4242")?,
            Watched {
                label: "coordinator-2 (leader)".into(),
                pid: 4242
            }
        );
        assert!(parse("party-1").is_err());
        assert!(parse("party-1=x").is_err());
        Ok(())
    }

    #[test]
    fn this_process_has_memory() {
        let me = Watched {
            label: "me".into(),
            pid: std::process::id(),
        };
        assert!(now(&[me]).get("me").is_some_and(|kib| *kib > 0));
    }
}
