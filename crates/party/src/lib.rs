//! An mpc party: holds key shares and runs the threshold protocols the coordinator leader
//! assigns to it.
//!
//! [`run`] starts a party in this order:
//!
//! 1. open the share store under `data_dir` with the master key and open every record once
//!    ([`store::ShareStore::verify_all`]): a wrong key or a damaged record stops the start;
//! 2. load or create the party's identity keys ([`identity::Identity`]);
//! 3. start filling the prime pool in the background ([`primes::PrimePool`]);
//! 4. serve HTTP: `/health`, `/ready`, `/metrics`, `/v1/status`, `/openapi.json`;
//! 5. connect to a coordinator, follow it to the leader, register the identity, answer the
//!    leader's challenge, and run the assignments that arrive ([`client`], [`session`]),
//!    reconnecting after any failure.
//!
//! Protocol messages to other parties leave only as envelopes ([`envelope`]): signed, and
//! encrypted end to end when addressed to one party.
//!
//! [`run_with_listener`] does the same on an HTTP listener the caller bound: tests run parties
//! in one process with an in-process cluster (module `test_utils`, behind the `test-utils`
//! feature).

pub mod authority;
pub mod client;
pub mod config;
pub mod envelope;
pub mod http;
pub mod identity;
pub mod master_key;
pub mod primes;
pub mod session;
pub mod store;
#[cfg(feature = "test-utils")]
pub mod test_utils;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

pub use config::PartyConfig;

use crate::identity::Identity;
use crate::primes::PrimePool;
use crate::store::ShareStore;

#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    #[error("invalid {field}: {reason}")]
    Config { field: String, reason: String },
    #[error("share store {}: {reason}", path.display())]
    Store { path: PathBuf, reason: String },
    #[error("record {} is unreadable: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("invalid record id {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidRecordId(String),
    #[error("sealing a record failed")]
    Seal,
    #[error(transparent)]
    Tss(#[from] mpc_tss::TssError),
    #[error("server: {0}")]
    Server(String),
}

/// What every task of a running party shares.
#[derive(Debug)]
pub struct PartyState {
    pub party_id: String,
    pub store: Arc<ShareStore>,
    pub identity: Arc<Identity>,
    pub primes: PrimePool,
    pub connected: AtomicBool,
    pub running_sessions: AtomicUsize,
    pub advertised_endpoint: String,
    /// The admins whose signatures the party accepts (enrolments, key policies).
    pub admin_keys: Vec<[u8; 32]>,
}

/// Runs a party until `shutdown` completes, binding its HTTP listener (`http_listen`) once
/// its store is open.
pub async fn run(
    config: PartyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PartyError> {
    let prometheus = http::prometheus()?;
    serve(config, None, prometheus, shutdown).await
}

/// Runs a party on an HTTP listener bound by the caller (a test binds port 0) until
/// `shutdown` completes; `http_listen` is replaced by the listener's address, which the party
/// advertises. The party binds nothing else: it dials the coordinators.
///
/// Several parties, and coordinators, may run in one process this way. Metrics go to the
/// process-wide recorder; when another component installed its own first (an in-process
/// cluster's coordinators), this party's `/metrics` page stays empty instead of the party
/// refusing to start.
pub async fn run_with_listener(
    mut config: PartyConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PartyError> {
    config.http_listen = listener
        .local_addr()
        .map_err(|e| PartyError::Server(format!("HTTP listener address: {e}")))?;
    let prometheus = http::prometheus().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics go to another recorder of this process");
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle()
    });
    serve(config, Some(listener), prometheus, shutdown).await
}

/// Starts a party; `listener`, when not given, is bound from `http_listen` once the store is
/// open.
async fn serve(
    config: PartyConfig,
    listener: Option<tokio::net::TcpListener>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PartyError> {
    let admin_keys = config.admin_keys()?;
    if config.insecure_plaintext {
        tracing::warn!(
            "INSECURE: --insecure-plaintext is set: coordinators are dialled without TLS"
        );
    }
    let tls = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.tls())
            .await
            .map_err(|e| PartyError::Server(e.to_string()))??
    };
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || -> Result<_, PartyError> {
            let key = config.master_key()?;
            let store = ShareStore::open(&config.data_dir, &config.party_id, &key)?;
            let records = store.verify_all()?;
            let identity = Identity::load_or_create(&store)?;
            if let Some(file) = &config.import_primes {
                primes::import(&store, file)?;
            }
            Ok((store, identity, records))
        })
        .await
        .map_err(|e| PartyError::Server(e.to_string()))??
    };
    let (store, identity, records) = opened;
    let store = Arc::new(store);
    let state = Arc::new(PartyState {
        party_id: config.party_id.clone(),
        primes: PrimePool::new(store.clone(), config.prime_pool_size),
        store,
        identity: Arc::new(identity),
        connected: AtomicBool::new(false),
        running_sessions: AtomicUsize::new(0),
        advertised_endpoint: config.http_listen.to_string(),
        admin_keys,
    });
    tracing::info!(
        party = %config.party_id,
        records,
        identity = %state.identity.public_hex(),
        "share store opened"
    );

    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|e| PartyError::Config {
                field: "http_listen".into(),
                reason: format!("{}: {e}", config.http_listen),
            })?,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = tokio::spawn({
        let app = http::router(state.clone(), prometheus);
        let mut stop = stop_rx.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }
    });
    let filler = tokio::spawn(state.primes.clone().fill());
    // A rotated certificate serves the next connection: the files are re-read when they
    // change and on SIGHUP, as coordinators do.
    let reloader = tls.clone().map(|tls| {
        tokio::spawn(mpc_tls::Reloader::new(vec![Arc::new(tls)], TLS_RELOAD_INTERVAL).run())
    });
    let client = tokio::spawn(client::run(state.clone(), config.coordinators.clone(), tls));
    let pruner = tokio::spawn(prune_approval_uses(state.clone()));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    client.abort();
    filler.abort();
    pruner.abort();
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    http.await
        .map_err(|e| PartyError::Server(e.to_string()))?
        .map_err(|e| PartyError::Server(format!("HTTP: {e}")))?;
    Ok(())
}

/// Forgets used approvals once they have expired, at start and then hourly, so the record of
/// uses stays as small as the approvals still alive.
async fn prune_approval_uses(state: Arc<PartyState>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let store = state.store.clone();
        match blocking(move || authority::prune_approval_uses(&store, authority::now_ms())).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired approval records removed"),
            Err(e) => tracing::warn!(error = %e, "pruning approval records failed"),
        }
    }
}

/// Prints this party's identity (opening or creating it), for an admin to enrol:
/// `mpcctl party enroll --id <party id> --identity <this>`.
pub fn identity(config: &PartyConfig) -> Result<String, PartyError> {
    let key = config.master_key()?;
    if let Some(identity) = Identity::peek(&config.data_dir, &config.party_id, &key)? {
        return Ok(identity.public_hex());
    }
    let store = ShareStore::open(&config.data_dir, &config.party_id, &key)?;
    Ok(Identity::load_or_create(&store)?.public_hex())
}

/// How often the TLS files are checked for changes.
const TLS_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs blocking work (disk, heavy cryptography) off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, PartyError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PartyError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PartyError::Server(format!("blocking task: {e}")))?
}
