//! Snapshots as a follower receives them from the leader, and the InstallSnapshot chunk check.
//!
//! The reader (`crates/raft-store/src/snapshot_format.rs`) is `pub(crate)`, so this target
//! compiles that very file into itself (`#[path]`), with the three crate-internal names it
//! imports supplied below from the public API. Nothing of the reader is copied: a change to
//! the file is fuzzed as soon as it is saved. (If `mpc-raft-store` ever exports a reader,
//! use it and drop the shims.)
//!
//! Input: a mode byte.
//! - even: the rest is a whole snapshot. It is read record by record as
//!   `StateMachine::install_snapshot` reads it, every record's table tag is mapped, its value
//!   decoded as that table's record type, and the records loaded as a state on which a few
//!   commands from the golden log entries are applied (apply must survive any stored state).
//! - odd: the rest is pairs of (offset u64, length u64), each checked with
//!   `check_snapshot_chunk`, whose answer must be exactly "ends within the bound".

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mpc_fuzz::{apply_deterministically, golden_log_entries, sample_commands, Bytes, MemTxn};
use mpc_raft_store::apply::Table;
use mpc_raft_store::codec::decode;
use mpc_raft_store::model::{
    AuditEvent, IdempotencyRecord, KeyRecord, KeyUpdateRecord, PartyRecord, PresignatureRecord,
    SessionRecord, TokenRecord,
};
#[allow(unused_imports)]
use mpc_raft_store::{
    check_snapshot_chunk, Command, NodeId, NodeInfo, Proposal, StoreError, TypeConfig,
    MAX_SNAPSHOT_BYTES,
};

/// What `snapshot_format.rs` imports from `crate::codec`.
mod codec {
    #[allow(unused_imports)]
    pub(crate) use mpc_raft_store::codec::*;
}

/// What `snapshot_format.rs` imports from `crate::snapshot_file`: its error type and helper,
/// of the same shape as the crate's own.
mod snapshot_file {
    use std::io;
    use std::path::{Path, PathBuf};

    use mpc_raft_store::StoreError;

    #[derive(Debug)]
    pub(crate) enum SnapshotError {
        Store(StoreError),
        #[allow(dead_code)]
        Io {
            op: &'static str,
            path: PathBuf,
            source: io::Error,
        },
    }

    impl From<StoreError> for SnapshotError {
        fn from(e: StoreError) -> Self {
            SnapshotError::Store(e)
        }
    }

    impl std::fmt::Display for SnapshotError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                SnapshotError::Store(e) => e.fmt(f),
                SnapshotError::Io { op, path, source } => {
                    write!(
                        f,
                        "snapshot file {op} failed at {}: {source}",
                        path.display()
                    )
                }
            }
        }
    }

    pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { op, path, source }
    }
}

#[path = "../../crates/raft-store/src/snapshot_format.rs"]
#[allow(dead_code, unused_imports, clippy::all)]
mod snapshot_format;

use snapshot_format::{encode_header, write_record, Membership, SnapshotHeader, SnapshotReader};

type Entry = openraft::Entry<TypeConfig>;

/// The sample log and the commands of the golden log entries, applied on every snapshot
/// state.
fn golden_commands() -> &'static [Command] {
    static COMMANDS: std::sync::OnceLock<Vec<Command>> = std::sync::OnceLock::new();
    COMMANDS.get_or_init(|| {
        let golden = golden_log_entries()
            .into_iter()
            .filter_map(|(_, bytes)| decode::<Entry>("golden", &bytes).ok())
            .filter_map(|e| match e.payload {
                openraft::EntryPayload::Normal(Proposal { commands }) => Some(commands),
                _ => None,
            })
            .flatten();
        sample_commands().into_iter().chain(golden).collect()
    })
}

fn decode_value(table: Table, value: &[u8]) {
    let what = "snapshot record";
    match table {
        Table::Keys => drop(decode::<KeyRecord>(what, value)),
        Table::Sessions => drop(decode::<SessionRecord>(what, value)),
        Table::Parties => drop(decode::<PartyRecord>(what, value)),
        Table::Idempotency => drop(decode::<IdempotencyRecord>(what, value)),
        Table::Audit => drop(decode::<AuditEvent>(what, value)),
        Table::Presignatures => drop(decode::<PresignatureRecord>(what, value)),
        Table::KeyUpdates => drop(decode::<KeyUpdateRecord>(what, value)),
        Table::Tokens => drop(decode::<TokenRecord>(what, value)),
        _ => {}
    }
}

