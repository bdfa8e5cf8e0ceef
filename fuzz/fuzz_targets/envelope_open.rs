//! Protocol envelopes as a party receives them from the coordinator's router, and the other
//! messages of the party stream (`mpc_party::envelope`, `mpc.v1.PartyGateway/Attach`).
//!
//! Three parties a, b and c with fixed identities (their identity records are written into a
//! share store before `Identity::load_or_create` reads them); b receives.
//!
//! Input: a mode byte, then
//! - 0: a protobuf `Envelope`, opened by a fresh codec of b (twice: the second is a replay);
//! - 1: a protobuf `CoordinatorMessage`: its envelope is opened, its assignment's party
//!   identities parsed with `PeerKeys::parse`; then the same bytes as a `PartyMessage`;
//! - 2: a script (`arbitrary`): a and c seal messages, then envelopes are delivered to b in
//!   any order, replayed, or altered field by field. b must accept exactly the envelopes a
//!   sender sealed, unaltered and in increasing sequence, and give back their messages: any
//!   altered envelope that opens is a forgery and fails the target.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpc_party::envelope::{EnvelopeCodec, PeerKeys};
use mpc_party::identity::Identity;
use mpc_party::master_key::MasterKey;
use mpc_party::store::{RecordKind, ShareStore};
use mpc_proto::v1 as pb;
use prost::Message;

const PARTIES: [&str; 3] = ["a", "b", "c"];
const SESSION: &str = "s1";

struct Parties {
    identities: Vec<Arc<Identity>>,
    peers: HashMap<String, PeerKeys>,
    /// Keeps the share stores' directory alive.
    _dir: tempfile::TempDir,
}

/// The fixed identity of party `n`: its identity record (Ed25519 seed, X25519 secret).
fn identity_record(n: usize) -> [u8; 64] {
    let mut record = [0u8; 64];
    for (i, b) in record.iter_mut().enumerate() {
        *b = (n as u8 + 1).wrapping_mul(31).wrapping_add(i as u8);
    }
    record
}

fn parties() -> &'static Parties {
    static PARTIES_CELL: OnceLock<Parties> = OnceLock::new();
    PARTIES_CELL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = MasterKey::from_hex("fuzz", &"11".repeat(32)).expect("a master key");
        let identities: Vec<Arc<Identity>> = PARTIES
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let store =
                    ShareStore::open(&dir.path().join(id), id, &key).expect("a share store");
                store
                    .put(RecordKind::Identity, "self", &identity_record(n))
                    .expect("the identity record");
                Arc::new(Identity::load_or_create(&store).expect("the identity"))
            })
            .collect();
        let peers = PARTIES
            .iter()
            .zip(&identities)
            .map(|(id, identity)| {
                let keys = PeerKeys::parse(
                    &identities[1],
                    id,
                    &identity.signing_public_key(),
                    &identity.encryption_public_key(),
                )
                .expect("valid peer keys");
                (id.to_string(), keys)
            })
            .collect();
        Parties {
            identities,
            peers,
            _dir: dir,
        }
    })
}

fn codec(n: usize) -> EnvelopeCodec {
    let p = parties();
    EnvelopeCodec::new(
        SESSION,
        0,
        PARTIES[n],
        p.identities[n].clone(),
        p.peers.clone(),
    )
}

fn open_raw(envelope: &pb::Envelope) {
    let mut b = codec(1);
    if b.open(envelope).is_ok() {
        assert!(
            b.open(envelope).is_err(),
            "a replayed envelope was accepted"
        );
    }
}

fn coordinator_message(bytes: &[u8]) {
    if let Ok(msg) = pb::CoordinatorMessage::decode(bytes) {
        match msg.body {
            Some(pb::coordinator_message::Body::Envelope(e)) => open_raw(&e),
            Some(pb::coordinator_message::Body::Assignment(a)) => {
                let me = &parties().identities[1];
                for id in &a.identities {
                    let _ = PeerKeys::parse(
                        me,
                        &id.party_id,
                        &id.signing_public_key,
                        &id.encryption_public_key,
                    );
                }
            }
            Some(pb::coordinator_message::Body::Challenge(c)) => {
                let _ = parties().identities[1]
                    .sign(&mpc_proto::hello_message(&c.nonce, c.node_id, "b"));
            }
            _ => {}
        }
    }
    if let Ok(pb::PartyMessage {
        body: Some(pb::party_message::Body::Envelope(e)),
    }) = pb::PartyMessage::decode(bytes)
    {
        open_raw(&e);
    }
}

