use anyhow::Context;
use clap::Subcommand;
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::client::Endpoints;
use crate::output::{session_json, session_line, session_status};
use crate::page::Show as _;
use crate::{Cli, Command, Output};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node's role, term and readiness.
    Status,
    /// Add a non-voting node that receives the log.
    AddLearner {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        grpc_addr: String,
        #[arg(long)]
        http_addr: String,
        /// The learner's Raft listener; its certificate must name coordinator NODE_ID.
        #[arg(long)]
        raft_addr: String,
        /// Return only when the learner has caught up.
        #[arg(long)]
        wait: bool,
    },
    /// Set the voting members.
    ChangeMembership {
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// Keep removed voters as learners.
        #[arg(long)]
        retain: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    Get {
        session_id: String,
    },
    List {
        /// pending, running, completed, failed or expired.
        #[arg(long)]
        status: Option<String>,
        /// keygen, sign, presign or refresh.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        key_id: Option<String>,
        #[command(flatten)]
        page: crate::page::PageArgs,
    },
    /// Print the session and each change until it ends.
    Watch {
        session_id: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that talk to no coordinator need no credentials.
    match cli.command {
        Command::Probe(args) => return crate::probe::probe(args, cli.timeout).await,
        Command::Pki(cmd) => return crate::pki::run(cli.output, cmd),
        Command::SigningKey(cmd) => return crate::authority::signing_key(cli.output, cmd),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "mpcctl", &mut std::io::stdout());
            return Ok(());
        }
        _ => {}
    }
    let endpoints = Endpoints::new(
        cli.endpoints.clone(),
        cli.timeout,
        cli.credentials.credentials()?,
    );
    match cli.command {
        Command::Probe(_)
        | Command::Pki(_)
        | Command::SigningKey(_)
        | Command::Completions { .. } => Ok(()),
        Command::Party(cmd) => {
            crate::authority::party(&endpoints, cli.output, &cli.signer, cmd).await
        }
        Command::Approval(cmd) => {
            crate::authority::approval(&endpoints, cli.output, &cli.signer, cmd).await
        }
        Command::Token(cmd) => crate::access::token(&endpoints, cli.output, cmd).await,
        Command::Audit(cmd) => crate::access::audit(&endpoints, cli.output, cmd).await,
        Command::Whoami => crate::access::whoami(&endpoints, cli.output).await,
        Command::Cluster(cmd) => cluster(&endpoints, cli.output, cmd).await,
        Command::Session(cmd) => session(&endpoints, cli.output, cmd).await,
        Command::Keygen(args) => keygen(&endpoints, cli.output, &cli.signer, args).await,
        Command::Sign(args) => {
            crate::signing::sign(&endpoints, cli.output, &cli.signer, args).await
        }
        Command::Key(cmd) => crate::signing::key(&endpoints, cli.output, &cli.signer, cmd).await,
        Command::Dvn(cmd) => crate::dvn::run(&endpoints, cli.output, cmd).await,
    }
}

pub fn print(output: Output, value: &Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text()),
    }
}

async fn status_of(
    endpoints: &Endpoints,
    addr: &str,
    timeout: std::time::Duration,
) -> Option<pb::ClusterStatus> {
    let channel = endpoints
        .credentials()
        .channel(addr, |e| {
            e.connect_timeout(std::time::Duration::from_millis(500).min(timeout))
                .timeout(timeout)
        })
        .ok()?;
    let mut client = ClusterClient::new(channel);
    let mut req = tonic::Request::new(pb::GetStatusRequest {});
    req.set_timeout(timeout);
    client.get_status(req).await.ok().map(|r| r.into_inner())
}

