//! The DVN relayer end to end: packets sent on the devnet's source chain are verified on its
//! target chain by `DVN.execute`, whose signatures the EVM checks with `ecrecover` against
//! the relayers' HSM keys, with their progress in the cluster's Raft state.

use std::time::Duration;

use mpc_client::relay::RelayBook;
use mpc_client::Endpoints;
use mpc_tests::dvn::{skip_without_parts, Devnet, Relayers, SignerKind};
use mpc_tests::{initiator_signing_key, write_private, Cluster, Parties};
use mpc_types::relay::{JobState, RelayJob};
use mpc_types::AccessRole;

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
    for kind in ["version", "eid", "guid", "dst-eid", "library"] {
        devnet.ctl(&["send-malformed", "--kind", kind])?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        devnet.ctl(&["mine", "1", "--chain", "source"])?;
        let (rejected, _) = book.jobs(Some(JobState::Rejected), 100, None).await?;
        if rejected.len() >= 5 || std::time::Instant::now() > deadline {
            break rejected;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        rejected.len(),
        5,
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

/// The job of the packet with this guid, if the book holds it.
async fn job_of(book: &RelayBook, guid: &str) -> anyhow::Result<Option<RelayJob>> {
    let (jobs, _) = book.jobs(None, 1000, None).await?;
    Ok(jobs
        .into_iter()
        .find(|j| format!("0x{}", hex::encode(j.packet.guid)) == guid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hsm_and_platform_signers_verify_together_through_a_coordinator_leader_kill(
) -> anyhow::Result<()> {
    if skip_without_parts("dvn::hsm_and_platform_signers_verify_together") {
        return Ok(());
    }
    let devnet = Devnet::up()?;
    let mut cluster = Cluster::start(3, &[]).await?;
    let _parties = Parties::start(&cluster, 3).await?;
    let key = cluster
        .generate_key(1, "ecdsa-secp256k1", "dvn-3", Duration::from_secs(240))
        .await?;

    // The platform relayer signs with a token of its own, scoped to its key, and approves
    // each request as the key's initiator.
    let secrets = tempfile::tempdir()?;
    let token = cluster
        .make_token("dvn-platform", AccessRole::Signer, &[&key.key_id])
        .await?;
    let token_file = secrets.path().join("signer.token");
    write_private(&token_file, token.as_bytes())?;
    let initiator_key_file = secrets.path().join("initiator.key");
    write_private(
        &initiator_key_file,
        hex::encode(initiator_signing_key().to_bytes()).as_bytes(),
    )?;
    let platform = SignerKind::Platform {
        key_id: key.key_id.clone(),
        token_file,
        initiator_key_file,
    };
    // Two of two, one HSM and the platform: no packet verifies unless both kinds signed it,
    // and the EVM checks each signature with ecrecover.
    let relayers = Relayers::start(&cluster, &devnet, &[SignerKind::Hsm, platform], 2).await?;
    let logs = |e: anyhow::Error| {
        anyhow::anyhow!(
            "{e}\n--- dvn-1\n{}\n--- dvn-2\n{}",
            relayers.log_tail("dvn-1"),
            relayers.log_tail("dvn-2")
        )
    };
    let first = devnet.send(4)?;
    let seen = devnet
        .wait_verified(&first, Duration::from_secs(120))
        .map_err(logs)?;
    assert_once(&seen, &first);

    // The coordinator leader killed while packets flow: the job book and the platform's
    // signings carry on under the next leader; nothing lost, nothing verified twice.
    let second = devnet.send(3)?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    cluster.kill(leader)?;
    let third = devnet.send(3)?;
    let all: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let seen = devnet
        .wait_verified(&all, Duration::from_secs(180))
        .map_err(logs)?;
    assert_once(&seen, &all);
    assert_eq!(seen.len(), all.len(), "only the packets sent were verified");
    Ok(())
}

#[tokio::test]
async fn a_packet_reorged_out_before_its_confirmations_is_never_verified() -> anyhow::Result<()> {
    if skip_without_parts("dvn::a_packet_reorged_out") {
        return Ok(());
    }
    // Six confirmations on the receive side; the relayer's own floor is one, so it learns of
    // the packet long before it may sign it.
    let devnet = Devnet::up_with(&["--confirmations", "6"])?;
    let cluster = Cluster::start(3, &[]).await?;
    let relayers = Relayers::start(&cluster, &devnet, &[SignerKind::Hsm], 1).await?;
    let book = book(&cluster);

    let fork = devnet.snapshot("source")?;
    let doomed = devnet.send(1)?.remove(0);
    devnet.mine("source", 2)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let doomed_payload = loop {
        if let Some(job) = job_of(&book, &doomed).await? {
            assert_eq!(
                job.state,
                JobState::Discovered,
                "signed before its confirmations: {job:?}"
            );
            break format!("0x{}", hex::encode(job.packet.payload_hash));
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "packet {doomed} never reached the book\n{}",
            relayers.log_tail("dvn-1")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The chain goes back to before the packet and grows past it without it.
    devnet.revert("source", &fork)?;
    devnet.mine("source", 8)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = job_of(&book, &doomed).await?;
        if let Some(job) = job.filter(|j| j.state == JobState::Rejected) {
            break job;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the reorged packet was not rejected: {:?}\n{}",
            job_of(&book, &doomed).await?,
            relayers.log_tail("dvn-1")
        );
        devnet.mine("source", 1)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        job.reason
            .as_deref()
            .is_some_and(|r| r.contains("reorged out")),
        "{:?}",
        job.reason
    );

    // The new chain's packets go through; the reorged one never does. The sender's nonce went
    // back with the chain, so its next packet has the reorged one's guid (the header is the
    // same) with another message: only the payload hash tells them apart.
    let after = devnet.send(1)?;
    assert_eq!(
        after,
        std::slice::from_ref(&doomed),
        "the nonce was not reverted with the chain"
    );
    let seen = devnet.wait_verified(&after, Duration::from_secs(90))?;
    assert_once(&seen, &after);
    let payloads: Vec<String> = devnet
        .ctl(&["verified", "all"])?
        .iter()
        .filter_map(|v| v["payload_hash"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !payloads.contains(&doomed_payload),
        "the reorged payload {doomed_payload} was verified: {payloads:?}"
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
