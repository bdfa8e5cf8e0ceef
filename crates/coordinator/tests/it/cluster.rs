//! Election, forwarding, linearizable reads and failover of an in-process group.

use std::time::Duration;

use mpc_coordinator::test_utils::{
    http_get, keygen_request, placeholder_identity, InProcessCluster,
};
use mpc_proto::v1 as pb;

const LINEARIZABLE: i32 = pb::ReadConsistency::Linearizable as i32;

/// The placeholder parties p1..p3 that `keygen_request` names: enrolled, never running, so
/// the sessions created stay pending.
async fn enroll_placeholders(cluster: &InProcessCluster) -> anyhow::Result<()> {
    for (i, party) in ["p1", "p2", "p3"].into_iter().enumerate() {
        let seed = 0x70 + u8::try_from(i)?;
        cluster.enroll(party, &placeholder_identity(seed)).await?;
    }
    Ok(())
}

async fn create(
    cluster: &InProcessCluster,
    via: u64,
    request_id: &str,
) -> anyhow::Result<pb::Session> {
    cluster
        .sessions(via)?
        .create_keygen(keygen_request(request_id))
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("no session in the answer"))
}

async fn read(
    cluster: &InProcessCluster,
    via: u64,
    session_id: &str,
) -> anyhow::Result<pb::Session> {
    Ok(cluster
        .sessions(via)?
        .get_session(pb::GetSessionRequest {
            session_id: session_id.into(),
            consistency: LINEARIZABLE,
        })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_a_write_made_through_a_follower(
) -> anyhow::Result<()> {
    let cluster = InProcessCluster::start(3).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;

    // Each node serves the listeners bound for it, and the group knows them by those
    // addresses.
    let status = cluster.status(leader).await?;
    assert_eq!(status.members, [1, 2, 3]);
    for node in &status.nodes {
        assert_eq!(node.grpc_addr, cluster.grpc(node.id)?, "node {}", node.id);
        assert_eq!(node.http_addr, cluster.http(node.id)?.to_string());
    }
    for id in 1..=3 {
        let (code, _) = http_get(cluster.http(id)?, "/health").await?;
        assert_eq!(code, 200, "node {id}'s /health");
    }

    enroll_placeholders(&cluster).await?;
    let follower = (1..=3).find(|&id| id != leader).unwrap_or(1);
    let session = create(&cluster, follower, "via-follower").await?;
    assert_eq!(session.status, pb::SessionStatus::Pending as i32);
    assert_eq!(session.parties, ["p1", "p2", "p3"]);

    // A linearizable read on every node, the other follower's included, sees the write at
    // once: no node answers from a state older than the commit.
    for id in 1..=3 {
        let seen = read(&cluster, id, &session.session_id).await?;
        assert_eq!(seen, session, "node {id}");
    }
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_and_the_survivors_take_writes() -> anyhow::Result<()> {
    let mut cluster = InProcessCluster::start(3).await?;
    enroll_placeholders(&cluster).await?;
    let old_leader = cluster.leader(Duration::from_secs(10)).await?;
    let old_term = cluster.status(old_leader).await?.term;
    let before = create(&cluster, old_leader, "before").await?;

    cluster.stop(old_leader).await?;
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != old_leader).collect();
    assert_eq!(cluster.running(), survivors);
    let new_leader = cluster.leader(Duration::from_secs(10)).await?;
    assert_ne!(new_leader, old_leader);
    assert!(cluster.status(new_leader).await?.term > old_term);

    // Both survivors take writes: the new leader directly, the other by forwarding.
    let mut written = vec![before];
    for &via in &survivors {
        written.push(create(&cluster, via, &format!("after-via-{via}")).await?);
    }
    for session in &written {
        for &via in &survivors {
            // The leader's scheduler may have moved it on since: the same session is enough.
            let seen = read(&cluster, via, &session.session_id).await?;
            assert_eq!(seen.key_id, session.key_id, "node {via}");
            assert_eq!(seen.parties, session.parties, "node {via}");
        }
    }
    cluster.shutdown().await
}

/// A leader under a steady stream of writes always has a commit or two it has not applied
/// yet; it must still answer ready (a probe that caught one used to fail the compose cluster's
/// check after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_taking_writes_stays_ready() -> anyhow::Result<()> {
    let cluster = std::sync::Arc::new(InProcessCluster::start(3).await?);
    enroll_placeholders(&cluster).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (cluster, stop) = (cluster.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    create(&cluster, leader, &format!("load-{w}-{n}")).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();

    let mut unready = Vec::new();
    for probe in 0..60 {
        let before = cluster.status(leader).await?;
        let (code, body) = http_get(cluster.http(leader)?, "/ready").await?;
        let after = cluster.status(leader).await?;
        // A lost lease or an election on a loaded machine is a fair "not ready".
        let same_reign = before.leader == Some(leader)
            && after.leader == Some(leader)
            && before.term == after.term;
        if code != 200 && same_reign {
            unready.push(format!("probe {probe}: {body}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await??;
    }
    assert!(written > 0, "no write went through");
    assert!(
        unready.is_empty(),
        "the leader answered not ready: {unready:?}"
    );
    std::sync::Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("the cluster is still shared"))?
        .shutdown()
        .await
}
