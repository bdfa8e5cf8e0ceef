use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use mpc_coordinator::config::{Config, Overrides};

/// An mpc coordinator node. Settings come from --config, then MPC_* variables
/// (MPC_RAFT__HEARTBEAT_MS for [raft] heartbeat_ms), then these flags.
#[derive(Debug, Parser)]
#[command(name = "mpc-coordinator", version)]
struct Args {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    node_id: Option<u64>,
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    #[arg(long)]
    raft_listen: Option<SocketAddr>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// "1=host:grpc_port=host:http_port=host:raft_port,2=..."
    #[arg(long)]
    initial_members: Option<String>,
    /// No TLS and no authentication: every caller is an admin. A throwaway local cluster
    /// only.
    #[arg(long)]
    insecure_plaintext: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let overrides = Overrides {
        node_id: args.node_id,
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        raft_listen: args.raft_listen,
        data_dir: args.data_dir,
        initial_members: args.initial_members,
        insecure_plaintext: args.insecure_plaintext,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    mpc_coordinator::telemetry::init_logging(&config.log)?;
    mpc_coordinator::run(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
