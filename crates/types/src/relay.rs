//! The DVN relayer's work as the replicated state keeps it: one job per LayerZero packet that
//! assigns our DVN, each relayer instance's verdict on it, and its submission to the target
//! chain. Relayers keep nothing durable of their own, so these records are what lets any
//! instance crash or be replaced with nothing lost and nothing submitted twice.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha3::{Digest as _, Keccak256};

/// Bytes of a PacketV1 header: version (1), nonce (8), srcEid (4), sender (32), dstEid (4),
/// receiver (32).
pub const PACKET_HEADER_LEN: usize = 81;

/// A job's identity: keccak256 of the source chain's eid, the packet's header, guid and payload
/// hash (so, of the packet as emitted). It is not the packet's guid, because the guid is a
/// field the emitter chose: a malformed packet that claims a real packet's guid must not be
/// able to shadow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub [u8; 32]);

impl JobId {
    /// The id of the job that verifies `packet`.
    pub fn of(packet: &DiscoveredPacket) -> Self {
        let mut h = Keccak256::new();
        h.update(packet.src_eid.to_be_bytes());
        h.update(&packet.header);
        h.update(packet.guid);
        h.update(packet.payload_hash);
        JobId(h.finalize().into())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for JobId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 64 || !s.is_ascii() {
            return Err(format!("a job id is 64 hex digits, got {:?}", s));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| "a job id is hex digits only".to_string())?;
        }
        Ok(JobId(out))
    }
}

/// Where a job stands. The order is part of the stored format: add new states at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Found on the source chain; instances are verifying and signing it.
    Discovered,
    /// Signatures from a quorum of distinct signers over the same call are recorded.
    Signed,
    /// One instance holds the submission lease and may have sent `DVN.execute`.
    Submitting,
    /// The target chain shows the payload verified by our DVN.
    Verified,
    /// Refused by the verifier, or by so many instances that no quorum can sign it.
    Rejected,
    /// Submitted and retried, and still not verified on the target.
    Failed,
}

impl JobState {
    /// Every state, in stored order.
    pub const ALL: [JobState; 6] = [
        JobState::Discovered,
        JobState::Signed,
        JobState::Submitting,
        JobState::Verified,
        JobState::Rejected,
        JobState::Failed,
    ];

    /// The state's name in the API, the CLI and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Discovered => "discovered",
            JobState::Signed => "signed",
            JobState::Submitting => "submitting",
            JobState::Verified => "verified",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
        }
    }

    /// Verified, rejected or failed: the job will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Verified | JobState::Rejected | JobState::Failed
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job state {s:?}; expected one of {}",
                    JobState::ALL.map(JobState::as_str).join(", ")
                )
            })
    }
}

/// A packet as the listener found it: what every instance needs to verify it on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredPacket {
    /// LayerZero endpoint id of the chain the packet was found on (the header's own srcEid
    /// may differ in a malformed packet; the verifier compares them).
    pub src_eid: u32,
    /// LayerZero endpoint id the packet is addressed to, as its header claims.
    pub dst_eid: u32,
    /// The packet's nonce on its path.
    pub nonce: u64,
    /// The packet's guid as emitted.
    pub guid: [u8; 32],
    /// The PacketV1 header bytes (81 when well formed).
    pub header: Vec<u8>,
    /// keccak256(guid ‖ message).
    pub payload_hash: [u8; 32],
    /// The source transaction that emitted it.
    pub source_tx: [u8; 32],
    /// The block that holds that transaction, when it was found.
    pub source_block: u64,
}

/// One instance's judgement of a job for one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Verified and signed: `signature` (r ‖ s ‖ v, low-s, v = 27/28) by `signer` over the
    /// execute hash of the verify call with `confirmations`.
    Signed {
        /// The signer's Ethereum address.
        signer: [u8; 20],
        /// 65 bytes: r ‖ s ‖ v.
        signature: Vec<u8>,
        /// The confirmations the verify call names (the receiver's requirement).
        confirmations: u64,
    },
    /// Refused, with the reason the verifier gave.
    Rejected {
        /// Why, for the operator.
        reason: String,
    },
}

/// The lease one instance holds to submit a job, and what it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The instance that holds (or held) the lease.
    pub submitter: String,
    /// Until when (ms since the epoch, the proposer's clock) no other instance may take it.
    pub lease_until_ms: u64,
    /// The transaction that carried the execute call, once sent.
    pub tx_hash: Option<[u8; 32]>,
    /// That transaction's account nonce.
    pub tx_nonce: Option<u64>,
}

/// A signer's Ethereum address and its 65-byte signature.
pub type SignerSignature = ([u8; 20], Vec<u8>);

/// A job and everything the relayers have recorded about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayJob {
    /// Its identity (see [`JobId`]).
    pub job_id: JobId,
    /// The packet.
    pub packet: DiscoveredPacket,
    /// Where it stands.
    pub state: JobState,
    /// Which attempt the verdicts belong to; a retry starts a new one with a new expiration.
    pub attempt: u32,
    /// The execute expiration every signer of this attempt signs (seconds since the epoch).
    pub expiration: u64,
    /// The instance that first recorded the packet.
    pub discovered_by: String,
    /// When it was first recorded (ms since the epoch).
    pub discovered_at_ms: u64,
    /// The last change (ms since the epoch).
    pub updated_at_ms: u64,
    /// Each instance's verdict for the current attempt, by instance name.
    pub verdicts: BTreeMap<String, Verdict>,
    /// The current submission lease, if any.
    pub submission: Option<Submission>,
    /// The transaction that verified it on the target, once seen.
    pub verified_tx: Option<[u8; 32]>,
    /// Why it was rejected or failed, or why the last attempt did not verify.
    pub reason: Option<String>,
}

