//! What a party checks itself before it runs an assignment. The coordinator only routes: the
//! parties decide, from statements signed by the admins they were started with
//! (`--admin-keys`) and by the key's initiators, never from the coordinator's word.
//!
//! - Every participant's identity keys come with an admin's signature over its enrolment.
//! - A keygen comes with an admin-signed policy naming exactly this key, scheme, threshold
//!   and parties; the party keeps it beside the share (the share is sealed bound to it).
//! - A signing comes with initiators' approvals of exactly this request, as many distinct
//!   ones as the policy the party holds demands, not expired, and not used before by another
//!   session (each use is recorded on disk until the approvals expire).

use std::time::{SystemTime, UNIX_EPOCH};

use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_types::statement::{Endorsed, Enrolment, KeyPolicy, PublicKey, Signed, SigningApproval};

use crate::store::{RecordKind, ShareStore};
use crate::PartyError;

/// Why an assignment is refused. Its text becomes the session's failure reason.
#[derive(Debug, thiserror::Error)]
#[error("unauthorised: {0}")]
pub struct Unauthorised(pub String);

fn refuse(reason: impl Into<String>) -> Unauthorised {
    Unauthorised(reason.into())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checks that every identity of the assignment was enrolled by a trusted admin, and that
/// this party's own entry holds its own keys.
pub fn check_identities(
    admins: &[PublicKey],
    me: &str,
    my_keys: (&[u8; 32], &[u8; 32]),
    identities: &[pb::PartyIdentity],
) -> Result<(), Unauthorised> {
    for id in identities {
        let key = |what: &str, b: &[u8]| -> Result<[u8; 32], Unauthorised> {
            b.try_into()
                .map_err(|_| refuse(format!("the {what} key of {} is not 32 bytes", id.party_id)))
        };
        let by = id
            .enrolled_by
            .as_ref()
            .ok_or_else(|| refuse(format!("{} comes without an enrolment", id.party_id)))
            .and_then(|s| {
                statements::signature_from("enrolled_by", s).map_err(|(_, reason)| {
                    refuse(format!("the enrolment of {}: {reason}", id.party_id))
                })
            })?;
        let enrolment = Endorsed {
            statement: Enrolment {
                party_id: id.party_id.clone(),
                signing_public_key: key("signing", &id.signing_public_key)?,
                encryption_public_key: key("encryption", &id.encryption_public_key)?,
            },
            by,
        };
        if !enrolment.endorsed_by_one_of(admins) {
            return Err(refuse(format!(
                "the identity keys of {} are not enrolled by an admin this party trusts",
                id.party_id
            )));
        }
        if id.party_id == me
            && (&enrolment.statement.signing_public_key != my_keys.0
                || &enrolment.statement.encryption_public_key != my_keys.1)
        {
            return Err(refuse(
                "the assignment gives this party other identity keys than its own",
            ));
        }
    }
    Ok(())
}

/// The policy a keygen must carry: signed by a trusted admin and describing exactly this key.
pub fn keygen_policy(
    admins: &[PublicKey],
    a: &pb::Assignment,
) -> Result<Endorsed<KeyPolicy>, Unauthorised> {
    let policy = statements::policy_from("policy", a.policy.as_ref())
        .map_err(|(field, reason)| refuse(format!("{field}: {reason}")))?;
    if !policy.endorsed_by_one_of(admins) {
        return Err(refuse(
            "the key policy is not signed by an admin this party trusts",
        ));
    }
    let p = &policy.statement;
    let matches = p.key_id == a.key_id
        && p.scheme == a.scheme
        && u32::from(p.threshold) == a.threshold
        && p.parties == a.key_parties;
    if !matches {
        return Err(refuse(
            "the key policy names another key id, scheme, threshold or parties than the keygen",
        ));
    }
    p.check()
        .map_err(|reason| refuse(format!("policy: {reason}")))?;
    Ok(policy)
}

/// The approvals a signing carries, and the request they must approve.
pub fn approvals(a: &pb::Assignment) -> Result<(SigningApproval, Vec<Signed>), Unauthorised> {
    if a.approvals.is_empty() {
        return Err(refuse("the signing carries no approvals"));
    }
    let approvals = statements::signatures_from("approvals", &a.approvals)
        .map_err(|(field, reason)| refuse(format!("{field}: {reason}")))?;
    let request = SigningApproval {
        key_id: a.key_id.clone(),
        digest: if a.message.is_empty() {
            a.digest.clone()
        } else {
            Vec::new()
        },
        message: a.message.clone(),
        hash: a.hash.clone(),
        derivation_path: Vec::new(),
        request_id: a.request_id.clone(),
        not_after_ms: a.approvals_not_after_ms,
    };
    Ok((request, approvals))
}

/// The policy in force for `key_id` at this party: the one the key was made under, or the
/// newest successor of it the party adopted since.
pub fn stored_policy(store: &ShareStore, key_id: &str) -> Result<Endorsed<KeyPolicy>, PartyError> {
    let made_under =
        store
            .get(RecordKind::KeyPolicy, key_id)?
            .ok_or_else(|| PartyError::Config {
                field: "key_id".into(),
                reason: format!("this party holds no share of key {key_id}"),
            })?;
    let made_under = decode_policy(key_id, &made_under)?;
    let Some(update) = store.get(RecordKind::KeyPolicyUpdate, key_id)? else {
        return Ok(made_under);
    };
    let update = decode_policy(key_id, &update)?;
    made_under
        .statement
        .check_successor(&update.statement)
        .map_err(|reason| PartyError::Config {
            field: "key policy".into(),
            reason: format!("the adopted policy of key {key_id} is no successor: {reason}"),
        })?;
    Ok(update)
}

fn decode_policy(key_id: &str, bytes: &[u8]) -> Result<Endorsed<KeyPolicy>, PartyError> {
    serde_json::from_slice(bytes).map_err(|e| PartyError::Config {
        field: "key policy".into(),
        reason: format!("the stored policy of key {key_id} does not decode: {e}"),
    })
}

/// Serialises adoptions, so that two signings bringing two successors cannot store the
/// older one last.
static ADOPTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The policy to check a signing against: the held one, or `offered` when an admin this
/// party trusts signed it as a successor of the held one (which it then keeps). An offer of
/// the same or an older version is ignored: a coordinator cannot roll a policy back.
/// Blocking.
pub fn adopt_policy(
    store: &ShareStore,
    admins: &[PublicKey],
    key_id: &str,
    offered: Option<&Endorsed<KeyPolicy>>,
) -> Result<Result<Endorsed<KeyPolicy>, Unauthorised>, PartyError> {
    let newer = |held: &Endorsed<KeyPolicy>| {
        offered.filter(|o| o.statement.version > held.statement.version)
    };
    let held = stored_policy(store, key_id)?;
    if newer(&held).is_none() {
        return Ok(Ok(held));
    }
    // Only an adoption takes the lock; read again under it, another signing may have
    // adopted this or a newer version meanwhile.
    let _adopting = ADOPTING.lock().unwrap_or_else(|p| p.into_inner());
    let held = stored_policy(store, key_id)?;
    let Some(offered) = newer(&held) else {
        return Ok(Ok(held));
    };
    if !offered.endorsed_by_one_of(admins) {
        return Ok(Err(refuse(format!(
            "the newer policy of key {key_id} is not signed by an admin this party trusts"
        ))));
    }
    if let Err(reason) = held.statement.check_successor(&offered.statement) {
        return Ok(Err(refuse(format!(
            "the newer policy of key {key_id} is no successor of the one held: {reason}"
        ))));
    }
    store.put(
        RecordKind::KeyPolicyUpdate,
        key_id,
        &encode_policy(offered)?,
    )?;
    tracing::info!(
        key_id,
        version = offered.statement.version,
        "adopted the key's newer policy"
    );
    Ok(Ok(offered.clone()))
}

pub fn encode_policy(policy: &Endorsed<KeyPolicy>) -> Result<Vec<u8>, PartyError> {
    serde_json::to_vec(policy).map_err(|e| PartyError::Config {
        field: "key policy".into(),
        reason: e.to_string(),
    })
}

/// Checks a signing's approvals against the policy this party holds (or the newer one the
/// assignment brings, see [`adopt_policy`]) and records their use
/// by `session_id`: approvals that another session used are refused (a retried attempt of
/// the same session may use them again). Blocking: reads and writes the store.
pub fn authorise_signing(
    store: &ShareStore,
    admins: &[PublicKey],
    session_id: &str,
    request: &SigningApproval,
    approvals: &[Signed],
    offered_policy: Option<&Endorsed<KeyPolicy>>,
    now_ms: u64,
) -> Result<Result<(), Unauthorised>, PartyError> {
    let policy = match adopt_policy(store, admins, &request.key_id, offered_policy)? {
        Ok(policy) => policy,
        Err(refused) => return Ok(Err(refused)),
    };
    // The stored copy was checked at keygen; checking it again costs little and catches a
    // policy restored from elsewhere or an admin key the party no longer trusts.
    if !policy.endorsed_by_one_of(admins) {
        return Ok(Err(refuse(format!(
            "the policy this party holds for key {} is not signed by an admin it trusts",
            request.key_id
        ))));
    }
    if let Err(reason) = policy.statement.authorise(request, approvals, now_ms) {
        return Ok(Err(refuse(reason)));
    }
    let use_id = hex::encode(request.fingerprint());
    let record = ApprovalUse {
        session_id: session_id.to_owned(),
        not_after_ms: request.not_after_ms,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| PartyError::Config {
        field: "approval use".into(),
        reason: e.to_string(),
    })?;
    if store.put_new(RecordKind::ApprovalUse, &use_id, &bytes)? {
        return Ok(Ok(()));
    }
    let earlier = store
        .get(RecordKind::ApprovalUse, &use_id)?
        .and_then(|b| serde_json::from_slice::<ApprovalUse>(&b).ok());
    match earlier {
        Some(e) if e.session_id == session_id => Ok(Ok(())),
        Some(e) => Ok(Err(refuse(format!(
            "the approvals were already used by session {}",
            e.session_id
        )))),
        None => Ok(Err(refuse("the approvals were already used"))),
    }
}

/// Which session used an approval set, kept until the approvals expire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ApprovalUse {
    session_id: String,
    not_after_ms: u64,
}

/// Forgets used approvals that have expired (they are refused as expired anyway). Returns
/// how many were removed. Blocking.
pub fn prune_approval_uses(store: &ShareStore, now_ms: u64) -> Result<usize, PartyError> {
    let mut removed = 0;
    for id in store.list(RecordKind::ApprovalUse)? {
        let expired = match store.get(RecordKind::ApprovalUse, &id)? {
            Some(b) => {
                serde_json::from_slice::<ApprovalUse>(&b).is_ok_and(|u| u.not_after_ms < now_ms)
            }
            None => false,
        };
        if expired {
            store.delete(RecordKind::ApprovalUse, &id)?;
            removed += 1;
        }
    }
    Ok(removed)
}
