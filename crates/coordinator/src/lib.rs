//! An mpc coordinator: one member of the five-node Raft group that holds the platform's
//! metadata (keys, sessions, parties, tokens, idempotency, audit).
//!
//! [`run`] starts a node in this order:
//!
//! 1. open the RocksDB store in `data_dir` ([`mpc_raft_store::Store`]);
//! 2. load the node's TLS material (its coordinator certificate must name its node id) unless
//!    it runs with `insecure_plaintext`; start openraft with the store and the gRPC
//!    [`network::Network`], which dials peers with mutual TLS;
//! 3. serve the public gRPC listener on `grpc_listen` (TLS; a client certificate or a bearer
//!    token names the caller): the `mpc.v1` services ([`api`]) and `mpc.v1.PartyGateway`
//!    ([`gateway`]) behind [`auth::AuthLayer`], which gives every method its rule and refuses
//!    what no rule allows; `grpc.health.v1` and reflection are open;
//! 4. serve the Raft listener on `raft_listen` (mutual TLS): `mpc.raft.v1.Raft`
//!    ([`raft_service`]) for coordinators of the current membership only;
//! 5. run the session [`scheduler`], which acts while this node leads: it dispatches sessions
//!    to parties, relays their envelopes through the [`router`] and commits verified results;
//! 6. serve HTTP on `http_listen` ([`http`]): `/health`, `/ready`, `/metrics`, `/v1/cluster`,
//!    `/openapi.json` (plain text, read-only, no secrets: for probes and scrapers);
//! 7. reload certificates when their files change or on SIGHUP;
//! 8. on an empty store with `initial_members`, initialise the group (every member may do
//!    so with the same list: the entries they write are identical);
//! 9. watch the data directory's free space ([`disk`]): short of it, the node refuses writes
//!    and leadership, then replicated entries, until space returns;
//! 10. run until the shutdown future completes, then stop Raft and the servers.
//!
//! [`run_with_listeners`] does the same on sockets the caller bound: tests bind port 0 and
//! run whole clusters in one process (module `test_utils`, behind the `test-utils` feature).
//!
//! Writes reach the leader wherever they arrive ([`node::Coordinator::write`]): a follower
//! forwards client writes in one hop, and waits for an election to finish if there is none;
//! the scheduler's own commands are proposed by the leader only and never forwarded. Reads
//! are linearizable by default: the node learns the leader's quorum-confirmed commit index
//! (read index) and waits until it has applied it before reading its own state.

pub mod api;
pub mod auth;
pub mod config;
pub mod disk;
mod error;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod network;
pub mod node;
pub mod peer;
pub mod proposer;
pub mod raft_service;
pub mod retention;
pub mod router;
pub mod scheduler;
pub mod telemetry;
#[cfg(feature = "test-utils")]
pub mod test_utils;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use error::CoordinatorError;
use mpc_proto::raft::v1::raft_server::RaftServer;
use mpc_proto::v1::access_server::AccessServer;
use mpc_proto::v1::cluster_server::ClusterServer;
use mpc_proto::v1::keys_server::KeysServer;
use mpc_proto::v1::party_gateway_server::PartyGatewayServer;
use mpc_proto::v1::relay_server::RelayServer;
use mpc_proto::v1::sessions_server::SessionsServer;
use mpc_raft_store::{NodeInfo, Raft, Store};
use openraft::error::{InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Coordinator;

/// The three sockets a coordinator serves, bound before it starts.
#[derive(Debug)]
pub struct Listeners {
    /// The public gRPC API (clients, parties).
    pub grpc: TcpListener,
    /// Raft between coordinators.
    pub raft: TcpListener,
    /// Health, readiness, metrics and status.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` names.
    pub async fn bind(config: &Config) -> Result<Self, CoordinatorError> {
        Ok(Self {
            grpc: bind("gRPC", config.grpc_listen).await?,
            raft: bind("Raft", config.raft_listen).await?,
            http: bind("HTTP", config.http_listen).await?,
        })
    }

    /// Binds three ports the kernel picks on `ip` (port 0): for nodes started inside a test,
    /// which learn their addresses before any member's configuration is written.
    pub async fn bind_any(ip: IpAddr) -> Result<Self, CoordinatorError> {
        let any = SocketAddr::new(ip, 0);
        Ok(Self {
            grpc: bind("gRPC", any).await?,
            raft: bind("Raft", any).await?,
            http: bind("HTTP", any).await?,
        })
    }

    /// The addresses bound: gRPC, Raft, HTTP.
    pub fn local_addrs(&self) -> Result<(SocketAddr, SocketAddr, SocketAddr), CoordinatorError> {
        let addr = |what: &'static str, l: &TcpListener| {
            l.local_addr()
                .map_err(|e| CoordinatorError::Server(format!("{what} listener address: {e}")))
        };
        Ok((
            addr("gRPC", &self.grpc)?,
            addr("Raft", &self.raft)?,
            addr("HTTP", &self.http)?,
        ))
    }
}

