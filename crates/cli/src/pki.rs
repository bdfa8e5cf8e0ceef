//! `mpcctl pki`: the cluster CA and the certificates it issues (see `mpc_tls::pki`).

use std::path::PathBuf;

use clap::Subcommand;
use mpc_tls::pki;
use mpc_tls::{Identity, Role};
use mpc_types::AccessRole;
use serde_json::json;

use crate::commands::print;
use crate::Output;

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make the cluster CA in DIR (ca.crt, ca.key). Refuses to replace an existing one.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate naming ROLE/NAME, signed by the CA in DIR.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// coordinator (NAME is its node id), party (its party id), dvn or client.
        #[arg(long)]
        role: Role,
        #[arg(long)]
        name: String,
        /// Clients: reader, operator or admin (signers get tokens scoped to keys).
        #[arg(long)]
        grant: Option<AccessRole>,
        /// A DNS name or IP address the node is dialled by; repeatable. Coordinators get
        /// localhost and 127.0.0.1 besides.
        #[arg(long)]
        host: Vec<String>,
        /// How long the certificate is valid, e.g. 365d.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
    },
    /// Give DIR and everything in it to UID:GID (as root: hand a node's files to the user
    /// its container runs as, keeping them 0600).
    SetOwner {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        gid: u32,
    },
}

/// Runs as root: never follows a symbolic link (it would hand out whatever the link points
/// at, and a loop would recurse forever).
fn set_owner(path: &std::path::Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    let meta = std::fs::symlink_metadata(path).with_context(|| path.display().to_string())?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| path.display().to_string())? {
            set_owner(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

pub fn run(output: Output, cmd: PkiCommand) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::Init { dir } => {
            let ca = pki::init(&dir)?;
            print(
                output,
                &json!({ "ca_cert": ca.cert, "ca_key": ca.key }),
                || {
                    format!(
                    "cluster CA written to {} (its key {} signs every certificate: keep it offline)",
                    ca.cert.display(),
                    ca.key.display()
                )
                },
            );
        }
        PkiCommand::Issue {
            dir,
            role,
            name,
            grant,
            mut host,
            valid_for,
        } => {
            let identity = Identity::new(role, &name, grant)?;
            if role == Role::Coordinator {
                for default in ["localhost", "127.0.0.1"] {
                    if !host.iter().any(|h| h == default) {
                        host.push(default.to_owned());
                    }
                }
            }
            let issued = pki::issue(&dir, &identity, &host, valid_for)?;
            print(
                output,
                &json!({
                    "identity": identity.uri(),
                    "cert": issued.cert,
                    "key": issued.key,
                    "hosts": host,
                }),
                || {
                    format!(
                        "{} issued: {} (key {})",
                        identity.uri(),
                        issued.cert.display(),
                        issued.key.display()
                    )
                },
            );
        }
        PkiCommand::SetOwner { dir, uid, gid } => {
            set_owner(&dir, uid, gid)?;
            print(
                output,
                &json!({ "dir": dir, "uid": uid, "gid": gid }),
                || format!("{} now belongs to {uid}:{gid}", dir.display()),
            );
        }
    }
    Ok(())
}
