//! Helpers shared by the fuzz targets of mpc (see `docs/fuzzing.md`).
//!
//! - [`Bytes`]: a reader for the simple framings the targets use (a mode byte, then
//!   length-prefixed fields), so that seeds can be written by hand or by a target itself.
//! - [`MemTxn`]: the replicated tables as an in-memory map, for running
//!   `mpc_raft_store::apply::apply_command` without RocksDB.
//! - [`seeds`]: every target can write its own seed corpus (`MPC_FUZZ_WRITE_SEEDS=<dir>`), made
//!   with the project's own encoders, so that seeds follow format changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mpc_raft_store::apply::{apply_command, LogPosition, StateTxn, Table};
use mpc_raft_store::{Command, StoreError};

/// The largest committed seed, in bytes.
pub const MAX_SEED_LEN: usize = 4096;

/// Reads a fuzz input front to back; every read past the end yields zeros or nothing, so a
/// target never has to reject an input for being short.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for slot in &mut b {
            *slot = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// A field prefixed by its length as a little-endian u16.
    pub fn field(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends `field` with the u16 length prefix [`Bytes::field`] reads.
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&field[..usize::from(len)]);
}

/// The state machine's tables as a plain map: `apply_command` runs on it exactly as on
/// RocksDB.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemTxn(pub BTreeMap<(Table, Vec<u8>), Vec<u8>>);

impl StateTxn for MemTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(&(table, key.to_vec())).cloned())
    }

    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert((table, key), value);
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.0.remove(&(table, key));
    }
}

/// Applies `commands` as one log entry at `index` and describes every outcome, so that two
/// runs can be compared: apply must be deterministic.
pub fn apply_entry(txn: &mut MemTxn, index: u64, commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .zip(0u32..)
        .map(|(cmd, position)| {
            match apply_command(txn, LogPosition { index, position }, cmd) {
                Ok(applied) => format!("{:?} {:?}", applied.response, applied.session),
                // A store error stops the node; on a map it can only be a record that does not
                // decode, which is a fine answer to a corrupt state.
                Err(e) => format!("store error: {e}"),
            }
        })
        .collect()
}

/// Applies `commands` to two copies of `state` and checks both runs agree.
pub fn apply_deterministically(state: &MemTxn, index: u64, commands: &[Command]) -> MemTxn {
    let mut first = state.clone();
    let mut second = state.clone();
    let a = apply_entry(&mut first, index, commands);
    let b = apply_entry(&mut second, index, commands);
    assert_eq!(a, b, "apply answered differently on two replicas");
    assert!(
        first == second,
        "apply wrote different state on two replicas"
    );
    first
}

/// The golden log entries the project keeps (`crates/raft-store/testdata/log-entry-v*.hex`),
/// decoded from hex; for seeds only.
pub fn golden_log_entries() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("crates/raft-store/testdata");
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("log-entry-") && name.ends_with(".hex")) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                if let Ok(bytes) = hex::decode(text.trim()) {
                    out.push((name.trim_end_matches(".hex").to_owned(), bytes));
                }
            }
        }
    }
    out.sort();
    out
}

/// The repository's root: the parent of this crate.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// If `MPC_FUZZ_WRITE_SEEDS` names a directory, writes the seeds `make` returns there (each
/// named `seed-<name>`) and exits; otherwise does nothing. Called from each target's `init`.
pub fn seeds(target: &str, make: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(dir) = std::env::var_os("MPC_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{target}: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let mut written = 0;
    for (name, bytes) in make() {
        if bytes.len() > MAX_SEED_LEN {
            eprintln!(
                "{target}: seed {name} is {} bytes, over {MAX_SEED_LEN}: skipped",
                bytes.len()
            );
            continue;
        }
        let path = dir.join(format!("seed-{name}"));
        if let Err(e) = std::fs::write(&path, &bytes) {
            eprintln!("{target}: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        written += 1;
    }
    eprintln!("{target}: wrote {written} seeds to {}", dir.display());
    std::process::exit(0);
}

/// A fixed Ed25519 key per name, for seeds.
pub fn seed_key(name: &str) -> ed25519_dalek::SigningKey {
    let mut seed = [0x5eu8; 32];
    for (slot, b) in seed.iter_mut().zip(name.bytes()) {
        *slot ^= b;
    }
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// A log of commands that touches most tables: three parties enrolled and registered, a
/// keygen under an admin-signed policy, started; a token made and revoked; a session
/// expired. For seeds only (the one place here that spells out command fields: when they
/// change, this is what to update).
pub fn sample_commands() -> Vec<Command> {
    use std::collections::BTreeMap;

    use mpc_raft_store::command::{CreateKeygen, RegisterParty};
    use mpc_raft_store::model::{AccessRole, Endorsed, Enrolment, KeyPolicy, Scheme, TokenRecord};
    use mpc_raft_store::Operation;

    let admin = seed_key("admin");
    let parties = ["party-1", "party-2", "party-3"];
    let at = |at_ms: u64, op: Operation| Command {
        at_ms,
        actor: "client:admin".into(),
        op,
    };
    let mut commands = Vec::new();
    for p in parties {
        let enrolment = Enrolment {
            party_id: p.into(),
            signing_public_key: seed_key(p).verifying_key().to_bytes(),
            encryption_public_key: [9; 32],
        };
        commands.push(at(
            1_000,
            Operation::EnrollParty(Endorsed::new(&admin, enrolment)),
        ));
        commands.push(at(
            2_000,
            Operation::RegisterParty(RegisterParty {
                party_id: p.into(),
                signing_public_key: seed_key(p).verifying_key().to_bytes().to_vec(),
                encryption_public_key: vec![9; 32],
                endpoint: format!("{p}:7443"),
            }),
        ));
    }
    let policy = KeyPolicy {
        key_id: "k1".into(),
        scheme: "schnorr-bip340".into(),
        threshold: 2,
        parties: parties.iter().map(|p| p.to_string()).collect(),
        initiators: vec![seed_key("initiator").verifying_key().to_bytes()],
        approvals_needed: 1,
        version: 1,
    };
    commands.push(at(
        3_000,
        Operation::CreateKeygen(CreateKeygen {
            session_id: "s1".into(),
            key_id: "k1".into(),
            scheme: Scheme::SchnorrBip340,
            threshold: 2,
            parties: parties.iter().map(|p| p.to_string()).collect(),
            request_id: Some("req-1".into()),
            description: "cold wallet".into(),
            tags: BTreeMap::from([("env".into(), "prod".into())]),
            deadline_ms: 300_000,
            policy: Endorsed::new(&admin, policy),
        }),
    ));
    commands.push(at(
        4_000,
        Operation::StartSession {
            session_id: "s1".into(),
            parties: parties.iter().map(|p| p.to_string()).collect(),
            presignature_id: None,
        },
    ));
    commands.push(at(
        5_000,
        Operation::CreateToken(TokenRecord {
            token_id: "0123456789abcdef".into(),
            name: "ci-bot".into(),
            role: AccessRole::Signer,
            keys: vec!["k1".into(), "tag:env=prod".into()],
            secret_hash: [3; 32],
            created_by: String::new(),
            created_at_ms: 0,
            expires_at_ms: None,
            revoked_at_ms: None,
        }),
    ));
    commands.push(at(
        6_000,
        Operation::RevokeToken {
            token_id: "0123456789abcdef".into(),
        },
    ));
    commands.push(at(
        400_000,
        Operation::ExpireSession {
            session_id: "s1".into(),
        },
    ));
    commands
}