/// Runs a coordinator until `shutdown` completes, binding the listeners `config` names once
/// its store and Raft are up.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let prometheus = telemetry::prometheus()?;
    serve(config, None, prometheus, shutdown).await
}

/// Runs a coordinator on listeners bound by the caller (a test binds port 0 and writes the
/// addresses into every member's configuration before any starts) until `shutdown`
/// completes. The listen addresses of `config` are replaced by the listeners' own, so that
/// the advertised addresses, which default to them, name the sockets served.
///
/// Several coordinators may run in one process this way. Metrics go to the process-wide
/// recorder; when another component of the process installed its own recorder first, this
/// node's `/metrics` page stays empty instead of the node refusing to start.
pub async fn run_with_listeners(
    mut config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    (config.grpc_listen, config.raft_listen, config.http_listen) = listeners.local_addrs()?;
    let prometheus = telemetry::prometheus().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics go to another recorder of this process");
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle()
    });
    serve(config, Some(listeners), prometheus, shutdown).await
}

/// Starts a node; `listeners`, when not given, are bound from `config` once the store and
/// Raft are up (a peer dialling earlier is refused at once rather than left waiting on a
/// socket nobody serves yet).
async fn serve(
    config: Config,
    listeners: Option<Listeners>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            CoordinatorError::Config(format!("data_dir {}: {e}", data_dir.display()))
        })?;
        Store::open(&data_dir).map_err(CoordinatorError::from)
    })
    .await
    .map_err(|e| CoordinatorError::Server(e.to_string()))??;
    let (log_store, state_machine, reader) = store.into_parts()?;

    let r = &config.raft;
    let raft_config = openraft::Config {
        cluster_name: "mpc".into(),
        heartbeat_interval: r.heartbeat_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        max_payload_entries: r.max_payload_entries,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_after_entries),
        max_in_snapshot_log_to_keep: r.entries_kept_after_snapshot,
        install_snapshot_timeout: 2_000,
        // Turned on by `enable_elections` once the node knows whether it is rejoining.
        enable_elect: false,
        ..Default::default()
    }
    .validate()
    .map_err(|e| CoordinatorError::Config(format!("raft: {e}")))?;

    let tls = if config.insecure_plaintext {
        tracing::warn!(
            "INSECURE: --insecure-plaintext is set: no TLS, no authentication, every caller is an admin"
        );
        None
    } else {
        let files = config.tls.files()?;
        let node_id = config.node_id;
        Some(
            tokio::task::spawn_blocking(move || NodeTls::load(files, node_id))
                .await
                .map_err(|e| CoordinatorError::Server(e.to_string()))??,
        )
    };
    let peers = peer::Peers::new(tls.as_ref().map(|t| t.peers.clone()));
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network::Network::new(peers.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| CoordinatorError::RaftStopped(e.to_string()))?;
    // Asked before the servers start: once they run, the first leader's replication makes a
    // pristine member look initialised too, and it would sit out elections it belongs in.
    let had_state = raft
        .is_initialized()
        .await
        .map_err(|e| CoordinatorError::RaftStopped(e.to_string()))?;
    let node = Coordinator::new(config.clone(), raft.clone(), reader, peers);

    let hub = Arc::new(gateway::PartyHub::default());
    let (runtime, planner) = scheduler::Runtime::new(node.clone(), hub.clone());
    let scheduler = tokio::spawn(runtime.run());

    let Listeners {
        grpc: grpc_listener,
        raft: raft_listener,
        http: http_listener,
    } = match listeners {
        Some(listeners) => listeners,
        None => Listeners::bind(&config).await?,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = tokio::spawn(serve_grpc(
        node.clone(),
        hub,
        planner,
        mpc_tls::incoming(grpc_listener, tls.as_ref().map(|t| t.public.clone())),
        stopped(stop_rx.clone()),
    ));
    let raft_server = tokio::spawn(serve_raft(
        node.clone(),
        mpc_tls::incoming(raft_listener, tls.as_ref().map(|t| t.raft.clone())),
        stopped(stop_rx.clone()),
    ));
    let reloader = tls.map(|t| {
        let items: Vec<Arc<dyn mpc_tls::Reload>> =
            vec![Arc::new(t.public), Arc::new(t.raft), Arc::new(t.peers)];
        tokio::spawn(
            mpc_tls::Reloader::new(items, Duration::from_millis(config.tls.reload_interval_ms))
                .run(),
        )
    });
    let http = tokio::spawn({
        let app = http::router(node.clone(), prometheus.clone());
        let stop = stopped(stop_rx.clone());
        async move {
            axum::serve(http_listener, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| CoordinatorError::Server(format!("HTTP: {e}")))
        }
    });
    let exporter = tokio::spawn(telemetry::export_raft_metrics(node.clone(), prometheus));
    let retention = tokio::spawn(retention::run(node.clone()));
    let disk_watch = tokio::spawn(node.disk().clone().watch(raft.clone()));
    tracing::info!(
        id = config.node_id,
        grpc = %config.grpc_listen,
        raft = %config.raft_listen,
        http = %config.http_listen,
        data_dir = %config.data_dir.display(),
        "coordinator started"
    );

    let rejoining = had_state || config.initial_members.is_empty();
    if !had_state {
        initialize(&raft, &config).await?;
    }
    let elections = tokio::spawn(enable_elections(
        raft.clone(),
        node.disk().clone(),
        rejoining,
        Duration::from_millis(4 * config.raft.election_timeout_max_ms).max(Duration::from_secs(2)),
    ));

    shutdown.await;
    tracing::info!("shutting down");
    exporter.abort();
    retention.abort();
    disk_watch.abort();
    scheduler.abort();
    elections.abort();
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    // Raft first: a leader that stops sending heartbeats is replaced within an election
    // timeout. Draining the servers first kept it leading, and refusing writes, for as long as
    // a party's stream or a session watch stayed open (until the orchestrator killed it).
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not stop cleanly");
    }
    let _ = stop_tx.send(true);
    let mut results = Vec::new();
    for (what, server) in [("gRPC", grpc), ("Raft", raft_server), ("HTTP", http)] {
        let abort = server.abort_handle();
        match tokio::time::timeout(SERVER_DRAIN, server).await {
            Ok(result) => results.push(result),
            Err(_) => {
                tracing::info!(
                    server = what,
                    "connections still open after the drain; closing them"
                );
                abort.abort();
            }
        }
    }
    for result in results {
        result.map_err(|e| CoordinatorError::Server(e.to_string()))??;
    }
    Ok(())
}

