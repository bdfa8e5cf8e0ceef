//! Commands proposed to the Raft group, their validation, and what applying them answers.
//!
//! A command is checked twice: [`Command::validate`] on the node that proposes it (stateless
//! rules: field formats, bounds) so that bad input never reaches the log, and by
//! [`crate::apply`] against the replicated state (the key exists, the transition is allowed),
//! which answers a [`Rejection`] rather than an error, because a rejection is itself a
//! deterministic outcome that every replica must agree on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{
    AccessRole, Endorsed, Enrolment, KeyPolicy, KeyRecord, KeyStatus, PartyRecord, PartyStatus,
    PresignatureRecord, Scheme, SessionFailure, SessionRecord, SessionResult, Signed, SigningInput,
    TokenRecord,
};

pub const MAX_ID_LEN: usize = 64;
pub const MAX_REQUEST_ID_LEN: usize = 128;
pub const MAX_PARTIES: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_KEY_LEN: usize = 63;
pub const MAX_TAG_VALUE_LEN: usize = 256;
pub const MAX_REASON_LEN: usize = 1024;
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// What one Raft log entry carries: the commands a leader batched together, applied in order.
/// Batching concurrent writes into one entry shares its fsyncs, replication messages and
/// apply among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub commands: Vec<Command>,
}

/// One answer per command of a [`Proposal`], in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProposalResponse {
    pub responses: Vec<CommandResponse>,
}

/// One replicated write: who, when (stamped by the proposer), and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub at_ms: u64,
    pub actor: String,
    pub op: Operation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    CreateKeygen(CreateKeygen),
    CreateSigning(CreateSigning),
    /// The scheduler handed the session to these parties. A running session may be started
    /// again (a new attempt) after a leader change, never with a presignature.
    StartSession {
        session_id: String,
        parties: Vec<String>,
        presignature_id: Option<String>,
    },
    /// The protocol finished and the leader verified its result. For a keygen this also
    /// creates the key record.
    CompleteSession {
        session_id: String,
        result: SessionResult,
        /// For secp256k1 keygen: the key's Ethereum address, derived by the proposer.
        address: Option<String>,
        /// For keygen: every participant's signed report of the public key.
        reports: Vec<PartyReport>,
    },
    FailSession {
        session_id: String,
        failure: SessionFailure,
    },
    /// The deadline passed before the session finished.
    ExpireSession {
        session_id: String,
    },
    UpdateKey(UpdateKey),
    RegisterParty(RegisterParty),
    SetPartyStatus {
        party_id: String,
        status: PartyStatus,
    },
    /// The scheduler refills a key's presignature pool for one signer set.
    CreatePresign(CreatePresign),
    /// An admin made an API token.
    CreateToken(TokenRecord),
    RevokeToken {
        token_id: String,
    },
    /// An admin vouched for a party's identity keys (first enrolment or rotation).
    EnrollParty(Endorsed<Enrolment>),
    /// The leader's retention run forgets history older than `cutoff_ms`.
    Prune(Prune),
    /// An admin replaced a key's policy with a newer version of it.
    SetKeyPolicy(Endorsed<KeyPolicy>),
    /// A DVN relayer (the command's actor) wrote to the job book.
    Relay(crate::relay::RelayCommand),
    /// The leader's retention run forgets relay jobs that ended before `cutoff_ms`.
    PruneRelayJobs(PruneRelayJobs),
}

/// At most this many records one [`Prune`] names: a retention run proposes several.
pub const MAX_PRUNE_BATCH: usize = 512;

/// Finished sessions (with their idempotency records) and applied key-update ids that the
/// leader found older than `cutoff_ms`. Apply checks each again and skips what is not, so a
/// prune can only ever forget finished history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prune {
    pub cutoff_ms: u64,
    pub session_ids: Vec<String>,
    pub key_updates: Vec<PrunedKeyUpdate>,
}

/// Relay jobs that the leader found ended (verified, rejected or failed) before `cutoff_ms`.
/// Apply checks each again ([`crate::relay::prune`]) and skips what it may not forget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRelayJobs {
    pub cutoff_ms: u64,
    pub job_ids: Vec<crate::model::JobId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedKeyUpdate {
    pub update_id: String,
    /// When it was applied, as its index says.
    pub applied_at_ms: u64,
}

