//! Protocol messages as a party's transport hands them to a protocol run
//! (`mpc_tss::wire`: each payload is decoded as the round's message type), and the protocol
//! material a party reads back from its store (`mpc_tss::{KeyShare, AuxInfo, Presignature,
//! PrimePair, PartialSignature, Signature}`).
//!
//! Input: a mode byte, then
//! - 0, 1: messages for party 0 of a 2-of-3 Schnorr key generation (Ed25519, BIP-340);
//! - 2, 3: messages for signer 0 of a Schnorr signing (Ed25519, BIP-340) with a key generated
//!   once per process;
//!
//!   each message being a sender byte (mapped onto the other parties, as the party daemon
//!   only ever delivers a participant's message), a flags byte (bit 0: broadcast) and a u16
//!   length-prefixed payload. The run must end in an error (the stream ends) or a result,
//!   never a panic;
//! - 4 and up: a material selector byte, then bytes decoded as that material (see
//!   `material`).
//!
//! ECDSA runs are not driven here: they need auxiliary info, which costs seconds of Paillier
//! proofs per process. Their material decoders are covered.

#![no_main]

use std::future::Future;
use std::sync::OnceLock;

use futures::channel::mpsc;
use futures::executor::block_on;
use futures::future::join_all;
use futures::stream::{select_all, StreamExt};
use libfuzzer_sys::fuzz_target;
use mpc_fuzz::{push_field, repo_root, Bytes};
use mpc_tss::{
    AuxInfo, Channel, HashFunction, Incoming, KeyShare, PartialSignature, Presignature, PrimePair,
    Scheme, Signature, SigningInput, TssError,
};

const N: u16 = 3;
const T: u16 = 2;
const KEYGEN_EID: &[u8] = b"fuzz-keygen";
const SIGN_EID: &[u8] = b"fuzz-sign";
const MESSAGE: &[u8] = b"fuzz message";

fn scheme(bit: u8) -> Scheme {
    if bit % 2 == 0 {
        Scheme::SchnorrEd25519
    } else {
        Scheme::SchnorrBip340
    }
}

/// Runs `n` parties over an in-memory network and returns their results and every message
/// delivered to party 0.
fn run_network<R, F, Fut>(n: u16, party: F) -> (Vec<Result<R, TssError>>, Vec<Incoming>)
where
    F: Fn(u16, Channel) -> Fut,
    Fut: Future<Output = Result<R, TssError>>,
{
    let mut runs = Vec::new();
    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    for i in 0..n {
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, out_rx) = mpsc::unbounded();
        runs.push(party(i, Channel::new(in_rx, out_tx)));
        inboxes.push(in_tx);
        outboxes.push(out_rx.map(move |m| (i, m)));
    }
    let router = async move {
        let mut recorded = Vec::new();
        let mut outgoing = select_all(outboxes);
        while let Some((sender, message)) = outgoing.next().await {
            let targets: Vec<u16> = match message.receiver {
                Some(to) => vec![to],
                None => (0..n).filter(|&to| to != sender).collect(),
            };
            for to in targets {
                let incoming = Incoming {
                    sender,
                    broadcast: message.receiver.is_none(),
                    payload: message.payload.clone(),
                };
                if to == 0 {
                    recorded.push(incoming.clone());
                }
                if let Some(inbox) = inboxes.get(usize::from(to)) {
                    let _ = inbox.unbounded_send(incoming);
                }
            }
        }
        recorded
    };
    block_on(futures::future::join(join_all(runs), router))
}

/// A 2-of-3 key of each Schnorr scheme, generated once per process.
fn keys(scheme: Scheme) -> &'static [KeyShare] {
    static ED25519: OnceLock<Vec<KeyShare>> = OnceLock::new();
    static BIP340: OnceLock<Vec<KeyShare>> = OnceLock::new();
    let cell = match scheme {
        Scheme::SchnorrBip340 => &BIP340,
        _ => &ED25519,
    };
    cell.get_or_init(|| {
        let (results, _) = run_network(N, |i, ch| {
            mpc_tss::generate_key(scheme, KEYGEN_EID, i, N, T, None, ch)
        });
        results
            .into_iter()
            .map(|r| r.expect("key generation among honest parties succeeds"))
            .collect()
    })
}

/// Feeds the framed messages to one party's run and drives it until it ends.
fn drive<R, Fut: Future<Output = R>>(
    mut input: Bytes<'_>,
    others: u16,
    run: impl FnOnce(Channel) -> Fut,
) -> R {
    let (in_tx, in_rx) = mpsc::unbounded();
    let (out_tx, out_rx) = mpsc::unbounded();
    for _ in 0..24 {
        if input.is_empty() {
            break;
        }
        let sender = 1 + u16::from(input.u8()) % others;
        let broadcast = input.u8() & 1 == 1;
        let payload = input.field().to_vec();
        let _ = in_tx.unbounded_send(Incoming {
            sender,
            broadcast,
            payload,
        });
    }
    // The stream ends after these messages: a run still waiting fails instead of hanging.
    drop(in_tx);
    let result = block_on(run(Channel::new(in_rx, out_tx)));
    drop(out_rx);
    result
}

fn keygen(scheme: Scheme, input: Bytes<'_>) {
    let _ = drive(input, N - 1, |ch| {
        mpc_tss::generate_key(scheme, KEYGEN_EID, 0, N, T, None, ch)
    });
}

