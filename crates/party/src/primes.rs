//! The prime pool: safe-prime pairs for auxiliary info, generated in the background so that a
//! keygen for a new group of parties does not wait a minute per pair. Pairs are secret (they
//! are the party's Paillier key) and live in the share store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mpc_tss::PrimePair;
use tokio::sync::Mutex;

use crate::store::{RecordKind, ShareStore};
use crate::{blocking, PartyError};

#[derive(Debug, Clone)]
pub struct PrimePool {
    store: Arc<ShareStore>,
    target: usize,
    take_lock: Arc<Mutex<()>>,
}

impl PrimePool {
    pub fn new(store: Arc<ShareStore>, target: usize) -> Self {
        Self {
            store,
            target,
            take_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Pairs in the pool now.
    pub async fn available(&self) -> usize {
        let store = self.store.clone();
        blocking(move || store.list(RecordKind::PrimePair))
            .await
            .map_or(0, |ids| ids.len())
    }

    /// Keeps the pool at its target size, one pair at a time on a blocking thread.
    pub async fn fill(self) {
        loop {
            let available = self.available().await;
            metrics::gauge!("mpc_party_prime_pool").set(available as f64);
            if available >= self.target {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let store = self.store.clone();
            let started = std::time::Instant::now();
            let stored = blocking(move || {
                let pair = PrimePair::generate();
                let id = uuid::Uuid::now_v7().to_string();
                store.put(RecordKind::PrimePair, &id, &pair.to_bytes()?)
            })
            .await;
            match stored {
                Ok(()) => tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "generated a prime pair"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "storing a prime pair failed");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Takes one pair out of the pool (gone from disk before it is used: a pair is a Paillier
    /// key, never to serve two groups), waiting while the pool is empty; `progress` is called
    /// every few seconds of waiting.
    pub async fn take(&self, mut progress: impl FnMut()) -> Result<PrimePair, PartyError> {
        let _one_at_a_time = self.take_lock.lock().await;
        loop {
            let store = self.store.clone();
            let taken = blocking(move || {
                for id in store.list(RecordKind::PrimePair)? {
                    if let Some(bytes) = store.take(RecordKind::PrimePair, &id)? {
                        return Ok(Some(PrimePair::from_bytes(&bytes)?));
                    }
                }
                Ok(None)
            })
            .await?;
            if let Some(pair) = taken {
                return Ok(pair);
            }
            progress();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Imports prime pairs generated elsewhere (one encoded pair per line).
pub fn import(store: &ShareStore, file: &Path) -> Result<usize, PartyError> {
    let text =
        zeroize::Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| PartyError::Config {
                field: "import_primes".into(),
                reason: format!("{}: {e}", file.display()),
            })?,
        );
    let mut count = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let pair = PrimePair::from_bytes(line.as_bytes()).map_err(|e| PartyError::Config {
            field: "import_primes".into(),
            reason: format!("{} line {}: {e}", file.display(), n + 1),
        })?;
        store.put(
            RecordKind::PrimePair,
            &format!("imported-{}", uuid::Uuid::now_v7()),
            &pair.to_bytes()?,
        )?;
        count += 1;
    }
    tracing::info!(count, "imported prime pairs");
    Ok(count)
}
