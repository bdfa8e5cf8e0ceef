use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_server::Keys;
use mpc_raft_store::command::{check_id, UpdateKey};
use mpc_raft_store::{CommandResponse, Operation};
use tonic::{Request, Response, Status};

use super::{actor, convert, page_size};
use crate::error::invalid;
use crate::node::Coordinator;
use crate::CoordinatorError;

#[derive(Debug, Clone)]
pub struct KeysService {
    node: Coordinator,
}

impl KeysService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Keys for KeysService {
    async fn get_key(
        &self,
        request: Request<pb::GetKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        let req = request.into_inner();
        check_id("key_id", &req.key_id).map_err(CoordinatorError::from)?;
        self.node
            .read_barrier(convert::consistency(req.consistency)?)
            .await?;
        let key = self
            .node
            .reader()
            .key(&req.key_id)
            .await
            .map_err(CoordinatorError::from)?
            .ok_or(CoordinatorError::NotFound {
                what: "key",
                id: req.key_id,
            })?;
        Ok(Response::new(convert::key(&key)))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        self.node
            .read_barrier(convert::consistency(req.consistency)?)
            .await?;
        let token = super::page_token(req.page_token)?;
        let (keys, next) = self
            .node
            .reader()
            .keys(size, token)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(convert::key).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn update_key(
        &self,
        request: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        let actor = actor(&request)?;
        let req = request.into_inner();
        // Every update gets an id before it leaves this node: a forward to the leader that
        // fails after the leader committed it is retried, and must not apply twice.
        let update_id = if req.request_id.is_empty() {
            format!("auto-{}", uuid::Uuid::new_v4().simple())
        } else {
            req.request_id
        };
        let op = Operation::UpdateKey(UpdateKey {
            key_id: req.key_id,
            description: req.description,
            tags: req.tags.map(|t| t.tags.into_iter().collect()),
            status: convert::key_status_filter(req.status)?,
            update_id,
        });
        self.write_key(actor, op).await
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetKeyPolicyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        let actor = actor(&request)?;
        let req = request.into_inner();
        let policy = mpc_proto::statements::policy_from("policy", req.policy.as_ref())
            .map_err(|(field, reason)| invalid(&field, reason))?;
        self.write_key(actor, Operation::SetKeyPolicy(policy)).await
    }
}

impl KeysService {
    async fn write_key(&self, actor: String, op: Operation) -> Result<Response<pb::Key>, Status> {
        match self.node.write(self.node.command(actor, op)).await? {
            CommandResponse::Key(key) => Ok(Response::new(convert::key(&key))),
            other => Err(CoordinatorError::Server(format!(
                "a key change was answered with {other:?}"
            ))
            .into()),
        }
    }
}
