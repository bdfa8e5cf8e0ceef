//! One relayer instance, assembled from its configuration: the chains, the signer, the
//! submitter's account, the three stages as tasks over a [`JobStore`], and the HTTP face.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::chain::ChainClient;
use crate::config::{Config, SignerConfig, SubmitterKeyConfig};
use crate::error::DvnError;
use crate::http;
use crate::jobs::JobStore;
use crate::listener::Listener;
use crate::signer::hsm::{HsmSettings, HsmSigner};
use crate::signer::key_file::KeyFileSigner;
use crate::signer::platform::PlatformSigner;
use crate::signer::{ConfiguredSigner, Signer, SignerError};
use crate::submitter::Submitter;
use crate::verifier::{Sources, Verifier};

/// Jobs one verifier works on at once (a platform signature takes a round trip through the
/// cluster; an HSM one a few milliseconds).
const VERIFIER_CONCURRENCY: usize = 16;

/// How often the relayer's certificate files are checked for a rotation.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The coordinators as `config.cluster` names them, with the relayer's credentials.
pub fn cluster_endpoints(config: &Config) -> Result<mpc_client::Endpoints, DvnError> {
    let c = &config.cluster;
    let credentials = if c.insecure_plaintext {
        mpc_client::Credentials::insecure_plaintext()
    } else {
        let token = c
            .token_file
            .as_deref()
            .map(|path| crate::secret_file::read(path, "cluster.token_file"))
            .transpose()?;
        mpc_client::Credentials::from_parts(
            c.ca_cert.clone(),
            c.client_cert.clone(),
            c.client_key.clone(),
            token.as_deref().map(String::as_str),
        )
        .map_err(|e| SignerError::Config(format!("cluster: {e}")))?
    };
    Ok(mpc_client::Endpoints::new(
        c.endpoints.clone(),
        Duration::from_millis(c.timeout_ms),
        credentials,
    ))
}

/// The signer `config.signer` names, opened and checked (HSM: token, PIN and key; platform:
/// the key exists and is ECDSA secp256k1; it calls `cluster`, or the coordinators of
/// `config.cluster` when not given, with its own token if configured).
pub async fn open_signer(
    config: &Config,
    cluster: Option<&mpc_client::Endpoints>,
) -> Result<ConfiguredSigner, DvnError> {
    Ok(match &config.signer {
        SignerConfig::Hsm(h) => {
            ConfiguredSigner::Hsm(HsmSigner::connect(HsmSettings::of(h)?).await?)
        }
        SignerConfig::KeyFile { path } => ConfiguredSigner::KeyFile(KeyFileSigner::load(path)?),
        SignerConfig::Platform {
            key_id,
            timeout_ms,
            initiator_key,
            token_file,
        } => {
            let initiator = initiator_key
                .as_deref()
                .map(mpc_client::authority::load_signing_key)
                .transpose()
                .map_err(|e| SignerError::Config(format!("signer.initiator_key: {e}")))?;
            let mut endpoints = match cluster {
                Some(cluster) => cluster.clone(),
                None => cluster_endpoints(config)?,
            };
            if let Some(path) = token_file {
                let token = crate::secret_file::read(path, "signer.token_file")?;
                endpoints = endpoints
                    .with_token(Some(token.as_str()))
                    .map_err(|e| SignerError::Config(format!("signer.token_file: {e}")))?;
            }
            ConfiguredSigner::Platform(Box::new(
                PlatformSigner::connect(
                    endpoints,
                    key_id.clone(),
                    Duration::from_millis(*timeout_ms),
                    initiator,
                )
                .await?,
            ))
        }
    })
}

/// The submitter's account, if this instance submits.
pub async fn open_submitter_key(config: &Config) -> Result<Option<ConfiguredSigner>, DvnError> {
    Ok(match &config.submitter.key {
        None => None,
        Some(SubmitterKeyConfig::KeyFile { path }) => {
            Some(ConfiguredSigner::KeyFile(KeyFileSigner::load(path)?))
        }
        Some(SubmitterKeyConfig::Hsm(h)) => Some(ConfiguredSigner::Hsm(
            HsmSigner::connect(HsmSettings::of(h)?).await?,
        )),
    })
}

