//! Judges a recorded history: acknowledged writes that vanished, two leaders in one term, two
//! signatures for one request, signatures that do not verify (each with its scheme's input:
//! ECDSA over the digest its hash gives), presignatures spent on raw digests, sessions that
//! never ended, signings whose outcome nobody settled, probes that contradict the partition,
//! faults after which writes or signings did not resume, histories that are not linearizable,
//! and runs that did less work than their scenario demands. Pure: it reads events and returns
//! findings, so that a saved history can be judged again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mpc_tss::Scheme;
use serde::Serialize;

use crate::history::{Event, LoadPhase, Op, OpKind, Outcome, SignDetail};
use crate::linearizable::{check_register, RegisterOp, TimedOp, Verdict};

/// The client name of the reads made after recovery.
pub const FINAL_CLIENT: &str = "final";

/// The least work a scenario's load must show, or the run proves nothing: a scenario whose
/// load never wrote, or never signed with one of the schemes, would pass every other check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Floors {
    /// Writes of the load acknowledged.
    pub writes_acked: usize,
    /// Linearizable reads of the load answered.
    pub reads_ok: usize,
    /// Completed signings of the load, per scheme.
    pub signed_ecdsa: usize,
    pub signed_ed25519: usize,
    pub signed_bip340: usize,
    /// Completed ECDSA signings served from a presignature.
    pub presigned: usize,
    /// Partition probes recorded: exactly this many (a probe that never ran records nothing).
    pub probes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub faults: BTreeMap<String, usize>,
    pub ops: usize,
    pub writes_acked: usize,
    pub writes_unknown: usize,
    /// The load's linearizable reads that were answered (not the final reads, not probes).
    pub reads_ok: usize,
    /// Signing requests completed, counted once each: seen completed by the load, or of
    /// unknown outcome to it and found completed by the final reads.
    pub signatures: usize,
    pub signed_ecdsa: usize,
    pub signed_ed25519: usize,
    pub signed_bip340: usize,
    /// Of the ECDSA ones, served from a presignature.
    pub presigned: usize,
    pub sign_failed: usize,
    pub probes: usize,
    pub max_unavailable_ms: u64,
    /// For each fault: how long until the next acknowledged write, and signing, begun after it.
    pub recoveries: Vec<Recovery>,
    pub lost: Vec<String>,
    pub linearizable: LinearizableSummary,
    pub split_brain: Vec<String>,
    pub double_signed: Vec<String>,
    pub bad_signatures: Vec<String>,
    /// Signings served from a presignature whose input does not allow one (a raw digest).
    pub presignature_misuse: Vec<String>,
    pub stuck_sessions: Vec<String>,
    /// Signing requests whose outcome neither the load nor the final reads established.
    pub unresolved: Vec<String>,
    pub probe_violations: Vec<String>,
    /// Faults after which no write begun later was acknowledged.
    pub writes_not_resumed: Vec<String>,
    /// Faults (the parties not cut off) after which no signing begun later completed.
    pub signing_not_resumed: Vec<String>,
    /// Work below the scenario's floors.
    pub below_floor: Vec<String>,
    /// The history lacks what every run records (the load's start and end markers).
    pub history_errors: Vec<String>,
    pub terms: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub action: String,
    pub target: String,
    /// The parties could not reach the majority during this fault.
    pub parties_cut_off: bool,
    /// From the fault to the end of the first write begun after it and acknowledged.
    pub first_ack_ms: Option<u64>,
    /// From the fault to the end of the first signing that began after it and completed.
    pub first_signature_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Search steps per key before the linearizability check gives up.
    pub max_steps: u64,
    pub floors: Floors,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LinearizableSummary {
    pub keys: usize,
    pub violations: Vec<String>,
    pub undecided: Vec<String>,
}

impl LinearizableSummary {
    pub fn word(&self) -> &'static str {
        if !self.violations.is_empty() {
            "no"
        } else if !self.undecided.is_empty() {
            "unknown"
        } else {
            "yes"
        }
    }
}

impl Findings {
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.linearizable.violations.is_empty()
            && self.linearizable.undecided.is_empty()
            && self.split_brain.is_empty()
            && self.double_signed.is_empty()
            && self.bad_signatures.is_empty()
            && self.presignature_misuse.is_empty()
            && self.stuck_sessions.is_empty()
            && self.unresolved.is_empty()
            && self.probe_violations.is_empty()
            && self.writes_not_resumed.is_empty()
            && self.signing_not_resumed.is_empty()
            && self.below_floor.is_empty()
            && self.history_errors.is_empty()
    }

    /// One line: `kills=… lost=0 max_unavailable_ms=… linearizable=yes … signed_ecdsa=… …`.
    pub fn summary(&self, scenario: &str) -> String {
        let count = |a: &str| self.faults.get(a).copied().unwrap_or(0);
        let mut line = format!("{scenario}: kills={}", count("kill"));
        for action in ["partition", "restart"] {
            if count(action) > 0 {
                line += &format!(" {action}s={}", count(action));
            }
        }
        line += &format!(
            " lost={} max_unavailable_ms={} linearizable={} split_brain={} double_signed={} \
             bad_signatures={} presignature_misuse={} stuck_sessions={} unresolved={} \
             probe_violations={} writes_not_resumed={} signing_not_resumed={} below_floor={} \
             history_errors={} ops={} writes_acked={} reads_ok={} signatures={} signed_ecdsa={} \
             signed_ecdsa_presigned={} signed_ed25519={} signed_bip340={} sign_failed={} probes={} \
             terms={} {}",
            self.lost.len(),
            self.max_unavailable_ms,
            self.linearizable.word(),
            self.split_brain.len(),
            self.double_signed.len(),
            self.bad_signatures.len(),
            self.presignature_misuse.len(),
            self.stuck_sessions.len(),
            self.unresolved.len(),
            self.probe_violations.len(),
            self.writes_not_resumed.len(),
            self.signing_not_resumed.len(),
            self.below_floor.len(),
            self.history_errors.len(),
            self.ops,
            self.writes_acked,
            self.reads_ok,
            self.signatures,
            self.signed_ecdsa,
            self.presigned,
            self.signed_ed25519,
            self.signed_bip340,
            self.sign_failed,
            self.probes,
            self.terms,
            if self.passed() { "PASS" } else { "FAIL" },
        );
        line
    }
}

