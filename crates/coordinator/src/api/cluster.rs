use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_server::Cluster;
use mpc_raft_store::NodeInfo;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::invalid;
use crate::node::Coordinator;
use crate::peer::MembershipOutcome;

#[derive(Debug, Clone)]
pub struct ClusterService {
    node: Coordinator,
}

impl ClusterService {
    pub fn new(node: Coordinator) -> Self {
        Self { node }
    }
}

fn membership_response(o: MembershipOutcome) -> pb::MembershipResponse {
    pb::MembershipResponse {
        log_index: o.log_index,
        members: o.voters,
        learners: o.learners,
    }
}

fn check_addr(field: &str, addr: &str) -> Result<(), Status> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{addr:?} is not host:port")).into())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(convert::cluster_status(
            &self.node.cluster_view().await,
        )))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = request.into_inner();
        check_addr("grpc_addr", &req.grpc_addr)?;
        check_addr("http_addr", &req.http_addr)?;
        check_addr("raft_addr", &req.raft_addr)?;
        let node = NodeInfo {
            grpc_addr: req.grpc_addr,
            http_addr: req.http_addr,
            raft_addr: req.raft_addr,
        };
        let outcome = self
            .node
            .add_learner(req.node_id, node, req.wait_caught_up)
            .await?;
        Ok(Response::new(membership_response(outcome)))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = request.into_inner();
        let outcome = self
            .node
            .change_membership(req.voters.into_iter().collect(), req.retain)
            .await?;
        Ok(Response::new(membership_response(outcome)))
    }
}
