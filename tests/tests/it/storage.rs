//! Storage faults on a real coordinator: a RocksDB store damaged behind the node's back (its
//! CURRENT file truncated, or naming a manifest that is gone) stops it at start with an error
//! naming the file, and the member rejoins once its data is removed, caught up by a snapshot;
//! a data directory that fills up (a small filesystem of the test's own) makes the node refuse
//! writes and hand over leadership while it keeps reading, and it takes everything again once
//! space returns.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
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

/// Each node's filesystem, and the reserve it keeps free (`limits.min_free_disk_mib`).
const FILESYSTEM_MIB: u64 = 256;
const RESERVE_MIB: &str = "64";
const MIB: u64 = 1 << 20;

/// Whether this machine lets the test mount a filesystem of its own (a user and mount
/// namespace, as `unshare -Urm` makes); says why not when it skips (under CI it fails).
fn own_mounts_or_skip(test: &str) -> bool {
    let works = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI must run it, but `unshare --user --map-root-user --mount` fails here"
        );
        eprintln!("SKIP {test}: this machine allows no user and mount namespaces (unshare -Urm)");
    }
    works
}

/// A launcher that starts the node in its own mount namespace with a tmpfs of
/// `FILESYSTEM_MIB` on its data directory (gone with the process).
fn on_small_filesystem(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(data_dir)?;
    let script =
        format!("mount -t tmpfs -o size={FILESYSTEM_MIB}m mpc-data \"$1\" && shift && exec \"$@\"");
    Ok([
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        &script,
        "sh",
        &data_dir.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec())
}

/// Node `id`'s data directory as its own mount namespace sees it.
fn seen_by(cluster: &Cluster, id: u64) -> anyhow::Result<PathBuf> {
    let pid = cluster.pid(id).context("the node does not run")?;
    let dir = &cluster.nodes[&id].data_dir;
    Ok(PathBuf::from(format!("/proc/{pid}/root")).join(dir.strip_prefix("/")?))
}

fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail * stat.f_frsize)
}

/// Grows a filler file in node `id`'s data directory until `free_mib` MiB are left.
fn fill_to(cluster: &Cluster, id: u64, free_mib: u64) -> anyhow::Result<()> {
    let dir = seen_by(cluster, id)?;
    let mut filler = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("filler"))?;
    let chunk = vec![0u8; MIB as usize];
    while free_bytes(&dir)? > (free_mib + 1) * MIB {
        filler.write_all(&chunk)?;
    }
    filler.sync_all()?;
    Ok(())
}

/// A keygen through node `id`: the gRPC outcome.
async fn create_through(
    cluster: &Cluster,
    id: u64,
    name: &str,
) -> anyhow::Result<Result<String, tonic::Status>> {
    let outcome = cluster
        .sessions(id)?
        .create_keygen(keygen_request(name))
        .await
        .map(|r| {
            r.into_inner()
                .session
                .map(|s| s.session_id)
                .unwrap_or_default()
        });
    Ok(outcome)
}

/// Reads every session in `ids` through node `id`, linearizably.
async fn read_all(cluster: &Cluster, id: u64, ids: &[String]) -> anyhow::Result<()> {
    for session_id in ids {
        cluster
            .sessions(id)?
            .get_session(pb::GetSessionRequest {
                session_id: session_id.clone(),
                consistency: pb::ReadConsistency::Linearizable as i32,
            })
            .await
            .with_context(|| format!("reading {session_id} through node {id}"))?;
    }
    Ok(())
}

/// Waits up to `limit` for `done`, naming `what` and node `id`'s log if it never comes.
async fn wait_for<F, Fut>(
    cluster: &Cluster,
    id: u64,
    what: &str,
    limit: Duration,
    done: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} within {limit:?}; node {id}'s log:\n{}",
            cluster.log_tail(id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_short_of_disk_space_refuses_writes_keeps_reading_and_recovers(
) -> anyhow::Result<()> {
    let test = "a_member_short_of_disk_space_refuses_writes_keeps_reading_and_recovers";
    if !own_mounts_or_skip(test) {
        return Ok(());
    }
    let settings = [("MPC_LIMITS__MIN_FREE_DISK_MIB", RESERVE_MIB)];
    let cluster = Cluster::start_with_nodes(3, &settings, |node| {
        node.launcher = on_small_filesystem(&node.data_dir)?;
        Ok(())
    })
    .await?;
    // The hardest member to lose space: the leader.
    let victim = cluster.leader(Duration::from_secs(10)).await?;
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    let mut ids = write(&cluster, "before", 5).await?;

    // Below the reserve: writes through the victim are refused, naming the setting, and
    // another member leads.
    fill_to(&cluster, victim, 48)?;
    wait_for(
        &cluster,
        victim,
        "writes were not refused",
        Duration::from_secs(10),
        || async {
            Ok(match create_through(&cluster, victim, "refused").await? {
                Ok(_) => false,
                Err(status) => {
                    anyhow::ensure!(
                        status.code() == tonic::Code::ResourceExhausted
                            && status.message().contains("limits.min_free_disk_mib"),
                        "refused for another reason: {status:?}"
                    );
                    true
                }
            })
        },
    )
    .await?;
    wait_for(
        &cluster,
        victim,
        "no other member took over",
        Duration::from_secs(20),
        || async {
            let status = cluster.status(others[0]).await?;
            Ok(status.leader.is_some_and(|l| l != victim))
        },
    )
    .await?;
    let victim_status = cluster.status(victim).await?;
    assert!(
        !victim_status.ready,
        "a node refusing writes answered ready"
    );
    assert_eq!(victim_status.state, "follower", "{victim_status:?}");

    // The others take writes; the victim still follows, so it reads them linearizably.
    ids.extend(write(&cluster, "low", 10).await?);
    read_all(&cluster, victim, &ids).await?;

    // Under half the reserve it takes no entries either, and stays up.
    fill_to(&cluster, victim, 16)?;
    wait_for(
        &cluster,
        victim,
        "entries were not refused",
        Duration::from_secs(10),
        || async {
            Ok(cluster
                .log_tail(victim)
                .contains("refusing replicated entries too"))
        },
    )
    .await?;
    ids.extend(write(&cluster, "critical", 10).await?);
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let committed = cluster.status(leader).await?.last_applied;
    let behind = cluster.status(victim).await?;
    assert!(
        behind.last_applied < committed && behind.state == "follower",
        "the victim should be a follower behind the others: {behind:?}, leader applied {committed:?}"
    );

    // Space returns: the victim catches up, takes writes and serves everything again.
    std::fs::remove_file(seen_by(&cluster, victim)?.join("filler"))?;
    cluster
        .wait_caught_up(victim, committed, Duration::from_secs(30))
        .await?;
    wait_for(
        &cluster,
        victim,
        "writes were not taken again",
        Duration::from_secs(10),
        || async { Ok(create_through(&cluster, victim, "after").await?.is_ok()) },
    )
    .await?;
    read_all(&cluster, victim, &ids).await?;
    cluster
        .wait_ready(&[victim], Duration::from_secs(10))
        .await?;
    Ok(())
}