struct RegisterInfo {
    initial: String,
    /// `Err`: the history names a scheme the checker does not know.
    scheme: Result<Scheme, String>,
    public_key: Vec<u8>,
}

struct Fault<'a> {
    at_us: u64,
    action: &'a str,
    target: &'a str,
    parties_cut_off: bool,
}

pub fn check(events: &[Event], options: CheckOptions) -> Findings {
    let mut registers: BTreeMap<&str, RegisterInfo> = BTreeMap::new();
    let mut ops: Vec<&Op> = Vec::new();
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut nemesis: Vec<Fault> = Vec::new();
    let (mut load_start, mut load_end) = (None, None);
    for event in events {
        match event {
            Event::Register {
                key_id,
                scheme,
                public_key,
                initial,
            } => {
                registers.insert(
                    key_id,
                    RegisterInfo {
                        initial: initial.clone(),
                        scheme: scheme.parse().map_err(|e| format!("{e}")),
                        public_key: hex::decode(public_key).unwrap_or_default(),
                    },
                );
            }
            Event::Op(op) => ops.push(op.as_ref()),
            Event::Leader { node, term, .. } => {
                leaders.entry(*term).or_default().insert(*node);
            }
            Event::Nemesis {
                at_us,
                action,
                target,
                parties_cut_off,
            } => {
                *faults.entry(action.clone()).or_default() += 1;
                nemesis.push(Fault {
                    at_us: *at_us,
                    action,
                    target,
                    parties_cut_off: *parties_cut_off,
                });
            }
            Event::Load { at_us, phase } => match phase {
                LoadPhase::Start => {
                    load_start = Some(load_start.map_or(*at_us, |s: u64| s.min(*at_us)))
                }
                LoadPhase::End => load_end = Some(load_end.map_or(*at_us, |e: u64| e.max(*at_us))),
            },
        }
    }

    let is_load = |o: &Op| o.expect.is_none() && o.client != FINAL_CLIENT;
    let load_writes: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.kind == OpKind::Write && is_load(o))
        .collect();
    // (start, end) of every write the load saw acknowledged, by end.
    let acked: Vec<(u64, u64)> = {
        let mut v: Vec<(u64, u64)> = load_writes
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .map(|o| (o.start_us, o.end_us))
            .collect();
        v.sort_unstable_by_key(|(_, end)| *end);
        v
    };
    let acked_ends: Vec<u64> = acked.iter().map(|(_, end)| *end).collect();
    // (start, end) of every signing the load saw complete.
    let signed: Vec<(u64, u64)> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Sign && is_load(o) && o.outcome == Outcome::Ok)
        .map(|o| (o.start_us, o.end_us))
        .collect();
    // First response after `at` of an operation invoked at or after it.
    let first_after = |spans: &[(u64, u64)], at: u64| {
        spans
            .iter()
            .filter(|(start, _)| *start >= at)
            .map(|(_, end)| end.saturating_sub(at) / 1000)
            .min()
    };

    let mut history_errors = Vec::new();
    if load_start.is_none() {
        history_errors.push(
            "no load start marker: the load never began, or its history is not among the files"
                .to_owned(),
        );
    }
    if load_end.is_none() {
        history_errors.push(
            "no load end marker: the load did not finish, so its unavailability is unknown"
                .to_owned(),
        );
    }

    let mut findings = Findings {
        faults,
        ops: ops.len(),
        writes_acked: acked.len(),
        writes_unknown: load_writes
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .count(),
        reads_ok: ops
            .iter()
            .filter(|o| o.kind == OpKind::Read && is_load(o) && o.outcome == Outcome::Ok)
            .count(),
        signatures: 0,
        signed_ecdsa: 0,
        signed_ed25519: 0,
        signed_bip340: 0,
        presigned: 0,
        sign_failed: 0,
        probes: ops.iter().filter(|o| o.expect.is_some()).count(),
        max_unavailable_ms: max_gap_ms(&acked_ends, load_start, load_end),
        recoveries: nemesis
            .iter()
            .filter(|f| !matches!(f.action, "heal" | "start" | "reconnect"))
            .map(|f| Recovery {
                action: f.action.to_owned(),
                target: f.target.to_owned(),
                parties_cut_off: f.parties_cut_off,
                first_ack_ms: first_after(&acked, f.at_us),
                first_signature_ms: first_after(&signed, f.at_us),
            })
            .collect(),
        lost: Vec::new(),
        linearizable: LinearizableSummary::default(),
        split_brain: leaders
            .iter()
            .filter(|(_, nodes)| nodes.len() > 1)
            .map(|(term, nodes)| format!("term {term}: nodes {nodes:?} each claimed leadership"))
            .collect(),
        double_signed: Vec::new(),
        bad_signatures: Vec::new(),
        presignature_misuse: Vec::new(),
        stuck_sessions: Vec::new(),
        unresolved: Vec::new(),
        probe_violations: Vec::new(),
        writes_not_resumed: Vec::new(),
        signing_not_resumed: Vec::new(),
        below_floor: Vec::new(),
        history_errors,
        terms: leaders.len(),
    };
    for r in &findings.recoveries {
        if r.first_ack_ms.is_none() {
            findings.writes_not_resumed.push(format!(
                "after {} {}: no write begun later was acknowledged",
                r.action, r.target
            ));
        }
        // With the parties cut off from the majority no signing can complete until the heal.
        if !r.parties_cut_off && r.first_signature_ms.is_none() {
            findings.signing_not_resumed.push(format!(
                "after {} {}: no signing begun later completed",
                r.action, r.target
            ));
        }
    }

    check_registers(&registers, &ops, options.max_steps, &mut findings);
    check_signing(&registers, &ops, &mut findings);
    for op in ops.iter().filter(|o| o.expect.is_some()) {
        let expected = op.expect.unwrap_or(Outcome::Ok);
        let violated = match expected {
            // "Must fail": any acknowledgement is a write accepted without a quorum.
            Outcome::Fail | Outcome::Unknown => op.outcome == Outcome::Ok,
            Outcome::Ok => op.outcome != Outcome::Ok,
        };
        if violated {
            findings.probe_violations.push(format!(
                "{} write through {} expected {:?}, got {:?} ({})",
                op.client,
                op.endpoint,
                expected,
                op.outcome,
                op.error.as_deref().unwrap_or("acknowledged"),
            ));
        }
    }
    check_floors(&options.floors, &mut findings);
    findings
}

