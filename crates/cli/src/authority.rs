//! What admins and initiators sign: `mpcctl signing-key`, `mpcctl party enroll|list` and
//! `mpcctl approval create|sign`; the key files keygen and sign read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use mpc_client::authority::{self as signing_keys, ApprovalRequest};
use mpc_proto::v1 as pb;
use mpc_proto::v1::party_gateway_client::PartyGatewayClient;
use serde_json::json;

use crate::client::Endpoints;
use crate::commands::print;
use crate::page::Show as _;
use crate::Output;

/// The Ed25519 keys this caller signs statements with. Files, never values: every flag has
/// its `MPC_*` variable, as `.local-cluster/admin.env` sets them.
#[derive(Debug, Clone, clap::Args)]
pub struct SignerArgs {
    /// An admin's signing key file: signs key policies (keygen) and party enrolments.
    #[arg(long, env = "MPC_ADMIN_KEY", global = true)]
    pub admin_key: Option<PathBuf>,
    /// An initiator's signing key file: approves signings.
    #[arg(long, env = "MPC_INITIATOR_KEY", global = true)]
    pub initiator_key: Option<PathBuf>,
}

impl SignerArgs {
    pub fn admin(&self) -> anyhow::Result<ed25519_dalek::SigningKey> {
        let path = self
            .admin_key
            .as_deref()
            .context("an admin signing key is needed: --admin-key FILE or MPC_ADMIN_KEY")?;
        Ok(signing_keys::load_signing_key(path)?)
    }

