//! `mpc-secret-scan`: searches logs for secrets (see `mpc_tests::secret_scan`). Prints each
//! hit as `<file>:<line>: holds <label> (<encoding>)`, never a secret; exits 1 on any hit,
//! 2 when a secret or a log cannot be read, 0 with a one-line summary otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mpc_tests::secret_scan::{self, Scanner, Secret};

/// Searches every line of the given logs for secrets, in raw, hex, base64 and byte-list
/// encodings. Secrets come from files, each with a label that is safe to print (LABEL=PATH):
/// secret values are never taken on the command line.
#[derive(Debug, Parser)]
#[command(name = "mpc-secret-scan", version)]
struct Cli {
    /// A PEM private key: its DER, private key bytes and PEM lines.
    #[arg(long, value_name = "LABEL=PATH")]
    pem: Vec<String>,
    /// A key file of 32 raw bytes or hex text (a party master key, an `mpcctl signing-key new`
    /// file).
    #[arg(long = "key-file", value_name = "LABEL=PATH")]
    key_file: Vec<String>,
    /// Tokens, PINs or passwords, one per line: searched as text whatever their length.
    #[arg(long = "text-file", value_name = "LABEL=PATH")]
    text_file: Vec<String>,
    /// Every secret file under a directory (a cluster's .cluster): PEM private keys, *.key
    /// files, files with "token" or "pin" in their names.
    #[arg(long = "secrets-dir", value_name = "DIR")]
    secrets_dir: Vec<PathBuf>,
    /// A party's share store, opened read-only with its master key file: the party's identity
    /// keys and the secret share of every key it holds (and the master key).
    #[arg(long, num_args = 3, value_names = ["PARTY_ID", "DATA_DIR", "MASTER_KEY_FILE"])]
    party: Vec<String>,
    /// List the secrets' labels and the files they came from.
    #[arg(short, long)]
    verbose: bool,
    /// Log files, or directories scanned recursively.
    #[arg(required = true, value_name = "LOG")]
    logs: Vec<PathBuf>,
}

fn labelled(arg: &str) -> anyhow::Result<(&str, PathBuf)> {
    let (label, path) = arg
        .split_once('=')
        .with_context(|| format!("{arg:?}: expected LABEL=PATH"))?;
    Ok((label, PathBuf::from(path)))
}

fn collect(cli: &Cli) -> anyhow::Result<Vec<Secret>> {
    let mut secrets = Vec::new();
    for arg in &cli.pem {
        let (label, path) = labelled(arg)?;
        secrets.extend(secret_scan::pem_file(label, &path)?);
    }
    for arg in &cli.key_file {
        let (label, path) = labelled(arg)?;
        secrets.push(secret_scan::key_file(label, &path)?);
    }
    for arg in &cli.text_file {
        let (label, path) = labelled(arg)?;
        secrets.extend(secret_scan::text_file(label, &path)?);
    }
    for dir in &cli.secrets_dir {
        let found = secret_scan::secrets_dir(dir)?;
        if cli.verbose {
            for (file, kind) in &found.files {
                println!("secrets from {} ({kind})", file.display());
            }
        }
        secrets.extend(found.secrets);
    }
    for party in cli.party.chunks(3) {
        let [id, data_dir, key_file] = party else {
            anyhow::bail!("--party takes PARTY_ID DATA_DIR MASTER_KEY_FILE");
        };
        let found = secret_scan::party_store_with_key_file(
            id,
            &PathBuf::from(data_dir),
            &PathBuf::from(key_file),
        )?;
        if cli.verbose {
            println!(
                "secrets from the share store of {id} in {data_dir}: {}",
                found.len()
            );
        }
        secrets.extend(found);
    }
    Ok(secrets)
}

fn run(cli: &Cli) -> anyhow::Result<bool> {
    let secrets = collect(cli)?;
    let scanner = Scanner::new(&secrets)?;
    // Scanning for nothing would pass whatever the logs hold: a wrong path must not.
    anyhow::ensure!(
        !scanner.labels().is_empty(),
        "no secret to scan for: give --pem, --key-file, --text-file, --secrets-dir or --party"
    );
    if cli.verbose {
        for label in scanner.labels() {
            println!("scanning for: {label}");
        }
        for log in &cli.logs {
            println!("scanning logs in: {}", log.display());
        }
    }
    let report = scanner.scan_paths(&cli.logs)?;
    println!("{report}");
    Ok(report.clean())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mpc-secret-scan: {e:#}");
            ExitCode::from(2)
        }
    }
}
