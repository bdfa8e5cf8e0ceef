//! Snapshots at size: a replicated state of more than 200 MiB (keygen sessions carrying the
//! largest description and tags a request may) is shipped to a new learner in many chunks
//! while the cluster keeps taking writes, and the learner is caught up, by that snapshot,
//! within [`CATCH_UP_LIMIT`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mpc_proto::v1 as pb;
use mpc_proto::v1::cluster_client::ClusterClient;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tests::{keygen_request, large_keygen_request, Cluster};
use tokio::task::JoinSet;

/// The state the learner must receive, at least (the snapshot file's size).
const STATE_BYTES: u64 = 200 << 20;
/// Sessions written: each carries about 12 KiB that compresses poorly.
const SESSIONS: usize = 20_000;
const WRITERS: usize = 16;
/// How long the learner may take from being added to having applied what the leader had
/// then (the stated time of the issue; the figure itself is printed).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);

/// Creates the keygen `request` through `client`, again (as a client of the platform would)
/// while it answers UNAVAILABLE or DEADLINE_EXCEEDED, up to a limit: a leader writing a
/// snapshot of this size to a slow disk may lose an election or confirm a write late, and the
/// request id makes the retry safe.
async fn create(
    client: &mut SessionsClient<mpc_client::ClientChannel>,
    request: pb::CreateKeygenRequest,
) -> anyhow::Result<()> {
    let mut retries = 0;
    loop {
        match client.create_keygen(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) && retries < 50 =>
            {
                retries += 1;
                eprintln!("{}: retrying after {status:?}", request.request_id);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// Writes sessions `range` through node `via` with `WRITERS` clients at once.
async fn write_large(
    cluster: &Cluster,
    via: u64,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let mut client = cluster.sessions(via)?;
        let prefix = prefix.to_owned();
        let mine: Vec<usize> = range.clone().filter(|i| i % WRITERS == w).collect();
        writers.spawn(async move {
            for i in mine {
                create(&mut client, large_keygen_request(&format!("{prefix}-{i}")))
                    .await
                    .with_context(|| format!("session {prefix}-{i}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// The size of the current snapshot in node data directory `dir`, if it has one.
fn snapshot_bytes(dir: &Path) -> anyhow::Result<Option<u64>> {
    let Ok(entries) = std::fs::read_dir(dir.join("snapshots")) else {
        return Ok(None);
    };
    let mut largest = None;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("snap-") {
            largest = largest.max(Some(entry.metadata()?.len()));
        }
    }
    Ok(largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_200_mib_reaches_a_new_learner_by_snapshot_under_load() -> anyhow::Result<()> {
    let settings = [
        // A snapshot after the bulk, and no log left behind it for the learner to replay.
        ("MPC_RAFT__SNAPSHOT_AFTER_ENTRIES", "1000"),
        ("MPC_RAFT__ENTRIES_KEPT_AFTER_SNAPSHOT", "10"),
        // One client writes the whole state: no rate limit.
        ("MPC_LIMITS__REQUESTS_PER_SECOND", "0"),
    ];
    let mut cluster = Cluster::start(3, &settings).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let started = Instant::now();
    write_large(&cluster, leader, "bulk", 0..SESSIONS).await?;
    eprintln!("wrote {SESSIONS} sessions in {:?}", started.elapsed());

    // Small writes until the leader builds a snapshot past the bulk; then its size.
    let bulk_end = cluster.status(leader).await?.last_applied;
    let leader_dir = cluster.nodes[&leader].data_dir.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ticks = 0;
    let (snapshot_index, size) = loop {
        let status = cluster.status(leader).await?;
        if status.snapshot_index >= bulk_end {
            let size = snapshot_bytes(&leader_dir)?.context("a snapshot index but no file")?;
            break (status.snapshot_index, size);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no snapshot past the bulk (index {bulk_end:?}) within 120 s: {status:?}"
        );
        create(
            &mut cluster.sessions(leader)?,
            keygen_request(&format!("tick-{ticks}")),
        )
        .await?;
        ticks += 1;
    };
    eprintln!("snapshot at index {snapshot_index:?}: {} MiB", size >> 20);
    anyhow::ensure!(
        size >= STATE_BYTES,
        "the snapshot holds {size} bytes, less than the {STATE_BYTES} this test is about"
    );

    // A learner joins while writes go on.
    cluster.add_node_slot(4)?;
    cluster.spawn(4, false)?;
    let load = {
        let mut client = cluster.sessions(leader)?;
        tokio::spawn(async move {
            let mut written = 0;
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until && written < 1_000 {
                create(
                    &mut client,
                    large_keygen_request(&format!("during-{written}")),
                )
                .await?;
                written += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(written)
        })
    };
    let added_at = Instant::now();
    let learner = pb::AddLearnerRequest {
        node_id: 4,
        grpc_addr: cluster.grpc(4),
        http_addr: cluster.http(4).to_string(),
        raft_addr: cluster.raft(4).to_string(),
        wait_caught_up: false,
    };
    let mut elections = 0;
    loop {
        let leader = cluster.leader(Duration::from_secs(30)).await?;
        let mut admin = ClusterClient::new(cluster.channel(leader)?);
        match admin.add_learner(learner.clone()).await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::Unavailable && elections < 5 => {
                eprintln!("adding the learner met an election: {status:?}");
                elections += 1;
            }
            Err(status) => {
                return Err(anyhow::Error::from(status).context(format!(
                    "adding the learner; the leader's log:\n{}",
                    cluster.log_tail(leader)
                )))
            }
        }
    }
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let target = cluster.status(leader).await?.last_applied;
    let caught_up = cluster.wait_caught_up(4, target, CATCH_UP_LIMIT).await?;
    let took = added_at.elapsed();
    let written_meanwhile = load.await??;
    eprintln!(
        "learner caught up to {target:?} in {took:?} ({} MiB snapshot; {written_meanwhile} writes meanwhile)",
        size >> 20
    );
    anyhow::ensure!(
        caught_up.snapshot_index >= snapshot_index,
        "the learner caught up without the snapshot: {caught_up:?}"
    );
    anyhow::ensure!(
        written_meanwhile > 0,
        "no write was taken while the learner joined"
    );

    // It holds the state: a session of the bulk and one written while it joined.
    for name in ["bulk-0", &format!("bulk-{}", SESSIONS - 1)] {
        let session_id = cluster
            .sessions(leader)?
            .create_keygen(large_keygen_request(name))
            .await?
            .into_inner()
            .session
            .context("no session in the answer")?
            .session_id;
        cluster
            .sessions(4)?
            .get_session(pb::GetSessionRequest {
                session_id,
                consistency: pb::ReadConsistency::Local as i32,
            })
            .await
            .with_context(|| format!("{name} on the learner"))?;
    }
    Ok(())
}
