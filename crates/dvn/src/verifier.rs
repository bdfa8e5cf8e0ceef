//! The verifier: this instance's own judgement of each discovered job, from its own RPC
//! endpoints, and its signature when the packet holds.
//!
//! For a job it has no verdict on, it re-reads the source transaction's receipt (a packet
//! whose transaction left the canonical chain is rejected as reorged out; one merely not
//! confirmed yet waits), finds the packet in it and checks it ([`check_packet`]: emitter,
//! send library, assignment, version, eids, guid), reads the receiver's required
//! confirmations from the target's receive library and waits for them, skips packets the
//! target already shows verified by our DVN, and signs the execute hash of
//! `verify(header, payloadHash, confirmations)` under the job's expiration. Every rejection
//! is recorded with its reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use futures::StreamExt as _;
use mpc_types::relay::{DiscoveredPacket, JobState, RelayJob, SubmissionOutcome, Verdict};
use tokio::sync::watch;

use crate::chain::ChainClient;
use crate::config::{SourceChainConfig, TargetChainConfig};
use crate::error::DvnError;
use crate::execute::{verify_calldata, ExecuteCall};
use crate::jobs::JobStore;
use crate::listener::discovered_packet;
use crate::metrics;
use crate::packet::{self, Packet, PACKET_SENT_TOPIC, PACKET_VERSION};
use crate::retry::Backoff;
use crate::signer::Signer;

/// Jobs read from the book per pass.
const JOBS_PER_PASS: usize = 256;

/// Why a packet must not be verified, for the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// Finds the job's packet among the source receipt's logs and checks it against this
/// relayer's configuration. Answers the decoded packet, or why it must not be verified.
pub fn check_packet(
    source: &SourceChainConfig,
    target_eid: u32,
    our_dvn: Address,
    job: &DiscoveredPacket,
    receipt_logs: &[Log],
) -> Result<Packet, Rejection> {
    let reject = |r: String| Err(Rejection(r));
    let tx = B256::from(job.source_tx);
    let found = receipt_logs.iter().find_map(|log| {
        if log.topics().first() != Some(&PACKET_SENT_TOPIC) {
            return None;
        }
        let sent = packet::decode_packet_sent(log.topics(), &log.data().data).ok()?;
        let seen = discovered_packet(job.src_eid, &sent.encoded_payload, tx, job.source_block);
        (seen.header == job.header && seen.payload_hash == job.payload_hash).then_some((log, sent))
    });
    let Some((log, sent)) = found else {
        return reject(format!(
            "the source transaction {tx} carries no PacketSent with this header and payload"
        ));
    };
    if log.address() != source.endpoint {
        return reject(format!(
            "PacketSent emitted by {}, not the configured EndpointV2 {}",
            log.address(),
            source.endpoint
        ));
    }
    if sent.send_library != source.send_library {
        return reject(format!(
            "unknown send library {} (expected {})",
            sent.send_library, source.send_library
        ));
    }
    let assigned = receipt_logs.iter().any(|l| {
        l.address() == sent.send_library
            && packet::decode_dvn_fee_paid(l.topics(), &l.data().data)
                .is_ok_and(|fee| fee.assigns(our_dvn))
    });
    if !assigned {
        return reject(format!(
            "no DVNFeePaid of the send library assigns our DVN {our_dvn}"
        ));
    }
    let p = Packet::decode(&sent.encoded_payload).map_err(|e| Rejection(e.to_string()))?;
    if p.version != PACKET_VERSION {
        return reject(format!(
            "packet version {}, expected {PACKET_VERSION}",
            p.version
        ));
    }
    if p.src_eid != source.eid {
        return reject(format!(
            "srcEid {} but the packet was emitted on eid {} ({})",
            p.src_eid, source.eid, source.name
        ));
    }
    if p.dst_eid != target_eid {
        return reject(format!(
            "dstEid {}, this DVN verifies for eid {target_eid}",
            p.dst_eid
        ));
    }
    let expected = p.expected_guid();
    if p.guid != expected {
        return reject(format!(
            "guid mismatch: emitted {}, derived from the header {expected}",
            p.guid
        ));
    }
    if p.receiver_address().is_none() {
        return reject(format!("receiver {} is not an EVM address", p.receiver));
    }
    Ok(p)
}

