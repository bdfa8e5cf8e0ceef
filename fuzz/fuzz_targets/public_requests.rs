//! Every request of the public API (`proto/mpc/v1/*.proto`) as a coordinator receives it
//! from a client, and the party stream's `PartyMessage`: protobuf decoding, then the
//! RocksDB-free checks the handlers run on the fields.
//!
//! The handlers themselves (`crates/coordinator/src/api/*.rs`) build their commands inline
//! and live in a crate that needs RocksDB, so this target repeats only their plain field
//! mapping (marked "as the handler does") to reach `Command::validate`, `apply` and the
//! statement checks with protobuf-shaped input.
//!
//! Input: a mode byte choosing the message type, then its protobuf encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpc_fuzz::{apply_deterministically, Bytes, MemTxn};
use mpc_proto::v1 as pb;
use mpc_raft_store::command::{approval_of, check_id, check_token_id};
use mpc_raft_store::model::{
    AccessRole, Endorsed, KeyPolicy, Scheme, Signed, SigningInput, TokenRecord,
};
use mpc_raft_store::relay::RelayCommand;
use mpc_raft_store::{Command, Operation};
use prost::Message;

fn signed(s: &pb::Signature) -> Option<Signed> {
    Some(Signed {
        signer: s.signer.as_slice().try_into().ok()?,
        signature: s.signature.as_slice().try_into().ok()?,
    })
}

/// An `EndorsedKeyPolicy` as the coordinator and the parties read it.
fn endorsed_policy(p: &pb::EndorsedKeyPolicy) -> Option<Endorsed<KeyPolicy>> {
    let policy = p.policy.as_ref()?;
    let statement = KeyPolicy {
        key_id: policy.key_id.clone(),
        scheme: policy.scheme.clone(),
        threshold: u16::try_from(policy.threshold).ok()?,
        parties: policy.parties.clone(),
        initiators: policy
            .initiators
            .iter()
            .map(|k| k.as_slice().try_into().ok())
            .collect::<Option<Vec<_>>>()?,
        approvals_needed: u16::try_from(policy.approvals_needed).ok()?,
        version: policy.version,
    };
    let by = signed(p.admin.as_ref()?)?;
    let endorsed = Endorsed { statement, by };
    let _ = endorsed.statement.check();
    let _ = endorsed.verifies();
    let _ = endorsed.statement.scheme.parse::<Scheme>();
    Some(endorsed)
}

/// Runs commands the way the log would: validated, then applied on two replicas.
fn propose(commands: Vec<Command>) {
    for cmd in &commands {
        let _ = cmd.validate();
    }
    apply_deterministically(&MemTxn::default(), 1, &commands);
}

fn command(op: Operation) -> Command {
    Command {
        at_ms: 1_790_000_000_000,
        actor: "client:fuzz".into(),
        op,
    }
}

fn create_token(req: pb::CreateTokenRequest) {
    // As the handler does.
    let Ok(role) = req.role.parse::<AccessRole>() else {
        return;
    };
    let Ok(secret_hash) = <[u8; 32]>::try_from(req.secret_hash.as_slice()) else {
        return;
    };
    let record = TokenRecord {
        token_id: req.token_id.clone(),
        name: req.name,
        role,
        keys: req.keys,
        secret_hash,
        created_by: String::new(),
        created_at_ms: 0,
        expires_at_ms: (req.expires_at_ms != 0).then_some(req.expires_at_ms),
        revoked_at_ms: None,
    };
    propose(vec![
        command(Operation::CreateToken(record)),
        command(Operation::RevokeToken {
            token_id: req.token_id,
        }),
    ]);
}

fn create_signing(req: pb::CreateSigningRequest) {
    let _ = check_id("key_id", &req.key_id);
    // As the handler does: exactly one of a digest and a message (with an optional hash).
    let Ok(input) = SigningInput::from_fields(&req.digest, &req.message, &req.hash) else {
        return;
    };
    let approval = approval_of(&req.key_id, &input, &req.request_id, req.not_after_ms);
    let _ = approval.fingerprint();
    for s in req.approvals.iter().filter_map(signed) {
        let _ = s.verifies(&approval);
    }
}