fn read_snapshot(bytes: &[u8]) {
    let Ok((mut reader, header)) =
        SnapshotReader::open(bytes, bytes.len() as u64, Path::new("fuzz"))
    else {
        return;
    };
    let _ = (
        header.last_applied,
        header.membership.membership().voter_ids().count(),
    );
    let mut state = MemTxn::default();
    let mut count = 0usize;
    loop {
        match reader.next_record() {
            Ok(Some((tag, key, value))) => {
                count += 1;
                let Some(table) = Table::from_snapshot_tag(tag) else {
                    // install_snapshot refuses the snapshot here.
                    return;
                };
                decode_value(table, &value);
                state.0.insert((table, key), value);
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    // Every record read took at least three bytes of the snapshot.
    assert!(
        count.saturating_mul(3) <= bytes.len(),
        "more records than bytes"
    );
    if reader.finish().is_err() {
        return;
    }
    apply_deterministically(&state, u64::MAX - 1, golden_commands());
}

fn check_chunks(mut input: Bytes<'_>) {
    while !input.is_empty() {
        let offset = input.u64();
        let len = input.u64();
        let Ok(len) = usize::try_from(len) else {
            continue;
        };
        let fits = u128::from(offset) + len as u128 <= u128::from(MAX_SNAPSHOT_BYTES);
        assert_eq!(
            check_snapshot_chunk(offset, len).is_ok(),
            fits,
            "chunk at {offset} of {len} bytes"
        );
    }
}

fuzz_target!(
    init: mpc_fuzz::seeds("snapshot", make_seeds),
    |data: &[u8]| {
        let mut input = Bytes(data);
        if input.u8() % 2 == 0 {
            read_snapshot(input.rest());
        } else {
            check_chunks(input);
        }
    }
);

/// A snapshot of the state the sample log and the golden entries leave, written with the crate's own writer;
/// an empty one; and chunk checks around the bound.
fn make_seeds() -> Vec<(String, Vec<u8>)> {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, LogId, Membership as RaftMembership};

    let state = apply_deterministically(&MemTxn::default(), 1, golden_commands());
    let nodes = BTreeMap::from([
        (
            1,
            NodeInfo {
                grpc_addr: "10.0.0.1:7000".into(),
                http_addr: "10.0.0.1:8080".into(),
                ..Default::default()
            },
        ),
        (
            2,
            NodeInfo {
                grpc_addr: "10.0.0.2:7000".into(),
                http_addr: "10.0.0.2:8080".into(),
                ..Default::default()
            },
        ),
    ]);
    let header = SnapshotHeader {
        last_applied: Some(LogId::new(CommittedLeaderId::new(3, 1), 300)),
        membership: Membership::new(
            Some(LogId::new(CommittedLeaderId::new(2, 1), 7)),
            RaftMembership::new(vec![BTreeSet::from([1, 2])], nodes),
        ),
    };
    let mut seeds = Vec::new();
    let mut full = vec![0u8];
    if let Ok(head) = encode_header(&header, state.0.len() as u64) {
        full.extend_from_slice(&head);
        for ((table, key), value) in &state.0 {
            let _ = write_record(&mut full, table.snapshot_tag(), key, value);
        }
        seeds.push(("golden-state".to_owned(), full));
    }
    let empty = SnapshotHeader {
        last_applied: None,
        membership: Membership::default(),
    };
    if let Ok(head) = encode_header(&empty, 0) {
        seeds.push(("empty".to_owned(), [&[0u8][..], &head].concat()));
    }
    let mut chunks = vec![1u8];
    for (offset, len) in [
        (0u64, 65_536u64),
        (MAX_SNAPSHOT_BYTES - 1, 1),
        (MAX_SNAPSHOT_BYTES, 1),
        (u64::MAX, 1),
    ] {
        chunks.extend_from_slice(&offset.to_le_bytes());
        chunks.extend_from_slice(&len.to_le_bytes());
    }
    seeds.push(("chunks".to_owned(), chunks));
    seeds
}
