//! Judging what participants report: nothing is committed that the leader did not check.
//!
//! A keygen completes only when every participant reported the same public key and signed its
//! report with its enrolled identity key; a signature completes only once it verifies against
//! the key; partial signatures from a presignature are combined and the result verified.

use mpc_raft_store::model::{Scheme, SessionResult};

use super::core::{OutcomeResult, Run};

/// What a participant's report means for its run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Other participants have yet to report.
    Pending,
    Complete {
        result: SessionResult,
        /// Keygen of a secp256k1 key: its Ethereum address.
        address: Option<String>,
    },
    Fail {
        reason: String,
        blamed: Vec<String>,
    },
}

/// Takes `party`'s report into `run` and says whether the run is decided.
pub(super) fn judge(run: &mut Run, party: &str, result: OutcomeResult) -> Verdict {
    match result {
        OutcomeResult::Failure {
            reason,
            blamed_parties,
        } => Verdict::Fail {
            reason: format!("{party}: {reason}"),
            // Only participants can be blamed: a party cannot get another one excluded.
            blamed: blamed_parties
                .into_iter()
                .filter(|b| run.participants.contains(b))
                .collect(),
        },
        OutcomeResult::PublicKey {
            public_key,
            report_signature,
        } => {
            let report = mpc_types::statement::KeygenReport {
                session_id: &run.session.session_id,
                key_id: &run.session.key_id,
                public_key: &public_key,
            };
            let signed = run.identity_keys.get(party).is_some_and(|key| {
                mpc_types::statement::verifies_raw(key, &report, &report_signature)
            });
            if !signed {
                return Verdict::Fail {
                    reason: format!("{party} reported a public key without a valid signature"),
                    blamed: vec![party.to_owned()],
                };
            }
            run.reports.insert(party.to_owned(), report_signature);
            run.public_keys.insert(party.to_owned(), public_key);
            if run.public_keys.len() < run.participants.len() {
                return Verdict::Pending;
            }
            agreed_public_key(run)
        }
        OutcomeResult::Signature(signature) => match verify(run, &signature) {
            Ok(()) => Verdict::Complete {
                result: SessionResult::Signature(signature),
                address: None,
            },
            Err(reason) => Verdict::Fail {
                reason: format!("{party} returned a signature that does not verify: {reason}"),
                blamed: vec![party.to_owned()],
            },
        },
        OutcomeResult::PartialSignature(partial) => {
            run.partials.insert(party.to_owned(), partial);
            if run.partials.len() < run.participants.len() {
                return Verdict::Pending;
            }
            match combine(run) {
                Ok(signature) => Verdict::Complete {
                    result: SessionResult::Signature(signature),
                    address: None,
                },
                Err(reason) => Verdict::Fail {
                    reason,
                    blamed: Vec::new(),
                },
            }
        }
        OutcomeResult::PresignatureStored => {
            run.stored.insert(party.to_owned());
            if run.stored.len() < run.participants.len() {
                return Verdict::Pending;
            }
            Verdict::Complete {
                result: SessionResult::Presignature,
                address: None,
            }
        }
    }
}

/// Every participant reported a public key: complete when they all agree.
fn agreed_public_key(run: &Run) -> Verdict {
    let mut keys = run.public_keys.values();
    let first = keys.next().cloned().unwrap_or_default();
    if keys.any(|k| *k != first) {
        return Verdict::Fail {
            reason: "the parties disagree on the public key".into(),
            blamed: Vec::new(),
        };
    }
    let address = (run.session.scheme == Scheme::EcdsaSecp256k1)
        .then(|| mpc_tss::ethereum_address(&first).ok())
        .flatten();
    Verdict::Complete {
        result: SessionResult::PublicKey(first),
        address,
    }
}

/// What the session signs.
fn input(run: &Run) -> Result<&mpc_tss::SigningInput, String> {
    run.session
        .signing_input
        .as_ref()
        .ok_or_else(|| "nothing was to be signed".to_owned())
}

fn verify(run: &Run, signature: &[u8]) -> Result<(), String> {
    let key = run.key.as_ref().ok_or("no key for a signing session")?;
    let input = input(run)?;
    let signature =
        mpc_tss::Signature::from_bytes(key.scheme, signature).map_err(|e| e.to_string())?;
    mpc_tss::verify(key.scheme, &key.public_key, input, &signature).map_err(|e| e.to_string())
}

fn combine(run: &Run) -> Result<Vec<u8>, String> {
    let key = run.key.as_ref().ok_or("no key for a signing session")?;
    let mpc_tss::SigningInput::Message {
        message,
        hash: Some(hash),
    } = input(run)?
    else {
        return Err("a presignature served a request without a message and hash".into());
    };
    let mut partials = Vec::with_capacity(run.participants.len());
    for p in &run.participants {
        let bytes = run
            .partials
            .get(p)
            .ok_or("a partial signature is missing")?;
        partials.push(
            mpc_tss::PartialSignature::from_bytes(bytes)
                .map_err(|e| format!("partial signature from {p}: {e}"))?,
        );
    }
    // combine() verifies the result against the key (k256) before returning it.
    let signature = mpc_tss::PartialSignature::combine(&partials, &key.public_key, message, *hash)
        .map_err(|e| format!("combining partial signatures: {e}"))?;
    Ok(signature.to_bytes())
}
