//! `mpcctl token`, `mpcctl audit`, `mpcctl whoami`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use mpc_proto::v1 as pb;
use mpc_proto::v1::access_client::AccessClient;
use mpc_types::{token, AccessRole, AuditFields};
use rand::RngCore;
use serde_json::{json, Value};

use crate::client::Endpoints;
use crate::commands::print;
use crate::page::Show as _;
use crate::Output;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: AccessRole,
        /// Signers: key ids and key tags (tag:name=value) it may sign with.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
        /// How long it is valid, e.g. 30d (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// Tokens, revoked ones too, in id order.
    List(crate::page::PageArgs),
    Revoke {
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries oldest first; the hash chain is checked as they are read.
    List {
        /// Only entries about this key.
        #[arg(long)]
        key: Option<String>,
        /// Only entries since this time: RFC 3339 (2026-11-30T12:00:00Z) or an age (1h).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        page: crate::page::PageArgs,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn token_json(t: &pb::Token) -> Value {
    let opt = |v: u64| (v != 0).then_some(v);
    json!({
        "token_id": t.token_id,
        "name": t.name,
        "role": t.role,
        "keys": t.keys,
        "created_by": t.created_by,
        "created_at_ms": t.created_at_ms,
        "expires_at_ms": opt(t.expires_at_ms),
        "revoked_at_ms": opt(t.revoked_at_ms),
    })
}

pub async fn token(endpoints: &Endpoints, output: Output, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            keys,
            expires,
        } => {
            let mut id = [0u8; 8];
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut id);
            rand::rngs::OsRng.fill_bytes(secret.as_mut());
            let token_id = hex::encode(id);
            let token = zeroize::Zeroizing::new(token::format(&token_id, &secret));
            let req = pb::CreateTokenRequest {
                token_id,
                name,
                role: role.as_str().into(),
                keys,
                secret_hash: token::token_hash(&token).to_vec(),
                expires_at_ms: expires.map_or(0, |d| {
                    now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                }),
            };
            let created = endpoints
                .call(|ch| {
                    let req = req.clone();
                    async move { AccessClient::new(ch).create_token(req).await }
                })
                .await?
                .into_inner();
            let mut value = token_json(&created);
            value["token"] = json!(token.as_str());
            print(output, &value, || {
                format!(
                    "token {} ({}, {}) created; it is shown only now:\n{}",
                    created.token_id,
                    created.name,
                    created.role,
                    token.as_str()
                )
            });
        }
        TokenCommand::List(page) => {
            let listed = page
                .collect(|page_size, page_token| async move {
                    let resp = endpoints
                        .call(|ch| {
                            let page_token = page_token.clone();
                            async move {
                                AccessClient::new(ch)
                                    .list_tokens(pb::ListTokensRequest {
                                        page_size,
                                        page_token,
                                    })
                                    .await
                            }
                        })
                        .await?
                        .into_inner();
                    Ok((resp.tokens, resp.next_page_token))
                })
                .await?;
            print(output, &listed.json("tokens", token_json), || {
                let mut out =
                    String::from("TOKEN_ID          NAME                 ROLE      STATE\n");
                for t in &listed.items {
                    let state = if t.revoked_at_ms != 0 {
                        "revoked"
                    } else if t.expires_at_ms != 0 && t.expires_at_ms <= now_ms() {
                        "expired"
                    } else {
                        "active"
                    };
                    out.push_str(&format!(
                        "{:<17} {:<20} {:<9} {state}\n",
                        t.token_id, t.name, t.role
                    ));
                }
                out.trim_end().to_owned()
            });
            listed.print_more(output);
        }
        TokenCommand::Revoke { token_id } => {
            let t = endpoints
                .call(|ch| {
                    let token_id = token_id.clone();
                    async move {
                        AccessClient::new(ch)
                            .revoke_token(pb::RevokeTokenRequest { token_id })
                            .await
                    }
                })
                .await?
                .into_inner();
            print(output, &token_json(&t), || {
                format!("token {} ({}) revoked", t.token_id, t.name)
            });
        }
    }
    Ok(())
}

fn parse_since(since: &str) -> anyhow::Result<u64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(since) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        return Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
    let age = humantime::parse_duration(since)
        .with_context(|| format!("--since {since:?}: neither a time (RFC 3339) nor an age (1h)"))?;
    Ok(now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
}

