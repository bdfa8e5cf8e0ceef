//! `mpcctl keygen` (waiting for the key), `mpcctl sign` and `mpcctl key get|list`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use serde_json::{json, Value};

use crate::client::Endpoints;
use crate::output::{session_kind, session_status};
use crate::page::Show as _;
use crate::Output;

fn hex0x(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        json!(format!("0x{}", hex::encode(bytes)))
    }
}

/// What mpcctl has shown of a session's progress on stderr, for people (text output only).
struct Progress<'a> {
    output: Output,
    endpoints: &'a Endpoints,
    started: Instant,
    /// The status last shown, and when.
    shown: std::cell::Cell<(i32, Instant)>,
    /// The latest version of the session seen.
    latest: std::cell::RefCell<Option<pb::Session>>,
}

impl<'a> Progress<'a> {
    fn new(output: Output, endpoints: &'a Endpoints) -> Self {
        let now = Instant::now();
        Self {
            output,
            endpoints,
            started: now,
            shown: std::cell::Cell::new((-1, now)),
            latest: std::cell::RefCell::new(None),
        }
    }

    /// A version of the session: shown when its status changed, or after a quiet while.
    fn changed(&self, session: &pb::Session) {
        *self.latest.borrow_mut() = Some(session.clone());
        let (status, at) = self.shown.get();
        if session.status == status && at.elapsed() < QUIET {
            return;
        }
        if self.output == Output::Text {
            let parties = if session.parties.is_empty() {
                String::new()
            } else {
                format!(" with {}", session.parties.join(","))
            };
            eprintln!(
                "  {} session {}: {}{} ({:.1?})",
                session_kind(session.kind),
                session.session_id,
                session_status(session.status),
                parties,
                self.started.elapsed()
            );
        }
        self.shown.set((session.status, Instant::now()));
    }

    /// Nothing new for a while: say what the session waits for, so that a long keygen does
    /// not look hung.
    async fn quiet(&self) {
        let (_, at) = self.shown.get();
        if self.output == Output::Text && at.elapsed() >= QUIET {
            let latest = self.latest.borrow().clone();
            let what = match latest {
                // Before any version came (a signing's one waiting call).
                None => "waiting for the cluster's answer".to_owned(),
                Some(session) => waiting_for(self.endpoints, &session).await,
            };
            eprintln!("  ... {what} ({:.0?})", self.started.elapsed());
        }
    }

    /// Runs `work` (which reports to this) and says `quiet` every [`QUIET`] meanwhile.
    async fn during<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + QUIET, QUIET);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = ticks.tick() => {
                    // Saying what the session waits for asks the cluster: the work goes on
                    // meanwhile, and wins if it ends first.
                    tokio::select! {
                        done = &mut work => return done,
                        () = self.quiet() => {}
                    }
                }
            }
        }
    }
}

/// What a session that has not ended is waiting for, in words: the parties that cannot take
/// part yet (asked of the cluster), or the work the parties do.
async fn waiting_for(endpoints: &Endpoints, session: &pb::Session) -> String {
    match pb::SessionStatus::try_from(session.status) {
        Ok(pb::SessionStatus::Pending) => {
            if session.parties.is_empty() {
                return format!(
                    "pending: waiting for {} parties of the key to be online",
                    session.threshold
                );
            }
            let absences = futures::future::join_all(
                session
                    .parties
                    .iter()
                    .map(|party_id| party_absence(endpoints, party_id)),
            )
            .await;
            let missing: Vec<String> = session
                .parties
                .iter()
                .zip(absences)
                .filter_map(|(party_id, why)| why.map(|why| format!("{party_id} {why}")))
                .collect();
            if missing.is_empty() {
                "pending: its parties are online; waiting for the leader to start it".to_owned()
            } else {
                format!("pending: waiting for {}", missing.join(", "))
            }
        }
        Ok(pb::SessionStatus::Running)
            if session.kind == pb::SessionKind::Keygen as i32
                && session.scheme.starts_with("ecdsa") =>
        {
            "running: parties without aux info for this group make it first (safe primes, \
             minutes on two cores when their prime pools are empty)"
                .to_owned()
        }
        Ok(pb::SessionStatus::Running) => "running: the parties run the protocol".to_owned(),
        _ => format!("still {}", session_status(session.status)),
    }
}