/// What the verifier made of a job this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Signed or rejected: recorded in the book.
    Verdict(Verdict),
    /// Not yet: too few confirmations, or this endpoint is behind.
    Wait(String),
    /// The target already shows our DVN's verification of this payload.
    AlreadyVerified,
}

/// The source chains this instance reads, by endpoint id.
pub type Sources = BTreeMap<u32, (SourceChainConfig, Arc<ChainClient>)>;

/// The verifier of one instance.
#[derive(Debug)]
pub struct Verifier<S, G> {
    store: Arc<S>,
    signer: Arc<G>,
    sources: Sources,
    target: TargetChainConfig,
    target_chain: Arc<ChainClient>,
    instance: String,
    concurrency: usize,
}

impl<S: JobStore, G: Signer> Verifier<S, G> {
    /// A verifier for `instance`, signing with `signer`, working `concurrency` jobs at once.
    pub fn new(
        store: Arc<S>,
        signer: Arc<G>,
        sources: Sources,
        target: TargetChainConfig,
        target_chain: Arc<ChainClient>,
        instance: String,
        concurrency: usize,
    ) -> Self {
        Self {
            store,
            signer,
            sources,
            target,
            target_chain,
            instance,
            concurrency: concurrency.max(1),
        }
    }

    /// Judges one job.
    pub async fn decide(&self, job: &RelayJob) -> Result<Decision, DvnError> {
        let rejected = |reason: String| Ok(Decision::Verdict(Verdict::Rejected { reason }));
        let p = &job.packet;
        let Some((source, chain)) = self.sources.get(&p.src_eid) else {
            return rejected(format!("source eid {} is not configured here", p.src_eid));
        };
        let tx = B256::from(p.source_tx);
        let receipt = chain.receipt(tx).await?;
        let head = chain.head().await?;
        let Some(receipt) = receipt else {
            if head < p.source_block {
                return Ok(Decision::Wait(format!(
                    "{} endpoint at block {head}, the packet is in {}",
                    source.name, p.source_block
                )));
            }
            return rejected(format!(
                "reorged out: transaction {tx} is no longer on {}",
                source.name
            ));
        };
        let (Some(block), Some(block_hash)) = (receipt.block_number, receipt.block_hash) else {
            return Ok(Decision::Wait("the receipt names no block yet".into()));
        };
        match chain.block_hash(block).await? {
            None => {
                return Ok(Decision::Wait(format!(
                    "{} endpoint has no block {block} yet",
                    source.name
                )))
            }
            Some(canonical) if canonical != block_hash => {
                return rejected(format!(
                    "reorged out: block {block} is now {canonical}, the transaction was in {block_hash}"
                ))
            }
            Some(_) => {}
        }
        let packet =
            match check_packet(source, self.target.eid, source.dvn, p, receipt.inner.logs()) {
                Ok(packet) => packet,
                Err(r) => return rejected(r.0),
            };
        // check_packet made sure the receiver is an EVM address.
        let receiver = packet.receiver_address().unwrap_or_default();
        let uln = self
            .target_chain
            .uln_config(self.target.receive_library, receiver, source.eid)
            .await?;
        let required = uln.confirmations.max(source.confirmations);
        let seen = head.saturating_sub(block) + 1;
        if seen < required {
            return Ok(Decision::Wait(format!(
                "{seen} of {required} confirmations"
            )));
        }
        let payload_hash = packet.payload_hash();
        let lookup = self
            .target_chain
            .hash_lookup(
                self.target.receive_library,
                packet.header_hash(),
                payload_hash,
                self.target.dvn,
            )
            .await?;
        if lookup.submitted && lookup.confirmations >= uln.confirmations {
            return Ok(Decision::AlreadyVerified);
        }
        let call = ExecuteCall {
            vid: self.target.vid,
            target: self.target.receive_library,
            call_data: verify_calldata(&packet.header(), payload_hash, uln.confirmations),
            expiration: job.expiration,
        };
        let signature = match self.signer.sign_eip191(call.hash()).await {
            Ok(s) => s,
            Err(e) => {
                ::metrics::counter!(
                    metrics::SIGNING_ERRORS,
                    "chain" => self.target.name.clone(),
                    "error_type" => e.error_type()
                )
                .increment(1);
                return Err(e.into());
            }
        };
        Ok(Decision::Verdict(Verdict::Signed {
            signer: self.signer.address().0 .0,
            signature: signature.to_bytes().to_vec(),
            confirmations: uln.confirmations,
        }))
    }