impl Operation {
    /// The session the command creates or moves, if it concerns one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Operation::CreateKeygen(CreateKeygen { session_id, .. })
            | Operation::CreateSigning(CreateSigning { session_id, .. })
            | Operation::CreatePresign(CreatePresign { session_id, .. })
            | Operation::StartSession { session_id, .. }
            | Operation::CompleteSession { session_id, .. }
            | Operation::FailSession { session_id, .. }
            | Operation::ExpireSession { session_id } => Some(session_id),
            _ => None,
        }
    }

    /// Commands only the leader's own scheduler and party gateway propose: never accepted
    /// from another node's `Forward`, so a compromised follower cannot start, finish or fail
    /// a session, nor change a party's status.
    pub fn is_scheduler_only(&self) -> bool {
        matches!(
            self,
            Operation::StartSession { .. }
                | Operation::CompleteSession { .. }
                | Operation::FailSession { .. }
                | Operation::ExpireSession { .. }
                | Operation::SetPartyStatus { .. }
                | Operation::CreatePresign(_)
                | Operation::Prune(_)
                | Operation::PruneRelayJobs(_)
        )
    }

    /// Drops what only the leader's own scheduler may decide from a command another node
    /// forwarded: a signing's planned start (made while that node led, or made up) goes,
    /// and the session waits for this leader's scheduler instead.
    pub fn drop_leader_plan(&mut self) {
        if let Operation::CreateSigning(create) = self {
            create.start = None;
        }
    }
}

