use clap::Parser;
use mpc_party::PartyConfig;

/// An mpc party node: holds key shares and runs the signing protocols the leader assigns.
#[derive(Debug, Parser)]
#[command(name = "mpc-party", version)]
struct Args {
    #[command(flatten)]
    config: PartyConfig,
    #[command(subcommand)]
    command: Option<Command>,
    /// "human" or "json".
    #[arg(long, env = "MPC_LOG__FORMAT", default_value = "human")]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Prints the party's identity public keys (creating them on first use) for an admin to
    /// enrol with `mpcctl party enroll --id <party id> --identity <printed value>`.
    Identity,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPC_LOG__FILTER")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Some(Command::Identity) = args.command {
        let config = args.config;
        let identity = tokio::task::spawn_blocking(move || mpc_party::identity(&config)).await??;
        println!("{identity}");
        return Ok(());
    }
    args.config.validate()?;
    mpc_party::run(args.config, shutdown_signal()).await?;
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
