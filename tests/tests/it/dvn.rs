//! The DVN relayer end to end: packets sent on the devnet's source chain are verified on its
//! target chain by `DVN.execute`, whose signatures the EVM checks with `ecrecover` against
//! the relayers' HSM keys, with their progress in the cluster's Raft state.

use std::time::Duration;

use mpc_client::relay::RelayBook;
use mpc_client::Endpoints;
use mpc_tests::dvn::{skip_without_parts, Devnet, Relayers, SignerKind};
use mpc_tests::Cluster;
use mpc_types::relay::JobState;

fn book(cluster: &Cluster) -> RelayBook {
    let addrs = cluster.nodes.values().map(|n| n.grpc.to_string()).collect();
    RelayBook::new(Endpoints::new(
        addrs,
        Duration::from_secs(15),
        cluster.admin().clone(),
    ))
}

/// Every packet sent reached `PayloadVerified` exactly once.
fn assert_once(seen: &std::collections::BTreeMap<String, usize>, guids: &[String]) {
    for guid in guids {
        assert_eq!(
            seen.get(guid),
            Some(&1),
            "packet {guid} verified {:?} times",
            seen.get(guid)
        );
    }
}

#[tokio::test]
async fn hsm_relayers_verify_packets_and_survive_a_kill_an_outage_and_bad_packets(
) -> anyhow::Result<()> {
    if skip_without_parts("dvn::hsm_relayers_verify_packets") {
        return Ok(());
    }
    let devnet = Devnet::up()?;
    let cluster = Cluster::start(3, &[]).await?;
    let mut relayers =
        Relayers::start(&cluster, &devnet, &[SignerKind::Hsm, SignerKind::Hsm], 2).await?;
    let book = book(&cluster);

    // A first stream: every packet verified on the target, once.
    let first = devnet.send(5)?;
    let seen = devnet
        .wait_verified(&first, Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", relayers.log_tail("dvn-1")))?;
    assert_once(&seen, &first);

    // A relayer killed mid-stream and started again: nothing lost, nothing verified twice.
    let second = devnet.send(5)?;
    relayers.kill("dvn-1")?;
    let third = devnet.send(3)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    relayers.spawn("dvn-1")?;
    relayers
        .wait_ready("dvn-1", Duration::from_secs(30))
        .await?;
    let all: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let seen = devnet.wait_verified(&all, Duration::from_secs(90))?;
    assert_once(&seen, &all);

    // The target's RPC endpoint down for a while: the relayers wait and catch up.
    devnet.ctl(&["offline", "--chain", "target"])?;
    let during = devnet.send(3)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    devnet.ctl(&["online", "--chain", "target"])?;
    let seen = devnet.wait_verified(&during, Duration::from_secs(60))?;
    assert_once(&seen, &during);

    // Malformed packets are never verified, and the book says why.
    for kind in ["version", "eid", "guid", "dst-eid"] {
        devnet.ctl(&["send-malformed", "--kind", kind])?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        devnet.ctl(&["mine", "1", "--chain", "source"])?;
        let (rejected, _) = book.jobs(Some(JobState::Rejected), 100, None).await?;
        if rejected.len() >= 4 || std::time::Instant::now() > deadline {
            break rejected;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        rejected.len(),
        4,
        "rejected jobs: {:?}",
        rejected.iter().map(|j| &j.reason).collect::<Vec<_>>()
    );
    for job in &rejected {
        assert!(
            job.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "a rejection without a reason: {job:?}"
        );
    }
    let verified_after = devnet.verified()?;
    assert_eq!(
        verified_after.len(),
        all.len() + during.len(),
        "only the well-formed packets are verified"
    );

    // The book agrees with the chain.
    let status = book.status().await?;
    assert_eq!(
        status.jobs[&JobState::Verified] as usize,
        all.len() + during.len()
    );
    assert!(
        status.cursors.iter().all(|c| c.block.is_some()),
        "{:?}",
        status.cursors
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_pin_or_a_missing_key_label_stops_the_relayer_at_start_with_a_clear_error(
) -> anyhow::Result<()> {
    if skip_without_parts("dvn::a_wrong_pin_or_a_missing_key_label") {
        return Ok(());
    }
    let devnet = Devnet::up()?;
    let cluster = Cluster::start(1, &[]).await?;
    let relayers = Relayers::start(&cluster, &devnet, &[SignerKind::Hsm], 1).await?;
    let proc = &relayers.relayers["dvn-1"];
    let config = std::fs::read_to_string(&proc.config)?;
    let bin = mpc_tests::binary("mpc-dvn")?;
    let softhsm_conf = relayers.dir().join("dvn-1/softhsm2.conf");

    let wrong_pin = relayers.dir().join("dvn-1/wrong-pin");
    mpc_tests::write_private(&wrong_pin, b"not-the-pin")?;
    let pin_line = config
        .lines()
        .find(|l| l.starts_with("pin_file"))
        .unwrap_or_default()
        .to_owned();
    for (case, edited, expect) in [
        (
            "wrong PIN",
            config.replace(
                &pin_line,
                &format!("pin_file = \"{}\"", wrong_pin.display()),
            ),
            "PIN",
        ),
        (
            "missing key label",
            config.replace("key_label = \"dvn-signer\"", "key_label = \"no-such-key\""),
            "no-such-key",
        ),
    ] {
        let path = relayers.dir().join("dvn-1/broken.toml");
        std::fs::write(&path, edited)?;
        let out = std::process::Command::new(&bin)
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .args(["run", "--config"])
            .arg(&path)
            .output()?;
        assert!(!out.status.success(), "{case}: the relayer started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expect),
            "{case}: the error should name {expect:?}: {stderr}"
        );
        assert!(
            !stderr.contains("not-the-pin") && !stderr.contains("pin-dvn-1"),
            "{case}: a PIN reached the output: {stderr}"
        );
    }
    Ok(())
}
