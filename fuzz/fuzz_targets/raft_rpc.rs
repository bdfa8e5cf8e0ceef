//! The coordinator-to-coordinator Raft service (`proto/mpc/raft/v1/raft.proto`): the protobuf
//! envelope, then the openraft message inside it as `codec::decode` reads it on both ends.
//!
//! Input: a mode byte, then a protobuf message (`Payload`, or for mode 7 and up the
//! `ReadIndex` messages). The payload's `data` is decoded as:
//! - 0: `AppendEntriesRequest` (every normal entry's commands are validated, as a follower
//!   would before it applies them);
//! - 1: `VoteRequest`;
//! - 2: `InstallSnapshotRequest`, then `check_snapshot_chunk` on its offset and data, as the
//!   server does before openraft sees it;
//! - 3, 4, 5: the answers a leader decodes: append, vote and install-snapshot results;
//! - 6: a log entry on its own.
//!
//! The `Forward` RPC's `ForwardRequest` lives in mpc-coordinator (which needs RocksDB) and is
//! not covered here; its commands are `Command`s, covered by the `raft_entry` target.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpc_fuzz::{golden_log_entries, sample_commands, Bytes};
use mpc_proto::raft::v1::{Payload, ReadIndexRequest, ReadIndexResponse};
use mpc_raft_store::codec::{decode, encode};
use mpc_raft_store::{check_snapshot_chunk, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;

type Entry = openraft::Entry<TypeConfig>;

fn validate_entries(entries: &[Entry]) {
    for entry in entries {
        if let openraft::EntryPayload::Normal(p) = &entry.payload {
            for cmd in &p.commands {
                let _ = cmd.validate();
            }
        }
    }
}

fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let mode = input.u8();
    let body = input.rest();
    if mode >= 7 {
        let _ = ReadIndexRequest::decode(body);
        if let Ok(r) = ReadIndexResponse::decode(body) {
            let _ = r.has_index.then_some(r.index);
        }
        return;
    }
    let Ok(payload) = Payload::decode(body) else {
        return;
    };
    let data = payload.data.as_slice();
    let what = "raft request";
    match mode {
        0 => {
            if let Ok(rpc) = decode::<AppendEntriesRequest<TypeConfig>>(what, data) {
                validate_entries(&rpc.entries);
            }
        }
        1 => {
            let _ = decode::<VoteRequest<NodeId>>(what, data);
        }
        2 => {
            if let Ok(rpc) = decode::<InstallSnapshotRequest<TypeConfig>>(what, data) {
                let _ = check_snapshot_chunk(rpc.offset, rpc.data.len());
            }
        }
        3 => {
            let _ = decode::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(what, data);
        }
        4 => {
            let _ = decode::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(what, data);
        }
        5 => {
            let _ = decode::<
                Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
            >(what, data);
        }
        _ => {
            if let Ok(entry) = decode::<Entry>(what, data) {
                validate_entries(std::slice::from_ref(&entry));
            }
        }
    }
}

/// An AppendEntries request carrying the sample log and the golden log entries, a vote, a snapshot chunk, and
/// their answers, each in a `Payload`.
fn make_seeds() -> Vec<(String, Vec<u8>)> {
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};

    let sample = Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 1), 42),
        payload: openraft::EntryPayload::Normal(mpc_raft_store::Proposal {
            commands: sample_commands(),
        }),
    };
    let entries: Vec<Entry> = std::iter::once(sample)
        .chain(
            golden_log_entries()
                .into_iter()
                .filter_map(|(_, bytes)| decode::<Entry>("seed", &bytes).ok()),
        )
        .collect();
    let vote = Vote::new_committed(3, 1);
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 41);
    let mut seeds = Vec::new();
    let mut push = |name: &str, mode: u8, data: Result<Vec<u8>, _>| {
        if let Ok(data) = data {
            let payload = Payload { data }.encode_to_vec();
            seeds.push((name.to_owned(), [&[mode][..], &payload].concat()));
        }
    };
    push(
        "append",
        0,
        encode(
            "seed",
            &AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: Some(log_id),
                entries: entries.clone(),
                leader_commit: Some(log_id),
            },
        ),
    );
    push(
        "vote",
        1,
        encode("seed", &VoteRequest::<NodeId>::new(vote, Some(log_id))),
    );
    push(
        "snapshot-chunk",
        2,
        encode(
            "seed",
            &InstallSnapshotRequest::<TypeConfig> {
                vote,
                meta: SnapshotMeta {
                    last_log_id: Some(log_id),
                    last_membership: StoredMembership::default(),
                    snapshot_id: "3-1-41".into(),
                },
                offset: 65_536,
                data: vec![7; 64],
                done: false,
            },
        ),
    );
    push(
        "append-answer",
        3,
        encode(
            "seed",
            &Ok::<_, RaftError<NodeId>>(AppendEntriesResponse::<NodeId>::Success),
        ),
    );
    push(
        "vote-answer",
        4,
        encode(
            "seed",
            &Ok::<_, RaftError<NodeId>>(VoteResponse::<NodeId> {
                vote,
                vote_granted: true,
                last_log_id: Some(log_id),
            }),
        ),
    );
    if let Some(entry) = entries.first() {
        push("entry", 6, encode("seed", entry));
    }
    seeds.push((
        "read-index".to_owned(),
        [
            &[7u8][..],
            &ReadIndexResponse {
                index: 41,
                has_index: true,
            }
            .encode_to_vec(),
        ]
        .concat(),
    ));
    seeds
}

fuzz_target!(
    init: mpc_fuzz::seeds("raft_rpc", make_seeds),
    |data: &[u8]| run(data)
);
