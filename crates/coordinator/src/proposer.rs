//! Batches the leader's writes into Raft entries.
//!
//! Commands that arrive while earlier proposals are in flight wait in a queue; when a slot
//! frees up, everything queued (up to [`MAX_BATCH`]) becomes one [`Proposal`], so one log
//! entry, one fsync per node and one replication message carry them all. A lone client pays
//! one channel hop for this; a busy cluster writes many commands per entry.

use std::sync::Arc;
use std::time::Duration;

use mpc_raft_store::{Command, CommandResponse, NodeId, NodeInfo, Proposal, Raft};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::peer::ForwardError;

/// Commands per log entry at most.
pub const MAX_BATCH: usize = 256;
/// Entries proposed and not yet answered at most; beyond that, commands queue and batch.
pub const MAX_IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<CommandResponse, ForwardError>>;

#[derive(Debug, Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the batching task; `timeout` bounds how long a proposal may wait for a quorum.
    pub fn start(raft: Raft, timeout: Duration) -> Self {
        let (queue, rx) = mpsc::channel(MAX_BATCH * MAX_IN_FLIGHT * 4);
        tokio::spawn(run(raft, rx, timeout));
        Self { queue }
    }

    /// Proposes `cmd` (this node must lead) and returns what applying it answered.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, ForwardError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((cmd, reply))
            .await
            .map_err(|_| ForwardError::Failed("the proposer has stopped".into()))?;
        answer
            .await
            .map_err(|_| ForwardError::Failed("the proposer dropped the request".into()))?
    }
}

async fn run(raft: Raft, mut queue: mpsc::Receiver<(Command, Reply)>, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        metrics::histogram!("mpc_raft_proposal_batch_commands").record(batch.len() as f64);
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
            let outcome =
                tokio::time::timeout(timeout, raft.client_write(Proposal { commands })).await;
            match outcome {
                Ok(Ok(written)) => {
                    let mut responses = written.data.responses.into_iter();
                    for reply in replies {
                        let answer = responses.next().ok_or_else(|| {
                            ForwardError::Failed("the state machine answered fewer commands".into())
                        });
                        let _ = reply.send(answer);
                    }
                }
                Ok(Err(e)) => {
                    let error = client_write_error(e);
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                // A leader cut off from its quorum would wait forever: give up, and say the
                // write may still commit (a retry with the same request_id is safe).
                Err(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(ForwardError::Unconfirmed));
                    }
                }
            }
        });
    }
}

pub fn client_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ForwardError::Membership(c.to_string())
        }
        RaftError::Fatal(f) => ForwardError::Failed(f.to_string()),
    }
}