fn create_keygen(req: pb::CreateKeygenRequest) {
    let _ = req.scheme.parse::<Scheme>();
    let _ = u16::try_from(req.threshold);
    let _ = check_id("key_id", &req.key_id);
    for p in &req.parties {
        let _ = check_id("parties", p);
    }
    if let Some(policy) = req.policy.as_ref().and_then(endorsed_policy) {
        let _ = policy.statement.key_id == req.key_id
            && policy.statement.parties == req.parties
            && u32::from(policy.statement.threshold) == req.threshold;
    }
}

fn page_token(token: &str) {
    if !token.is_empty() {
        let _ = check_id("page_token", token);
    }
}

fn party_message(msg: pb::PartyMessage) {
    match msg.body {
        Some(pb::party_message::Body::Hello(h)) => {
            let _ = check_id("party_id", &h.party_id);
            let _ = mpc_proto::hello_message(&[7; 32], 1, &h.party_id);
        }
        Some(pb::party_message::Body::Envelope(e)) => {
            let _ = check_id("session_id", &e.session_id);
            let _ = check_id("sender", &e.sender);
        }
        Some(pb::party_message::Body::Outcome(o)) => {
            let _ = check_id("session_id", &o.session_id);
            if let Some(pb::session_outcome::Result::Failure(f)) = &o.result {
                for p in &f.blamed_parties {
                    let _ = check_id("blamed_parties", p);
                }
            }
        }
        None => {}
    }
}

fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let mode = input.u8();
    let body = input.rest();
    macro_rules! decode {
        ($t:ty) => {
            match <$t>::decode(body) {
                Ok(m) => m,
                Err(_) => return,
            }
        };
    }
    match mode % 25 {
        0 => create_keygen(decode!(pb::CreateKeygenRequest)),
        1 => create_signing(decode!(pb::CreateSigningRequest)),
        2 => {
            let r = decode!(pb::GetSessionRequest);
            let _ = check_id("session_id", &r.session_id);
            let _ = pb::ReadConsistency::try_from(r.consistency);
        }
        3 => {
            let r = decode!(pb::ListSessionsRequest);
            let _ = pb::SessionStatus::try_from(r.status);
            let _ = pb::SessionKind::try_from(r.kind);
            page_token(&r.page_token);
            if !r.key_id.is_empty() {
                let _ = check_id("key_id", &r.key_id);
            }
        }
        4 => {
            let r = decode!(pb::WatchSessionRequest);
            let _ = check_id("session_id", &r.session_id);
        }
        5 => create_token(decode!(pb::CreateTokenRequest)),
        6 => {
            let r = decode!(pb::RevokeTokenRequest);
            if check_token_id(&r.token_id).is_ok() {
                propose(vec![command(Operation::RevokeToken {
                    token_id: r.token_id,
                })]);
            }
        }
        7 => {
            let r = decode!(pb::ListAuditRequest);
            // As the handler reads its page token: "<log index>.<position>".
            let _ = r
                .page_token
                .split_once('.')
                .and_then(|(i, p)| Some((i.parse::<u64>().ok()?, p.parse::<u32>().ok()?)));
            if !r.key_id.is_empty() {
                let _ = check_id("key_id", &r.key_id);
            }
        }
        8 => {
            let r = decode!(pb::GetKeyRequest);
            let _ = check_id("key_id", &r.key_id);
        }
        9 => {
            let r = decode!(pb::ListKeysRequest);
            page_token(&r.page_token);
        }
        10 => {
            let r = decode!(pb::UpdateKeyRequest);
            let _ = check_id("key_id", &r.key_id);
            let _ = pb::KeyStatus::try_from(r.status);
        }
        11 => {
            let r = decode!(pb::RegisterPartyRequest);
            let _ = check_id("party_id", &r.party_id);
        }
        12 => {
            let r = decode!(pb::EnrollPartyRequest);
            let _ = check_id("party_id", &r.party_id);
            if let (Ok(signing), Ok(encryption)) = (
                <[u8; 32]>::try_from(r.signing_public_key.as_slice()),
                <[u8; 32]>::try_from(r.encryption_public_key.as_slice()),
            ) {
                let _ = mpc_types::statement::check_identity_keys(&signing, &encryption);
                if let Some(admin) = r.admin.as_ref().and_then(signed) {
                    let enrolment = mpc_types::statement::Enrolment {
                        party_id: r.party_id,
                        signing_public_key: signing,
                        encryption_public_key: encryption,
                    };
                    let _ = admin.verifies(&enrolment);
                }
            }
        }
        13 => {
            let r = decode!(pb::AddLearnerRequest);
            let _ = (r.node_id, r.grpc_addr.parse::<std::net::SocketAddr>());
        }
        14 => {
            let _ = decode!(pb::ChangeMembershipRequest);
        }
        15 => party_message(decode!(pb::PartyMessage)),
        16 => {
            let _ = decode!(pb::ListTokensRequest);
            let _ = decode!(pb::WhoAmIRequest);
        }
        17 => {
            let _ = decode!(pb::GetStatusRequest);
            let _ = decode!(pb::ListPartiesRequest);
        }
        18 => {
            if let Some(p) = endorsed_policy(&decode!(pb::EndorsedKeyPolicy)) {
                let _ = p.statement.check();
            }
        }
        19 => {
            let r = decode!(pb::DiscoverRequest);
            let packets: Result<Vec<_>, _> = r
                .packets
                .iter()
                .map(|p| mpc_proto::relay::packet("packets", p))
                .collect();
            if let Ok(packets) = packets {
                relay(vec![RelayCommand::Discover {
                    src_eid: r.src_eid,
                    scanned_to: r.scanned_to,
                    packets,
                    expiration: r.expiration,
                }]);
            }
        }
        20 => {
            let r = decode!(pb::RecordVerdictRequest);
            if let (Ok(job_id), Ok(verdict)) = (
                mpc_proto::relay::job_id("job_id", &r.job_id),
                mpc_proto::relay::verdict("verdict", r.verdict.as_ref()),
            ) {
                relay(vec![RelayCommand::Verdict {
                    job_id,
                    attempt: r.attempt,
                    verdict,
                    quorum: r.quorum,
                    signers: r.signers,
                }]);
            }
        }
        21 => {
            let r = decode!(pb::ClaimRequest);
            if let Ok(job_ids) = relay_job_ids(&r.job_ids) {
                relay(vec![RelayCommand::Claim {
                    job_ids,
                    lease_ms: r.lease_ms,
                }]);
            }
        }
        22 => {
            let r = decode!(pb::RecordSubmissionRequest);
            if let (Ok(job_ids), Ok(tx_hash)) = (
                relay_job_ids(&r.job_ids),
                <[u8; 32]>::try_from(r.tx_hash.as_slice()),
            ) {
                relay(vec![RelayCommand::Submitted {
                    job_ids,
                    tx_hash,
                    tx_nonce: r.tx_nonce,
                }]);
            }
        }
        23 => {
            let r = decode!(pb::RecordOutcomeRequest);
            if let (Ok(job_id), Ok(outcome)) = (
                mpc_proto::relay::job_id("job_id", &r.job_id),
                mpc_proto::relay::outcome("outcome", r.outcome.as_ref()),
            ) {
                relay(vec![RelayCommand::Outcome { job_id, outcome }]);
            }
        }
        24 => {
            // A listing as the handler reads it, and a job as relayers and the CLI read it.
            let l = decode!(pb::ListJobsRequest);
            let _ = mpc_proto::relay::job_state("state", l.state);
            let _ = l.page_token.parse::<mpc_types::relay::JobId>();
            let _ = mpc_proto::relay::job("job", &decode!(pb::RelayJob));
        }
        _ => {
            let r = decode!(pb::CreateTokenRequest);
            let _ = check_token_id(&r.token_id);
        }
    }
}