/// A party's signature over a keygen's outcome ([`mpc_types::statement::KeygenReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyReport {
    pub party_id: String,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePresign {
    pub session_id: String,
    pub key_id: String,
    pub signers: Vec<String>,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateKeygen {
    pub session_id: String,
    pub key_id: String,
    pub scheme: Scheme,
    pub threshold: u16,
    pub parties: Vec<String>,
    pub request_id: Option<String>,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub deadline_ms: u64,
    pub policy: Endorsed<KeyPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSigning {
    pub session_id: String,
    pub key_id: String,
    pub input: SigningInput,
    pub request_id: Option<String>,
    pub deadline_ms: u64,
    /// Initiators' signatures over the request's [`mpc_types::statement::SigningApproval`].
    pub approvals: Vec<Signed>,
    pub approvals_not_after_ms: u64,
    /// Set by the leader's scheduler alone (a peer's forwarded copy loses it): when the
    /// parties are ready, the signing starts in the entry that creates it, one Raft round
    /// sooner. Apply checks it as it checks [`Operation::StartSession`]; a start it refuses
    /// leaves the session pending for the scheduler.
    pub start: Option<SessionStart>,
}

/// The participants (and presignature) a session starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub parties: Vec<String>,
    pub presignature_id: Option<String>,
}

impl CreateSigning {
    /// The statement the initiators signed.
    pub fn approval(&self) -> mpc_types::statement::SigningApproval {
        approval_of(
            &self.key_id,
            &self.input,
            self.request_id.as_deref().unwrap_or_default(),
            self.approvals_not_after_ms,
        )
    }
}

/// The approval statement of a signing request: what initiators sign and parties check.
pub fn approval_of(
    key_id: &str,
    input: &SigningInput,
    request_id: &str,
    not_after_ms: u64,
) -> mpc_types::statement::SigningApproval {
    let (digest, message, hash) = input.to_fields();
    mpc_types::statement::SigningApproval {
        key_id: key_id.to_owned(),
        digest,
        message,
        hash,
        derivation_path: Vec::new(),
        request_id: request_id.to_owned(),
        not_after_ms,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateKey {
    pub key_id: String,
    pub description: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub status: Option<KeyStatus>,
    /// Names this change: an entry that reaches the log twice (a retried forward or client
    /// call) applies once, so a retry cannot undo an update committed in between.
    pub update_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterParty {
    pub party_id: String,
    pub signing_public_key: Vec<u8>,
    pub encryption_public_key: Vec<u8>,
    pub endpoint: String,
}

/// What applying a command answered. Blank and membership entries answer [`Self::Empty`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Empty,
    Session {
        session: Box<SessionRecord>,
        /// False when a retried `request_id` found the session it created before.
        created: bool,
    },
    Key(Box<KeyRecord>),
    Party(Box<PartyRecord>),
    Presignature(Box<PresignatureRecord>),
    Token(Box<TokenRecord>),
    /// How many records a [`Prune`] removed.
    Pruned {
        sessions: u32,
        key_updates: u32,
    },
    RelayJob(Box<crate::model::RelayJob>),
    /// The jobs a relay claim now holds.
    RelayJobs(Vec<crate::model::RelayJob>),
    Rejected(Rejection),
    /// How many relay jobs a [`PruneRelayJobs`] removed.
    PrunedRelayJobs {
        jobs: u32,
    },
}

/// A command that is well formed but not allowed by the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("{kind} {id:?} does not exist")]
    NotFound { kind: String, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: String, id: String },
    #[error(
        "request_id {request_id:?} was already used for session {session_id} with other parameters"
    )]
    RequestIdReused {
        request_id: String,
        session_id: String,
    },
    #[error(
        "request_id {request_id:?} was already used for an update of key {key_id} with other changes"
    )]
    KeyUpdateIdReused { request_id: String, key_id: String },
    #[error("key {key_id:?} is {status} and cannot sign")]
    KeyNotActive { key_id: String, status: String },
    #[error("session {session_id} is {from} and cannot be {to}")]
    InvalidTransition {
        session_id: String,
        from: String,
        to: String,
    },
    #[error("party {party_id:?} presents other identity keys than an admin enrolled")]
    PartyIdentityChanged { party_id: String },
    #[error("party {party_id:?} is not enrolled: an admin enrols it first (mpcctl party enroll)")]
    PartyNotEnrolled { party_id: String },
    #[error("unauthorised: {reason}")]
    Unauthorised { reason: String },
    #[error("presignature {presignature_id:?} cannot serve session {session_id}: {reason}")]
    PresignatureUnavailable {
        presignature_id: String,
        session_id: String,
        reason: String,
    },
    #[error(
        "key {key_id:?} already has {limit} sessions not finished (limits.max_open_sessions_per_key): \
         retry when some have finished"
    )]
    TooManyOpenSessions { key_id: String, limit: u32 },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Input that breaks a rule: names the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl Command {
    /// The stateless rules. Run before proposing, and again in apply so that a command that
    /// slipped past an older proposer still cannot corrupt the state.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.actor.is_empty() || self.actor.len() > MAX_REQUEST_ID_LEN {
            return Err(ValidationError::new(
                "actor",
                format!("must be 1 to {MAX_REQUEST_ID_LEN} bytes"),
            ));
        }
        match &self.op {
            Operation::CreateKeygen(k) => {
                check_id("session_id", &k.session_id)?;
                check_id("key_id", &k.key_id)?;
                check_parties("parties", &k.parties)?;
                check_threshold(k.threshold, k.parties.len())?;
                check_request_id(k.request_id.as_deref())?;
                check_description(&k.description)?;
                check_tags(&k.tags)?;
                check_deadline(self.at_ms, k.deadline_ms)?;
                check_policy(k)
            }
            Operation::CreateSigning(s) => {
                check_id("session_id", &s.session_id)?;
                check_id("key_id", &s.key_id)?;
                check_signing_payload(&s.input)?;
                check_request_id(s.request_id.as_deref())?;
                check_deadline(self.at_ms, s.deadline_ms)?;
                if let Some(start) = &s.start {
                    if let Some(p) = &start.presignature_id {
                        check_id("start.presignature_id", p)?;
                    }
                    check_parties("start.parties", &start.parties)?;
                }
                check_approvals(s)
            }
            Operation::StartSession {
                session_id,
                parties,
                presignature_id,
            } => {
                check_id("session_id", session_id)?;
                if let Some(p) = presignature_id {
                    check_id("presignature_id", p)?;
                }
                check_parties("parties", parties)
            }
            Operation::CreatePresign(p) => {
                check_id("session_id", &p.session_id)?;
                check_id("key_id", &p.key_id)?;
                check_parties("signers", &p.signers)?;
                check_deadline(self.at_ms, p.deadline_ms)
            }
            Operation::CompleteSession {
                session_id,
                result,
                address,
                reports,
            } => {
                check_id("session_id", session_id)?;
                if reports.len() > MAX_PARTIES {
                    return Err(ValidationError::new(
                        "reports",
                        format!("at most {MAX_PARTIES}, got {}", reports.len()),
                    ));
                }
                for (i, r) in reports.iter().enumerate() {
                    check_id(&format!("reports[{i}].party_id"), &r.party_id)?;
                    if r.signature.len() != 64 {
                        return Err(ValidationError::new(
                            format!("reports[{i}].signature"),
                            "must be a 64-byte Ed25519 signature",
                        ));
                    }
                }
                let bytes: &[u8] = match result {
                    SessionResult::PublicKey(b) | SessionResult::Signature(b) => b,
                    SessionResult::Presignature => b"-",
                };
                if bytes.is_empty() || bytes.len() > 256 {
                    return Err(ValidationError::new("result", "must be 1 to 256 bytes"));
                }
                if let Some(address) = address {
                    let hex_part = address.strip_prefix("0x").unwrap_or_default();
                    if hex_part.len() != 40 || !hex_part.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(ValidationError::new(
                            "address",
                            "must be 0x followed by 40 hex digits",
                        ));
                    }
                }
                Ok(())
            }
            Operation::FailSession {
                session_id,
                failure,
            } => {
                check_id("session_id", session_id)?;
                if failure.reason.is_empty() || failure.reason.len() > MAX_REASON_LEN {
                    return Err(ValidationError::new(
                        "reason",
                        format!("must be 1 to {MAX_REASON_LEN} bytes"),
                    ));
                }
                check_parties_unique("blamed_parties", &failure.blamed_parties)
            }
            Operation::ExpireSession { session_id } => check_id("session_id", session_id),
            Operation::UpdateKey(u) => {
                check_id("key_id", &u.key_id)?;
                check_request_id(Some(&u.update_id))?;
                if let Some(d) = &u.description {
                    check_description(d)?;
                }
                if let Some(t) = &u.tags {
                    check_tags(t)?;
                }
                if u.description.is_none() && u.tags.is_none() && u.status.is_none() {
                    return Err(ValidationError::new(
                        "update",
                        "names nothing to change (description, tags or status)",
                    ));
                }
                Ok(())
            }
            Operation::RegisterParty(p) => {
                check_id("party_id", &p.party_id)?;
                if p.signing_public_key.len() != 32 {
                    return Err(ValidationError::new(
                        "signing_public_key",
                        "must be a 32-byte Ed25519 public key",
                    ));
                }
                if p.encryption_public_key.len() != 32 {
                    return Err(ValidationError::new(
                        "encryption_public_key",
                        "must be a 32-byte X25519 public key",
                    ));
                }
                if p.endpoint.is_empty() || p.endpoint.len() > 256 {
                    return Err(ValidationError::new("endpoint", "must be 1 to 256 bytes"));
                }
                Ok(())
            }
            Operation::SetPartyStatus { party_id, .. } => check_id("party_id", party_id),
            Operation::CreateToken(t) => check_token(t),
            Operation::RevokeToken { token_id } => check_token_id(token_id),
            Operation::EnrollParty(e) => check_enrolment(e),
            Operation::SetKeyPolicy(policy) => {
                check_id("policy.key_id", &policy.statement.key_id)?;
                policy.statement.check().map_err(|reason| {
                    let field = reason.split(':').next().unwrap_or("policy").to_owned();
                    ValidationError::new(format!("policy.{field}"), reason)
                })?;
                if !policy.verifies() {
                    return Err(ValidationError::new(
                        "policy.admin",
                        "the signature does not verify over the policy",
                    ));
                }
                Ok(())
            }
            Operation::Prune(p) => {
                if p.session_ids.len() + p.key_updates.len() > MAX_PRUNE_BATCH {
                    return Err(ValidationError::new(
                        "prune",
                        format!("names more than {MAX_PRUNE_BATCH} records"),
                    ));
                }
                if p.cutoff_ms > self.at_ms {
                    return Err(ValidationError::new(
                        "cutoff_ms",
                        "lies after the command's own time",
                    ));
                }
                for (i, id) in p.session_ids.iter().enumerate() {
                    check_id(&format!("session_ids[{i}]"), id)?;
                }
                for u in &p.key_updates {
                    check_request_id(Some(&u.update_id))?;
                }
                Ok(())
            }
            Operation::Relay(r) => r.validate(&self.actor),
            Operation::PruneRelayJobs(p) => {
                if p.job_ids.len() > MAX_PRUNE_BATCH {
                    return Err(ValidationError::new(
                        "job_ids",
                        format!("names more than {MAX_PRUNE_BATCH} jobs"),
                    ));
                }
                if p.cutoff_ms > self.at_ms {
                    return Err(ValidationError::new(
                        "cutoff_ms",
                        "lies after the command's own time",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The policy must describe exactly the key being made, be well formed, and carry a valid
/// signature (whose signer the parties judge: the coordinators hold no admin list).
fn check_policy(k: &CreateKeygen) -> Result<(), ValidationError> {
    let p = &k.policy.statement;
    let mismatch = |what: &str| {
        ValidationError::new(
            format!("policy.{what}"),
            format!("differs from the request's {what}"),
        )
    };
    if p.key_id != k.key_id {
        return Err(mismatch("key_id"));
    }
    if p.scheme != k.scheme.as_str() {
        return Err(mismatch("scheme"));
    }
    if p.threshold != k.threshold {
        return Err(mismatch("threshold"));
    }
    if p.parties != k.parties {
        return Err(mismatch("parties"));
    }
    p.check().map_err(|reason| {
        let field = reason.split(':').next().unwrap_or("policy").to_owned();
        ValidationError::new(format!("policy.{field}"), reason)
    })?;
    if !k.policy.verifies() {
        return Err(ValidationError::new(
            "policy.admin",
            "the signature does not verify over the policy",
        ));
    }
    Ok(())
}

fn check_approvals(s: &CreateSigning) -> Result<(), ValidationError> {
    if s.approvals.is_empty() {
        return Err(ValidationError::new(
            "approvals",
            "a signing needs the approvals its key's policy demands",
        ));
    }
    if s.approvals.len() > MAX_PARTIES {
        return Err(ValidationError::new(
            "approvals",
            format!("at most {MAX_PARTIES}, got {}", s.approvals.len()),
        ));
    }
    if s.request_id.is_none() {
        return Err(ValidationError::new(
            "request_id",
            "required with approvals: they approve one request, once",
        ));
    }
    if s.approvals_not_after_ms == 0 {
        return Err(ValidationError::new(
            "not_after_ms",
            "required with approvals: when they expire",
        ));
    }
    Ok(())
}

fn check_enrolment(e: &Endorsed<Enrolment>) -> Result<(), ValidationError> {
    check_id("party_id", &e.statement.party_id)?;
    mpc_types::statement::check_identity_keys(
        &e.statement.signing_public_key,
        &e.statement.encryption_public_key,
    )
    .map_err(|(field, reason)| ValidationError::new(field, reason))?;
    if !e.verifies() {
        return Err(ValidationError::new(
            "admin",
            "the signature does not verify over the enrolment",
        ));
    }
    Ok(())
}

/// Token ids are 16 lowercase hex digits: the part of a token a server may log.
pub fn check_token_id(token_id: &str) -> Result<(), ValidationError> {
    if token_id.len() != 16
        || !token_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ValidationError::new(
            "token_id",
            "must be 16 lowercase hex digits",
        ));
    }
    Ok(())
}

fn check_token(t: &TokenRecord) -> Result<(), ValidationError> {
    check_token_id(&t.token_id)?;
    check_id("name", &t.name)?;
    if t.keys.len() > MAX_TAGS {
        return Err(ValidationError::new(
            "keys",
            format!("at most {MAX_TAGS} keys or tags, got {}", t.keys.len()),
        ));
    }
    for (i, k) in t.keys.iter().enumerate() {
        match k.strip_prefix("tag:") {
            Some(tag) => {
                let (name, value) = tag.split_once('=').unwrap_or((tag, ""));
                let tags = BTreeMap::from([(name.to_owned(), value.to_owned())]);
                check_tags(&tags)
                    .map_err(|e| ValidationError::new(format!("keys[{i}]"), e.reason))?;
            }
            None => check_id(&format!("keys[{i}]"), k)?,
        }
    }
    match (t.role, t.keys.is_empty()) {
        (AccessRole::Signer, true) => Err(ValidationError::new(
            "keys",
            "a signer token names the keys or key tags it may sign with",
        )),
        (AccessRole::Signer, false) | (_, true) => Ok(()),
        (_, false) => Err(ValidationError::new(
            "keys",
            "only a signer token is scoped to keys",
        )),
    }
}

/// Session, key and party ids: short, printable, safe in a URL path and a RocksDB key.
fn check_signing_payload(input: &SigningInput) -> Result<(), ValidationError> {
    // A digest's length is its type's.
    match input {
        SigningInput::Message { message, .. }
            if message.is_empty() || message.len() > MAX_MESSAGE_LEN =>
        {
            Err(ValidationError::new(
                "message",
                format!(
                    "must be 1 to {MAX_MESSAGE_LEN} bytes, got {}",
                    message.len()
                ),
            ))
        }
        _ => Ok(()),
    }
}

pub fn check_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters, got {}", id.len()),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValidationError::new(
            field,
            format!("may hold only letters, digits, '-', '_' and '.', found {bad:?}"),
        ));
    }
    Ok(())
}

