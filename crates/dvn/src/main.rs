//! `mpc-dvn`: one LayerZero V2 DVN relayer instance.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mpc_dvn::config::{Config, HsmConfig};
use mpc_dvn::signer::hsm::{init_key, HsmSettings, PinSource};
use mpc_dvn::signer::Signer as _;

#[derive(Debug, Parser)]
#[command(name = "mpc-dvn", version, about = "LayerZero V2 DVN relayer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relayer.
    Run {
        /// The TOML configuration (MPC_DVN_* variables override it).
        #[arg(long, env = "MPC_DVN_CONFIG")]
        config: PathBuf,
    },
    /// Print the Ethereum address of the configured signer.
    Address {
        /// The TOML configuration.
        #[arg(long, env = "MPC_DVN_CONFIG")]
        config: PathBuf,
    },
    /// PKCS#11 token management.
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
    },
}

#[derive(Debug, Subcommand)]
enum HsmCommand {
    /// Create a secp256k1 key pair on the token unless one with the label exists, and print
    /// its Ethereum address.
    Init {
        /// The PKCS#11 module.
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: PathBuf,
        /// The token's label.
        #[arg(long)]
        token_label: String,
        /// The key's label.
        #[arg(long)]
        key_label: String,
        /// A file holding the user PIN.
        #[arg(long)]
        pin_file: PathBuf,
        /// A file holding the security officer PIN: initialise the token on a free slot
        /// when no token has the label (soft tokens).
        #[arg(long)]
        so_pin_file: Option<PathBuf>,
    },
}

fn init_logging(filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("log.filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}

/// Returns on Ctrl-C or SIGTERM (how containers are stopped).
async fn stop_on_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("stopping");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            init_logging(&config.log.filter, config.log.json)?;
            // The job book: the coordinators' Raft state through mpc.v1.Relay.
            let cluster = mpc_dvn::service::cluster_endpoints(&config)?;
            let store = std::sync::Arc::new(mpc_dvn::cluster_store::ClusterJobStore::new(
                cluster.clone(),
                u32::try_from(config.quorum).context("quorum")?,
                u32::try_from(config.signers).context("signers")?,
            ));
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                stop_on_signal().await;
                let _ = stop.send(true);
            });
            mpc_dvn::service::run(config, store, cluster, shutdown).await?;
            Ok(())
        }
        Command::Address { config } => {
            let config = Config::load(&config)?;
            init_logging("warn", false)?;
            let signer = mpc_dvn::service::open_signer(&config, None).await?;
            println!("{}", signer.address());
            Ok(())
        }
        Command::Hsm {
            command:
                HsmCommand::Init {
                    module,
                    token_label,
                    key_label,
                    pin_file,
                    so_pin_file,
                },
        } => {
            init_logging("warn", false)?;
            let settings = HsmSettings::of(&HsmConfig {
                module,
                token_label: Some(token_label),
                slot: None,
                key_label,
                pin_file: Some(pin_file),
                pin_env: None,
            })?;
            let so_pin = so_pin_file
                .map(|f| PinSource::File(f).read())
                .transpose()
                .context("--so-pin-file")?;
            let outcome = init_key(settings, so_pin).await?;
            if outcome.token_created {
                eprintln!("token initialised");
            }
            eprintln!(
                "{}",
                if outcome.key_created {
                    "key created"
                } else {
                    "key already present"
                }
            );
            println!("{}", outcome.address);
            Ok(())
        }
    }
}
