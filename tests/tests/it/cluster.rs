//! Replication, failover, restart and catch-up of a real coordinator group.

use std::time::Duration;

use mpc_proto::v1 as pb;
use mpc_tests::{keygen_request, Cluster};

const LOCAL: i32 = pb::ReadConsistency::Local as i32;

async fn create(cluster: &Cluster, via: u64, request_id: &str) -> anyhow::Result<pb::Session> {
    let resp = cluster
        .sessions(via)?
        .create_keygen(keygen_request(request_id))
        .await?
        .into_inner();
    resp.session
        .ok_or_else(|| anyhow::anyhow!("no session in the answer"))
}

async fn get(
    cluster: &Cluster,
    via: u64,
    id: &str,
    consistency: i32,
) -> Result<pb::Session, tonic::Status> {
    cluster
        .sessions(via)
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .get_session(pb::GetSessionRequest {
            session_id: id.into(),
            consistency,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn three_nodes_replicate_a_write_made_through_a_follower() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let follower = (1..=3).find(|&id| id != leader).unwrap_or(1);

    let session = create(&cluster, follower, "via-follower").await?;
    assert_eq!(session.status, pb::SessionStatus::Pending as i32);
    assert_eq!(session.parties, ["p1", "p2", "p3"]);

    // A linearizable read on every node sees the write at once.
    for id in 1..=3 {
        let read = get(&cluster, id, &session.session_id, 0).await?;
        assert_eq!(read, session, "node {id}");
    }
    Ok(())
}

#[tokio::test]
async fn leader_killed_new_leader_elected_no_acknowledged_write_lost() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(5, &[]).await?;
    let old_leader = cluster.leader(Duration::from_secs(10)).await?;
    let old_term = cluster.status(old_leader).await?.term;

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let via = 1 + (i % 5);
        acknowledged.push(
            create(&cluster, via, &format!("before-{i}"))
                .await?
                .session_id,
        );
    }

    cluster.kill(old_leader)?;
    let survivors: Vec<u64> = (1..=5).filter(|&id| id != old_leader).collect();
    // Writes keep being accepted by the survivors while and after the election runs.
    for i in 0..20 {
        let via = survivors[i % survivors.len()];
        acknowledged.push(
            create(&cluster, via, &format!("after-{i}"))
                .await?
                .session_id,
        );
    }
    let new_leader = cluster.leader(Duration::from_secs(10)).await?;
    assert_ne!(new_leader, old_leader);
    assert!(cluster.status(new_leader).await?.term > old_term);

    for id in &acknowledged {
        for &via in &survivors {
            get(&cluster, via, id, 0).await?;
        }
    }

    // The old leader comes back on its data, follows, and catches up.
    cluster.restart(old_leader)?;
    cluster
        .wait_ready(&[old_leader], Duration::from_secs(20))
        .await?;
    let leader_applied = cluster.status(new_leader).await?.last_applied;
    cluster
        .wait_caught_up(old_leader, leader_applied, Duration::from_secs(10))
        .await?;
    for id in &acknowledged {
        get(&cluster, old_leader, id, LOCAL).await?;
    }
    let status = cluster.status(old_leader).await?;
    assert_eq!(status.state, "follower");
    assert_eq!(status.leader, Some(new_leader));
    Ok(())
}

#[tokio::test]
async fn whole_cluster_restarts_with_its_data() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, &[]).await?;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            create(&cluster, 1, &format!("persist-{i}"))
                .await?
                .session_id,
        );
    }
    for id in 1..=3 {
        cluster.kill(id)?;
    }
    for id in 1..=3 {
        cluster.restart(id)?;
    }
    cluster
        .wait_ready(&[1, 2, 3], Duration::from_secs(30))
        .await?;
    for id in &ids {
        get(&cluster, 2, id, 0).await?;
    }
    // The retried request still finds its session after the restart.
    let again = create(&cluster, 3, "persist-0").await?;
    assert_eq!(again.session_id, ids[0]);
    Ok(())
}

#[tokio::test]
async fn a_lagging_node_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    let settings = [
        ("MPC_RAFT__SNAPSHOT_AFTER_ENTRIES", "40"),
        ("MPC_RAFT__ENTRIES_KEPT_AFTER_SNAPSHOT", "5"),
    ];
    let mut cluster = Cluster::start(3, &settings).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let lagging = (1..=3).find(|&id| id != leader).unwrap_or(1);
    cluster.kill(lagging)?;

    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(
            create(&cluster, leader, &format!("lag-{i}"))
                .await?
                .session_id,
        );
    }
    // The leader has purged the log the lagging node would need.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = cluster.status(leader).await?;
        if s.purged_index.unwrap_or(0) > 10 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "leader never purged: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.restart(lagging)?;
    cluster
        .wait_ready(&[lagging], Duration::from_secs(20))
        .await?;
    let target = cluster.status(leader).await?.last_applied;
    let caught_up = cluster
        .wait_caught_up(lagging, target, Duration::from_secs(20))
        .await?;
    assert!(
        caught_up.snapshot_index.is_some(),
        "caught up without a snapshot: {caught_up:?}"
    );
    for id in &ids {
        get(&cluster, lagging, id, LOCAL).await?;
    }
    Ok(())
}