/// Runs the instance until `shutdown` turns true: checks every chain's id, opens the signer
/// and the submitter's account, starts the listener of each source, the verifier, the
/// submitter (when a key is configured) and the HTTP face. `cluster` are the coordinators
/// (the job book's and the platform signer's): a rotated certificate serves their next
/// connection.
pub async fn run<S: JobStore + 'static>(
    config: Config,
    store: Arc<S>,
    cluster: mpc_client::Endpoints,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DvnError> {
    let prometheus = crate::metrics::prometheus()?;
    let t = &config.timing;
    let mut sources: Sources = BTreeMap::new();
    for s in &config.sources {
        let chain = Arc::new(ChainClient::new(&s.name, s.chain_id, &s.rpc_urls)?);
        chain.check_chain_id().await?;
        sources.insert(s.eid, (s.clone(), chain));
    }
    let target = &config.target;
    let target_chain = Arc::new(ChainClient::new(
        &target.name,
        target.chain_id,
        &target.rpc_urls,
    )?);
    target_chain.check_chain_id().await?;
    let signer = Arc::new(open_signer(&config, Some(&cluster)).await?);
    tracing::info!(instance = %config.instance, signer = %signer.address(), "signer ready");

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(tls) = cluster.credentials().client_tls() {
        let reloader = mpc_tls::Reloader::new(vec![Arc::new(tls.clone())], TLS_RELOAD_INTERVAL);
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = reloader.run() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
    for (source, chain) in sources.values() {
        let listener = Listener::new(
            Arc::clone(&store),
            Arc::clone(chain),
            source.clone(),
            t.expiration_ttl_secs,
        );
        tasks.spawn(listener.run(t.poll_interval(), t.max_backoff(), shutdown.clone()));
    }
    let verifier = Verifier::new(
        Arc::clone(&store),
        Arc::clone(&signer),
        sources.clone(),
        target.clone(),
        Arc::clone(&target_chain),
        config.instance.clone(),
        VERIFIER_CONCURRENCY,
    );
    tasks.spawn(verifier.run(t.poll_interval(), t.max_backoff(), shutdown.clone()));
    if let Some(account) = open_submitter_key(&config).await? {
        tracing::info!(account = %account.address(), "submitter ready");
        let submitter = Submitter::new(
            Arc::clone(&store),
            Arc::new(account),
            target.clone(),
            Arc::clone(&target_chain),
            config.instance.clone(),
            config.quorum,
            config.submitter.clone(),
            t.lease_ms,
            t.expiration_ttl_secs,
            t.poll_interval(),
        );
        tasks.spawn(submitter.run(t.max_backoff(), shutdown.clone()));
    } else {
        tracing::info!("no submitter key: this instance verifies and signs only");
    }

    let mut probes = Vec::new();
    let first_eid = config.sources.first().map(|s| s.eid).unwrap_or_default();
    let cluster = Arc::clone(&store);
    probes.push((
        "cluster".to_owned(),
        http::probe(move || {
            let cluster = Arc::clone(&cluster);
            async move {
                cluster
                    .cursor(first_eid)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }),
    ));
    let chains = sources
        .values()
        .map(|(_, c)| Arc::clone(c))
        .chain(std::iter::once(Arc::clone(&target_chain)));
    for chain in chains {
        let name = format!("chain:{}", chain.name());
        probes.push((
            name,
            http::probe(move || {
                let chain = Arc::clone(&chain);
                async move { chain.head().await.map(|_| ()).map_err(|e| e.to_string()) }
            }),
        ));
    }
    let probe_signer = Arc::clone(&signer);
    probes.push((
        "signer".to_owned(),
        http::probe(move || {
            let signer = Arc::clone(&probe_signer);
            async move { signer.check().await.map_err(|e| e.to_string()) }
        }),
    ));
    let (addr, http_task) = http::serve(
        config.http.listen,
        http::router(probes, Some(prometheus)),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "HTTP listening");

    while tasks.join_next().await.is_some() {}
    let _ = http_task.await;
    Ok(())
}