/// Recomputes an entry's hash from its fields.
fn entry_hash(e: &pb::AuditEntry) -> Option<[u8; 32]> {
    Some(mpc_types::audit_hash(&AuditFields {
        prev_hash: e.prev_hash.as_slice().try_into().ok()?,
        log_index: e.log_index,
        position: e.position,
        at_ms: e.at_ms,
        actor: &e.actor,
        action: &e.action,
        subject: &e.subject,
        key_id: (!e.key_id.is_empty()).then_some(e.key_id.as_str()),
        outcome: &e.outcome,
    }))
}

/// Checks every entry's own hash, and the links between neighbours when nothing was
/// filtered out between them.
fn check_chain(entries: &[pb::AuditEntry], contiguous: bool) -> anyhow::Result<()> {
    let mut previous: Option<&pb::AuditEntry> = None;
    for e in entries {
        let ok = entry_hash(e).is_some_and(|h| h.as_slice() == e.hash.as_slice());
        anyhow::ensure!(
            ok,
            "audit entry {}.{} does not match its hash: the log was altered",
            e.log_index,
            e.position
        );
        if let (true, Some(p)) = (contiguous, previous) {
            anyhow::ensure!(
                e.prev_hash == p.hash,
                "audit entry {}.{} does not follow {}.{}: the chain is broken",
                e.log_index,
                e.position,
                p.log_index,
                p.position
            );
        }
        previous = Some(e);
    }
    Ok(())
}

pub async fn audit(endpoints: &Endpoints, output: Output, cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { key, since, page } = cmd;
    let since_ms = since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
    let contiguous = key.is_none() && since_ms == 0;
    let key_id = key.unwrap_or_default();
    let listed = page
        .collect(|page_size, page_token| {
            let req = pb::ListAuditRequest {
                key_id: key_id.clone(),
                since_ms,
                page_size,
                page_token,
            };
            async move {
                let page = endpoints
                    .call(|ch| {
                        let req = req.clone();
                        async move { AccessClient::new(ch).list_audit(req).await }
                    })
                    .await?
                    .into_inner();
                Ok((page.entries, page.next_page_token))
            }
        })
        .await?;
    let entries = &listed.items;
    check_chain(entries, contiguous)?;
    let mut value = listed.json("entries", |e| {
        json!({
            "log_index": e.log_index,
            "position": e.position,
            "at_ms": e.at_ms,
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "key_id": (!e.key_id.is_empty()).then_some(&e.key_id),
            "outcome": e.outcome,
            "prev_hash": hex::encode(&e.prev_hash),
            "hash": hex::encode(&e.hash),
        })
    });
    value["chain_verified"] = json!(true);
    print(output, &value, || {
        let mut out = String::new();
        for e in entries {
            out.push_str(&format!(
                "{:>8}.{:<2} {:<13} {:<28} {:<22} {:<38} {}\n",
                e.log_index, e.position, e.at_ms, e.actor, e.action, e.subject, e.outcome
            ));
        }
        out.push_str(&format!("{} entries, hash chain verified", entries.len()));
        out
    });
    listed.print_more(output);
    Ok(())
}

pub async fn whoami(endpoints: &Endpoints, output: Output) -> anyhow::Result<()> {
    let me = endpoints
        .call(|ch| async move { AccessClient::new(ch).who_am_i(pb::WhoAmIRequest {}).await })
        .await?
        .into_inner();
    let value = json!({ "principal": me.principal, "role": me.role, "keys": me.keys });
    print(output, &value, || format!("{} ({})", me.principal, me.role));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, prev: [u8; 32]) -> pb::AuditEntry {
        let mut e = pb::AuditEntry {
            log_index: index,
            position: 0,
            at_ms: 5,
            actor: "client:admin".into(),
            action: "key.update".into(),
            subject: "k".into(),
            key_id: "k".into(),
            outcome: "ok".into(),
            prev_hash: prev.to_vec(),
            hash: Vec::new(),
        };
        e.hash = entry_hash(&e).unwrap_or_default().to_vec();
        e
    }

    #[test]
    fn a_rewritten_or_reordered_history_is_caught() {
        let a = entry(1, [0; 32]);
        let b = entry(2, a.hash.clone().try_into().unwrap());
        let c = entry(3, b.hash.clone().try_into().unwrap());
        check_chain(&[a.clone(), b.clone(), c.clone()], true).unwrap();
        let mut forged = b.clone();
        forged.outcome = "rejected".into();
        assert!(check_chain(&[a.clone(), forged, c.clone()], true).is_err());
        // Dropping an entry breaks the links, though each entry is intact.
        assert!(check_chain(&[a.clone(), c.clone()], true).is_err());
        check_chain(&[a, c], false).unwrap();
    }
}
