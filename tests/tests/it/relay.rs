//! The DVN relay job book (`mpc.v1.Relay`) across processes and TLS: who may write what, and
//! how jobs move from discovery to verification whichever coordinator answers.

use std::process::Command;
use std::time::Duration;

use mpc_client::relay::RelayBook;
use mpc_client::{ClientError, Credentials, Endpoints};
use mpc_tests::{binary, issue, Cluster};
use mpc_tls::{pki, Role};
use mpc_types::relay::{
    DiscoveredPacket, JobId, JobState, SubmissionOutcome, Verdict, PACKET_HEADER_LEN,
};
use mpc_types::AccessRole;

fn packet(nonce: u64) -> DiscoveredPacket {
    DiscoveredPacket {
        src_eid: 30101,
        dst_eid: 30212,
        nonce,
        guid: [nonce as u8; 32],
        header: vec![1; PACKET_HEADER_LEN],
        payload_hash: [nonce as u8 ^ 0x55; 32],
        source_tx: [9; 32],
        source_block: 40 + nonce,
    }
}

fn signed(signer: u8) -> Verdict {
    Verdict::Signed {
        signer: [signer; 20],
        signature: vec![signer; 65],
        confirmations: 2,
    }
}

fn endpoints(cluster: &Cluster, credentials: Credentials) -> Endpoints {
    let addrs = cluster.nodes.values().map(|n| n.grpc.to_string()).collect();
    Endpoints::new(addrs, Duration::from_secs(15), credentials)
}

fn relayer(cluster: &Cluster, name: &str) -> anyhow::Result<RelayBook> {
    let leaf = issue(cluster.pki_dir(), Role::Dvn, name, None)?;
    let credentials = Credentials::tls(
        pki::ca_cert_path(cluster.pki_dir()),
        Some((leaf.cert, leaf.key)),
        None,
    )?;
    Ok(RelayBook::new(endpoints(cluster, credentials)))
}

fn denied(e: ClientError) -> bool {
    matches!(e, ClientError::Status(s) if s.code() == tonic::Code::PermissionDenied)
}

