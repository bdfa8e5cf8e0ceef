//! Raft log entries and the stored records of the state machine, as `codec::decode` reads
//! them from the log, from RocksDB and from peers.
//!
//! Input: a mode byte, then the encoded bytes (`codec` format: version byte, postcard).
//! - 0: a `Proposal` (the command batch of one log entry);
//! - 1: a whole `openraft::Entry<TypeConfig>`;
//! - 2: a state, then a `Proposal`: a record count, that many records (table tag byte, key and
//!   value as u16-length fields) loaded as the tables, then the proposal applied on top, so
//!   that apply meets stored records that do not decode or do not fit;
//! - 3 and up: one record type of `mpc_raft_store::model` (see `decode_record`).
//!
//! Every command that decodes is validated and applied twice (two replicas must agree), and
//! every value that decodes must encode back to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpc_fuzz::{
    apply_deterministically, golden_log_entries, push_field, sample_commands, Bytes, MemTxn,
};
use mpc_raft_store::apply::Table;
use mpc_raft_store::codec::{decode, encode};
use mpc_raft_store::model::{
    AuditEvent, IdempotencyRecord, KeyRecord, KeyUpdateRecord, PartyRecord, PresignatureRecord,
    SessionRecord, TokenRecord,
};
use mpc_raft_store::{
    Command, CommandResponse, NodeInfo, Proposal, ProposalResponse, Rejection, TypeConfig,
};
use serde::{de::DeserializeOwned, Serialize};

type Entry = openraft::Entry<TypeConfig>;

/// Decodes a `T`; when it decodes, checks that it encodes back to the same value.
fn roundtrip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = decode("fuzz", bytes).ok()?;
    let again = encode("fuzz", &value).expect("a decoded value encodes");
    let back: T = decode("fuzz", &again).expect("an encoded value decodes");
    assert_eq!(value, back, "decode(encode(v)) != v");
    Some(value)
}

fn check_commands(state: &MemTxn, commands: &[Command]) {
    for cmd in commands {
        let _ = cmd.validate();
        let _ = cmd.op.is_scheduler_only();
    }
    // Two entries in a row: the second meets what the first wrote (duplicates, idempotency).
    let after = apply_deterministically(state, 1, commands);
    apply_deterministically(&after, 2, commands);
}

fn decode_record(kind: u8, bytes: &[u8]) {
    match kind % 12 {
        0 => {
            roundtrip::<SessionRecord>(bytes);
        }
        1 => {
            roundtrip::<KeyRecord>(bytes);
        }
        2 => {
            if let Some(party) = roundtrip::<PartyRecord>(bytes) {
                if let Some(enrolment) = party.enrolment() {
                    let _ = enrolment.verifies();
                }
            }
        }
        3 => {
            roundtrip::<TokenRecord>(bytes);
        }
        4 => {
            if let Some(event) = roundtrip::<AuditEvent>(bytes) {
                let _ = event.expected_hash() == event.hash;
            }
        }
        5 => {
            roundtrip::<IdempotencyRecord>(bytes);
        }
        6 => {
            roundtrip::<KeyUpdateRecord>(bytes);
        }
        7 => {
            roundtrip::<PresignatureRecord>(bytes);
        }
        8 => {
            roundtrip::<NodeInfo>(bytes);
        }
        9 => {
            if let Some(cmd) = roundtrip::<Command>(bytes) {
                check_commands(&MemTxn::default(), std::slice::from_ref(&cmd));
            }
        }
        10 => {
            roundtrip::<CommandResponse>(bytes);
            roundtrip::<Rejection>(bytes);
        }
        _ => {
            roundtrip::<ProposalResponse>(bytes);
        }
    }
}

fn run(data: &[u8]) {
    let mut input = Bytes(data);
    match input.u8() {
        0 => {
            if let Some(p) = roundtrip::<Proposal>(input.rest()) {
                check_commands(&MemTxn::default(), &p.commands);
            }
        }
        1 => {
            if let Ok(entry) = decode::<Entry>("fuzz", input.rest()) {
                if let openraft::EntryPayload::Normal(p) = &entry.payload {
                    check_commands(&MemTxn::default(), &p.commands);
                }
            }
        }
        2 => {
            let mut state = MemTxn::default();
            for _ in 0..input.u8() % 16 {
                let tag = input.u8();
                let key = input.field().to_vec();
                let value = input.field().to_vec();
                if let Some(table) = Table::from_snapshot_tag(tag) {
                    state.0.insert((table, key), value);
                }
            }
            if let Ok(p) = decode::<Proposal>("fuzz", input.rest()) {
                check_commands(&state, &p.commands);
            }
        }
        kind => decode_record(kind - 3, input.rest()),
    }
}

/// Seeds: the sample log of `mpc_fuzz::sample_commands` and the project's golden log entries
/// that still decode, as a proposal and as an entry; the state the first half of the sample
/// leaves with the second half on top; and each kind of record that state holds.
fn make_seeds() -> Vec<(String, Vec<u8>)> {
    let mut proposals = vec![("sample".to_owned(), sample_commands())];
    for (name, bytes) in golden_log_entries() {
        if let Ok(entry) = decode::<Entry>("seed", &bytes) {
            if let openraft::EntryPayload::Normal(p) = entry.payload {
                proposals.push((name, p.commands));
            }
        }
    }
    let mut seeds = Vec::new();
    for (name, commands) in &proposals {
        let proposal = Proposal {
            commands: commands.clone(),
        };
        if let Ok(bytes) = encode("seed", &proposal) {
            seeds.push((format!("proposal-{name}"), [&[0u8][..], &bytes].concat()));
        }
        let entry = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(7, 2), 42),
            payload: openraft::EntryPayload::Normal(proposal),
        };
        if let Ok(bytes) = encode("seed", &entry) {
            seeds.push((format!("entry-{name}"), [&[1u8][..], &bytes].concat()));
        }
    }
    let sample = sample_commands();
    let (first, second) = sample.split_at(sample.len() / 2);
    let state = apply_deterministically(&MemTxn::default(), 1, first);
    let mut with_state = vec![2u8, u8::try_from(state.0.len().min(15)).unwrap_or(0)];
    let mut kinds = std::collections::BTreeSet::new();
    for ((table, key), value) in state.0.iter().take(15) {
        with_state.push(table.snapshot_tag());
        push_field(&mut with_state, key);
        push_field(&mut with_state, value);
    }
    if let Ok(bytes) = encode(
        "seed",
        &Proposal {
            commands: second.to_vec(),
        },
    ) {
        with_state.extend_from_slice(&bytes);
        seeds.push(("state-sample".to_owned(), with_state));
    }
    let full = apply_deterministically(&MemTxn::default(), 1, &sample);
    for ((table, _), value) in &full.0 {
        let kind = match table {
            Table::Sessions => 0,
            Table::Keys => 1,
            Table::Parties => 2,
            Table::Tokens => 3,
            Table::Audit => 4,
            Table::Idempotency => 5,
            Table::KeyUpdates => 6,
            Table::Presignatures => 7,
            _ => continue,
        };
        if kinds.insert(kind) {
            seeds.push((
                format!("record-{}", table.cf_name()),
                [&[3u8 + kind][..], value].concat(),
            ));
        }
    }
    seeds
}

fuzz_target!(
    init: mpc_fuzz::seeds("raft_entry", make_seeds),
    |data: &[u8]| run(data)
);
