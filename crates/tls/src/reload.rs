//! Certificates are replaced without a restart: on SIGHUP, and when a file changes on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::TlsError;

/// A configuration rebuilt from files.
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// The files the configuration is built from; a change to any of them triggers
    /// [`reload`](Reload::reload).
    fn files(&self) -> Vec<PathBuf>;
    /// Rebuilds the configuration from the files and swaps it in for new connections. On an
    /// error the previous configuration stays in use.
    fn reload(&self) -> Result<(), TlsError>;
}

/// Watches the files of some configurations and reloads each when one of its files changes
/// (size or modification time, checked every `interval`) or when the process gets SIGHUP. A
/// reload that fails (a half-written file, a key that does not match) keeps the old
/// configuration and says why; the next change tries again.
#[derive(Debug)]
pub struct Reloader {
    items: Vec<Arc<dyn Reload>>,
    interval: Duration,
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

impl Reloader {
    /// Watches `items`, polling their files every `interval`; nothing happens until
    /// [`run`](Reloader::run).
    pub fn new(items: Vec<Arc<dyn Reload>>, interval: Duration) -> Self {
        Self { items, interval }
    }

    /// Runs until the task is dropped or aborted.
    pub async fn run(self) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on file change only");
                None
            }
        };
        let mut stamps = Vec::with_capacity(self.items.len());
        for item in &self.items {
            stamps.push(stamp(&item.files()).await);
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            for (item, last) in self.items.iter().zip(stamps.iter_mut()) {
                let now = stamp(&item.files()).await;
                if !forced && now == *last {
                    continue;
                }
                *last = now;
                let item = item.clone();
                let outcome = tokio::task::spawn_blocking(move || item.reload()).await;
                match outcome {
                    Ok(Ok(())) => tracing::info!(forced, "TLS certificates reloaded"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "TLS reload failed; keeping the previous certificates")
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
                }
            }
        }
    }
}

async fn stamp(files: &[PathBuf]) -> Stamp {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(
            tokio::fs::metadata(f)
                .await
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
        );
    }
    out
}