#[tokio::test]
async fn relayers_write_jobs_in_their_own_names_and_readers_follow_them() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, &[]).await?;
    let (one, two, three) = (
        relayer(&cluster, "dvn-1")?,
        relayer(&cluster, "dvn-2")?,
        relayer(&cluster, "dvn-3")?,
    );

    // Discovery records packets and the finder's cursor in one write; a second finder
    // changes neither the job nor the first finder's cursor.
    one.discover(30101, 50, &[packet(1), packet(2)], 2_000_000_000)
        .await?;
    two.discover(30101, 45, &[packet(1)], 2_000_000_000).await?;
    assert_eq!(one.cursor("", 30101).await?.block, Some(50));
    assert_eq!(one.cursor("dvn-2", 30101).await?.block, Some(45));
    assert_eq!(three.cursor("", 30101).await?.block, None);
    let (a, b) = (JobId::of(&packet(1)), JobId::of(&packet(2)));
    let job = one.job(a).await?.expect("job recorded");
    assert_eq!(job.discovered_by, "dvn-1");
    assert_eq!(job.state, JobState::Discovered);

    // Two distinct signers make the quorum; the instance recorded is each certificate's name.
    one.record_verdict(a, 0, &signed(0x20), 2, 3).await?;
    let signed_job = two.record_verdict(a, 0, &signed(0x10), 2, 3).await?;
    assert_eq!(signed_job.state, JobState::Signed);
    assert_eq!(
        signed_job.verdicts.keys().collect::<Vec<_>>(),
        ["dvn-1", "dvn-2"]
    );
    let (_, quorum) = signed_job.quorum_signatures(2).expect("a quorum");
    assert!(quorum[0].0 < quorum[1].0, "ascending signer order");

    // Refusals past hope reject the other job, with the reasons.
    one.record_verdict(
        b,
        0,
        &Verdict::Rejected {
            reason: "guid mismatch".into(),
        },
        2,
        3,
    )
    .await?;
    let rejected = three
        .record_verdict(
            b,
            0,
            &Verdict::Rejected {
                reason: "guid mismatch".into(),
            },
            2,
            3,
        )
        .await?;
    assert_eq!(rejected.state, JobState::Rejected);
    assert!(rejected
        .reason
        .unwrap_or_default()
        .contains("dvn-3: guid mismatch"));

    // One lease at a time; only its holder records a submission.
    assert_eq!(two.claim(&[a], 60_000).await?.len(), 1);
    assert!(three.claim(&[a], 60_000).await?.is_empty());
    let not_holder = three.record_submission(&[a], [0xab; 32], 3).await;
    assert!(denied(not_holder.unwrap_err()));
    two.record_submission(&[a], [0xab; 32], 3).await?;
    let verified = one
        .record_outcome(
            a,
            &SubmissionOutcome::Verified {
                tx_hash: Some([0xab; 32]),
            },
        )
        .await?;
    assert_eq!(verified.state, JobState::Verified);

    // A reader sees the book; an operator cannot write to it, nor can a party's certificate.
    let reader = RelayBook::new(endpoints(
        &cluster,
        cluster.client_credentials("auditor", AccessRole::Reader)?,
    ));
    let status = reader.status().await?;
    assert_eq!(status.jobs[&JobState::Verified], 1);
    assert_eq!(status.jobs[&JobState::Rejected], 1);
    assert_eq!(status.cursors.len(), 2);
    let (verified_jobs, _) = reader.jobs(Some(JobState::Verified), 10, None).await?;
    assert_eq!(verified_jobs.len(), 1);
    let operator = RelayBook::new(endpoints(
        &cluster,
        cluster.client_credentials("ops", AccessRole::Operator)?,
    ));
    let refused = operator.discover(30101, 99, &[packet(3)], 1).await;
    assert!(denied(refused.unwrap_err()));
    let party = issue(cluster.pki_dir(), Role::Party, "party-9", None)?;
    let as_party = RelayBook::new(endpoints(
        &cluster,
        Credentials::tls(
            pki::ca_cert_path(cluster.pki_dir()),
            Some((party.cert, party.key)),
            None,
        )?,
    ));
    assert!(denied(as_party.status().await.unwrap_err()));

    // Bad input is refused naming the field.
    let bad = one
        .record_verdict(
            a,
            0,
            &Verdict::Signed {
                signer: [1; 20],
                signature: vec![1; 64],
                confirmations: 1,
            },
            2,
            3,
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("verdict.signature"), "{bad}");

    // mpcctl shows the book with the fields operators script against.
    let pki_dir = cluster.pki_dir();
    let admin = issue(pki_dir, Role::Client, "cli-admin", Some(AccessRole::Admin))?;
    let out = Command::new(binary("mpcctl")?)
        .args(["--endpoints", &cluster.grpc(1), "--output", "json"])
        .arg("--ca-cert")
        .arg(pki::ca_cert_path(pki_dir))
        .arg("--client-cert")
        .arg(&admin.cert)
        .arg("--client-key")
        .arg(&admin.key)
        .args(["dvn", "jobs", "list", "--state", "verified"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let job = &listed["jobs"][0];
    for field in [
        "guid",
        "src_eid",
        "dst_eid",
        "nonce",
        "payload_hash",
        "state",
        "signers",
        "tx_hash",
        "reason",
    ] {
        assert!(job.get(field).is_some(), "{field} missing from {job}");
    }
    assert_eq!(job["state"], "verified");
    assert_eq!(job["tx_hash"], format!("0x{}", hex::encode([0xab; 32])));
    assert_eq!(job["signers"].as_array().map(Vec::len), Some(2));
    Ok(())
}

/// The retention run forgets jobs that ended longer ago than the retention age, once every
/// live relayer's cursor has passed their block (so that no listener records them again), and
/// keeps the others: those still open, and those a lagging relayer has yet to scan past.
#[tokio::test]
async fn ended_jobs_are_forgotten_after_the_retention_age_once_every_cursor_passed_them(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(
        1,
        &[
            ("MPC_SESSIONS__RETENTION_SECS", "2"),
            ("MPC_SESSIONS__RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await?;
    let (one, two) = (relayer(&cluster, "dvn-1")?, relayer(&cluster, "dvn-2")?);
    // Packets in blocks 41, 42 and 200: dvn-1 scanned to 300, dvn-2 lags at 100.
    let mut far = packet(3);
    far.source_block = 200;
    one.discover(
        30101,
        300,
        &[packet(1), packet(2), far.clone()],
        2_000_000_000,
    )
    .await?;
    two.discover(30101, 100, &[], 2_000_000_000).await?;
    let (behind, open, ahead) = (
        JobId::of(&packet(1)),
        JobId::of(&packet(2)),
        JobId::of(&far),
    );
    let refusal = Verdict::Rejected {
        reason: "unknown send library".into(),
    };
    for job in [behind, ahead] {
        one.record_verdict(job, 0, &refusal, 2, 3).await?;
        let ended = two.record_verdict(job, 0, &refusal, 2, 3).await?;
        assert_eq!(ended.state, JobState::Rejected);
    }
    // dvn-2 stays live, scanning slowly towards block 200 without reaching it (a cursor idle
    // for the retention age would be a retired relayer's, holding nothing back).
    let lagging = two.clone();
    let scanning = tokio::spawn(async move {
        for block in 101..190 {
            let _ = lagging.discover(30101, block, &[], 2_000_000_000).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while one.job(behind).await?.is_some() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the ended job was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few retention runs later the others are still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        one.job(open).await?.map(|j| j.state),
        Some(JobState::Discovered)
    );
    assert_eq!(
        one.job(ahead).await?.map(|j| j.state),
        Some(JobState::Rejected),
        "pruned before the lagging relayer's cursor passed its block"
    );
    // Once the lagging relayer scans past it, it goes too.
    scanning.abort();
    two.discover(30101, 250, &[], 2_000_000_000).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while one.job(ahead).await?.is_some() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the ended job was never pruned after every cursor passed it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = one.status().await?;
    let count = |state| status.jobs.get(&state).copied().unwrap_or(0);
    assert_eq!(count(JobState::Rejected), 0);
    assert_eq!(count(JobState::Discovered), 1);
    Ok(())
}