/// Relayer writes as the Relay handlers build them, proposed in a relayer's name.
fn relay(commands: Vec<RelayCommand>) {
    propose(
        commands
            .into_iter()
            .map(|c| Command {
                at_ms: 1_790_000_000_000,
                actor: "dvn-1".into(),
                op: Operation::Relay(c),
            })
            .collect(),
    );
}

fn relay_job_ids(raw: &[Vec<u8>]) -> Result<Vec<mpc_types::relay::JobId>, ()> {
    raw.iter()
        .map(|b| mpc_proto::relay::job_id("job_ids", b).map_err(drop))
        .collect()
}

fn make_seeds() -> Vec<(String, Vec<u8>)> {
    let keygen = pb::CreateKeygenRequest {
        scheme: "schnorr-bip340".into(),
        threshold: 2,
        parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
        request_id: "req-1".into(),
        description: "cold wallet".into(),
        tags: [("env".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect(),
        timeout_seconds: 60,
        key_id: "k1".into(),
        policy: Some(pb::EndorsedKeyPolicy {
            policy: Some(pb::KeyPolicy {
                key_id: "k1".into(),
                scheme: "schnorr-bip340".into(),
                threshold: 2,
                parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
                initiators: vec![vec![0x1e; 32]],
                approvals_needed: 1,
                version: 1,
                ..Default::default()
            }),
            admin: Some(pb::Signature {
                signer: vec![0xad; 32],
                signature: vec![0x5a; 64],
            }),
        }),
        ..Default::default()
    };
    let signing = pb::CreateSigningRequest {
        key_id: "k1".into(),
        message: b"transfer 1 BTC".to_vec(),
        hash: "sha256".into(),
        request_id: "req-2".into(),
        approvals: vec![pb::Signature {
            signer: vec![0x1e; 32],
            signature: vec![0x5a; 64],
        }],
        not_after_ms: 1_790_000_060_000,
        ..Default::default()
    };
    let token = pb::CreateTokenRequest {
        token_id: "0123456789abcdef".into(),
        name: "ci-bot".into(),
        role: "signer".into(),
        keys: vec!["k1".into(), "tag:env=prod".into()],
        secret_hash: vec![3; 32],
        ..Default::default()
    };
    let listing = pb::ListSessionsRequest {
        status: 2,
        kind: 1,
        key_id: "k1".into(),
        page_size: 10,
        page_token: "019a0000-0000-7000-8000-000000000001".into(),
        consistency: 1,
        ..Default::default()
    };
    let audit = pb::ListAuditRequest {
        key_id: "k1".into(),
        since_ms: 1,
        page_size: 10,
        page_token: "41.0".into(),
        ..Default::default()
    };
    let hello = pb::PartyMessage {
        body: Some(pb::party_message::Body::Hello(pb::Hello {
            party_id: "party-1".into(),
            signature: vec![1; 64],
        })),
    };
    vec![
        (
            "keygen".into(),
            [&[0u8][..], &keygen.encode_to_vec()].concat(),
        ),
        (
            "signing".into(),
            [&[1u8][..], &signing.encode_to_vec()].concat(),
        ),
        (
            "list-sessions".into(),
            [&[3u8][..], &listing.encode_to_vec()].concat(),
        ),
        (
            "token".into(),
            [&[5u8][..], &token.encode_to_vec()].concat(),
        ),
        (
            "audit".into(),
            [&[7u8][..], &audit.encode_to_vec()].concat(),
        ),
        (
            "hello".into(),
            [&[15u8][..], &hello.encode_to_vec()].concat(),
        ),
    ]
}

fuzz_target!(
    init: mpc_fuzz::seeds("public_requests", make_seeds),
    |data: &[u8]| run(data)
);