#[derive(Debug, Arbitrary)]
struct Seal {
    /// From c rather than a.
    from_c: bool,
    /// To b rather than to everyone.
    to_b: bool,
    phase: u8,
    message: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Change {
    Payload {
        at: u16,
        xor: u8,
    },
    Truncate(u16),
    Append(Vec<u8>),
    Signature {
        at: u8,
        xor: u8,
    },
    Sequence(u64),
    Phase(u32),
    Attempt(u32),
    Session(String),
    Sender(u8),
    Receiver(u8),
    /// The payload of another sealed envelope.
    PayloadOf(u8),
}

#[derive(Debug, Arbitrary)]
struct Delivery {
    which: u8,
    change: Option<Change>,
}

#[derive(Debug, Arbitrary)]
struct Script {
    seals: Vec<Seal>,
    deliveries: Vec<Delivery>,
}

fn alter(e: &mut pb::Envelope, change: &Change, sealed: &[(pb::Envelope, Vec<u8>)]) {
    let who = |n: &u8| match n % 4 {
        3 => String::new(),
        n => PARTIES[usize::from(n)].to_owned(),
    };
    match change {
        Change::Payload { at, xor } => {
            if !e.payload.is_empty() {
                let i = usize::from(*at) % e.payload.len();
                e.payload[i] ^= xor;
            }
        }
        Change::Truncate(n) => e.payload.truncate(usize::from(*n)),
        Change::Append(tail) => e.payload.extend_from_slice(tail),
        Change::Signature { at, xor } => {
            if !e.signature.is_empty() {
                let i = usize::from(*at) % e.signature.len();
                e.signature[i] ^= xor;
            }
        }
        Change::Sequence(s) => e.sequence = *s,
        Change::Phase(p) => e.phase = *p,
        Change::Attempt(a) => e.attempt = *a,
        Change::Session(s) => e.session_id = s.clone(),
        Change::Sender(n) => e.sender = who(n),
        Change::Receiver(n) => e.receiver = who(n),
        Change::PayloadOf(n) => {
            if let Some((other, _)) = sealed.get(usize::from(*n) % sealed.len().max(1)) {
                e.payload = other.payload.clone();
            }
        }
    }
}

fn script(bytes: &[u8]) {
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return;
    };
    let (mut a, mut c, mut b) = (codec(0), codec(2), codec(1));
    let mut sealed: Vec<(pb::Envelope, Vec<u8>)> = Vec::new();
    for s in script.seals.iter().take(16) {
        let sender = if s.from_c { &mut c } else { &mut a };
        let receiver = s.to_b.then_some("b");
        let envelope = sender
            .seal(u32::from(s.phase), receiver, &s.message)
            .expect("sealing to a participant succeeds");
        sealed.push((envelope, s.message.clone()));
    }
    if sealed.is_empty() {
        return;
    }
    let mut last: HashMap<String, u64> = HashMap::new();
    for d in script.deliveries.iter().take(64) {
        let (original, message) = &sealed[usize::from(d.which) % sealed.len()];
        let mut envelope = original.clone();
        if let Some(change) = &d.change {
            alter(&mut envelope, change, &sealed);
        }
        let opened = b.open(&envelope);
        let genuine = sealed.iter().find(|(e, _)| *e == envelope);
        match (opened, genuine) {
            (Ok((phase, plain)), Some((e, m))) => {
                assert_eq!((phase, &plain), (e.phase, m), "opened to another message");
                let previous = last.insert(e.sender.clone(), e.sequence).unwrap_or(0);
                assert!(
                    e.sequence > previous,
                    "accepted sequence {} after {previous}",
                    e.sequence
                );
            }
            (Ok(_), None) => panic!("an altered envelope was accepted: {envelope:?}"),
            (Err(err), Some((e, _))) => {
                // A genuine envelope is refused only as a replay or reordering.
                let previous = last.get(&e.sender).copied().unwrap_or(0);
                assert!(
                    e.sequence <= previous,
                    "a genuine envelope (sequence {} after {previous}) was refused: {err}",
                    e.sequence
                );
            }
            (Err(_), None) => {}
        }
        let _ = message;
    }
}

fn run(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(e) = pb::Envelope::decode(rest) {
                open_raw(&e);
            }
        }
        1 => coordinator_message(rest),
        _ => script(rest),
    }
}

/// A broadcast and a point-to-point envelope from a to b, as sealed by a's codec; the same
/// inside a `CoordinatorMessage`; an assignment with the three identities; a short script.
fn make_seeds() -> Vec<(String, Vec<u8>)> {
    let mut a = codec(0);
    let mut seeds = Vec::new();
    if let (Ok(broadcast), Ok(p2p)) = (
        a.seal(1, None, b"round one commitment"),
        a.seal(1, Some("b"), b"round two share"),
    ) {
        seeds.push((
            "broadcast".to_owned(),
            [&[0u8][..], &broadcast.encode_to_vec()].concat(),
        ));
        seeds.push((
            "p2p".to_owned(),
            [&[0u8][..], &p2p.encode_to_vec()].concat(),
        ));
        let routed = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Envelope(p2p)),
        };
        seeds.push((
            "routed".to_owned(),
            [&[1u8][..], &routed.encode_to_vec()].concat(),
        ));
    }
    let p = parties();
    let assignment = pb::Assignment {
        session_id: SESSION.into(),
        identities: PARTIES
            .iter()
            .zip(&p.identities)
            .map(|(id, i)| pb::PartyIdentity {
                party_id: (*id).into(),
                signing_public_key: i.signing_public_key().to_vec(),
                encryption_public_key: i.encryption_public_key().to_vec(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let msg = pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::Assignment(assignment)),
    };
    seeds.push((
        "assignment".to_owned(),
        [&[1u8][..], &msg.encode_to_vec()].concat(),
    ));
    // A script: any bytes make one (`arbitrary`); these seal a few messages and deliver
    // them in order, then again.
    let script = vec![
        2u8, 1, 0, 0, 1, 1, b'm', 1, b'1', 0, 1, 1, 1, 1, 1, b'm', 0, 0, 0, 0, 1, 0, 2, 0,
    ];
    seeds.push(("script".to_owned(), script));
    seeds
}

fuzz_target!(
    init: mpc_fuzz::seeds("envelope_open", make_seeds),
    |data: &[u8]| run(data)
);