/// Why `party_id` cannot take part now (`None` when it is online): as the cluster sees it,
/// or that the cluster did not answer in time.
async fn party_absence(endpoints: &Endpoints, party_id: &str) -> Option<String> {
    let asked = crate::authority::get_party(endpoints, party_id);
    match tokio::time::timeout(Duration::from_secs(2), asked).await {
        Ok(Ok(Some(p))) if !p.registered => {
            Some("(enrolled, never registered: is mpc-party running?)".into())
        }
        Ok(Ok(Some(p))) if p.status != "online" => Some(format!("({})", p.status)),
        Ok(Ok(Some(_))) => None,
        Ok(Ok(None)) => Some("(not enrolled: mpcctl party enroll)".into()),
        Ok(Err(e)) => Some(format!("(unknown: {e})")),
        Err(_) => Some("(unknown: the cluster did not answer in time)".into()),
    }
}

/// How long a session may stay quiet before mpcctl says it is still waiting.
const QUIET: Duration = Duration::from_secs(5);

fn finished(session: pb::Session, limit: Duration) -> anyhow::Result<pb::Session> {
    if !mpc_client::sessions::is_terminal(session.status) {
        bail!(
            "session {} did not finish within {limit:?} (it may still; it is {})",
            session.session_id,
            session_status(session.status)
        );
    }
    Ok(session)
}

/// Follows a session until it ends, showing its progress on stderr for people. Survives a
/// leader change: the watch is re-opened on whichever node answers.
pub async fn wait_for(
    endpoints: &Endpoints,
    session_id: &str,
    output: Output,
    limit: Duration,
) -> anyhow::Result<pb::Session> {
    let progress = Progress::new(output, endpoints);
    let session = progress
        .during(mpc_client::sessions::watch(
            endpoints,
            session_id,
            limit,
            |s| progress.changed(s),
        ))
        .await?;
    finished(session, limit)
}

fn ensure_completed(session: &pb::Session) -> anyhow::Result<()> {
    match pb::SessionStatus::try_from(session.status) {
        Ok(pb::SessionStatus::Completed) => Ok(()),
        _ => {
            let blamed = if session.blamed_parties.is_empty() {
                String::new()
            } else {
                format!(" (blamed: {})", session.blamed_parties.join(", "))
            };
            bail!(
                "session {} {}: {}{blamed}",
                session.session_id,
                session_status(session.status),
                if session.failure_reason.is_empty() {
                    "no reason given"
                } else {
                    &session.failure_reason
                }
            )
        }
    }
}