fn check_floors(floors: &Floors, findings: &mut Findings) {
    let at_least = [
        (
            "acknowledged writes",
            findings.writes_acked,
            floors.writes_acked,
        ),
        ("linearizable reads", findings.reads_ok, floors.reads_ok),
        (
            "completed ECDSA signings",
            findings.signed_ecdsa,
            floors.signed_ecdsa,
        ),
        (
            "completed Ed25519 signings",
            findings.signed_ed25519,
            floors.signed_ed25519,
        ),
        (
            "completed BIP-340 signings",
            findings.signed_bip340,
            floors.signed_bip340,
        ),
        (
            "ECDSA signings served from a presignature",
            findings.presigned,
            floors.presigned,
        ),
    ];
    for (what, got, floor) in at_least {
        if got < floor {
            findings.below_floor.push(format!(
                "{what}: {got}, the scenario demands at least {floor}"
            ));
        }
    }
    if findings.probes != floors.probes {
        findings.below_floor.push(format!(
            "partition probes recorded: {}, the scenario makes {}",
            findings.probes, floors.probes
        ));
    }
}

/// The longest stretch of the load without an acknowledged write (0 without both markers:
/// the checker reports their absence).
fn max_gap_ms(acked_ends: &[u64], start: Option<u64>, end: Option<u64>) -> u64 {
    let (Some(start), Some(end)) = (start, end) else {
        return 0;
    };
    let mut previous = start;
    let mut max = 0;
    for &t in acked_ends.iter().filter(|t| **t >= start && **t <= end) {
        max = max.max(t - previous);
        previous = t;
    }
    max.max(end.saturating_sub(previous)) / 1000
}

fn check_registers(
    registers: &BTreeMap<&str, RegisterInfo>,
    ops: &[&Op],
    max_steps: u64,
    findings: &mut Findings,
) {
    findings.linearizable.keys = registers.len();
    for (key_id, info) in registers {
        let mine: Vec<&Op> = ops
            .iter()
            .copied()
            .filter(|o| o.key_id == *key_id && matches!(o.kind, OpKind::Write | OpKind::Read))
            .collect();
        // Values as small integers; 0 is the initial value.
        let mut ids: HashMap<&str, u32> = HashMap::from([(info.initial.as_str(), 0)]);
        let mut writer: HashMap<u32, &Op> = HashMap::new();
        let mut timed: Vec<TimedOp> = Vec::new();
        let mut source: Vec<&Op> = Vec::new();
        for op in &mine {
            let Some(value) = op.value.as_deref() else {
                continue;
            };
            let next = ids.len() as u32;
            let id = *ids.entry(value).or_insert(next);
            let t = match (op.kind, op.outcome) {
                (OpKind::Write, Outcome::Fail)
                | (OpKind::Read, Outcome::Fail | Outcome::Unknown) => continue,
                (OpKind::Write, Outcome::Ok) => TimedOp {
                    op: RegisterOp::Write(id),
                    start: op.start_us,
                    end: Some(op.end_us),
                },
                (OpKind::Write, Outcome::Unknown) => TimedOp {
                    op: RegisterOp::Write(id),
                    start: op.start_us,
                    end: None,
                },
                (OpKind::Read, Outcome::Ok) => TimedOp {
                    op: RegisterOp::Read(id),
                    start: op.start_us,
                    end: Some(op.end_us),
                },
                (OpKind::Sign, _) => continue,
            };
            if op.kind == OpKind::Write {
                writer.insert(id, op);
            }
            timed.push(t);
            source.push(op);
        }
        match check_register(0, &timed, max_steps) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { blocked, placed } => {
                let op = source[blocked];
                findings.linearizable.violations.push(format!(
                    "key {key_id}: no linearization of {} operations; stuck after placing {placed} \
                     at {} {:?} {:?} by {} ({}..{} µs)",
                    timed.len(),
                    if op.kind == OpKind::Read { "read" } else { "write" },
                    op.value.as_deref().unwrap_or(""),
                    op.outcome,
                    op.client,
                    op.start_us,
                    op.end_us,
                ));
            }
            Verdict::Unknown { steps } => findings.linearizable.undecided.push(format!(
                "key {key_id}: search of {} operations gave up after {steps} steps",
                timed.len()
            )),
        }

        // Lost acknowledged writes: the value read after recovery must not come from a write
        // that finished before an acknowledged write began (or be the initial value when any
        // write was acknowledged): that later write would have vanished.
        let finals: Vec<&Op> = mine
            .iter()
            .copied()
            .filter(|o| o.client == FINAL_CLIENT && o.kind == OpKind::Read)
            .collect();
        let Some(final_read) = finals.last() else {
            continue;
        };
        let Some(final_value) = final_read
            .value
            .as_deref()
            .filter(|_| final_read.outcome == Outcome::Ok)
        else {
            findings
                .lost
                .push(format!("key {key_id}: could not be read after recovery"));
            continue;
        };
        let final_writer = ids.get(final_value).and_then(|id| writer.get(id));
        if !ids.contains_key(final_value) {
            findings.lost.push(format!(
                "key {key_id}: after recovery holds {final_value:?}, which nobody wrote"
            ));
            continue;
        }
        for w in mine
            .iter()
            .filter(|o| o.kind == OpKind::Write && o.outcome == Outcome::Ok)
        {
            let superseded_by_older = match final_writer {
                None => true, // the initial value survived an acknowledged write
                Some(fw) => fw.value != w.value && fw.end_us < w.start_us,
            };
            if superseded_by_older {
                findings.lost.push(format!(
                    "key {key_id}: write {:?} by {} acknowledged at {} µs is gone; after recovery \
                     the key holds {final_value:?}",
                    w.value.as_deref().unwrap_or(""),
                    w.client,
                    w.end_us
                ));
            }
        }
    }
}

