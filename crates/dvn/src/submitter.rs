//! The submitter: sends the signed jobs to the DVN contract and records how they ended.
//!
//! It claims jobs through the book (a lease, so one instance submits each; another takes
//! over once the lease runs out), batches the ready ones into one `DVN.execute`, and records
//! the transaction before broadcasting it: its hash is known once it is signed, so a crash
//! at any point leaves a record to follow. A job with a recorded transaction is never sent
//! again before that transaction is seen mined or gone, and never once the target shows the
//! payload verified by our DVN.
//!
//! `execute` does not revert when one item fails, so success is the receive library's
//! `PayloadVerified` for the payload in the receipt, or `hashLookup` showing it, never the
//! receipt status. A job that did not verify is retried under a fresh expiration (the
//! verifiers sign it again) up to a bounded number of attempts, then failed with its reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256};
use alloy::rpc::types::TransactionReceipt;
use mpc_types::relay::{JobState, RelayJob, SubmissionOutcome};
use tokio::sync::watch;

use crate::chain::{ChainClient, GasPolicy};
use crate::config::{SubmitterConfig, TargetChainConfig};
use crate::error::{unix_now_ms, unix_now_secs, DvnError};
use crate::execute::{execute_calldata, quorum_signatures, verify_calldata, ExecuteCall};
use crate::jobs::JobStore;
use crate::metrics;
use crate::packet::{self, PAYLOAD_VERIFIED_TOPIC};
use crate::retry::Backoff;
use crate::signer::{recover_address, Signer};

/// Seconds of validity a signature must have left to be worth sending.
const EXPIRATION_MARGIN_SECS: u64 = 30;

/// The execute call a job's quorum signed, with its signatures in contract order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCall {
    /// The call.
    pub call: ExecuteCall,
    /// `quorum` × 65 bytes.
    pub signatures: Bytes,
}

/// Why a signed job cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSendable {
    /// Its signatures expire too soon: sign again.
    Expired,
    /// It holds no quorum of valid signatures over one call.
    NoQuorum(String),
}

/// The execute call of `job`'s quorum, checked: each signature must recover to its signer
/// over the call's digest (a bad one would make the item fail on chain), and the call must
/// still be valid `EXPIRATION_MARGIN_SECS` from `now_secs`.
pub fn signed_call(
    job: &RelayJob,
    target: &TargetChainConfig,
    quorum: usize,
    now_secs: u64,
) -> Result<SignedCall, NotSendable> {
    if job.expiration <= now_secs + EXPIRATION_MARGIN_SECS {
        return Err(NotSendable::Expired);
    }
    let Some((confirmations, sigs)) = job.quorum_signatures(quorum) else {
        return Err(NotSendable::NoQuorum(format!(
            "fewer than {quorum} signers agree on one call"
        )));
    };
    let call = ExecuteCall {
        vid: target.vid,
        target: target.receive_library,
        call_data: verify_calldata(
            &job.packet.header,
            B256::from(job.packet.payload_hash),
            confirmations,
        ),
        expiration: job.expiration,
    };
    let digest = call.signing_digest();
    let mut checked = Vec::with_capacity(sigs.len());
    for (signer, sig) in &sigs {
        let signer = Address::from(*signer);
        match recover_address(digest, sig) {
            Ok(a) if a == signer => checked.push((signer, sig.as_slice())),
            Ok(a) => {
                return Err(NotSendable::NoQuorum(format!(
                    "the signature recorded for {signer} recovers to {a}"
                )))
            }
            Err(e) => return Err(NotSendable::NoQuorum(format!("signature of {signer}: {e}"))),
        }
    }
    let signatures =
        quorum_signatures(&checked, quorum).map_err(|e| NotSendable::NoQuorum(e.to_string()))?;
    Ok(SignedCall { call, signatures })
}