    pub fn initiator(&self) -> anyhow::Result<ed25519_dalek::SigningKey> {
        let path = self.initiator_key.as_deref().context(
            "an initiator signing key is needed: --initiator-key FILE or MPC_INITIATOR_KEY",
        )?;
        Ok(signing_keys::load_signing_key(path)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new Ed25519 signing key file (0600) and print its public key.
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a signing key file.
    Public { file: PathBuf },
}

pub fn signing_key(output: Output, cmd: SigningKeyCommand) -> anyhow::Result<()> {
    let (path, public) = match cmd {
        SigningKeyCommand::New { out } => {
            let public = signing_keys::create_signing_key(&out)?;
            (out, public)
        }
        SigningKeyCommand::Public { file } => {
            let key = signing_keys::load_signing_key(&file)?;
            (file, key.verifying_key().to_bytes())
        }
    };
    let public = hex::encode(public);
    print(
        output,
        &json!({ "file": path, "public_key": public }),
        || public.clone(),
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum PartyCommand {
    /// Enrol a party's identity keys (admins): parties work only with enrolled peers.
    /// Enrolling a known id with other keys rotates them.
    Enroll {
        #[arg(long)]
        id: String,
        /// What `mpc-party identity` prints on the party's machine (128 hex digits).
        #[arg(long)]
        identity: String,
    },
    /// The enrolled parties, in id order, and whether they are connected.
    List(crate::page::PageArgs),
    /// One party: its keys, who enrolled it, whether it is connected (exits 1 if unknown).
    Get { id: String },
}

pub async fn party(
    endpoints: &Endpoints,
    output: Output,
    signer: &SignerArgs,
    cmd: PartyCommand,
) -> anyhow::Result<()> {
    match cmd {
        PartyCommand::Enroll { id, identity } => {
            let req = signing_keys::enrol(&signer.admin()?, &id, &identity)?;
            let party = endpoints
                .call(|ch| {
                    let req = req.clone();
                    async move {
                        PartyGatewayClient::new(ch)
                            .enroll(req)
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            print(output, &party_json(&party), || {
                format!("enrolled {}\n{}", party.party_id, party_line(&party))
            });
        }
        PartyCommand::Get { id } => {
            let party = get_party(endpoints, &id).await?.with_context(|| {
                format!("no party {id:?} is enrolled (mpcctl party list shows those that are)")
            })?;
            print(output, &party_json(&party), || party_line(&party));
        }
        PartyCommand::List(page) => {
            page.collect(|page_size, page_token| parties_page(endpoints, page_size, page_token))
                .await?
                .print(output, "parties", party_json, party_line, "no parties");
        }
    }
    Ok(())
}

/// The party enrolled as `party_id`, or `None` when none is.
pub async fn get_party(
    endpoints: &Endpoints,
    party_id: &str,
) -> Result<Option<pb::Party>, mpc_client::ClientError> {
    let asked = endpoints
        .call(|ch| {
            let party_id = party_id.to_owned();
            async move {
                PartyGatewayClient::new(ch)
                    .get_party(pb::GetPartyRequest {
                        party_id,
                        consistency: pb::ReadConsistency::Linearizable as i32,
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await;
    match asked {
        Ok(party) => Ok(Some(party)),
        Err(mpc_client::ClientError::Status(s)) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn parties_page(
    endpoints: &Endpoints,
    page_size: u32,
    page_token: String,
) -> anyhow::Result<(Vec<pb::Party>, String)> {
    let page = endpoints
        .call(|ch| {
            let page_token = page_token.clone();
            async move {
                PartyGatewayClient::new(ch)
                    .list_parties(pb::ListPartiesRequest {
                        page_size,
                        page_token,
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    Ok((page.parties, page.next_page_token))
}

fn party_json(p: &pb::Party) -> serde_json::Value {
    json!({
        "party_id": p.party_id,
        "signing_public_key": hex::encode(&p.signing_public_key),
        "encryption_public_key": hex::encode(&p.encryption_public_key),
        "enrolled_by": p.enrolled_by.as_ref().map(|s| hex::encode(&s.signer)),
        "registered": p.registered,
        "status": p.status,
        "connected": p.connected,
        "endpoint": p.endpoint,
    })
}

fn party_line(p: &pb::Party) -> String {
    format!(
        "{:<12} {:<8} {:<10} signing key {}…",
        p.party_id,
        p.status,
        if p.registered {
            "registered"
        } else {
            "enrolled"
        },
        &hex::encode(&p.signing_public_key)[..16]
    )
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Write a signing request for initiators to approve one by one (`approval sign`), then
    /// submit it with `mpcctl sign --approvals FILE`.
    Create(ApprovalCreateArgs),
    /// Add this initiator's approval (MPC_INITIATOR_KEY) to a request file.
    Sign { file: PathBuf },
}

#[derive(Debug, clap::Args)]
pub struct ApprovalCreateArgs {
    #[arg(long)]
    key_id: String,
    /// The message to sign, hex.
    #[arg(long, conflicts_with = "digest", required_unless_present = "digest")]
    message: Option<String>,
    /// keccak256 or sha256 (ECDSA keys; default keccak256).
    #[arg(long, requires = "message")]
    hash: Option<String>,
    /// A 32-byte digest to sign as it is, hex.
    #[arg(long)]
    digest: Option<String>,
    #[arg(long)]
    request_id: Option<String>,
    /// How long the approvals stay valid (at most 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    #[arg(long)]
    out: PathBuf,
}

pub async fn approval(
    endpoints: &Endpoints,
    output: Output,
    signer: &SignerArgs,
    cmd: ApprovalCommand,
) -> anyhow::Result<()> {
    match cmd {
        ApprovalCommand::Create(args) => {
            let key = crate::signing::get_key(endpoints, &args.key_id).await?;
            let request = request_for(
                &key,
                args.digest.as_deref(),
                args.message.as_deref(),
                args.hash.as_deref(),
                args.request_id,
                args.ttl,
            )?;
            if args.out.exists() {
                bail!("--out {}: exists; it is never replaced", args.out.display());
            }
            request.write(&args.out)?;
            print(
                output,
                &json!({ "file": args.out, "request_id": request.request_id }),
                || {
                    format!(
                        "request {} written to {}; each initiator runs `mpcctl approval sign {}`",
                        request.request_id,
                        args.out.display(),
                        args.out.display()
                    )
                },
            );
        }
        ApprovalCommand::Sign { file } => {
            let mut request = ApprovalRequest::read(&file)?;
            request.approve(&signer.initiator()?)?;
            request.write(&file)?;
            print(
                output,
                &json!({ "file": file, "approvals": request.approvals.len() }),
                || {
                    format!(
                        "{} approval(s) on request {}",
                        request.approvals.len(),
                        request.request_id
                    )
                },
            );
        }
    }
    Ok(())
}

/// The request to approve for signing with `key`: a digest as it is, or a message with the
/// hash its scheme takes (ECDSA: keccak256 unless named; Schnorr: none).
pub fn request_for(
    key: &pb::Key,
    digest: Option<&str>,
    message: Option<&str>,
    hash: Option<&str>,
    request_id: Option<String>,
    ttl: Duration,
) -> anyhow::Result<ApprovalRequest> {
    let hex_of = |field: &str, text: &str| -> anyhow::Result<String> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(digits).with_context(|| format!("--{field}: not hex"))?;
        Ok(hex::encode(bytes))
    };
    let (digest, message, hash) = match (digest, message) {
        (Some(d), _) => {
            let d = hex_of("digest", d)?;
            if d.len() != 64 {
                bail!("--digest: must be 32 bytes, got {}", d.len() / 2);
            }
            (d, String::new(), String::new())
        }
        (None, Some(m)) => {
            let hash = match (key.scheme.as_str(), hash) {
                ("ecdsa-secp256k1", None) => "keccak256".to_owned(),
                (_, h) => h.unwrap_or_default().to_owned(),
            };
            (String::new(), hex_of("message", m)?, hash)
        }
        (None, None) => bail!("give --message or --digest"),
    };
    if ttl > Duration::from_millis(mpc_types::statement::MAX_APPROVAL_LIFETIME_MS) {
        bail!("--ttl: at most 24h, got {ttl:?}");
    }
    Ok(ApprovalRequest {
        key_id: key.key_id.clone(),
        digest,
        message,
        hash,
        request_id: request_id.unwrap_or_else(|| format!("mpcctl-{}", uuid::Uuid::new_v4())),
        not_after_ms: signing_keys::expiry_after(ttl),
        approvals: Vec::new(),
    })
}