    /// Decides one job and records a verdict.
    async fn process(&self, job: RelayJob) {
        match self.decide(&job).await {
            Ok(Decision::Verdict(verdict)) => {
                if let Verdict::Rejected { reason } = &verdict {
                    tracing::warn!(job = %job.job_id, nonce = job.packet.nonce, %reason, "packet rejected");
                } else {
                    tracing::info!(job = %job.job_id, nonce = job.packet.nonce, attempt = job.attempt, "packet signed");
                }
                if let Err(e) = self
                    .store
                    .record_verdict(job.job_id, job.attempt, verdict)
                    .await
                {
                    tracing::warn!(job = %job.job_id, error = %e, "verdict not recorded");
                }
            }
            Ok(Decision::Wait(why)) => {
                tracing::debug!(job = %job.job_id, %why, "packet not ready");
            }
            Ok(Decision::AlreadyVerified) => {
                // Verified by an earlier submission whose record was lost, or by hand: the
                // chain is the judge, so the book says so too.
                tracing::info!(job = %job.job_id, "payload already verified on the target; not signing");
                let verified = SubmissionOutcome::Verified { tx_hash: None };
                if let Err(e) = self.store.outcome(job.job_id, verified).await {
                    tracing::warn!(job = %job.job_id, error = %e, "verified outcome not recorded");
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.job_id, error = %e, "verification failed; will retry")
            }
        }
    }

    /// One pass over the discovered jobs this instance has not judged. Answers how many it
    /// looked at.
    pub async fn pass(&self) -> Result<usize, DvnError> {
        let jobs = self.store.jobs(JobState::Discovered, JOBS_PER_PASS).await?;
        ::metrics::gauge!(metrics::JOBS, "state" => JobState::Discovered.as_str())
            .set(jobs.len() as f64);
        let mine: Vec<RelayJob> = jobs
            .into_iter()
            .filter(|j| !j.verdicts.contains_key(&self.instance))
            .collect();
        let n = mine.len();
        futures::stream::iter(mine)
            .for_each_concurrent(self.concurrency, |job| self.process(job))
            .await;
        Ok(n)
    }