/// The (header, payload hash) pairs a receipt shows verified by `dvn` through
/// `receive_library`.
pub fn verified_in_receipt(
    receipt: &TransactionReceipt,
    receive_library: Address,
    dvn: Address,
) -> HashSet<(Vec<u8>, B256)> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| {
            l.address() == receive_library && l.topics().first() == Some(&PAYLOAD_VERIFIED_TOPIC)
        })
        .filter_map(|l| packet::decode_payload_verified(l.topics(), &l.data().data).ok())
        .filter(|v| v.dvn == dvn)
        .map(|v| (v.header, v.proof_hash))
        .collect()
}

/// The submitter of one instance.
#[derive(Debug)]
pub struct Submitter<S, K> {
    store: Arc<S>,
    account: Arc<K>,
    target: TargetChainConfig,
    chain: Arc<ChainClient>,
    instance: String,
    quorum: usize,
    settings: SubmitterConfig,
    lease_ms: u64,
    expiration_ttl_secs: u64,
    poll: Duration,
    /// The next nonce this process will use, so that a lagging endpoint's pending count
    /// does not make it reuse one.
    next_nonce: Option<u64>,
}

impl<S: JobStore, K: Signer> Submitter<S, K> {
    /// A submitter sending from `account` (which needs the DVN contract's admin role).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<S>,
        account: Arc<K>,
        target: TargetChainConfig,
        chain: Arc<ChainClient>,
        instance: String,
        quorum: usize,
        settings: SubmitterConfig,
        lease_ms: u64,
        expiration_ttl_secs: u64,
        poll: Duration,
    ) -> Self {
        Self {
            store,
            account,
            target,
            chain,
            instance,
            quorum,
            settings,
            lease_ms,
            expiration_ttl_secs,
            poll,
            next_nonce: None,
        }
    }

    /// Records `outcome` for `job`, with its metrics.
    async fn finish(&self, job: &RelayJob, outcome: SubmissionOutcome) -> Result<(), DvnError> {
        match &outcome {
            SubmissionOutcome::Verified { tx_hash } => {
                tracing::info!(job = %job.job_id, nonce = job.packet.nonce, tx = ?tx_hash.map(B256::from), "payload verified");
                ::metrics::counter!(metrics::SUBMISSION_SUCCESS, "target_chain" => self.target.name.clone())
                    .increment(1);
                let secs = unix_now_ms().saturating_sub(job.discovered_at_ms) as f64 / 1000.0;
                ::metrics::histogram!(metrics::VERIFICATION_LATENCY).record(secs);
            }
            SubmissionOutcome::Retry { reason, .. } => {
                tracing::warn!(job = %job.job_id, attempt = job.attempt, %reason, "submission retried");
            }
            SubmissionOutcome::Failed { reason } => {
                tracing::error!(job = %job.job_id, %reason, "submission failed");
            }
        }
        self.store.outcome(job.job_id, outcome).await?;
        Ok(())
    }

    /// Another attempt under a fresh expiration, or failure after the last one.
    fn retry_or_fail(&self, job: &RelayJob, reason: String) -> SubmissionOutcome {
        if job.attempt + 1 < self.settings.max_attempts {
            SubmissionOutcome::Retry {
                reason,
                expiration: unix_now_secs() + self.expiration_ttl_secs,
            }
        } else {
            SubmissionOutcome::Failed {
                reason: format!("{reason} (after {} attempts)", job.attempt + 1),
            }
        }
    }

    /// Whether the target shows `job`'s payload verified by our DVN.
    async fn verified_on_target(&self, job: &RelayJob) -> Result<bool, DvnError> {
        let header_hash = alloy::primitives::keccak256(&job.packet.header);
        let lookup = self
            .chain
            .hash_lookup(
                self.target.receive_library,
                header_hash,
                B256::from(job.packet.payload_hash),
                self.target.dvn,
            )
            .await?;
        Ok(lookup.submitted)
    }

    /// Judges the jobs a mined `execute` carried.
    async fn settle(
        &self,
        jobs: &[RelayJob],
        receipt: &TransactionReceipt,
    ) -> Result<(), DvnError> {
        let wei = u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price);
        ::metrics::counter!(metrics::GAS_SPENT, "target_chain" => self.target.name.clone())
            .increment(u64::try_from(wei).unwrap_or(u64::MAX));
        let verified = verified_in_receipt(receipt, self.target.receive_library, self.target.dvn);
        for job in jobs {
            let key = (
                job.packet.header.clone(),
                B256::from(job.packet.payload_hash),
            );
            let outcome = if verified.contains(&key) || self.verified_on_target(job).await? {
                SubmissionOutcome::Verified {
                    tx_hash: Some(receipt.transaction_hash.0),
                }
            } else if !receipt.status() {
                self.retry_or_fail(
                    job,
                    format!("execute {} reverted", receipt.transaction_hash),
                )
            } else {
                self.retry_or_fail(
                    job,
                    format!(
                        "execute {} did not verify it (expired, or refused by the DVN contract)",
                        receipt.transaction_hash
                    ),
                )
            };
            self.finish(job, outcome).await?;
        }
        Ok(())
    }

    /// Follows a job whose transaction is on record: settles it once mined; sends again only
    /// once the transaction is gone from the chain and its pool and the payload is not
    /// verified. Answers the job when it should be sent again.
    async fn follow(&self, job: RelayJob, tx: B256) -> Result<Option<RelayJob>, DvnError> {
        if let Some(receipt) = self.chain.receipt(tx).await? {
            self.settle(std::slice::from_ref(&job), &receipt).await?;
            return Ok(None);
        }
        if self.chain.transaction_known(tx).await? {
            tracing::debug!(job = %job.job_id, %tx, "execute still pending");
            return Ok(None);
        }
        if self.verified_on_target(&job).await? {
            // Verified, but not by the transaction on record (a replacement with its nonce):
            // the book cannot take a verification without its transaction yet.
            tracing::warn!(job = %job.job_id, %tx, "verified by a transaction not on record");
            return Ok(None);
        }
        tracing::info!(job = %job.job_id, %tx, "execute transaction gone; sending again");
        Ok(Some(job))
    }

    /// Sends one `execute` for `calls`, recording it first, and settles it if its receipt
    /// comes within the configured wait.
    async fn send(&mut self, batch: Vec<(RelayJob, SignedCall)>) -> Result<(), DvnError> {
        let from = self.account.address();
        let pending = self.chain.pending_nonce(from).await?;
        let nonce = self.next_nonce.map_or(pending, |n| n.max(pending));
        let calls: Vec<(ExecuteCall, Bytes)> = batch
            .iter()
            .map(|(_, c)| (c.call.clone(), c.signatures.clone()))
            .collect();
        let gas = GasPolicy {
            max_gas: self.settings.max_gas,
            margin_percent: self.settings.gas_margin_percent,
        };
        let tx = self
            .chain
            .sign_call(
                self.account.as_ref(),
                self.target.dvn,
                execute_calldata(&calls),
                nonce,
                gas,
            )
            .await?;
        let jobs: Vec<RelayJob> = batch.into_iter().map(|(j, _)| j).collect();
        let ids = jobs.iter().map(|j| j.job_id).collect();
        self.store.submitted(ids, tx.hash.0, tx.nonce).await?;
        self.next_nonce = Some(nonce + 1);
        if let Err(e) = self.chain.broadcast(&tx).await {
            // On record already: the next pass finds it gone and sends again.
            tracing::warn!(tx = %tx.hash, error = %e, "execute not broadcast");
            return Ok(());
        }
        tracing::info!(tx = %tx.hash, nonce, jobs = jobs.len(), gas_limit = tx.gas_limit, "execute sent");
        let wait = Duration::from_millis(self.settings.receipt_timeout_ms);
        match self
            .chain
            .wait_receipt(tx.hash, self.poll.min(wait), wait)
            .await?
        {
            Some(receipt) => self.settle(&jobs, &receipt).await,
            None => Ok(()),
        }
    }

    /// One pass: claim what is ready or stalled, follow what is on record, send the rest.
    /// Answers how many jobs it held.
    pub async fn pass(&mut self) -> Result<usize, DvnError> {
        let limit = self.settings.max_batch * 4;
        let now_ms = unix_now_ms();
        let signed = self.store.jobs(JobState::Signed, limit).await?;
        let submitting = self.store.jobs(JobState::Submitting, limit).await?;
        ::metrics::gauge!(metrics::JOBS, "state" => JobState::Signed.as_str())
            .set(signed.len() as f64);
        ::metrics::gauge!(metrics::JOBS, "state" => JobState::Submitting.as_str())
            .set(submitting.len() as f64);

        let (ours, others): (Vec<RelayJob>, Vec<RelayJob>) =
            submitting.into_iter().partition(|j| {
                j.submission
                    .as_ref()
                    .is_some_and(|s| s.submitter == self.instance && s.lease_until_ms > now_ms)
            });
        let claimable = signed
            .iter()
            .chain(others.iter().filter(|j| {
                j.submission
                    .as_ref()
                    .is_none_or(|s| s.lease_until_ms <= now_ms)
            }))
            .map(|j| j.job_id)
            .collect::<Vec<_>>();
        let mut held = ours;
        if !claimable.is_empty() {
            held.extend(self.store.claim(claimable, self.lease_ms).await?);
        }
        let count = held.len();

        let mut to_send = Vec::new();
        for job in held {
            let recorded = job.submission.as_ref().and_then(|s| s.tx_hash);
            let job = match recorded {
                Some(tx) => match self.follow(job, B256::from(tx)).await? {
                    Some(job) => job,
                    None => continue,
                },
                None => {
                    if self.verified_on_target(&job).await? {
                        tracing::info!(job = %job.job_id, "already verified on the target; not sending");
                        self.finish(&job, SubmissionOutcome::Verified { tx_hash: None })
                            .await?;
                        continue;
                    }
                    job
                }
            };
            match signed_call(&job, &self.target, self.quorum, unix_now_secs()) {
                Ok(call) => to_send.push((job, call)),
                Err(NotSendable::Expired) => {
                    let outcome =
                        self.retry_or_fail(&job, "signatures expired before submission".into());
                    self.finish(&job, outcome).await?;
                }
                Err(NotSendable::NoQuorum(reason)) => {
                    let outcome = self.retry_or_fail(&job, reason);
                    self.finish(&job, outcome).await?;
                }
            }
        }
        while !to_send.is_empty() {
            let rest = to_send.split_off(to_send.len().min(self.settings.max_batch));
            let batch = std::mem::replace(&mut to_send, rest);
            self.send(batch).await?;
        }
        Ok(count)
    }

    /// Passes every `poll` until `shutdown`, with backoff after errors.
    pub async fn run(mut self, max_backoff: Duration, mut shutdown: watch::Receiver<bool>) {
        let poll = self.poll;
        let mut backoff = Backoff::new(poll, max_backoff);
        while !*shutdown.borrow() {
            let wait = match self.pass().await {
                Ok(_) => {
                    backoff.reset();
                    poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, "submitter pass failed");
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
    use crate::listener::discovered_packet;
    use crate::memory_store::{job_id_of, MemoryStore};
    use crate::packet::tests::{encode, sample_packet};
    use crate::signer::key_file::KeyFileSigner;
    use mpc_types::relay::Verdict;

    fn target() -> TargetChainConfig {
        TargetChainConfig {
            name: "conflux".into(),
            chain_id: 1030,
            eid: 30212,
            rpc_urls: vec!["http://127.0.0.1:1".into()],
            endpoint: None,
            receive_library: Address::repeat_byte(0xb2),
            dvn: Address::repeat_byte(0xd2),
            vid: 1,
        }
    }

    fn signers(n: usize) -> Vec<KeyFileSigner> {
        let mut s: Vec<KeyFileSigner> = (0..n)
            .map(|_| {
                KeyFileSigner::from_key(k256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            })
            .collect();
        s.sort_by_key(|k| std::cmp::Reverse(k.address()));
        s
    }

    /// A job in the book signed by `by` (instance i signs with signer i).
    async fn signed_job(store: &MemoryStore, by: &[KeyFileSigner], expiration: u64) -> RelayJob {
        let bytes = encode(&sample_packet(1, b"hi"));
        let p = discovered_packet(30101, &bytes, B256::repeat_byte(3), 10);
        let id = job_id_of(&p);
        store
            .discover(30101, 10, vec![p], expiration)
            .await
            .unwrap();
        let job = store.job(id).await.unwrap().unwrap();
        let call = ExecuteCall {
            vid: 1,
            target: target().receive_library,
            call_data: verify_calldata(&job.packet.header, B256::from(job.packet.payload_hash), 5),
            expiration,
        };
        for (i, s) in by.iter().enumerate() {
            let sig = s.sign_eip191(call.hash()).await.unwrap();
            store
                .as_instance(&format!("dvn-{i}"))
                .record_verdict(
                    id,
                    0,
                    Verdict::Signed {
                        signer: s.address().0 .0,
                        signature: sig.to_bytes().to_vec(),
                        confirmations: 5,
                    },
                )
                .await
                .unwrap();
        }
        store.job(id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_quorum_becomes_one_call_with_signatures_in_ascending_signer_order() {
        let store = MemoryStore::new("dvn-0", 2, 3);
        let by = signers(3);
        let now = unix_now_secs();
        let job = signed_job(&store, &by, now + 600).await;
        assert_eq!(job.state, JobState::Signed);
        let sc = signed_call(&job, &target(), 2, now).unwrap();
        assert_eq!(sc.signatures.len(), 130);
        let digest = sc.call.signing_digest();
        let a = recover_address(digest, &sc.signatures[..65]).unwrap();
        let b = recover_address(digest, &sc.signatures[65..]).unwrap();
        assert!(a < b, "{a} then {b}");
        assert_eq!(sc.call.expiration, now + 600);
    }

    #[tokio::test]
    async fn expired_or_forged_signatures_are_not_sent() {
        let store = MemoryStore::new("dvn-0", 2, 3);
        let by = signers(2);
        let now = unix_now_secs();
        let job = signed_job(&store, &by, now + 10).await;
        assert_eq!(
            signed_call(&job, &target(), 2, now),
            Err(NotSendable::Expired)
        );

        let store = MemoryStore::new("dvn-0", 2, 3);
        let mut job = signed_job(&store, &by, now + 600).await;
        // An instance that recorded another signer's address with its own signature.
        if let Some(Verdict::Signed { signer, .. }) = job.verdicts.get_mut("dvn-0") {
            *signer = [0xff; 20];
        }
        assert!(matches!(
            signed_call(&job, &target(), 2, now),
            Err(NotSendable::NoQuorum(r)) if r.contains("recovers to")
        ));
    }

    #[tokio::test]
    async fn a_lease_lets_one_instance_submit_and_another_take_over_when_it_runs_out() {
        let store = MemoryStore::new("dvn-0", 2, 3);
        let by = signers(2);
        let job = signed_job(&store, &by, unix_now_secs() + 600).await;
        let one = store.as_instance("dvn-1");
        let two = store.as_instance("dvn-2");
        assert_eq!(one.claim(vec![job.job_id], 60_000).await.unwrap().len(), 1);
        assert!(two
            .claim(vec![job.job_id], 60_000)
            .await
            .unwrap()
            .is_empty());
        one.submitted(vec![job.job_id], [9; 32], 4).await.unwrap();
        store.expire_leases();
        let taken = two.claim(vec![job.job_id], 60_000).await.unwrap();
        // The new holder sees the transaction on record, so it follows it before sending.
        assert_eq!(taken[0].submission.as_ref().unwrap().tx_hash, Some([9; 32]));
        assert_eq!(taken[0].submission.as_ref().unwrap().submitter, "dvn-2");
        assert_eq!(store.all().len(), 1);
    }
}