/// Everything seen of one signing request: the load's operation and the final read.
#[derive(Default)]
struct Request<'a> {
    load: Option<&'a Op>,
    last: Option<&'a Op>,
}

fn status_of(op: &Op) -> &str {
    op.sign
        .as_ref()
        .and_then(|d| d.status.as_deref())
        .unwrap_or("")
}

fn check_signing(registers: &BTreeMap<&str, RegisterInfo>, ops: &[&Op], findings: &mut Findings) {
    let mut by_request: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut session_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut requests: BTreeMap<&str, Request> = BTreeMap::new();
    // The load's reading and the final one may both see the same failed session.
    let mut unexplained: BTreeSet<String> = BTreeSet::new();
    let mut bad: BTreeSet<String> = BTreeSet::new();
    let mut misuse: BTreeSet<String> = BTreeSet::new();
    for op in ops.iter().copied().filter(|o| o.kind == OpKind::Sign) {
        let Some(detail) = &op.sign else {
            bad.insert(format!(
                "a signing by {} at {} µs carries no request",
                op.client, op.start_us
            ));
            continue;
        };
        let seen = requests.entry(&detail.request_id).or_default();
        if op.client == FINAL_CLIENT {
            seen.last = Some(op);
        } else {
            seen.load.get_or_insert(op);
        }
        if let Some(s) = &detail.session_id {
            session_of.entry(&detail.request_id).or_default().insert(s);
        }
        let info = registers.get(op.key_id.as_str());
        if let Some(sig) = &detail.signature {
            by_request
                .entry(&detail.request_id)
                .or_default()
                .insert(sig);
            let verified = match info {
                Some(info) => verify(info, detail, sig),
                None => Err(format!("key {} is not among the run's keys", op.key_id)),
            };
            if let Err(e) = verified {
                bad.insert(format!(
                    "request {}: signature {sig} does not verify: {e}",
                    detail.request_id
                ));
            }
        }
        if let Some(presignature) = &detail.presignature_id {
            // The platform's one rule (SigningInput::may_use_presignature): only a message
            // its signers hash themselves; a raw digest could be chosen to forge with.
            let allowed = info.is_some_and(|i| matches!(&i.scheme, Ok(s) if s.has_presignatures()))
                && detail
                    .signing_input()
                    .is_ok_and(|input| input.may_use_presignature());
            if !allowed {
                misuse.insert(format!(
                    "request {}: served from presignature {presignature}, which its input ({}) \
                     does not allow",
                    detail.request_id,
                    if detail.digest.is_some() {
                        "a raw digest"
                    } else {
                        "no hashed ECDSA message"
                    }
                ));
            }
        }
        if op.outcome == Outcome::Fail && detail.failure_reason.as_deref().is_none_or(str::is_empty)
        {
            unexplained.insert(format!(
                "request {}: session {} ended {} without a reason",
                detail.request_id,
                detail.session_id.as_deref().unwrap_or("?"),
                detail.status.as_deref().unwrap_or("?")
            ));
        }
    }
    findings.bad_signatures.extend(bad);
    findings.presignature_misuse.extend(misuse);
    findings.stuck_sessions.extend(unexplained);
    for (request, sigs) in &by_request {
        if sigs.len() > 1 {
            findings.double_signed.push(format!(
                "request {request}: {} different signatures: {sigs:?}",
                sigs.len()
            ));
        }
    }
    for (request, sessions) in &session_of {
        if sessions.len() > 1 {
            findings.double_signed.push(format!(
                "request {request}: {} sessions for one request id: {sessions:?}",
                sessions.len()
            ));
        }
    }

    for (request, seen) in &requests {
        // Requests only the final reads know of are not the load's: nothing to settle.
        let Some(load) = seen.load else { continue };
        let load_detail = load.sign.as_ref();
        let final_status = seen.last.map(status_of);
        // Every acknowledged session must still exist after recovery, and must have ended.
        if let (Some(session), Some(status)) = (
            load_detail.and_then(|d| d.session_id.as_deref()),
            final_status,
        ) {
            if status == "missing" {
                findings.lost.push(format!(
                    "session {session} (request {request}) was acknowledged and is gone"
                ));
            } else if !matches!(status, "completed" | "failed" | "expired") {
                findings.stuck_sessions.push(format!(
                    "session {session} (request {request}) is still {status:?} after recovery"
                ));
            }
        }
        // The load may not have learnt the outcome (no answer, the session still running at
        // its end): the final reads must settle it.
        let settled = match load.outcome {
            Outcome::Ok | Outcome::Fail => true,
            Outcome::Unknown => {
                matches!(final_status, Some("completed" | "failed" | "expired"))
            }
        };
        if !settled {
            findings.unresolved.push(format!(
                "request {request}: outcome unknown to the load ({}) and not settled by the final \
                 reads ({})",
                load.error.as_deref().unwrap_or("no answer"),
                match (final_status, seen.last) {
                    (Some(""), Some(fin)) => fin.error.as_deref().unwrap_or("no status").to_owned(),
                    (Some(status), _) => format!("status {status:?}"),
                    (None, _) => "not read again".to_owned(),
                }
            ));
        }
        if load.outcome == Outcome::Fail {
            findings.sign_failed += 1;
        }
        // Completed: the load saw it, or a final read found the load's own session completed
        // (a session the final read created is the checker's work, not the load's).
        let completed_by = if load.outcome == Outcome::Ok {
            Some(load)
        } else {
            seen.last.filter(|fin| {
                fin.outcome == Outcome::Ok
                    && fin
                        .sign
                        .as_ref()
                        .is_some_and(|d| d.signature.is_some() && !d.created_by_final_read)
            })
        };
        let Some(done) = completed_by else { continue };
        findings.signatures += 1;
        match registers.get(done.key_id.as_str()).map(|i| &i.scheme) {
            Some(Ok(Scheme::EcdsaSecp256k1)) => {
                findings.signed_ecdsa += 1;
                let presigned = [seen.load, seen.last]
                    .into_iter()
                    .flatten()
                    .any(|o| o.sign.as_ref().is_some_and(|d| d.presignature_id.is_some()));
                if presigned {
                    findings.presigned += 1;
                }
            }
            Some(Ok(Scheme::SchnorrEd25519)) => findings.signed_ed25519 += 1,
            Some(Ok(Scheme::SchnorrBip340)) => findings.signed_bip340 += 1,
            // Reported above as a signature that cannot be verified.
            Some(Err(_)) | None => {}
        }
    }
}