fn sign(scheme: Scheme, input: Bytes<'_>) {
    let share = &keys(scheme)[0];
    let request = SigningInput::Message {
        message: MESSAGE.to_vec(),
        hash: None,
    };
    let _ = drive(input, T - 1, |ch| {
        mpc_tss::sign(share, SIGN_EID, &[0, 1], &request, ch)
    });
}

fn material(mut input: Bytes<'_>) {
    match input.u8() % 6 {
        0 => {
            if let Ok(share) = KeyShare::from_bytes(input.rest()) {
                let _ = (
                    share.scheme(),
                    share.party_index(),
                    share.threshold(),
                    share.parties(),
                );
                let public_key = share.public_key();
                let again = share.to_bytes().expect("a decoded share encodes");
                let back = KeyShare::from_bytes(&again).expect("an encoded share decodes");
                assert_eq!(back.public_key().ok(), public_key.ok());
            }
        }
        1 => {
            if let Ok(aux) = AuxInfo::from_bytes(input.rest()) {
                let _ = (aux.party_index(), aux.group_size(), aux.to_bytes());
            }
        }
        2 => {
            if let Ok(p) = Presignature::from_bytes(input.rest()) {
                let _ = p.to_bytes();
                let _ = p.issue_partial(MESSAGE, HashFunction::Sha256).to_bytes();
            }
        }
        3 => {
            if let Ok(p) = PrimePair::from_bytes(input.rest()) {
                let _ = p.to_bytes();
            }
        }
        4 => {
            let public_key = input.field().to_vec();
            let hash = if input.u8() % 2 == 0 {
                HashFunction::Keccak256
            } else {
                HashFunction::Sha256
            };
            let partials: Vec<PartialSignature> = (0..4)
                .map(|_| input.field())
                .filter_map(|b| PartialSignature::from_bytes(b).ok())
                .collect();
            for p in &partials {
                let _ = p.to_bytes();
            }
            let _ = PartialSignature::combine(&partials, &public_key, MESSAGE, hash);
        }
        _ => {
            let scheme = match input.u8() % 3 {
                0 => Scheme::EcdsaSecp256k1,
                1 => Scheme::SchnorrEd25519,
                _ => Scheme::SchnorrBip340,
            };
            let public_key = input.field().to_vec();
            let signature = input.field();
            let request = match input.u8() % 3 {
                0 => SigningInput::Digest(HashFunction::Sha256.digest(MESSAGE)),
                1 => SigningInput::Message {
                    message: MESSAGE.to_vec(),
                    hash: Some(HashFunction::Keccak256),
                },
                _ => SigningInput::Message {
                    message: MESSAGE.to_vec(),
                    hash: None,
                },
            };
            let _ = request.validate_for(scheme);
            let _ = mpc_tss::ethereum_address(&public_key);
            if let Ok(sig) = Signature::from_bytes(scheme, signature) {
                assert_eq!(sig.to_bytes(), signature);
                let _ = mpc_tss::verify(scheme, &public_key, &request, &sig);
            }
        }
    }
}

fn run(data: &[u8]) {
    let mut input = Bytes(data);
    match input.u8() {
        m @ 0..=1 => keygen(scheme(m), input),
        m @ 2..=3 => sign(scheme(m), input),
        _ => material(input),
    }
}

fn frame(mode: u8, messages: &[Incoming]) -> Vec<u8> {
    let mut out = vec![mode];
    for m in messages {
        // `drive` maps sender byte s onto party 1 + s % others.
        out.push(u8::try_from(m.sender.saturating_sub(1)).unwrap_or(0));
        out.push(u8::from(m.broadcast));
        push_field(&mut out, &m.payload);
    }
    out
}

/// What honest parties send party 0 in a key generation and a signing, key shares and a
/// signature, a prime pair from the test data.
fn make_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for bit in 0..2u8 {
        let scheme = scheme(bit);
        let (_, to_zero) = run_network(N, |i, ch| {
            mpc_tss::generate_key(scheme, KEYGEN_EID, i, N, T, None, ch)
        });
        seeds.push((format!("keygen-{scheme}"), frame(bit, &to_zero)));
        let shares = keys(scheme);
        let request = SigningInput::Message {
            message: MESSAGE.to_vec(),
            hash: None,
        };
        let (signatures, to_zero) = run_network(T, |i, ch| {
            let share = &shares[usize::from(i)];
            let request = request.clone();
            async move { mpc_tss::sign(share, SIGN_EID, &[0, 1], &request, ch).await }
        });
        seeds.push((format!("sign-{scheme}"), frame(2 + bit, &to_zero)));
        if let Ok(bytes) = shares[0].to_bytes() {
            seeds.push((format!("share-{scheme}"), [&[4u8, 0][..], &bytes].concat()));
        }
        if let (Some(Ok(sig)), Ok(public_key)) = (signatures.first(), shares[0].public_key()) {
            let mut seed = vec![4u8, 5, 1 + bit];
            push_field(&mut seed, &public_key);
            push_field(&mut seed, &sig.to_bytes());
            seed.push(2);
            seeds.push((format!("signature-{scheme}"), seed));
        }
    }
    if let Ok(text) = std::fs::read_to_string(repo_root().join("crates/tss/testdata/primes.jsonl"))
    {
        if let Some(line) = text.lines().find(|l| !l.trim().is_empty()) {
            seeds.push((
                "primes".to_owned(),
                [&[4u8, 3][..], line.as_bytes()].concat(),
            ));
        }
    }
    seeds
}

fuzz_target!(
    init: mpc_fuzz::seeds("tss_wire", make_seeds),
    |data: &[u8]| run(data)
);
