//! The replicated records: keys, sessions, parties, idempotency entries and audit events.
//!
//! Field names follow DESIGN.md. Times are milliseconds since the Unix epoch, stamped by the
//! proposer, never read from a clock during apply.

use std::collections::BTreeMap;

pub use mpc_types::relay::{
    DiscoveredPacket, JobId, JobState, RelayJob, Submission, SubmissionOutcome, Verdict,
    PACKET_HEADER_LEN,
};
pub use mpc_types::statement::{Endorsed, Enrolment, KeyPolicy, Signed};
pub use mpc_types::AccessRole;
pub use mpc_types::{HashFunction, Scheme, SessionKind, SessionStatus, SigningInput};
use serde::{Deserialize, Serialize};

/// What a finished session produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionResult {
    /// A keygen's joint public key (compressed SEC1 for secp256k1, 32 bytes for Ed25519 and
    /// BIP-340).
    PublicKey(Vec<u8>),
    /// A signature in the scheme's wire form.
    Signature(Vec<u8>),
    /// A presign session stored a presignature at every signer.
    Presignature,
}

/// Where a presignature stands. It exists at its signers once its presign session completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresignatureStatus {
    Available,
    /// Committed to a signing session before any signer issued a partial signature.
    Used {
        session_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignatureRecord {
    /// The id of the presign session that produced it.
    pub presignature_id: String,
    pub key_id: String,
    /// The signer set, in signing order; only these parties hold its shares.
    pub signers: Vec<String>,
    pub status: PresignatureStatus,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFailure {
    pub reason: String,
    /// Parties that the protocol proved misbehaved; empty when nobody is to blame (timeout,
    /// leader change).
    pub blamed_parties: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub kind: SessionKind,
    pub scheme: Scheme,
    /// The key signed with; for keygen, the id the new key will have.
    pub key_id: String,
    pub threshold: u16,
    /// For keygen, every share holder; for signing, the chosen signers (empty until
    /// scheduled).
    pub parties: Vec<String>,
    /// What to sign (signing sessions only).
    pub signing_input: Option<SigningInput>,
    /// How many times the session was dispatched: a leader change re-dispatches a running
    /// session under a new attempt, with a fresh execution id.
    pub attempt: u32,
    /// The presignature an ECDSA signing session was started with; once set, that
    /// presignature is used up whatever happens to the session.
    pub presignature_id: Option<String>,
    pub status: SessionStatus,
    pub result: Option<SessionResult>,
    pub failure: Option<SessionFailure>,
    pub request_id: Option<String>,
    /// Who asked (the authenticated client, or "anonymous").
    pub requested_by: String,
    /// For keygen: the description and tags the key will carry.
    pub key_description: String,
    pub key_tags: BTreeMap<String, String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub deadline_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Keygen: the admin-signed policy the key is made under (parties check it again).
    pub policy: Option<Endorsed<KeyPolicy>>,
    /// Signing: the initiators' approvals of this request, valid until
    /// `approvals_not_after_ms` (every party checks them again and uses them once).
    pub approvals: Vec<Signed>,
    pub approvals_not_after_ms: u64,
}

impl SessionRecord {
    /// The presignature the current attempt signs with. Only a signing's first attempt can
    /// have taken one (apply refuses a presignature to a running session); a new leader's
    /// re-dispatch runs the full protocol, while `presignature_id` still records the
    /// presignature the session used up.
    pub fn attempt_presignature(&self) -> Option<&str> {
        self.presignature_id
            .as_deref()
            .filter(|_| self.attempt == 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Disabled,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub scheme: Scheme,
    pub threshold: u16,
    pub parties: Vec<String>,
    pub public_key: Vec<u8>,
    /// The Ethereum address (`0x` + 40 hex, EIP-55) for secp256k1 keys.
    pub address: Option<String>,
    pub status: KeyStatus,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub keygen_session_id: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Who may ask the key to sign: the admin-signed policy its parties hold.
    pub policy: Endorsed<KeyPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartyStatus {
    Online,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyRecord {
    pub party_id: String,
    /// Ed25519 public key that signs the party's broadcasts.
    pub signing_public_key: Vec<u8>,
    /// X25519 public key that point-to-point payloads are encrypted to.
    pub encryption_public_key: Vec<u8>,
    /// Empty until the party first registers.
    pub endpoint: String,
    pub status: PartyStatus,
    pub last_seen_ms: u64,
    /// 0 until the party first registers with its enrolled keys.
    pub registered_at_ms: u64,
    /// The admin's signature over the [`Enrolment`] of these keys: parties pin each other's
    /// keys only from such records.
    pub enrolled_by: Signed,
    pub enrolled_at_ms: u64,
}

impl PartyRecord {
    pub fn enrolment(&self) -> Option<Endorsed<Enrolment>> {
        Some(Endorsed {
            statement: Enrolment {
                party_id: self.party_id.clone(),
                signing_public_key: self.signing_public_key.as_slice().try_into().ok()?,
                encryption_public_key: self.encryption_public_key.as_slice().try_into().ok()?,
            },
            by: self.enrolled_by.clone(),
        })
    }
}

/// A client request id already used, and what it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub session_id: String,
    /// A digest of the request's parameters: the same id with other parameters is refused
    /// instead of silently answered with an unrelated session.
    pub fingerprint: [u8; 32],
}

/// A key update that was applied, by its update id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUpdateRecord {
    pub key_id: String,
    /// A digest of the key id and the changes: the same id with other changes is refused.
    pub fingerprint: [u8; 32],
}

/// One entry of the audit log. Entries form a hash chain in log order: each carries the hash
/// of the one before it, so a history rewritten on any replica (or in a backup) shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The Raft log index and the command's position in that entry: a total order across the
    /// cluster.
    pub log_index: u64,
    pub position: u32,
    pub at_ms: u64,
    /// The authenticated principal (`client:admin`, `token:ci-bot`, `party:party-1`) or the
    /// coordinator that proposed a scheduler command (`leader:3`).
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The key the command concerned, when there is one: `mpcctl audit list --key`.
    pub key_id: Option<String>,
    pub outcome: String,
    /// The previous entry's `hash` (zeros for the first).
    pub prev_hash: [u8; 32],
    /// [`mpc_types::audit_hash`] of this entry's fields and `prev_hash`.
    pub hash: [u8; 32],
}

impl AuditEvent {
    /// The hash this entry must carry, recomputed from its fields.
    pub fn expected_hash(&self) -> [u8; 32] {
        mpc_types::audit_hash(&mpc_types::AuditFields {
            prev_hash: self.prev_hash,
            log_index: self.log_index,
            position: self.position,
            at_ms: self.at_ms,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            key_id: self.key_id.as_deref(),
            outcome: &self.outcome,
        })
    }
}

/// An API token: only a hash of it is stored. The token itself (`mpc_<token_id>_<secret>`)
/// is shown once to the admin who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub name: String,
    pub role: AccessRole,
    /// For signers: the key ids and key tags (`tag:name=value`) it may sign with; empty for
    /// other roles.
    pub keys: Vec<String>,
    /// SHA-256 of the whole token string.
    pub secret_hash: [u8; 32],
    pub created_by: String,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

/// The EIP-55 checksummed Ethereum address of an uncompressed secp256k1 public key
/// (65 bytes, `0x04 || x || y`).
pub fn ethereum_address(uncompressed_public_key: &[u8]) -> Option<String> {
    use sha3::{Digest, Keccak256};
    let xy = match uncompressed_public_key {
        [0x04, rest @ ..] if rest.len() == 64 => rest,
        _ => return None,
    };
    let hash = Keccak256::digest(xy);
    let lower = hex::encode(&hash[12..]);
    let checksum = hex::encode(Keccak256::digest(lower.as_bytes()));
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (c, h) in lower.chars().zip(checksum.chars()) {
        if c.is_ascii_alphabetic() && h >= '8' {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethereum_address_matches_a_known_key() {
        // The public key of private key 1 (the generator G) has a well-known address.
        let g = hex::decode(concat!(
            "04",
            "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
        ))
        .unwrap_or_default();
        assert_eq!(
            ethereum_address(&g).as_deref(),
            Some("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
        );
        assert_eq!(ethereum_address(&g[1..]), None);
    }
}
