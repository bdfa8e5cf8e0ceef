//! An mpc coordinator: one member of the five-node Raft group that holds the platform's
//! metadata (keys, sessions, parties, idempotency, audit).
//!
//! [`run`] starts a node in this order:
//!
//! 1. open the RocksDB store in `data_dir` ([`mpc_raft_store::Store`]);
//! 2. start openraft with the store and the gRPC [`network::Network`];
//! 3. serve gRPC on `grpc_listen`: the public `mpc.v1` services ([`api`]), the internal
//!    `mpc.raft.v1.Raft` service ([`raft_service`]), `grpc.health.v1` and server reflection;
//!    and `mpc.v1.PartyGateway` ([`gateway`]) through which parties attach to the leader;
//! 4. run the session [`scheduler`], which acts while this node leads: it dispatches sessions
//!    to parties, relays their envelopes through the [`router`] and commits verified results;
//! 5. serve HTTP on `http_listen` ([`http`]): `/health`, `/ready`, `/metrics`, `/v1/cluster`;
//! 6. on an empty store with `initial_members`, initialise the group (every member may do
//!    so with the same list: the entries they write are identical);
//! 7. run until the shutdown future completes, then stop the servers and Raft.
//!
//! Writes reach the leader wherever they arrive ([`node::Coordinator::write`]): a follower
//! forwards them in one hop, and waits for an election to finish if there is none. Reads are
//! linearizable by default: the node learns the leader's quorum-confirmed commit index (read
//! index) and waits until it has applied it before reading its own state.

pub mod api;
pub mod config;
mod error;
pub mod gateway;
pub mod http;
pub mod network;
pub mod node;
pub mod peer;
pub mod proposer;
pub mod raft_service;
pub mod router;
pub mod scheduler;
pub mod telemetry;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use error::CoordinatorError;
use mpc_proto::raft::v1::raft_server::RaftServer;
use mpc_proto::v1::cluster_server::ClusterServer;
use mpc_proto::v1::keys_server::KeysServer;
use mpc_proto::v1::party_gateway_server::PartyGatewayServer;
use mpc_proto::v1::sessions_server::SessionsServer;
use mpc_raft_store::{NodeInfo, Raft, Store};
use openraft::error::{InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Coordinator;

/// Runs a coordinator until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let prometheus = telemetry::prometheus()?;
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
        ..Default::default()
    }
    .validate()
    .map_err(|e| CoordinatorError::Config(format!("raft: {e}")))?;

    let peers = peer::Peers::default();
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network::Network::new(peers.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| CoordinatorError::RaftStopped(e.to_string()))?;
    let node = Coordinator::new(config.clone(), raft.clone(), reader, peers);

    let hub = Arc::new(gateway::PartyHub::default());
    let scheduler = tokio::spawn(scheduler::Scheduler::new(node.clone(), hub.clone()).run());

    let grpc_listener = bind("gRPC", config.grpc_listen).await?;
    let http_listener = bind("HTTP", config.http_listen).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = tokio::spawn(serve_grpc(
        node.clone(),
        hub,
        grpc_listener,
        stopped(stop_rx.clone()),
    ));
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
    tracing::info!(
        id = config.node_id,
        grpc = %config.grpc_listen,
        http = %config.http_listen,
        data_dir = %config.data_dir.display(),
        "coordinator started"
    );

    initialize(&raft, &config).await?;

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    exporter.abort();
    scheduler.abort();
    let grpc_result = grpc.await;
    let http_result = http.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not stop cleanly");
    }
    for result in [grpc_result, http_result] {
        result.map_err(|e| CoordinatorError::Server(e.to_string()))??;
    }
    Ok(())
}

async fn bind(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, CoordinatorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CoordinatorError::Bind { what, addr, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve_grpc(
    node: Coordinator,
    hub: Arc<gateway::PartyHub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SessionsServer<api::SessionsService>>()
        .await;
    health.set_serving::<KeysServer<api::KeysService>>().await;
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
    let raft_rpc = RaftServer::new(raft_service::RaftService::new(node.clone()))
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(raft_rpc)
        .add_service(SessionsServer::new(api::SessionsService::new(node.clone())))
        .add_service(KeysServer::new(api::KeysService::new(node.clone())))
        .add_service(PartyGatewayServer::new(gateway::GatewayService::new(
            node.clone(),
            hub,
        )))
        .add_service(ClusterServer::new(api::ClusterService::new(node)))
        .serve_with_incoming_shutdown(incoming_nodelay(listener), shutdown)
        .await
        .map_err(|e| CoordinatorError::Server(format!("gRPC: {e}")))
}

/// Accepted connections with Nagle's algorithm off: tonic applies its own `tcp_nodelay` only
/// to listeners it binds itself, and small Raft and API messages would otherwise wait for
/// delayed ACKs (about 40 ms each).
fn incoming_nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let stream = conn?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Initialises a pristine node with the configured members. Every member may do this with the
/// same list; a node that already holds state skips it.
async fn initialize(raft: &Raft, config: &Config) -> Result<(), CoordinatorError> {
    if config.initial_members.is_empty() {
        return Ok(());
    }
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| CoordinatorError::RaftStopped(e.to_string()))?;
    if initialized {
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
