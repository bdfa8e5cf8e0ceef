//! `mpc.v1.Access`: API tokens and the audit log.

use mpc_proto::v1 as pb;
use mpc_proto::v1::access_server::Access;
use mpc_raft_store::apply::LogPosition;
use mpc_raft_store::model::{AccessRole, AuditEvent, TokenRecord};
use mpc_raft_store::{AuditFilter, CommandResponse, Operation};
use tonic::{Request, Response, Status};

use super::{actor, page_size};
use crate::auth::{KeyScope, Principal};
use crate::error::invalid;
use crate::node::{now_ms, Consistency, Coordinator};
use crate::CoordinatorError;

#[derive(Debug, Clone)]
pub struct AccessService {
    node: Coordinator,
}

impl AccessService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
    }
}

fn token(t: &TokenRecord) -> pb::Token {
    pb::Token {
        token_id: t.token_id.clone(),
        name: t.name.clone(),
        role: t.role.as_str().into(),
        keys: t.keys.clone(),
        created_by: t.created_by.clone(),
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms.unwrap_or_default(),
        revoked_at_ms: t.revoked_at_ms.unwrap_or_default(),
    }
}

fn audit_entry(e: &AuditEvent) -> pb::AuditEntry {
    pb::AuditEntry {
        log_index: e.log_index,
        position: e.position,
        at_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        subject: e.subject.clone(),
        key_id: e.key_id.clone().unwrap_or_default(),
        outcome: e.outcome.clone(),
        prev_hash: e.prev_hash.to_vec(),
        hash: e.hash.to_vec(),
    }
}

/// Audit page tokens are the last entry's log position, `index.position`.
fn parse_position(token: &str) -> Result<Option<LogPosition>, CoordinatorError> {
    if token.is_empty() {
        return Ok(None);
    }
    let parsed = token
        .split_once('.')
        .and_then(|(i, p)| Some((i.parse().ok()?, p.parse().ok()?)));
    match parsed {
        Some((index, position)) => Ok(Some(LogPosition { index, position })),
        None => Err(invalid(
            "page_token",
            "is not a token returned by ListAudit",
        )),
    }
}

async fn written_token(
    node: &Coordinator,
    cmd: mpc_raft_store::Command,
) -> Result<pb::Token, Status> {
    match node.write(cmd).await? {
        CommandResponse::Token(t) => Ok(token(&t)),
        other => Err(CoordinatorError::Server(format!("a token write answered {other:?}")).into()),
    }
}

#[tonic::async_trait]
impl Access for AccessService {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let actor = actor(&request)?;
        let req = request.into_inner();
        let role: AccessRole = req.role.parse().map_err(|e| invalid("role", e))?;
        let secret_hash = <[u8; 32]>::try_from(req.secret_hash.as_slice())
            .map_err(|_| invalid("secret_hash", "must be the 32-byte SHA-256 of the token"))?;
        let now = now_ms();
        let max_ms = u64::from(self.node.config().auth.max_token_lifetime_days) * 86_400_000;
        let expires_at_ms = match req.expires_at_ms {
            0 => None,
            t if t <= now => return Err(invalid("expires_at_ms", "is in the past").into()),
            t if t - now > max_ms => {
                return Err(invalid(
                    "expires_at_ms",
                    format!(
                        "a token lives at most {} days (auth.max_token_lifetime_days)",
                        self.node.config().auth.max_token_lifetime_days
                    ),
                )
                .into())
            }
            t => Some(t),
        };
        let record = TokenRecord {
            token_id: req.token_id,
            name: req.name,
            role,
            keys: req.keys,
            secret_hash,
            // Stamped by apply from the command.
            created_by: String::new(),
            created_at_ms: 0,
            expires_at_ms,
            revoked_at_ms: None,
        };
        let cmd = self.node.command(actor, Operation::CreateToken(record));
        Ok(Response::new(written_token(&self.node, cmd).await?))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let req = request.into_inner();
        let size = super::page_size(req.page_size)?;
        let after = super::page_token(req.page_token)?;
        self.node.read_barrier(Consistency::Linearizable).await?;
        let (tokens, next) = self
            .node
            .reader()
            .tokens(size, after)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.iter().map(token).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let actor = actor(&request)?;
        let token_id = request.into_inner().token_id;
        let cmd = self
            .node
            .command(actor, Operation::RevokeToken { token_id });
        Ok(Response::new(written_token(&self.node, cmd).await?))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let after = parse_position(&req.page_token)?;
        if !req.key_id.is_empty() {
            mpc_raft_store::command::check_id("key_id", &req.key_id)
                .map_err(CoordinatorError::from)?;
        }
        let filter = AuditFilter {
            key_id: (!req.key_id.is_empty()).then_some(req.key_id),
            since_ms: (req.since_ms > 0).then_some(req.since_ms),
        };
        self.node.read_barrier(Consistency::Linearizable).await?;
        let mut events = self
            .node
            .reader()
            .audit(after, size + 1, filter)
            .await
            .map_err(CoordinatorError::from)?;
        let next_page_token = if events.len() > size {
            events.truncate(size);
            events
                .last()
                .map(|e| format!("{}.{}", e.log_index, e.position))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditResponse {
            entries: events.iter().map(audit_entry).collect(),
            next_page_token,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let principal = Principal::of(&request)?;
        let keys = match &principal {
            Principal::Client {
                scope: KeyScope::Only(keys),
                ..
            } => keys.clone(),
            _ => Vec::new(),
        };
        Ok(Response::new(pb::WhoAmIResponse {
            principal: principal.audit_name(),
            role: principal
                .role()
                .map_or_else(|| "party".to_owned(), |r| r.as_str().to_owned()),
            keys,
        }))
    }
}
