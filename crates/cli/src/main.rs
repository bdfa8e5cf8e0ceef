//! mpcctl: the operator's command line for an mpc cluster.

mod access;
mod authority;
mod client;
mod commands;
mod dvn;
mod output;
mod page;
mod pki;
mod probe;
mod signing;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mpcctl",
    version,
    about = "Operate an mpc threshold-signing cluster"
)]
pub struct Cli {
    /// Coordinator gRPC endpoints (any of them; writes reach the leader).
    #[arg(
        long,
        env = "MPC_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053,127.0.0.1:50054,127.0.0.1:50055",
        global = true
    )]
    endpoints: Vec<String>,
    #[arg(long, short, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    /// How long to keep trying, e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    timeout: Duration,
    #[command(flatten)]
    credentials: client::CredentialArgs,
    #[command(flatten)]
    signer: authority::SignerArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The coordinator Raft group.
    #[command(subcommand)]
    Cluster(commands::ClusterCommand),
    /// Keygen and signing sessions.
    #[command(subcommand)]
    Session(commands::SessionCommand),
    /// Generate a key: start a distributed key generation and wait for the key.
    Keygen(commands::KeygenArgs),
    /// Sign a message or a digest with a key and check the signature.
    Sign(signing::SignArgs),
    /// Keys the cluster holds.
    #[command(subcommand)]
    Key(signing::KeyCommand),
    /// Check a node's HTTP health endpoint (the container images' health check).
    Probe(probe::ProbeArgs),
    /// The operator PKI: the cluster CA and the certificates of nodes and clients.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// The replicated, hash-chained audit log.
    #[command(subcommand)]
    Audit(access::AuditCommand),
    /// Who the cluster takes this caller for.
    Whoami,
    /// Ed25519 signing key files for admins and initiators.
    #[command(subcommand)]
    SigningKey(authority::SigningKeyCommand),
    /// Party enrolment (admins) and the list of parties.
    #[command(subcommand)]
    Party(authority::PartyCommand),
    /// Offline approvals: a request file that initiators sign in turn.
    #[command(subcommand)]
    Approval(authority::ApprovalCommand),
    /// The DVN relayers: their cursors and packet jobs.
    #[command(subcommand)]
    Dvn(dvn::DvnCommand),
    /// Print a completion script for SHELL, e.g. `mpcctl completions bash >
    /// ~/.local/share/bash-completion/completions/mpcctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