/// Verifies a signature against the key with the input the request gave: ECDSA over the
/// digest (as given, or the message's hash with the named function), Schnorr over the
/// message bytes.
fn verify(info: &RegisterInfo, detail: &SignDetail, signature_hex: &str) -> Result<(), String> {
    let scheme = info.scheme.clone()?;
    let input = detail.signing_input()?;
    input.validate_for(scheme).map_err(|e| e.to_string())?;
    let bytes = hex::decode(signature_hex).map_err(|e| format!("signature: {e}"))?;
    let signature = mpc_tss::Signature::from_bytes(scheme, &bytes).map_err(|e| e.to_string())?;
    mpc_tss::verify(scheme, &info.public_key, &input, &signature).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;

    fn opts(max_steps: u64) -> CheckOptions {
        CheckOptions {
            max_steps,
            floors: Floors::default(),
        }
    }

    fn register(key: &str) -> Event {
        register_of(key, "schnorr-ed25519", "")
    }

    fn register_of(key: &str, scheme: &str, public_key: &str) -> Event {
        Event::Register {
            key_id: key.into(),
            scheme: scheme.into(),
            public_key: public_key.into(),
            initial: "initial".into(),
        }
    }

    fn op(
        client: &str,
        kind: OpKind,
        value: &str,
        start: u64,
        end: u64,
        outcome: Outcome,
    ) -> Event {
        op_on("k", client, kind, value, start, end, outcome)
    }

    fn op_on(
        key: &str,
        client: &str,
        kind: OpKind,
        value: &str,
        start: u64,
        end: u64,
        outcome: Outcome,
    ) -> Event {
        Event::Op(Box::new(Op {
            client: client.into(),
            kind,
            key_id: key.into(),
            value: Some(value.into()),
            start_us: start,
            end_us: end,
            outcome,
            endpoint: "n1".into(),
            error: None,
            expect: None,
            sign: None,
        }))
    }

    fn load(start: u64, end: u64) -> [Event; 2] {
        [
            Event::Load {
                at_us: start,
                phase: LoadPhase::Start,
            },
            Event::Load {
                at_us: end,
                phase: LoadPhase::End,
            },
        ]
    }

    fn fault(at_us: u64, action: &str, parties_cut_off: bool) -> Event {
        Event::Nemesis {
            at_us,
            action: action.into(),
            target: "c1".into(),
            parties_cut_off,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let mut h = vec![register("k")];
        h.extend(load(0, 10_000_000));
        h.push(op("a", OpKind::Write, "a1", 1_000, 2_000, Outcome::Ok));
        h.push(op("b", OpKind::Read, "a1", 2_500, 3_000, Outcome::Ok));
        h.push(op(
            "a",
            OpKind::Write,
            "a2",
            4_000_000,
            4_500_000,
            Outcome::Unknown,
        ));
        h.push(op(
            FINAL_CLIENT,
            OpKind::Read,
            "a2",
            11_000_000,
            11_001_000,
            Outcome::Ok,
        ));
        let f = check(&h, opts(1_000_000));
        assert!(f.passed(), "{f:#?}");
        assert_eq!(f.writes_acked, 1);
        // The final read is no work of the load.
        assert_eq!(f.reads_ok, 1);
        // From the only acknowledgement (2 ms) to the end of the load (10 s).
        assert_eq!(f.max_unavailable_ms, 9_998);
        assert!(f.summary("t").contains("lost=0"), "{}", f.summary("t"));
        assert!(f.summary("t").contains("linearizable=yes"));
    }

    #[test]
    fn an_acknowledged_write_that_vanished_is_lost() {
        let mut h = vec![register("k")];
        h.push(op("a", OpKind::Write, "a1", 1_000, 2_000, Outcome::Ok));
        h.push(op("a", OpKind::Write, "a2", 3_000, 4_000, Outcome::Ok));
        h.push(op(
            FINAL_CLIENT,
            OpKind::Read,
            "a1",
            9_000,
            9_500,
            Outcome::Ok,
        ));
        let f = check(&h, opts(1_000_000));
        assert_eq!(f.lost.len(), 1, "{f:#?}");
        assert!(f.lost[0].contains("a2"));
        assert_eq!(f.linearizable.word(), "no");
        assert!(!f.passed());
        assert!(f.summary("t").contains("lost=1"));
    }

    #[test]
    fn the_initial_value_surviving_an_acknowledged_write_is_a_loss() {
        let mut h = vec![register("k")];
        h.push(op("a", OpKind::Write, "a1", 1_000, 2_000, Outcome::Ok));
        h.push(op(
            FINAL_CLIENT,
            OpKind::Read,
            "initial",
            9_000,
            9_500,
            Outcome::Ok,
        ));
        let f = check(&h, opts(1_000_000));
        assert_eq!(f.lost.len(), 1, "{f:#?}");
    }

    #[test]
    fn two_leaders_in_one_term_are_split_brain() {
        let h = vec![
            Event::Leader {
                at_us: 1,
                node: 1,
                term: 3,
            },
            Event::Leader {
                at_us: 2,
                node: 2,
                term: 4,
            },
            Event::Leader {
                at_us: 3,
                node: 3,
                term: 4,
            },
        ];
        let f = check(&h, opts(1000));
        assert_eq!(f.split_brain.len(), 1);
        assert!(f.split_brain[0].contains("term 4"));
        assert_eq!(f.terms, 2);
    }

    fn signed(
        client: &str,
        request: &str,
        session: &str,
        sig: Option<&str>,
        status: &str,
    ) -> Event {
        Event::Op(Box::new(Op {
            client: client.into(),
            kind: OpKind::Sign,
            key_id: "k".into(),
            value: None,
            start_us: 1,
            end_us: 2,
            outcome: if sig.is_some() {
                Outcome::Ok
            } else {
                Outcome::Unknown
            },
            endpoint: "n1".into(),
            error: None,
            expect: None,
            sign: Some(SignDetail {
                request_id: request.into(),
                message: "00".into(),
                hash: None,
                digest: None,
                session_id: Some(session.into()),
                status: Some(status.into()),
                signature: sig.map(str::to_owned),
                failure_reason: None,
                attempt: 1,
                not_after_ms: 0,
                presignature_id: None,
                created_by_final_read: false,
            }),
        }))
    }

    #[test]
    fn two_signatures_for_one_request_and_vanished_sessions_are_found() {
        let h = vec![
            signed("s0", "r1", "S1", Some("aa"), "completed"),
            signed(FINAL_CLIENT, "r1", "S1", Some("bb"), "completed"),
            signed("s0", "r2", "S2", None, "running"),
            signed(FINAL_CLIENT, "r2", "S2", None, "missing"),
            signed("s0", "r3", "S3", None, "running"),
            signed(FINAL_CLIENT, "r3", "S3", None, "running"),
        ];
        let f = check(&h, opts(1000));
        assert_eq!(f.double_signed.len(), 1, "{f:#?}");
        assert_eq!(f.lost.len(), 1, "{f:#?}");
        assert!(f.lost[0].contains("S2"));
        assert_eq!(f.stuck_sessions.len(), 1, "{f:#?}");
        assert!(f.stuck_sessions[0].contains("S3"));
        // Neither the load nor the final reads learnt how r2 and r3 ended.
        assert_eq!(f.unresolved.len(), 2, "{f:#?}");
    }

    fn probe(expect: Outcome, outcome: Outcome) -> Event {
        Event::Op(Box::new(Op {
            expect: Some(expect),
            ..match op("probe", OpKind::Write, "p", 1, 2, outcome) {
                Event::Op(o) => *o,
                _ => unreachable!(),
            }
        }))
    }

    #[test]
    fn probes_must_match_the_partition() {
        let h = vec![
            register("k"),
            probe(Outcome::Fail, Outcome::Unknown),
            probe(Outcome::Ok, Outcome::Ok),
        ];
        assert!(check(&h, opts(1000)).probe_violations.is_empty());
        let h = vec![register("k"), probe(Outcome::Fail, Outcome::Ok)];
        assert_eq!(check(&h, opts(1000)).probe_violations.len(), 1);
    }

    // A run that meets its floors: keys of the three schemes, writes and reads on the
    // Ed25519 key, one completed signing per scheme (ECDSA from a presignature), one fault
    // followed by a write and a signing, and the final reads.

    const ECDSA_PUBLIC_KEY: &str =
        "031cf71ea63d6e244b7912b6cbff4493a8a6faacd804116045cf8c88c91ae558b5";
    /// "chaos checker test message", signed (by a key made for these tests with a
    /// textbook secp256k1 implementation) over its keccak256 digest.
    const ECDSA_MESSAGE: &str = "6368616f7320636865636b65722074657374206d657373616765";
    const ECDSA_SIGNATURE: &str = "188c22a14cced3cc55b6fd77a63281edaa78f6329586992e943017e92a7dd17e69c2353a24a599c8660017a15e06ca2c2fa217a38d880435451e006a21aa47651c";
    const BIP340_PUBLIC_KEY: &str =
        "f4f8e1165ba468b41da089146906342c7b88c497fb2c947e8d9d3ec6f8d4b649";
    const BIP340_MESSAGE: &str = "08ce2b99bf396281f1040e36bd445a3c4daf4efb54eb86fbec3d1ead388160df";
    const BIP340_SIGNATURE: &str = "1dfcd2507c07add9541f945bf1c931d42bd3fbe900bb7ddaa614392db191b2717ec2b75437978ff211f76ea168102e3c65e97bbc89b287bda7e104f9e16ec953";

    fn ed25519_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    struct Signing<'a> {
        client: &'a str,
        key: &'a str,
        request: &'a str,
        message: String,
        hash: Option<&'a str>,
        digest: Option<String>,
        signature: Option<String>,
        presignature: Option<&'a str>,
        outcome: Outcome,
        start: u64,
        end: u64,
    }

    impl Signing<'_> {
        fn event(&self) -> Event {
            let status = match self.outcome {
                Outcome::Ok => "completed",
                Outcome::Fail => "failed",
                Outcome::Unknown => "running",
            };
            Event::Op(Box::new(Op {
                client: self.client.into(),
                kind: OpKind::Sign,
                key_id: self.key.into(),
                value: None,
                start_us: self.start,
                end_us: self.end,
                outcome: self.outcome,
                endpoint: "n1".into(),
                error: None,
                expect: None,
                sign: Some(SignDetail {
                    request_id: self.request.into(),
                    message: self.message.clone(),
                    hash: self.hash.map(str::to_owned),
                    digest: self.digest.clone(),
                    session_id: Some(format!("S-{}", self.request)),
                    status: Some(status.into()),
                    signature: self.signature.clone(),
                    failure_reason: (self.outcome == Outcome::Fail).then(|| "expired".into()),
                    attempt: 1,
                    not_after_ms: 0,
                    presignature_id: self.presignature.map(str::to_owned),
                    created_by_final_read: false,
                }),
            }))
        }

        /// The load's operation and the final read that finds it the same.
        fn both(&self) -> [Event; 2] {
            let fin = Signing {
                client: FINAL_CLIENT,
                start: 20_000_000,
                end: 20_001_000,
                message: self.message.clone(),
                digest: self.digest.clone(),
                signature: self.signature.clone(),
                ..*self
            };
            [self.event(), fin.event()]
        }
    }

    fn ed25519_signing(request: &str, start: u64) -> Signing<'_> {
        let message = format!("message of {request}").into_bytes();
        Signing {
            client: "s0",
            key: "ed",
            request,
            message: hex::encode(&message),
            hash: None,
            digest: None,
            signature: Some(hex::encode(ed25519_key().sign(&message).to_bytes())),
            presignature: None,
            outcome: Outcome::Ok,
            start,
            end: start + 100_000,
        }
    }

    fn ecdsa_signing(request: &str, start: u64) -> Signing<'_> {
        Signing {
            client: "s1",
            key: "ec",
            request,
            message: ECDSA_MESSAGE.into(),
            hash: Some("keccak256"),
            digest: None,
            signature: Some(ECDSA_SIGNATURE.into()),
            presignature: Some("P1"),
            outcome: Outcome::Ok,
            start,
            end: start + 300_000,
        }
    }

    fn bip340_signing(request: &str, start: u64) -> Signing<'_> {
        Signing {
            client: "s2",
            key: "bip",
            request,
            message: BIP340_MESSAGE.into(),
            hash: None,
            digest: None,
            signature: Some(BIP340_SIGNATURE.into()),
            presignature: None,
            outcome: Outcome::Ok,
            start,
            end: start + 100_000,
        }
    }

    fn full_run() -> Vec<Event> {
        let ed_public = hex::encode(ed25519_key().verifying_key().to_bytes());
        let mut h = vec![
            register_of("ed", "schnorr-ed25519", &ed_public),
            register_of("ec", "ecdsa-secp256k1", ECDSA_PUBLIC_KEY),
            register_of("bip", "schnorr-bip340", BIP340_PUBLIC_KEY),
        ];
        h.extend(load(0, 10_000_000));
        h.push(op_on(
            "ed",
            "a",
            OpKind::Write,
            "a1",
            1_000,
            2_000,
            Outcome::Ok,
        ));
        h.push(op_on(
            "ed",
            "b",
            OpKind::Read,
            "a1",
            2_500,
            3_000,
            Outcome::Ok,
        ));
        h.push(fault(1_500_000, "kill", false));
        h.push(fault(1_550_000, "start", false));
        h.push(op_on(
            "ed",
            "a",
            OpKind::Write,
            "a2",
            1_600_000,
            1_700_000,
            Outcome::Ok,
        ));
        h.extend(ed25519_signing("r-ed", 2_000_000).both());
        h.extend(ecdsa_signing("r-ec", 2_000_000).both());
        h.extend(bip340_signing("r-bip", 2_000_000).both());
        for (key, value) in [("ed", "a2"), ("ec", "initial"), ("bip", "initial")] {
            h.push(op_on(
                key,
                FINAL_CLIENT,
                OpKind::Read,
                value,
                20_000_000,
                20_001_000,
                Outcome::Ok,
            ));
        }
        h
    }

    /// Exactly what `full_run` did.
    fn full_floors() -> Floors {
        Floors {
            writes_acked: 2,
            reads_ok: 1,
            signed_ecdsa: 1,
            signed_ed25519: 1,
            signed_bip340: 1,
            presigned: 1,
            probes: 0,
        }
    }

    fn strict() -> CheckOptions {
        CheckOptions {
            max_steps: 100_000,
            floors: full_floors(),
        }
    }

    #[test]
    fn a_run_of_every_scheme_at_its_floors_passes() {
        let f = check(&full_run(), strict());
        assert!(f.passed(), "{f:#?}");
        let line = f.summary("leader-kill");
        assert!(
            line.contains(
                "signed_ecdsa=1 signed_ecdsa_presigned=1 signed_ed25519=1 signed_bip340=1"
            ),
            "{line}"
        );
        assert!(
            line.contains("lost=0") && line.contains("linearizable=yes"),
            "{line}"
        );
        assert!(line.ends_with("PASS"), "{line}");
        assert_eq!(f.recoveries.len(), 1, "a start is no fault");
        assert_eq!(f.recoveries[0].first_ack_ms, Some(200));
        assert_eq!(f.recoveries[0].first_signature_ms, Some(600));
    }

    #[test]
    fn a_run_below_any_floor_fails() {
        // Each floor's name in the finding, and how to demand one more than the run did.
        type Raise = (&'static str, fn(&mut Floors));
        let raise: [Raise; 7] = [
            ("acknowledged writes", |f| f.writes_acked += 1),
            ("linearizable reads", |f| f.reads_ok += 1),
            ("ECDSA signings", |f| f.signed_ecdsa += 1),
            ("Ed25519 signings", |f| f.signed_ed25519 += 1),
            ("BIP-340 signings", |f| f.signed_bip340 += 1),
            ("presignature", |f| f.presigned += 1),
            ("probes", |f| f.probes += 1),
        ];
        for (what, raise) in raise {
            let mut options = strict();
            raise(&mut options.floors);
            let f = check(&full_run(), options);
            assert!(!f.passed(), "{what}: {f:#?}");
            assert_eq!(f.below_floor.len(), 1, "{what}: {f:#?}");
            assert!(
                f.below_floor[0].contains(what),
                "{what}: {:?}",
                f.below_floor
            );
            assert!(f.summary("t").contains("below_floor=1"));
        }
        // A probe that never ran records nothing: one too few is as wrong as one too many.
        let mut h = full_run();
        h.push(probe(Outcome::Ok, Outcome::Ok));
        let mut options = strict();
        options.floors.probes = 2;
        assert_eq!(check(&h, options).below_floor.len(), 1);
        options.floors.probes = 1;
        assert!(check(&h, options).passed());
    }

    #[test]
    fn a_missing_load_marker_fails() {
        for phase in [LoadPhase::Start, LoadPhase::End] {
            let h: Vec<Event> = full_run()
                .into_iter()
                .filter(|e| !matches!(e, Event::Load { phase: p, .. } if *p == phase))
                .collect();
            let f = check(&h, strict());
            assert_eq!(f.history_errors.len(), 1, "{phase:?}: {f:#?}");
            assert!(!f.passed());
        }
    }

    #[test]
    fn a_fault_not_followed_by_an_acknowledged_write_fails() {
        let mut h = full_run();
        // The only write after the fault was never acknowledged, and one acknowledged across
        // it began before it: neither shows that writes resumed.
        for e in &mut h {
            if let Event::Op(o) = e {
                if o.value.as_deref() == Some("a2") && o.client == "a" {
                    o.outcome = Outcome::Unknown;
                }
            }
        }
        h.push(op_on(
            "ed",
            "c",
            OpKind::Write,
            "c1",
            1_400_000,
            1_900_000,
            Outcome::Ok,
        ));
        let mut options = strict();
        options.floors.writes_acked = 1;
        let f = check(&h, options);
        assert_eq!(f.writes_not_resumed.len(), 1, "{f:#?}");
        assert!(!f.passed());
    }

    #[test]
    fn a_fault_not_followed_by_a_signing_fails_unless_the_parties_were_cut_off() {
        // A second fault after every signing began.
        let mut h = full_run();
        h.push(op_on(
            "ed",
            "a",
            OpKind::Write,
            "a3",
            5_100_000,
            5_200_000,
            Outcome::Unknown,
        ));
        h.push(op_on(
            "ed",
            "a",
            OpKind::Write,
            "a4",
            5_300_000,
            5_400_000,
            Outcome::Unknown,
        ));
        h.push(op_on(
            "ed",
            "b",
            OpKind::Write,
            "b1",
            5_100_000,
            5_200_000,
            Outcome::Ok,
        ));
        // The final read now sees b1 (a3 and a4 never happened).
        for e in &mut h {
            if let Event::Op(o) = e {
                if o.client == FINAL_CLIENT && o.key_id == "ed" && o.kind == OpKind::Read {
                    o.value = Some("b1".into());
                }
            }
        }
        let with = |cut_off| {
            let mut h = h.clone();
            h.push(fault(5_000_000, "partition", cut_off));
            check(&h, strict())
        };
        let f = with(false);
        assert_eq!(f.signing_not_resumed.len(), 1, "{f:#?}");
        assert!(f.signing_not_resumed[0].contains("partition"));
        assert!(!f.passed());
        let f = with(true);
        assert!(f.passed(), "{f:#?}");
    }

    #[test]
    fn signatures_that_do_not_verify_fail() {
        let mut forged = ed25519_signing("r-ed", 2_000_000);
        forged.message = hex::encode(b"another message");
        let bip_forged = Signing {
            message: "00".repeat(32),
            ..bip340_signing("r-bip", 2_000_000)
        };
        for bad in [forged, bip_forged] {
            let mut h: Vec<Event> = full_run()
                .into_iter()
                .filter(|e| !matches!(e, Event::Op(o) if o.sign.as_ref().is_some_and(|d| d.request_id == bad.request)))
                .collect();
            h.extend(bad.both());
            let f = check(&h, strict());
            assert!(!f.bad_signatures.is_empty(), "{}: {f:#?}", bad.request);
            assert!(!f.passed());
        }
    }

    #[test]
    fn ecdsa_is_verified_over_the_digest_its_hash_gives() {
        let replace = |s: Signing| {
            let mut h: Vec<Event> = full_run()
                .into_iter()
                .filter(
                    |e| !matches!(e, Event::Op(o) if o.key_id == "ec" && o.kind == OpKind::Sign),
                )
                .collect();
            h.extend(s.both());
            check(&h, strict())
        };
        // The same signature, claimed over the message's sha256: it does not verify.
        let f = replace(Signing {
            hash: Some("sha256"),
            ..ecdsa_signing("r-ec", 2_000_000)
        });
        assert_eq!(f.bad_signatures.len(), 1, "{f:#?}");
        assert!(!f.passed());
        // Over the raw message, unhashed: no ECDSA input at all.
        let f = replace(Signing {
            hash: None,
            ..ecdsa_signing("r-ec", 2_000_000)
        });
        assert_eq!(f.bad_signatures.len(), 1, "{f:#?}");
        // The keccak256 digest given raw: the same signature verifies, but a presignature
        // must not have served it.
        let keccak = hex::encode(
            mpc_tss::HashFunction::Keccak256
                .digest(&hex::decode(ECDSA_MESSAGE).unwrap_or_default()),
        );
        let raw = || Signing {
            hash: None,
            message: String::new(),
            digest: Some(keccak.clone()),
            ..ecdsa_signing("r-ec", 2_000_000)
        };
        let f = replace(raw());
        assert!(f.bad_signatures.is_empty(), "{f:#?}");
        assert_eq!(f.presignature_misuse.len(), 1, "{f:#?}");
        assert!(!f.passed());
        let f = replace(Signing {
            presignature: None,
            ..raw()
        });
        assert!(f.presignature_misuse.is_empty() && f.bad_signatures.is_empty());
        // The presigned floor is then missed, and only that.
        assert_eq!(f.below_floor.len(), 1, "{f:#?}");
    }

    #[test]
    fn an_unknown_signing_outcome_is_settled_by_the_final_read() {
        let unknown = Signing {
            outcome: Outcome::Unknown,
            signature: None,
            ..ed25519_signing("r-ed2", 3_000_000)
        };
        let completed = ed25519_signing("r-ed2", 3_000_000);
        fn fin(s: Signing<'_>) -> Signing<'_> {
            Signing {
                client: FINAL_CLIENT,
                start: 20_000_000,
                end: 20_001_000,
                ..s
            }
        }
        let mut floors = full_floors();
        floors.signed_ed25519 = 2;
        let options = CheckOptions {
            max_steps: 100_000,
            floors,
        };
        // Settled: the final read found it completed, with a signature that verifies; it
        // counts as the load's signing.
        let mut h = full_run();
        h.push(unknown.event());
        h.push(fin(ed25519_signing("r-ed2", 3_000_000)).event());
        let f = check(&h, options);
        assert!(f.passed(), "{f:#?}");
        assert_eq!(f.signed_ed25519, 2);
        // Not settled: the final read still sees it running, or never read it.
        let mut h = full_run();
        h.push(unknown.event());
        h.push(
            fin(Signing {
                outcome: Outcome::Unknown,
                signature: None,
                ..completed
            })
            .event(),
        );
        let f = check(&h, options);
        assert_eq!(f.unresolved.len(), 1, "{f:#?}");
        assert!(!f.passed());
        let mut h = full_run();
        h.push(unknown.event());
        let f = check(&h, options);
        assert_eq!(f.unresolved.len(), 1, "{f:#?}");
        assert!(f.unresolved[0].contains("not read again"));
        // A session the final read itself created is settled, but is not the load's work.
        let mut h = full_run();
        h.push(unknown.event());
        if let Event::Op(mut o) = fin(ed25519_signing("r-ed2", 3_000_000)).event() {
            if let Some(d) = o.sign.as_mut() {
                d.created_by_final_read = true;
            }
            h.push(Event::Op(o));
        }
        let f = check(&h, options);
        assert!(f.unresolved.is_empty(), "{f:#?}");
        assert_eq!(f.signed_ed25519, 1);
        assert_eq!(f.below_floor.len(), 1, "{f:#?}");
    }
}