/// The largest client request: a signing's message is at most 64 KiB, everything else smaller.
const MAX_API_MESSAGE: usize = 256 << 10;
/// Party envelopes carry protocol messages; CGGMP21's auxiliary info rounds are the largest.
const MAX_PARTY_MESSAGE: usize = 64 << 20;

/// How long requests in flight get to finish at shutdown; long-lived streams are cut after it.
const SERVER_DRAIN: Duration = Duration::from_secs(2);

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, CoordinatorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CoordinatorError::Bind { what, addr, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The TLS configurations of a node: the public listener (client certificates optional:
/// a token will do), the Raft listener (mutual TLS), and the client side of its own
/// connections to peers, all from the same certificate.
struct NodeTls {
    public: mpc_tls::ServerTls,
    raft: mpc_tls::ServerTls,
    peers: mpc_tls::ClientTls,
}

impl NodeTls {
    fn load(files: mpc_tls::TlsFiles, node_id: u64) -> Result<Self, CoordinatorError> {
        let err = |e: mpc_tls::TlsError| CoordinatorError::Config(format!("tls: {e}"));
        let public =
            mpc_tls::ServerTls::load(files.clone(), mpc_tls::ClientAuth::Optional).map_err(err)?;
        let identity = public.identity().map_err(err)?;
        if identity.role != mpc_tls::Role::Coordinator || identity.name != node_id.to_string() {
            return Err(CoordinatorError::Config(format!(
                "tls.cert {}: names {identity}, not coordinator/{node_id}",
                files.cert.display()
            )));
        }
        let raft =
            mpc_tls::ServerTls::load(files.clone(), mpc_tls::ClientAuth::Required).map_err(err)?;
        let peers =
            mpc_tls::ClientTls::load(files.ca_cert, Some((files.cert, files.key))).map_err(err)?;
        Ok(Self {
            public,
            raft,
            peers,
        })
    }
}

/// The Raft listener: `mpc.raft.v1.Raft` for coordinators of this group only (see
/// [`auth::raft_peer_allowed`]), checked before a message is decoded.
async fn serve_raft(
    node: Coordinator,
    incoming: impl tokio_stream::Stream<Item = std::io::Result<mpc_tls::Accepted>> + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let insecure = node.config().insecure_plaintext;
    let membership_of = node.clone();
    let check = move |request: tonic::Request<()>| {
        if insecure {
            return Ok(request);
        }
        let metrics = membership_of.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let has_membership = membership.nodes().next().is_some();
        auth::raft_peer_allowed(
            request.extensions().get::<mpc_tls::PeerInfo>(),
            |id| membership.get_node(&id).is_some(),
            has_membership,
        )?;
        Ok(request)
    };
    let service = RaftServer::new(raft_service::RaftService::new(node))
        .max_decoding_message_size(network::MAX_RAFT_MESSAGE)
        .max_encoding_message_size(network::MAX_RAFT_MESSAGE);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(2)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            service, check,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| CoordinatorError::Server(format!("Raft gRPC: {e}")))
}

async fn serve_grpc(
    node: Coordinator,
    hub: Arc<gateway::PartyHub>,
    planner: scheduler::Planner,
    incoming: impl tokio_stream::Stream<Item = std::io::Result<mpc_tls::Accepted>> + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SessionsServer<api::SessionsService>>()
        .await;
    health.set_serving::<KeysServer<api::KeysService>>().await;
    health.set_serving::<RelayServer<api::RelayService>>().await;
    health
        .set_serving::<PartyGatewayServer<gateway::GatewayService>>()
        .await;
    health
        .set_serving::<ClusterServer<api::ClusterService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mpc_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| CoordinatorError::Server(format!("reflection: {e}")))?;
    let auth = auth::AuthLayer::new(auth::Authenticator::new(node.clone()));
    tonic::transport::Server::builder()
        // A party or peer whose host vanished (a killed container, a cut cable) sends no FIN:
        // pings find it within seconds, so its party stream ends and it stops being assigned
        // work, instead of waiting for TCP's retransmission timeout (minutes).
        .http2_keepalive_interval(Some(Duration::from_secs(2)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            AccessServer::new(api::AccessService::new(node.clone()))
                .max_decoding_message_size(MAX_API_MESSAGE),
        )
        .add_service(
            SessionsServer::new(api::SessionsService::new(node.clone(), planner))
                .max_decoding_message_size(MAX_API_MESSAGE),
        )
        .add_service(
            KeysServer::new(api::KeysService::new(node.clone()))
                .max_decoding_message_size(MAX_API_MESSAGE),
        )
        .add_service(
            RelayServer::new(api::RelayService::new(node.clone()))
                .max_decoding_message_size(MAX_API_MESSAGE),
        )
        .add_service(
            PartyGatewayServer::new(gateway::GatewayService::new(node.clone(), hub))
                .max_decoding_message_size(MAX_PARTY_MESSAGE)
                .max_encoding_message_size(MAX_PARTY_MESSAGE),
        )
        .add_service(
            ClusterServer::new(api::ClusterService::new(node))
                .max_decoding_message_size(MAX_API_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| CoordinatorError::Server(format!("gRPC: {e}")))
}

/// A node coming back with state stays out of elections for `grace`. Its election timer
/// would otherwise fire before the leader's replication, backing off after the failures while
/// the node was away, reaches it, and its vote request, carrying a higher term, would depose a
/// healthy leader (openraft 0.9 has no pre-vote). Heartbeats that arrive meanwhile keep it a
/// follower; if the whole group restarted, the first election waits `grace` once. (Waiting for
/// a leader in the metrics is no shortcut: a restarted follower reports the leader of its
/// persisted vote, alive or not.)
async fn enable_elections(raft: Raft, disk: disk::DiskGuard, rejoining: bool, grace: Duration) {
    if rejoining {
        tokio::time::sleep(grace).await;
    }
    disk.allow_elections(&raft);
}

/// Initialises a pristine node with the configured members (none: it waits to be added by a
/// leader). Every member may do this with the same list; the first one's wins.
async fn initialize(raft: &Raft, config: &Config) -> Result<(), CoordinatorError> {
    if config.initial_members.is_empty() {
        return Ok(());
    }
    let members: BTreeMap<u64, NodeInfo> = config
        .initial_members
        .iter()
        .map(|m| {
            (
                m.id,
                NodeInfo {
                    grpc_addr: m.grpc_addr.clone(),
                    http_addr: m.http_addr.clone(),
                    raft_addr: m.raft_addr.clone(),
                },
            )
        })
        .collect();
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(
                members = config.initial_members.len(),
                "initialised the Raft group"
            );
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(CoordinatorError::RaftStopped(format!("initialise: {e}"))),
    }
}