pub async fn get_key(endpoints: &Endpoints, key_id: &str) -> anyhow::Result<pb::Key> {
    Ok(endpoints
        .call(|ch| {
            let key_id = key_id.to_owned();
            async move {
                KeysClient::new(ch)
                    .get_key(pb::GetKeyRequest {
                        key_id,
                        consistency: 0,
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?)
}

pub fn key_json(k: &pb::Key) -> Value {
    json!({
        "key_id": k.key_id,
        "scheme": k.scheme,
        "threshold": k.threshold,
        "parties": k.parties,
        "public_key": hex0x(&k.public_key),
        "address": if k.address.is_empty() { Value::Null } else { json!(k.address) },
        "status": match pb::KeyStatus::try_from(k.status) {
            Ok(pb::KeyStatus::Active) => "active",
            Ok(pb::KeyStatus::Disabled) => "disabled",
            _ => "unknown",
        },
        "description": k.description,
        "tags": k.tags.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "keygen_session_id": k.keygen_session_id,
        "created_at_ms": k.created_at_ms,
        "policy": k.policy.as_ref().and_then(|p| p.policy.as_ref()).map(|p| json!({
            "version": p.version,
            "initiators": p.initiators.iter().map(hex::encode).collect::<Vec<_>>(),
            "approvals_needed": p.approvals_needed,
        })),
    })
}

fn key_text(k: &pb::Key) -> String {
    let mut s = format!(
        "key {}\n  scheme      {}\n  threshold   {} of {} ({})\n  public key  0x{}",
        k.key_id,
        k.scheme,
        k.threshold,
        k.parties.len(),
        k.parties.join(", "),
        hex::encode(&k.public_key)
    );
    if !k.address.is_empty() {
        s.push_str(&format!("\n  address     {}", k.address));
    }
    if !k.description.is_empty() {
        s.push_str(&format!("\n  description {}", k.description));
    }
    if !k.tags.is_empty() {
        s.push_str(&format!("\n  tags        {}", tags_text(k)));
    }
    s
}

/// `name=value` pairs in name order.
fn tags_text(k: &pb::Key) -> String {
    let tags: std::collections::BTreeMap<_, _> = k.tags.iter().collect();
    tags.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One key as a line of a listing.
fn key_line(k: &pb::Key) -> String {
    let mut line = format!(
        "{}  {:<16} {}-of-{}  {}",
        k.key_id,
        k.scheme,
        k.threshold,
        k.parties.len(),
        if k.address.is_empty() {
            format!("0x{}", hex::encode(&k.public_key))
        } else {
            k.address.clone()
        }
    );
    if !k.tags.is_empty() {
        line.push_str(&format!("  {}", tags_text(k)));
    }
    line
}

/// After `keygen` created its session: wait for the key and show it.
pub async fn finish_keygen(
    endpoints: &Endpoints,
    output: Output,
    session: pb::Session,
    limit: Duration,
) -> anyhow::Result<()> {
    let session = wait_for(endpoints, &session.session_id, output, limit).await?;
    ensure_completed(&session)?;
    let key = get_key(endpoints, &session.key_id).await?;
    let mut value = key_json(&key);
    value["session_id"] = json!(session.session_id);
    value["status"] = json!(session_status(session.status));
    crate::commands::print(output, &value, || key_text(&key));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[arg(long, required_unless_present = "approvals")]
    key_id: Option<String>,
    /// The message to sign, hex. ECDSA signers hash it with --hash; Schnorr keys sign it as is.
    #[arg(long, conflicts_with = "digest", required_unless_present_any = ["digest", "approvals"])]
    message: Option<String>,
    /// keccak256 or sha256 (ECDSA keys; default keccak256).
    #[arg(long, requires = "message")]
    hash: Option<String>,
    /// A 32-byte digest to sign as it is, hex.
    #[arg(long)]
    digest: Option<String>,
    /// Makes a retried command return the first session.
    #[arg(long)]
    request_id: Option<String>,
    /// Return once the session exists instead of waiting for the signature.
    #[arg(long)]
    no_wait: bool,
    /// Seconds until the session expires (0: the cluster's default).
    #[arg(long, default_value_t = 0)]
    timeout_seconds: u32,
    /// How long to wait for the signature.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Submit a request file with the approvals initiators added (`mpcctl approval create`,
    /// `approval sign`) instead of approving with MPC_INITIATOR_KEY.
    #[arg(long, conflicts_with_all = ["message", "digest", "hash", "request_id"])]
    approvals: Option<std::path::PathBuf>,
    /// How long this caller's approval stays valid.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    approval_ttl: Duration,
}

pub async fn sign(
    endpoints: &Endpoints,
    output: Output,
    signer: &crate::authority::SignerArgs,
    args: SignArgs,
) -> anyhow::Result<()> {
    let request = match &args.approvals {
        Some(file) => {
            let request = mpc_client::authority::ApprovalRequest::read(file)?;
            if args.key_id.as_ref().is_some_and(|k| *k != request.key_id) {
                bail!(
                    "--key-id: the request file is for key {}, not {}",
                    request.key_id,
                    args.key_id.unwrap_or_default()
                );
            }
            request
        }
        None => {
            let key_id = args.key_id.clone().context("--key-id: required")?;
            let key = get_key(endpoints, &key_id).await?;
            let mut request = crate::authority::request_for(
                &key,
                args.digest.as_deref(),
                args.message.as_deref(),
                args.hash.as_deref(),
                args.request_id.clone(),
                args.approval_ttl,
            )?;
            request.approve(&signer.initiator()?)?;
            request
        }
    };
    let key = get_key(endpoints, &request.key_id).await?;
    let scheme: mpc_tss::Scheme = key.scheme.parse()?;
    let digest = hex::decode(&request.digest)?;
    let message = hex::decode(&request.message)?;
    let hash = request.hash.clone();
    let req = pb::CreateSigningRequest {
        key_id: request.key_id.clone(),
        digest: digest.clone(),
        request_id: request.request_id.clone(),
        timeout_seconds: args.timeout_seconds,
        message: message.clone(),
        hash: hash.clone(),
        approvals: request.signatures()?,
        not_after_ms: request.not_after_ms,
        wait: false,
    };
    if args.no_wait {
        let created = endpoints
            .call(|ch| {
                let req = req.clone();
                async move {
                    SessionsClient::new(ch)
                        .create_signing(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?;
        let session = created.session.context("the answer holds no session")?;
        let value = json!({ "session_id": session.session_id, "status": session_status(session.status), "key_id": request.key_id });
        crate::commands::print(output, &value, || {
            format!(
                "signing session {} {}",
                session.session_id,
                session_status(session.status)
            )
        });
        return Ok(());
    }
    // One call that answers with the signature; a watch only if the session outlives it.
    let progress = Progress::new(output, endpoints);
    let session = progress
        .during(mpc_client::sessions::sign(endpoints, req, args.wait, |s| {
            progress.changed(s)
        }))
        .await?;
    let session = finished(session, args.wait)?;
    ensure_completed(&session)?;

    // Check the signature here too, with the key as the cluster reports it.
    let input = if digest.is_empty() {
        mpc_tss::SigningInput::Message {
            message,
            hash: if hash.is_empty() {
                None
            } else {
                Some(hash.parse()?)
            },
        }
    } else {
        mpc_tss::SigningInput::Digest(digest.as_slice().try_into()?)
    };
    let signature = mpc_tss::Signature::from_bytes(scheme, &session.signature)?;
    mpc_tss::verify(scheme, &key.public_key, &input, &signature)
        .context("the cluster returned a signature that does not verify")?;

    let mut value = json!({
        "session_id": session.session_id,
        "status": session_status(session.status),
        "key_id": key.key_id,
        "signature": hex0x(&session.signature),
        "verified": true,
        "presignature_id": if session.presignature_id.is_empty() { Value::Null } else { json!(session.presignature_id) },
    });
    let mut text = format!(
        "signature  0x{}\nsession    {}",
        hex::encode(&session.signature),
        session.session_id
    );
    if let mpc_tss::Signature::Ecdsa { r, s, v } = signature {
        value["r"] = hex0x(&r);
        value["s"] = hex0x(&s);
        value["v"] = json!(v);
        value["address"] = json!(key.address);
        value["digest"] = hex0x(&input.ecdsa_digest()?);
        text.push_str(&format!(
            "\nr          0x{}\ns          0x{}\nv          {v}\nverified   yes: ecrecover gives {}",
            hex::encode(r),
            hex::encode(s),
            key.address
        ));
    } else {
        text.push_str(&format!(
            "\nverified   yes, against {} key 0x{}",
            key.scheme,
            hex::encode(&key.public_key)
        ));
    }
    crate::commands::print(output, &value, || text);
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// One key.
    Get { key_id: String },
    /// Keys in id order.
    List(crate::page::PageArgs),
    /// Change who may approve signings with a key, and how many must: signs the key's next
    /// policy version with the admin key (MPC_ADMIN_KEY). Every party checks the signature
    /// and adopts the policy with the next signing it is asked for.
    Policy {
        key_id: String,
        /// Initiators' Ed25519 public keys (hex, comma separated).
        #[arg(long, value_delimiter = ',', required = true)]
        initiators: Vec<String>,
        /// Distinct initiators' approvals each signing needs.
        #[arg(long, default_value_t = 1)]
        approvals: u16,
    },
}

pub async fn key(
    endpoints: &Endpoints,
    output: Output,
    signer: &crate::authority::SignerArgs,
    cmd: KeyCommand,
) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Policy {
            key_id,
            initiators,
            approvals,
        } => {
            let admin = signer.admin()?;
            let initiators = initiators
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    mpc_client::authority::parse_public_key(&format!("--initiators[{}]", i + 1), k)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let key = get_key(endpoints, &key_id).await?;
            let current = key
                .policy
                .as_ref()
                .and_then(|p| p.policy.as_ref())
                .with_context(|| format!("key {key_id} came without its policy"))?;
            let policy = mpc_client::authority::sign_policy_version(
                &admin,
                mpc_client::authority::PolicyTerms {
                    key_id: key.key_id.clone(),
                    scheme: key.scheme.clone(),
                    threshold: u16::try_from(key.threshold).context("threshold: too large")?,
                    parties: key.parties.clone(),
                    initiators,
                    approvals_needed: approvals,
                },
                current.version + 1,
            );
            let key = endpoints
                .call(|ch| {
                    let policy = policy.clone();
                    async move {
                        KeysClient::new(ch)
                            .set_policy(pb::SetKeyPolicyRequest {
                                policy: Some(policy),
                            })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            crate::commands::print(output, &key_json(&key), || key_text(&key));
        }
        KeyCommand::Get { key_id } => {
            let key = get_key(endpoints, &key_id).await?;
            crate::commands::print(output, &key_json(&key), || key_text(&key));
        }
        KeyCommand::List(page) => {
            let listed = page
                .collect(|page_size, page_token| async move {
                    let page = endpoints
                        .call(|ch| {
                            let page_token = page_token.clone();
                            async move {
                                KeysClient::new(ch)
                                    .list_keys(pb::ListKeysRequest {
                                        page_size,
                                        page_token,
                                        consistency: 0,
                                    })
                                    .await
                                    .map(|r| r.into_inner())
                            }
                        })
                        .await?;
                    Ok((page.keys, page.next_page_token))
                })
                .await?;
            listed.print(output, "keys", key_json, key_line, "no keys");
        }
    }
    Ok(())
}