async fn cluster(endpoints: &Endpoints, output: Output, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let per_node = endpoints.timeout().min(std::time::Duration::from_secs(2));
            let first = endpoints
                .call(|ch| async move {
                    ClusterClient::new(ch)
                        .get_status(pb::GetStatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            // Ask every member for its own view: only a node knows whether it is ready.
            let views = futures::future::join_all(first.nodes.iter().map(|n| {
                let addr = n.grpc_addr.clone();
                async move { status_of(endpoints, &addr, per_node).await }
            }))
            .await;
            let term = views
                .iter()
                .flatten()
                .map(|v| v.term)
                .max()
                .unwrap_or(first.term);
            let leader = views
                .iter()
                .flatten()
                .filter(|v| v.term == term)
                .find_map(|v| v.leader)
                .or(first.leader);
            let nodes: Vec<Value> = first
                .nodes
                .iter()
                .zip(&views)
                .map(|(n, view)| {
                    json!({
                        "id": n.id,
                        "addr": n.grpc_addr,
                        "http_addr": n.http_addr,
                        "role": n.role,
                        "state": view.as_ref().map_or("unreachable", |v| v.state.as_str()),
                        "is_leader": leader == Some(n.id),
                        "term": view.as_ref().map(|v| v.term),
                        "last_applied": view.as_ref().and_then(|v| v.last_applied),
                        "ready": view.as_ref().is_some_and(|v| v.ready),
                    })
                })
                .collect();
            let value = json!({
                "leader": leader,
                "term": term,
                "members": first.members,
                "learners": first.learners,
                "nodes": nodes,
            });
            print(output, &value, || {
                let mut out = format!(
                    "leader: {}  term: {term}  voters: {:?}\n",
                    leader.map_or("none".into(), |l| l.to_string()),
                    first.members
                );
                out.push_str("ID  ADDRESS               ROLE     STATE        APPLIED   READY\n");
                for n in &nodes {
                    out.push_str(&format!(
                        "{:<3} {:<21} {:<8} {:<12} {:<9} {}\n",
                        n["id"].as_u64().unwrap_or_default(),
                        n["addr"].as_str().unwrap_or_default(),
                        n["role"].as_str().unwrap_or_default(),
                        n["state"].as_str().unwrap_or_default(),
                        n["last_applied"]
                            .as_u64()
                            .map_or("-".to_owned(), |a| a.to_string()),
                        if n["ready"] == json!(true) {
                            "yes"
                        } else {
                            "no"
                        }
                    ));
                }
                out.trim_end().to_owned()
            });
        }
        ClusterCommand::AddLearner {
            node_id,
            grpc_addr,
            http_addr,
            raft_addr,
            wait,
        } => {
            let req = pb::AddLearnerRequest {
                node_id,
                grpc_addr,
                http_addr,
                raft_addr,
                wait_caught_up: wait,
            };
            let resp = endpoints
                .call(|ch| {
                    let req = req.clone();
                    async move {
                        ClusterClient::new(ch)
                            .add_learner(req)
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            membership_output(output, &resp);
        }
        ClusterCommand::ChangeMembership { voters, retain } => {
            let req = pb::ChangeMembershipRequest { voters, retain };
            let resp = endpoints
                .call(|ch| {
                    let req = req.clone();
                    async move {
                        ClusterClient::new(ch)
                            .change_membership(req)
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            membership_output(output, &resp);
        }
    }
    Ok(())
}

fn membership_output(output: Output, resp: &pb::MembershipResponse) {
    let value = json!({
        "log_index": resp.log_index,
        "members": resp.members,
        "learners": resp.learners,
    });
    print(output, &value, || {
        format!(
            "membership committed at log index {}: voters {:?}, learners {:?}",
            resp.log_index, resp.members, resp.learners
        )
    });
}

async fn session(endpoints: &Endpoints, output: Output, cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::Get { session_id } => {
            let s = endpoints
                .call(|ch| {
                    let session_id = session_id.clone();
                    async move {
                        SessionsClient::new(ch)
                            .get_session(pb::GetSessionRequest {
                                session_id,
                                consistency: 0,
                            })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            print(output, &session_json(&s), || session_line(&s));
        }
        SessionCommand::List {
            status,
            kind,
            key_id,
            page,
        } => {
            let status = match status.as_deref() {
                None => 0,
                Some(name) => parse_enum(name, "status", session_status)?,
            };
            let kind = match kind.as_deref() {
                None => 0,
                Some(name) => parse_enum(name, "kind", crate::output::session_kind)?,
            };
            let key_id = key_id.unwrap_or_default();
            let listed = page
                .collect(|page_size, page_token| {
                    let req = pb::ListSessionsRequest {
                        status,
                        kind,
                        key_id: key_id.clone(),
                        page_size,
                        page_token,
                        consistency: 0,
                    };
                    async move {
                        let resp = endpoints
                            .call(|ch| {
                                let req = req.clone();
                                async move {
                                    SessionsClient::new(ch)
                                        .list_sessions(req)
                                        .await
                                        .map(|r| r.into_inner())
                                }
                            })
                            .await?;
                        Ok((resp.sessions, resp.next_page_token))
                    }
                })
                .await?;
            listed.print(
                output,
                "sessions",
                session_json,
                session_line,
                "no sessions",
            );
        }
        SessionCommand::Watch { session_id } => {
            let mut stream = endpoints
                .call(|ch| {
                    let session_id = session_id.clone();
                    async move {
                        SessionsClient::new(ch)
                            .watch_session(pb::WatchSessionRequest { session_id })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            while let Some(item) = stream.next().await {
                let s = item.context("watch ended")?;
                print(output, &session_json(&s), || session_line(&s));
            }
        }
    }
    Ok(())
}

/// Maps a lower-case name to the protobuf number whose name `name_of` gives.
fn parse_enum(
    name: &str,
    field: &str,
    name_of: impl Fn(i32) -> &'static str,
) -> anyhow::Result<i32> {
    (1..16)
        .find(|raw| name_of(*raw) == name)
        .with_context(|| format!("--{field}: unknown value {name:?}"))
}

/// `--parties 3` means party-1..party-3; otherwise a comma-separated list of ids.
pub fn expand_parties(spec: &str) -> Vec<String> {
    match spec.parse::<u32>() {
        Ok(n) => (1..=n).map(|i| format!("party-{i}")).collect(),
        Err(_) => spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

pub async fn keygen(
    endpoints: &Endpoints,
    output: Output,
    signer: &crate::authority::SignerArgs,
    args: KeygenArgs,
) -> anyhow::Result<()> {
    let mut tags = std::collections::HashMap::new();
    for tag in &args.tag {
        let (k, v) = tag
            .split_once('=')
            .with_context(|| format!("--tag {tag:?}: expected name=value"))?;
        tags.insert(k.to_owned(), v.to_owned());
    }
    let parties = expand_parties(&args.parties);
    let key_id = args
        .key_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Who may ask the new key to sign: the initiators named, or else this caller's own
    // initiator key.
    let initiators = if args.initiators.is_empty() {
        vec![signer.initiator()?.verifying_key().to_bytes()]
    } else {
        args.initiators
            .iter()
            .enumerate()
            .map(|(i, k)| {
                mpc_client::authority::parse_public_key(&format!("--initiators[{}]", i + 1), k)
            })
            .collect::<Result<_, _>>()?
    };
    let policy = mpc_client::authority::sign_policy(
        &signer.admin()?,
        mpc_client::authority::PolicyTerms {
            key_id: key_id.clone(),
            scheme: args.scheme.clone(),
            threshold: u16::try_from(args.threshold).context("--threshold: too large")?,
            parties: parties.clone(),
            initiators,
            approvals_needed: args.approvals,
        },
    );
    let req = pb::CreateKeygenRequest {
        scheme: args.scheme,
        threshold: args.threshold,
        parties,
        key_id,
        policy: Some(policy),
        // A fixed id per invocation makes the client's own retries safe.
        request_id: args
            .request_id
            .unwrap_or_else(|| format!("mpcctl-{}", uuid::Uuid::new_v4())),
        description: args.description,
        tags,
        timeout_seconds: args.timeout_seconds,
    };
    let resp = endpoints
        .call(|ch| {
            let req = req.clone();
            async move {
                SessionsClient::new(ch)
                    .create_keygen(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    let session = resp.session.context("the answer holds no session")?;
    if !args.no_wait {
        if cli_output_is_text(output) {
            eprintln!(
                "{} keygen session {}",
                if resp.created {
                    "created"
                } else {
                    "found existing"
                },
                session.session_id
            );
        }
        return crate::signing::finish_keygen(endpoints, output, session, args.wait).await;
    }
    let mut value = session_json(&session);
    value["created"] = json!(resp.created);
    print(output, &value, || {
        format!(
            "{} keygen session {}\n{}",
            if resp.created {
                "created"
            } else {
                "found existing"
            },
            session.session_id,
            session_line(&session)
        )
    });
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// ecdsa-secp256k1, schnorr-ed25519 or schnorr-bip340.
    #[arg(long, default_value = "ecdsa-secp256k1")]
    scheme: String,
    #[arg(long, default_value_t = 2)]
    threshold: u32,
    /// A count (3 = party-1,party-2,party-3) or a comma-separated list of party ids.
    #[arg(long, default_value = "3")]
    parties: String,
    /// Makes a retried command return the first session.
    #[arg(long)]
    request_id: Option<String>,
    /// The new key's id (default: a random UUID); the admin's policy names it.
    #[arg(long)]
    key_id: Option<String>,
    /// Initiators allowed to approve signings with the key (Ed25519 public keys, hex, comma
    /// separated). Default: the public key of MPC_INITIATOR_KEY.
    #[arg(long, value_delimiter = ',')]
    initiators: Vec<String>,
    /// Distinct initiators' approvals each signing needs.
    #[arg(long, default_value_t = 1)]
    approvals: u16,
    #[arg(long, default_value = "")]
    description: String,
    /// name=value, repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// Seconds until the session expires (0: the cluster's default).
    #[arg(long, default_value_t = 0)]
    timeout_seconds: u32,
    /// Return once the session exists instead of waiting for the key.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the key.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    wait: std::time::Duration,
}

fn cli_output_is_text(output: Output) -> bool {
    output == Output::Text
}