    /// Passes every `poll` until `shutdown`, with backoff while the book is unreachable.
    pub async fn run(
        self,
        poll: Duration,
        max_backoff: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(poll, max_backoff);
        while !*shutdown.borrow() {
            let wait = match self.pass().await {
                Ok(_) => {
                    backoff.reset();
                    poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, "verifier pass failed");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::listener::tests::{fee_log, sent_log};
    use crate::packet::tests::{encode, sample_packet};

    fn source() -> SourceChainConfig {
        SourceChainConfig {
            name: "ethereum".into(),
            chain_id: 1,
            eid: 30101,
            rpc_urls: vec!["http://127.0.0.1:1".into()],
            confirmations: 1,
            endpoint: Address::repeat_byte(0xe1),
            send_library: Address::repeat_byte(0xa1),
            dvn: Address::repeat_byte(0xd1),
            start_block: None,
        }
    }

    fn judge(packet: &Packet, lib: Address, emitter: Address) -> Result<Packet, Rejection> {
        let src = source();
        let tx = B256::repeat_byte(7);
        let bytes = encode(packet);
        let logs = vec![
            fee_log(lib, &[src.dvn], tx, 10, 0),
            sent_log(emitter, &bytes, lib, tx, 10, 1),
        ];
        let job = discovered_packet(src.eid, &bytes, tx, 10);
        check_packet(&src, 30212, src.dvn, &job, &logs)
    }

    #[test]
    fn a_well_formed_packet_passes() {
        let src = source();
        let p = sample_packet(1, b"hi");
        assert_eq!(judge(&p, src.send_library, src.endpoint).unwrap(), p);
    }

    #[test]
    fn malformed_packets_are_rejected_with_their_reason() {
        let src = source();
        let reason = |p: &Packet, lib, emitter| judge(p, lib, emitter).unwrap_err().0;

        let mut p = sample_packet(1, b"hi");
        p.version = 2;
        assert_eq!(
            reason(&p, src.send_library, src.endpoint),
            "packet version 2, expected 1"
        );

        let mut p = sample_packet(1, b"hi");
        p.dst_eid = 30110;
        p.guid = p.expected_guid();
        assert!(reason(&p, src.send_library, src.endpoint).starts_with("dstEid 30110"));

        let mut p = sample_packet(1, b"hi");
        p.src_eid = 30102;
        p.guid = p.expected_guid();
        assert!(reason(&p, src.send_library, src.endpoint).starts_with("srcEid 30102"));

        let mut p = sample_packet(1, b"hi");
        p.guid = B256::repeat_byte(5);
        assert!(reason(&p, src.send_library, src.endpoint).starts_with("guid mismatch"));

        let p = sample_packet(1, b"hi");
        let other = Address::repeat_byte(0xa9);
        assert!(reason(&p, other, src.endpoint).starts_with("unknown send library"));
        assert!(reason(&p, src.send_library, other).contains("not the configured EndpointV2"));

        let mut p = sample_packet(1, b"hi");
        p.receiver = B256::repeat_byte(1);
        p.guid = p.expected_guid();
        assert!(reason(&p, src.send_library, src.endpoint).contains("not an EVM address"));
    }

    #[test]
    fn a_packet_missing_from_the_receipt_or_not_assigned_is_rejected() {
        let src = source();
        let tx = B256::repeat_byte(7);
        let bytes = encode(&sample_packet(1, b"hi"));
        let job = discovered_packet(src.eid, &bytes, tx, 10);
        let err = check_packet(&src, 30212, src.dvn, &job, &[]).unwrap_err();
        assert!(err.0.contains("carries no PacketSent"), "{err}");

        let logs = vec![
            fee_log(src.send_library, &[Address::repeat_byte(9)], tx, 10, 0),
            sent_log(src.endpoint, &bytes, src.send_library, tx, 10, 1),
        ];
        let err = check_packet(&src, 30212, src.dvn, &job, &logs).unwrap_err();
        assert!(err.0.contains("assigns our DVN"), "{err}");
    }

    #[test]
    fn a_too_short_packet_is_rejected_naming_the_field() {
        let src = source();
        let tx = B256::repeat_byte(7);
        let bytes = vec![1u8; 90];
        let logs = vec![
            fee_log(src.send_library, &[src.dvn], tx, 10, 0),
            sent_log(src.endpoint, &bytes, src.send_library, tx, 10, 1),
        ];
        let job = discovered_packet(src.eid, &bytes, tx, 10);
        let err = check_packet(&src, 30212, src.dvn, &job, &logs).unwrap_err();
        assert!(err.0.contains("guid"), "{err}");
    }
}