fn check_request_id(request_id: Option<&str>) -> Result<(), ValidationError> {
    let Some(id) = request_id else { return Ok(()) };
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(ValidationError::new(
            "request_id",
            format!("must be 1 to {MAX_REQUEST_ID_LEN} bytes"),
        ));
    }
    if id.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(ValidationError::new(
            "request_id",
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn check_parties_unique(field: &str, parties: &[String]) -> Result<(), ValidationError> {
    let mut seen = BTreeSet::new();
    for (i, p) in parties.iter().enumerate() {
        check_id(&format!("{field}[{i}]"), p)?;
        if !seen.insert(p) {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                format!("party {p:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_parties(field: &str, parties: &[String]) -> Result<(), ValidationError> {
    if parties.len() < 2 || parties.len() > MAX_PARTIES {
        return Err(ValidationError::new(
            field,
            format!(
                "must name 2 to {MAX_PARTIES} parties, got {}",
                parties.len()
            ),
        ));
    }
    check_parties_unique(field, parties)
}

fn check_threshold(threshold: u16, parties: usize) -> Result<(), ValidationError> {
    // A threshold of one would let a single party sign alone: that is not threshold custody.
    if threshold < 2 || usize::from(threshold) > parties {
        return Err(ValidationError::new(
            "threshold",
            format!("must be between 2 and the number of parties ({parties}), got {threshold}"),
        ));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), ValidationError> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            "description",
            format!(
                "must be at most {MAX_DESCRIPTION_LEN} bytes, got {}",
                description.len()
            ),
        ));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", tags.len()),
        ));
    }
    for (k, v) in tags {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_TAG_KEY_LEN
            && k.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/')
            });
        if !key_ok {
            return Err(ValidationError::new(
                format!("tags[{k:?}]"),
                format!("a tag name is 1 to {MAX_TAG_KEY_LEN} of a-z 0-9 - _ . /"),
            ));
        }
        if v.len() > MAX_TAG_VALUE_LEN {
            return Err(ValidationError::new(
                format!("tags[{k:?}]"),
                format!("a tag value is at most {MAX_TAG_VALUE_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

fn check_deadline(at_ms: u64, deadline_ms: u64) -> Result<(), ValidationError> {
    if deadline_ms <= at_ms {
        return Err(ValidationError::new(
            "deadline",
            "must be later than the time the request is made",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0xad; 32])
    }

    fn policy(threshold: u16, parties: &[&str]) -> KeyPolicy {
        KeyPolicy {
            key_id: "k1".into(),
            scheme: Scheme::EcdsaSecp256k1.as_str().into(),
            threshold,
            parties: parties.iter().map(|p| p.to_string()).collect(),
            initiators: vec![[0x1e; 32]],
            approvals_needed: 1,
            version: 1,
        }
    }

    fn keygen(threshold: u16, parties: &[&str]) -> Command {
        Command {
            at_ms: 1_000,
            actor: "test".into(),
            op: Operation::CreateKeygen(CreateKeygen {
                session_id: "s1".into(),
                key_id: "k1".into(),
                scheme: Scheme::EcdsaSecp256k1,
                threshold,
                parties: parties.iter().map(|p| p.to_string()).collect(),
                request_id: Some("r-1".into()),
                description: String::new(),
                tags: BTreeMap::new(),
                deadline_ms: 2_000,
                policy: Endorsed::new(&admin(), policy(threshold, parties)),
            }),
        }
    }

    #[test]
    fn a_valid_keygen_passes() {
        assert_eq!(keygen(2, &["p1", "p2", "p3"]).validate(), Ok(()));
    }

    #[test]
    fn a_keygen_policy_must_describe_the_keygen_and_verify() {
        let field = |cmd: Command| cmd.validate().err().map(|e| e.field);
        let with = |p: KeyPolicy| {
            let mut cmd = keygen(2, &["p1", "p2", "p3"]);
            if let Operation::CreateKeygen(k) = &mut cmd.op {
                k.policy = Endorsed::new(&admin(), p);
            }
            cmd
        };
        let base = policy(2, &["p1", "p2", "p3"]);
        let mut p = base.clone();
        p.key_id = "k2".into();
        assert_eq!(field(with(p)), Some("policy.key_id".into()));
        let mut p = base.clone();
        p.parties.reverse();
        assert_eq!(field(with(p)), Some("policy.parties".into()));
        let mut p = base.clone();
        p.approvals_needed = 2;
        assert_eq!(field(with(p)), Some("policy.approvals_needed".into()));
        let mut forged = keygen(2, &["p1", "p2", "p3"]);
        if let Operation::CreateKeygen(k) = &mut forged.op {
            k.policy.by.signature[0] ^= 1;
        }
        assert_eq!(field(forged), Some("policy.admin".into()));
    }

    #[test]
    fn threshold_out_of_range_names_the_field() {
        for t in [0, 1, 4] {
            let err = keygen(t, &["p1", "p2", "p3"]).validate().err();
            assert_eq!(err.map(|e| e.field), Some("threshold".to_string()), "t={t}");
        }
    }

    #[test]
    fn duplicate_party_names_its_position() {
        let err = keygen(2, &["p1", "p2", "p1"]).validate().err();
        assert_eq!(err.map(|e| e.field), Some("parties[2]".to_string()));
    }

    #[test]
    fn a_short_digest_does_not_decode() {
        // The stored form of a digest is a byte string; one of 31 bytes is refused on decode.
        let short = postcard::to_allocvec(&(0u8, vec![0u8; 31])).unwrap_or_default();
        let err = postcard::from_bytes::<SigningInput>(&short).err();
        assert!(err.is_some());
        let full = postcard::to_allocvec(&(0u8, vec![7u8; 32])).unwrap_or_default();
        assert_eq!(
            postcard::from_bytes::<SigningInput>(&full).ok(),
            Some(SigningInput::Digest([7; 32]))
        );
    }

    #[test]
    fn ids_refuse_path_characters() {
        assert!(check_id("key_id", "a/b").is_err());
        assert!(check_id("key_id", "").is_err());
        assert!(check_id("key_id", &"x".repeat(65)).is_err());
        assert!(check_id("key_id", "key-01.A_b").is_ok());
    }
}
