//! The recorded history: one JSON object per line, appended by the load generator, by the
//! fault scripts (nemesis events) and by probes, and read back by the checker. Times are
//! microseconds since the Unix epoch, so events written by different processes on one host
//! share a clock.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A key whose description the load treats as a register, with its value at the start.
    Register {
        key_id: String,
        scheme: String,
        /// Hex.
        public_key: String,
        initial: String,
    },
    /// Boxed: by far the largest variant.
    Op(Box<Op>),
    /// A node said it was the leader in `term`.
    Leader { at_us: u64, node: u64, term: u64 },
    /// A fault the scenario injected or healed ("kill", "start", "partition", "heal", ...).
    Nemesis {
        at_us: u64,
        action: String,
        target: String,
        /// The fault leaves the parties unable to reach the coordinators' majority (a
        /// partition whose majority side they are not on): no signing can complete until it
        /// heals, so the checker does not demand one after this fault.
        #[serde(default, skip_serializing_if = "is_false")]
        parties_cut_off: bool,
    },
    /// The load's bounds: the checker measures unavailability between these.
    Load { at_us: u64, phase: LoadPhase },
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPhase {
    Start,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// UpdateKey(description = value).
    Write,
    /// GetKey, linearizable; `value` is the description read.
    Read,
    /// CreateSigning (of a message, or of a raw digest) with a fresh request id, then
    /// waiting for the outcome.
    Sign,
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: it happened.
    Ok,
    /// Refused for certain: it did not happen.
    Fail,
    /// No answer (timeout, lost connection, no leader): it may or may not have happened.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: String,
    pub kind: OpKind,
    pub key_id: String,
    /// Write: the value written; read: the value read (when Ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub start_us: u64,
    pub end_us: u64,
    pub outcome: Outcome,
    /// The node that answered last, or the last one tried.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Probes made during a partition say what the scenario requires of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignDetail {
    pub request_id: String,
    /// Hex; empty when a raw digest was signed.
    pub message: String,
    /// ECDSA: the hash the signers apply to `message` ("keccak256"); absent for a raw digest
    /// and for Schnorr schemes, which sign the message itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// ECDSA: the 32-byte digest signed as it is (hex), instead of a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Set once a CreateSigning was acknowledged: the session must exist from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The session's last status seen ("completed", "failed", "expired", "running", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Hex, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    /// When the initiator's approval expires (milliseconds since the epoch): part of the
    /// request, so that it can be re-sent unchanged.
    #[serde(default)]
    pub not_after_ms: u64,
    /// The presignature that served the signing, as the session reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presignature_id: Option<String>,
    /// Final reads only: re-sending the unacknowledged request created its session just now
    /// (the load's own request was never committed), so the signing is the checker's work,
    /// not the load's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub created_by_final_read: bool,
}

impl SignDetail {
    /// What the request signed, as the platform reads a request's fields (a digest, or a
    /// message with its hash function), so that checks and retries use the same input.
    pub fn signing_input(&self) -> Result<mpc_tss::SigningInput, String> {
        let message = hex::decode(&self.message).map_err(|e| format!("message: {e}"))?;
        let digest = match &self.digest {
            Some(d) => hex::decode(d).map_err(|e| format!("digest: {e}"))?,
            None => Vec::new(),
        };
        mpc_tss::SigningInput::from_fields(&digest, &message, self.hash.as_deref().unwrap_or(""))
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("history writer stopped: {0}")]
    WriterStopped(String),
}

/// Reads every event of the given files, in file order.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for path in paths {
        let io = |source| HistoryError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                path: path.clone(),
                line: n + 1,
                source,
            })?;
            events.push(event);
        }
    }
    Ok(events)
}

/// Appends events from any task: a dedicated thread owns the file, so the runtime never
/// waits on the disk, and each event is one line written whole and flushed.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
}

#[derive(Debug)]
pub struct RecorderThread {
    handle: JoinHandle<Result<u64, HistoryError>>,
}

impl Recorder {
    /// `None` writes to standard output.
    pub fn start(path: Option<&Path>) -> Result<(Self, RecorderThread), HistoryError> {
        let mut out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| HistoryError::Io {
                        path: p.to_owned(),
                        source,
                    })?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let shown = path.map_or_else(|| PathBuf::from("<stdout>"), Path::to_owned);
        let (tx, rx) = mpsc::channel::<Event>();
        let handle = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                let mut written = 0u64;
                for event in rx {
                    let mut line = serde_json::to_vec(&event).map_err(|e| {
                        HistoryError::WriterStopped(format!("cannot encode an event: {e}"))
                    })?;
                    line.push(b'\n');
                    out.write_all(&line)
                        .and_then(|()| out.flush())
                        .map_err(|source| HistoryError::Io {
                            path: shown.clone(),
                            source,
                        })?;
                    written += 1;
                }
                Ok(written)
            })
            .map_err(|e| HistoryError::WriterStopped(e.to_string()))?;
        Ok((Self { tx }, RecorderThread { handle }))
    }

    pub fn record(&self, event: Event) {
        // A stopped writer surfaces its error from `RecorderThread::finish`.
        let _ = self.tx.send(event);
    }
}

impl RecorderThread {
    /// Waits until every event sent before all `Recorder`s were dropped is on disk.
    pub fn finish(self) -> Result<u64, HistoryError> {
        self.handle
            .join()
            .map_err(|_| HistoryError::WriterStopped("the writer thread panicked".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let (rec, thread) = Recorder::start(Some(&path)).unwrap();
        let op = Event::Op(Box::new(Op {
            client: "c1".into(),
            kind: OpKind::Write,
            key_id: "k".into(),
            value: Some("v".into()),
            start_us: 1,
            end_us: 2,
            outcome: Outcome::Unknown,
            endpoint: "n1".into(),
            error: Some("deadline".into()),
            expect: None,
            sign: None,
        }));
        rec.record(op.clone());
        rec.record(Event::Leader {
            at_us: 3,
            node: 2,
            term: 4,
        });
        drop(rec);
        assert_eq!(thread.finish().unwrap(), 2);
        let events = read(&[path]).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], op);
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(
            &path,
            "{\"type\":\"leader\",\"at_us\":1,\"node\":1,\"term\":1}\n{oops\n",
        )
        .unwrap();
        let err = read(&[path]).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