impl RelayJob {
    /// The signatures of the current attempt grouped by the confirmations they sign, each
    /// group keyed (and so sorted) by signer address, one signature per distinct signer.
    pub fn signatures_by_confirmations(&self) -> BTreeMap<u64, BTreeMap<[u8; 20], Vec<u8>>> {
        let mut groups: BTreeMap<u64, BTreeMap<[u8; 20], Vec<u8>>> = BTreeMap::new();
        for verdict in self.verdicts.values() {
            if let Verdict::Signed {
                signer,
                signature,
                confirmations,
            } = verdict
            {
                groups
                    .entry(*confirmations)
                    .or_default()
                    .insert(*signer, signature.clone());
            }
        }
        groups
    }

    /// A quorum's signatures, if the current attempt has one: the confirmations they sign and
    /// the first `quorum` signatures in strictly ascending signer order, which is the order
    /// the DVN contract demands.
    pub fn quorum_signatures(&self, quorum: usize) -> Option<(u64, Vec<SignerSignature>)> {
        if quorum == 0 {
            return None;
        }
        self.signatures_by_confirmations()
            .into_iter()
            .find(|(_, group)| group.len() >= quorum)
            .map(|(confirmations, group)| (confirmations, group.into_iter().take(quorum).collect()))
    }

    /// How many instances refused the current attempt.
    pub fn rejections(&self) -> usize {
        self.verdicts
            .values()
            .filter(|v| matches!(v, Verdict::Rejected { .. }))
            .count()
    }
}

/// How a submission ended, as the submitter read it from the target chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmissionOutcome {
    /// `PayloadVerified` (or `hashLookup`) shows our DVN's verification.
    Verified {
        /// The transaction that verified it, when the reporter knows it (a payload found
        /// verified by `hashLookup` alone does not say which transaction did it).
        tx_hash: Option<[u8; 32]>,
    },
    /// It did not verify; sign again under `expiration` (a new attempt).
    Retry {
        /// What went wrong.
        reason: String,
        /// The new attempt's expiration (seconds since the epoch).
        expiration: u64,
    },
    /// It did not verify and will not be retried.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn job_with(verdicts: &[(&str, Verdict)]) -> RelayJob {
        RelayJob {
            job_id: JobId([1; 32]),
            packet: DiscoveredPacket {
                src_eid: 30101,
                dst_eid: 30212,
                nonce: 1,
                guid: [2; 32],
                header: vec![1; PACKET_HEADER_LEN],
                payload_hash: [3; 32],
                source_tx: [4; 32],
                source_block: 10,
            },
            state: JobState::Discovered,
            attempt: 0,
            expiration: 100,
            discovered_by: "dvn-1".into(),
            discovered_at_ms: 1,
            updated_at_ms: 1,
            verdicts: verdicts
                .iter()
                .map(|(name, v)| (name.to_string(), v.clone()))
                .collect(),
            submission: None,
            verified_tx: None,
            reason: None,
        }
    }

    fn signed(signer: u8, confirmations: u64) -> Verdict {
        Verdict::Signed {
            signer: [signer; 20],
            signature: vec![signer; 65],
            confirmations,
        }
    }

    #[test]
    fn a_quorum_is_distinct_signers_over_the_same_confirmations_in_ascending_order() {
        let job = job_with(&[("dvn-1", signed(9, 5)), ("dvn-2", signed(3, 5))]);
        let (confirmations, sigs) = job.quorum_signatures(2).unwrap();
        assert_eq!(confirmations, 5);
        assert_eq!(sigs[0].0, [3; 20]);
        assert_eq!(sigs[1].0, [9; 20]);

        // Two instances on one signer are one signature; different confirmations do not mix.
        let job = job_with(&[("dvn-1", signed(9, 5)), ("dvn-2", signed(9, 5))]);
        assert!(job.quorum_signatures(2).is_none());
        let job = job_with(&[("dvn-1", signed(9, 5)), ("dvn-2", signed(3, 6))]);
        assert!(job.quorum_signatures(2).is_none());
        assert!(job.quorum_signatures(0).is_none());
    }

    #[test]
    fn job_ids_print_and_parse_as_hex_and_differ_by_source_and_content() {
        let job = job_with(&[]);
        let id = JobId::of(&job.packet);
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert_eq!(format!("0x{id}").parse::<JobId>().unwrap(), id);
        let mut other = job.packet.clone();
        other.src_eid += 1;
        assert_ne!(JobId::of(&other), id);
        let mut other = job.packet.clone();
        other.header[5] ^= 1;
        assert_ne!(
            JobId::of(&other),
            id,
            "a packet claiming the same guid is another job"
        );
        assert!("zz".parse::<JobId>().is_err());
        assert!("g".repeat(64).parse::<JobId>().is_err());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>().unwrap(), st);
        }
        assert!("done".parse::<JobState>().unwrap_err().contains("verified"));
    }
}
