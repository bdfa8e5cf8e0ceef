//! One coordinator's clock off by ±5 s (libfaketime) while the others keep time, under a
//! stream of writes. A session's deadline is set by the clock of the node that took the
//! request and enforced by the leader's, so no session may expire earlier or later than its
//! timeout by more than the skew, whichever node leads; and no acknowledged write is lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mpc_client::ClientChannel;
use mpc_proto::v1 as pb;
use mpc_proto::v1::sessions_client::SessionsClient;
use mpc_tests::{keygen_request, Cluster};
use tokio::sync::watch;

/// The node whose clock is off.
const SKEWED: u64 = 3;
const SKEW: Duration = Duration::from_secs(5);
const TIMEOUT_SECS: u32 = 8;
/// What the expiry itself may add: the scheduler's tick, the commit, and this test's polling,
/// on two cores shared with other tests. Expiring early has no such excuse.
const SLACK: Duration = Duration::from_millis(3000);

/// Debian's libfaketime (its variant for threaded programs), wherever the architecture puts
/// it.
fn libfaketime() -> Option<PathBuf> {
    const LIB: &str = "faketime/libfaketimeMT.so.1";
    let mut candidates = vec![PathBuf::from("/usr/lib").join(LIB)];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        candidates.extend(dirs.flatten().map(|d| d.path().join(LIB)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The library, or `None` when the test should skip (it says why; under CI it fails).
fn faketime_or_skip(test: &str) -> Option<PathBuf> {
    let found = libfaketime();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI must run it, but libfaketime is missing (apt-get install faketime)"
        );
        eprintln!("SKIP {test}: libfaketime is missing (apt-get install faketime)");
    }
    found
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Settings of each node: the skewed one runs under the fake wall clock. Every node keeps
/// the same election timeouts: a node quicker than the others to campaign keeps deposing
/// leaders it cannot replace (the others still hold the lease of the last one) whenever a
/// loaded machine delays a heartbeat to it, and the cluster may never settle.
fn node_env(lib: &Path, skew_secs: i64) -> impl Fn(u64) -> Vec<(String, String)> + '_ {
    move |id| {
        if id != SKEWED {
            return Vec::new();
        }
        vec![
            ("LD_PRELOAD".to_owned(), lib.display().to_string()),
            ("FAKETIME".to_owned(), format!("{skew_secs:+}s")),
            // Wall clock only: timers and Raft's timeouts run on the real monotonic clock.
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
            ("DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    }
}

/// Creates a keygen for the placeholder parties (who never run, so it can only expire)
/// through `node`, with the test's timeout: the session and the real time it was sent.
async fn create_expiring(
    cluster: &Cluster,
    node: u64,
    name: &str,
) -> anyhow::Result<(pb::Session, i64)> {
    let mut req = keygen_request(name);
    req.timeout_seconds = TIMEOUT_SECS;
    let req = mpc_tests::with_policy(req);
    let sent = now_ms();
    let resp = SessionsClient::new(cluster.channel(node)?)
        .create_keygen(req)
        .await
        .with_context(|| format!("creating {name} through node {node}"))?
        .into_inner();
    Ok((resp.session.context("no session")?, sent))
}

/// Waits until every session has ended; the real time each was first seen expired.
async fn expiry_times(
    cluster: &Cluster,
    sessions: &[(pb::Session, i64)],
) -> anyhow::Result<Vec<i64>> {
    let mut seen = vec![None; sessions.len()];
    let deadline = Instant::now() + Duration::from_secs(u64::from(TIMEOUT_SECS)) + SKEW * 3;
    while seen.iter().any(Option::is_none) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "sessions still open: {:?}",
            sessions
                .iter()
                .zip(&seen)
                .filter(|(_, s)| s.is_none())
                .map(|((s, _), _)| &s.session_id)
                .collect::<Vec<_>>()
        );
        for ((session, _), seen) in sessions.iter().zip(seen.iter_mut()) {
            if seen.is_some() {
                continue;
            }
            let Some(node) = cluster.running().first().copied() else {
                anyhow::bail!("no node runs");
            };
            let current = SessionsClient::new(cluster.channel(node)?)
                .get_session(pb::GetSessionRequest {
                    session_id: session.session_id.clone(),
                    consistency: pb::ReadConsistency::Linearizable as i32,
                })
                .await?
                .into_inner();
            match pb::SessionStatus::try_from(current.status) {
                Ok(pb::SessionStatus::Expired) => *seen = Some(now_ms()),
                Ok(pb::SessionStatus::Pending) => {}
                other => anyhow::bail!("{}: {other:?}, expected it to expire", session.session_id),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(seen.into_iter().flatten().collect())
}

/// Each session expired within the skew (plus the expiry's own slack) of its timeout.
fn check_expiries(
    phase: &str,
    sessions: &[(pb::Session, i64)],
    expired_at: &[i64],
) -> anyhow::Result<()> {
    let timeout = i64::from(TIMEOUT_SECS) * 1000;
    let early = i64::try_from(SKEW.as_millis())?;
    let late = i64::try_from((SKEW + SLACK).as_millis())?;
    for ((session, sent), expired) in sessions.iter().zip(expired_at) {
        let lived = expired - sent;
        anyhow::ensure!(
            lived >= timeout - early && lived <= timeout + late,
            "{phase}: {} lived {lived} ms, its timeout {timeout} ms, the skew {early} ms",
            session.session_id
        );
    }
    Ok(())
}

/// Makes `want` the leader: kills whoever else leads, and brings it back, until `want` wins
/// an election. Each round it is one of two candidates, so that 20 rounds all lost are a
/// one-in-a-million chance.
async fn lead_with(cluster: &mut Cluster, want: u64) -> anyhow::Result<()> {
    for _ in 0..20 {
        let leader = cluster.leader(Duration::from_secs(20)).await?;
        if leader == want {
            return Ok(());
        }
        cluster.kill(leader)?;
        cluster.leader(Duration::from_secs(20)).await?;
        cluster.restart(leader)?;
        cluster
            .wait_ready(&[leader], Duration::from_secs(30))
            .await?;
    }
    anyhow::bail!("node {want} never took the lead")
}

/// Writes a keygen session every 50 ms through each node in turn until stopped (a channel to
/// a stopped node fails until it is back): the ids of those acknowledged.
fn start_load(
    channels: Vec<ClientChannel>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<Vec<String>>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0.. {
            if *stopped.borrow() {
                break;
            }
            let channel = channels[i % channels.len()].clone();
            let mut req = keygen_request(&format!("load-{i}"));
            req.timeout_seconds = 600;
            let req = mpc_tests::with_policy(req);
            let mut client = SessionsClient::new(channel);
            let call = client.create_keygen(req);
            if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), call).await {
                if let Some(s) = resp.into_inner().session {
                    acknowledged.push(s.session_id);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => {}
            }
        }
        acknowledged
    });
    (stop, task)
}

async fn sessions_expire_within_the_skew(skew_secs: i64, test: &str) -> anyhow::Result<()> {
    let Some(lib) = faketime_or_skip(test) else {
        return Ok(());
    };
    let mut cluster = Cluster::start_with_node_env(3, &[], node_env(&lib, skew_secs)).await?;
    let channels = cluster
        .running()
        .into_iter()
        .map(|id| cluster.channel(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (stop, load) = start_load(channels);

    // The fake clock works: what the skewed node stamps is off by the skew.
    let (probe, sent) = create_expiring(&cluster, SKEWED, "probe").await?;
    let answered = now_ms();
    let unskewed = i64::try_from(probe.created_at_ms)? - skew_secs * 1000;
    anyhow::ensure!(
        (sent - 100..=answered + 100).contains(&unskewed),
        "node {SKEWED} stamped {} ms, which less the skew of {skew_secs} s is not within the \
         call ({sent}..{answered} ms)",
        probe.created_at_ms
    );

    // The skewed node leads: sessions taken by every node are expired by its clock.
    lead_with(&mut cluster, SKEWED).await?;
    let mut led_by_skewed = Vec::new();
    for node in cluster.running() {
        led_by_skewed.push(create_expiring(&cluster, node, &format!("skewed-leads-{node}")).await?);
    }
    let expired = expiry_times(&cluster, &led_by_skewed).await?;
    check_expiries("the skewed node leading", &led_by_skewed, &expired)?;

    // Another node leads (the skewed one killed, then back as a follower): the sessions the
    // skewed node takes carry deadlines by its clock.
    let mut led_by_other = false;
    for _ in 0..5 {
        cluster.kill(SKEWED)?;
        cluster.leader(Duration::from_secs(20)).await?;
        cluster.restart(SKEWED)?;
        cluster
            .wait_ready(&[SKEWED], Duration::from_secs(30))
            .await?;
        // Back, it may have won an election that a loaded machine caused: then again.
        if cluster.leader(Duration::from_secs(20)).await? != SKEWED {
            led_by_other = true;
            break;
        }
    }
    anyhow::ensure!(
        led_by_other,
        "the skewed node took the lead back every time"
    );
    let mut led_by_true_clock = Vec::new();
    for node in cluster.running() {
        led_by_true_clock
            .push(create_expiring(&cluster, node, &format!("true-leads-{node}")).await?);
    }
    let expired = expiry_times(&cluster, &led_by_true_clock).await?;
    check_expiries("a true clock leading", &led_by_true_clock, &expired)?;

    // Nothing acknowledged under the skew and the changes of leader is lost.
    let _ = stop.send(true);
    let acknowledged = load.await?;
    anyhow::ensure!(
        acknowledged.len() >= 20,
        "the load had only {} writes acknowledged",
        acknowledged.len()
    );
    for node in cluster.running() {
        let mut client = SessionsClient::new(cluster.channel(node)?);
        for session_id in &acknowledged {
            client
                .get_session(pb::GetSessionRequest {
                    session_id: session_id.clone(),
                    consistency: pb::ReadConsistency::Linearizable as i32,
                })
                .await
                .with_context(|| format!("acknowledged {session_id} lost on node {node}"))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_5s_ahead_moves_no_expiry_by_more_than_5s() -> anyhow::Result<()> {
    sessions_expire_within_the_skew(5, "a_clock_5s_ahead_moves_no_expiry_by_more_than_5s").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_5s_behind_moves_no_expiry_by_more_than_5s() -> anyhow::Result<()> {
    sessions_expire_within_the_skew(-5, "a_clock_5s_behind_moves_no_expiry_by_more_than_5s").await
}
