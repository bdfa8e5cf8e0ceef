//! Storage faults on a real coordinator: a RocksDB store damaged behind the node's back (its
//! CURRENT file truncated, or naming a manifest that is gone) stops it at start with an error
//! naming the file, and the member rejoins once its data is removed, caught up by a snapshot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mpc_proto::v1 as pb;
use mpc_tests::{keygen_request, Cluster};

/// Writes `n` sessions through the leader; their ids.
async fn write(cluster: &Cluster, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let session = cluster
            .sessions(leader)?
            .create_keygen(keygen_request(&format!("{prefix}-{i}")))
            .await?
            .into_inner()
            .session
            .ok_or_else(|| anyhow::anyhow!("no session in the answer"))?;
        ids.push(session.session_id);
    }
    Ok(ids)
}

/// Damages node `victim`'s store with `damage` (which answers the file the error must name),
/// starts the node, and checks that it stops by itself with an error naming the store and
/// that file.
fn start_on_damaged_store(
    cluster: &mut Cluster,
    victim: u64,
    case: &str,
    damage: impl FnOnce(&Path) -> anyhow::Result<PathBuf>,
) -> anyhow::Result<()> {
    cluster.kill(victim)?;
    let data_dir = cluster.nodes[&victim].data_dir.clone();
    let damaged = damage(&data_dir)?;
    let log = cluster.nodes[&victim].log.clone();
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    cluster.restart(victim)?;
    let status = cluster.wait_exit(victim, Duration::from_secs(30))?;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let output = output.get(before..).unwrap_or_default();
    let Some(status) = status else {
        anyhow::bail!("{case}: the node kept running on a damaged store; its log:\n{output}");
    };
    assert!(
        !status.success(),
        "{case}: exit {status} on a damaged store"
    );
    let name = damaged
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        output.contains("RocksDB") && output.contains(&name),
        "{case}: the error should name the store and the file {name}: {output}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_stops_the_node_naming_the_file_and_a_wiped_member_catches_up(
) -> anyhow::Result<()> {
    let settings = [
        ("MPC_RAFT__SNAPSHOT_AFTER_ENTRIES", "40"),
        ("MPC_RAFT__ENTRIES_KEPT_AFTER_SNAPSHOT", "5"),
    ];
    let mut cluster = Cluster::start(3, &settings).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let victim = (1..=3).find(|&id| id != leader).unwrap_or(1);
    let mut ids = write(&cluster, "before", 20).await?;

    // CURRENT (which names the live MANIFEST) cut short, as a failing disk can leave it.
    start_on_damaged_store(&mut cluster, victim, "truncated CURRENT", |dir| {
        let current = dir.join("CURRENT");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&current)?
            .set_len(0)?;
        Ok(current)
    })?;
    // CURRENT overwritten: it names a manifest that is not there.
    start_on_damaged_store(&mut cluster, victim, "corrupted CURRENT", |dir| {
        std::fs::write(dir.join("CURRENT"), "MANIFEST-999999\n")?;
        Ok(dir.join("MANIFEST-999999"))
    })?;

    // The rest of the group carries on, and purges the log the victim would need.
    ids.extend(write(&cluster, "meanwhile", 100).await?);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.status(leader).await?.purged_index.unwrap_or(0) <= 10 {
        anyhow::ensure!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The operator removes the damaged data; the member starts empty, without the initial
    // member list, and is caught up by a snapshot.
    let data_dir = cluster.nodes[&victim].data_dir.clone();
    std::fs::remove_dir_all(&data_dir)?;
    cluster.spawn(victim, false)?;
    let target = cluster.status(leader).await?.last_applied;
    let caught_up = cluster
        .wait_caught_up(victim, target, Duration::from_secs(60))
        .await?;
    assert!(
        caught_up.snapshot_index.is_some(),
        "caught up without a snapshot: {caught_up:?}"
    );
    for id in &ids {
        cluster
            .sessions(victim)?
            .get_session(pb::GetSessionRequest {
                session_id: id.clone(),
                consistency: pb::ReadConsistency::Local as i32,
            })
            .await?;
    }
    // And it is a voter again: the group still commits with the other follower gone.
    let other = (1..=3)
        .find(|&id| id != leader && id != victim)
        .unwrap_or(1);
    cluster.kill(other)?;
    write(&cluster, "after", 3).await?;
    Ok(())
}
