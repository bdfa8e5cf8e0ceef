//! Judges a recorded history: acknowledged writes that vanished, two leaders in one term, two
//! signatures for one request, signatures that do not verify, sessions that never ended,
//! probes that contradict the partition, and histories that are not linearizable. Pure: it
//! reads events and returns findings, so that a saved history can be judged again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::history::{Event, LoadPhase, Op, OpKind, Outcome};
use crate::linearizable::{check_register, RegisterOp, TimedOp, Verdict};

/// The client name of the reads made after recovery.
pub const FINAL_CLIENT: &str = "final";

#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub faults: BTreeMap<String, usize>,
    pub ops: usize,
    pub writes_acked: usize,
    pub writes_unknown: usize,
    pub reads_ok: usize,
    pub signatures: usize,
    pub sign_failed: usize,
    pub max_unavailable_ms: u64,
    /// For each fault: how long until the next acknowledged write began... and ended.
    pub recoveries: Vec<Recovery>,
    pub lost: Vec<String>,
    pub linearizable: LinearizableSummary,
    pub split_brain: Vec<String>,
    pub double_signed: Vec<String>,
    pub bad_signatures: Vec<String>,
    pub stuck_sessions: Vec<String>,
    pub probe_violations: Vec<String>,
    /// Faults after which no signing that began later completed (when that is required).
    pub signing_not_resumed: Vec<String>,
    pub terms: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub action: String,
    pub target: String,
    /// From the fault to the first write acknowledged after it.
    pub first_ack_ms: Option<u64>,
    /// From the fault to the end of the first signing that began after it and completed.
    pub first_signature_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Search steps per key before the linearizability check gives up.
    pub max_steps: u64,
    /// Every fault must be followed by a completed signing that began after it.
    pub require_signing_after_faults: bool,
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
            && self.stuck_sessions.is_empty()
            && self.probe_violations.is_empty()
            && self.signing_not_resumed.is_empty()
    }

    /// One line: `kills=… lost=0 max_unavailable_ms=… linearizable=yes …`.
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
             bad_signatures={} stuck_sessions={} probe_violations={} signing_not_resumed={} ops={} \
             writes_acked={} signatures={} sign_failed={} terms={} {}",
            self.lost.len(),
            self.max_unavailable_ms,
            self.linearizable.word(),
            self.split_brain.len(),
            self.double_signed.len(),
            self.bad_signatures.len(),
            self.stuck_sessions.len(),
            self.probe_violations.len(),
            self.signing_not_resumed.len(),
            self.ops,
            self.writes_acked,
            self.signatures,
            self.sign_failed,
            self.terms,
            if self.passed() { "PASS" } else { "FAIL" },
        );
        line
    }
}

struct RegisterInfo {
    initial: String,
    scheme: String,
    public_key: Vec<u8>,
}

pub fn check(events: &[Event], options: CheckOptions) -> Findings {
    let mut registers: BTreeMap<&str, RegisterInfo> = BTreeMap::new();
    let mut ops: Vec<&Op> = Vec::new();
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut nemesis: Vec<(u64, &str, &str)> = Vec::new();
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
                        scheme: scheme.clone(),
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
            } => {
                *faults.entry(action.clone()).or_default() += 1;
                nemesis.push((*at_us, action, target));
            }
            Event::Load { at_us, phase } => match phase {
                LoadPhase::Start => {
                    load_start = Some(load_start.map_or(*at_us, |s: u64| s.min(*at_us)))
                }
                LoadPhase::End => load_end = Some(load_end.map_or(*at_us, |e: u64| e.max(*at_us))),
            },
        }
    }

    let load_writes: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.kind == OpKind::Write && o.expect.is_none() && o.client != FINAL_CLIENT)
        .collect();
    let acked_ends: Vec<u64> = {
        let mut v: Vec<u64> = load_writes
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .map(|o| o.end_us)
            .collect();
        v.sort_unstable();
        v
    };
    // (start, end) of every signing the load saw complete.
    let signed: Vec<(u64, u64)> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Sign && o.client != FINAL_CLIENT && o.outcome == Outcome::Ok)
        .map(|o| (o.start_us, o.end_us))
        .collect();

    let mut findings = Findings {
        faults,
        ops: ops.len(),
        writes_acked: acked_ends.len(),
        writes_unknown: load_writes
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .count(),
        reads_ok: ops
            .iter()
            .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok)
            .count(),
        signatures: 0,
        sign_failed: 0,
        max_unavailable_ms: max_gap_ms(&acked_ends, load_start, load_end),
        recoveries: nemesis
            .iter()
            .filter(|(_, action, _)| !matches!(*action, "heal" | "start" | "reconnect"))
            .map(|(at, action, target)| Recovery {
                action: (*action).to_owned(),
                target: (*target).to_owned(),
                first_ack_ms: acked_ends
                    .iter()
                    .find(|end| **end >= *at)
                    .map(|end| (end - at) / 1000),
                first_signature_ms: signed
                    .iter()
                    .filter(|(start, _)| *start >= *at)
                    .map(|(_, end)| (end - at) / 1000)
                    .min(),
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
        stuck_sessions: Vec::new(),
        probe_violations: Vec::new(),
        signing_not_resumed: Vec::new(),
        terms: leaders.len(),
    };
    if options.require_signing_after_faults {
        findings.signing_not_resumed = findings
            .recoveries
            .iter()
            .filter(|r| r.first_signature_ms.is_none())
            .map(|r| {
                format!(
                    "after {} {}: no signing begun later completed",
                    r.action, r.target
                )
            })
            .collect();
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
    findings
}

/// The longest stretch of the load without an acknowledged write.
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

fn check_signing(registers: &BTreeMap<&str, RegisterInfo>, ops: &[&Op], findings: &mut Findings) {
    let mut by_request: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut session_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut acked_sessions: BTreeSet<&str> = BTreeSet::new();
    let mut final_status: HashMap<&str, &Op> = HashMap::new();
    // The load's reading and the final one may both see the same failed session.
    let mut unexplained: BTreeSet<String> = BTreeSet::new();
    for op in ops.iter().filter(|o| o.kind == OpKind::Sign) {
        let Some(detail) = &op.sign else { continue };
        if op.client == FINAL_CLIENT {
            final_status.insert(&detail.request_id, op);
        } else {
            match op.outcome {
                Outcome::Ok => findings.signatures += 1,
                Outcome::Fail => findings.sign_failed += 1,
                Outcome::Unknown => {}
            }
            if let Some(s) = &detail.session_id {
                acked_sessions.insert(s);
            }
        }
        if let Some(s) = &detail.session_id {
            session_of.entry(&detail.request_id).or_default().insert(s);
        }
        if let Some(sig) = &detail.signature {
            by_request
                .entry(&detail.request_id)
                .or_default()
                .insert(sig);
            if let Some(info) = registers.get(op.key_id.as_str()) {
                if let Err(e) = verify(info, &detail.message, sig) {
                    findings.bad_signatures.push(format!(
                        "request {}: signature {sig} does not verify: {e}",
                        detail.request_id
                    ));
                }
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
    // Every acknowledged session must still exist after recovery, and must have ended.
    for op in ops
        .iter()
        .filter(|o| o.kind == OpKind::Sign && o.client != FINAL_CLIENT)
    {
        let Some(detail) = &op.sign else { continue };
        let Some(session) = &detail.session_id else {
            continue;
        };
        let Some(fin) = final_status.get(detail.request_id.as_str()) else {
            continue; // judged offline without final reads
        };
        let status = fin
            .sign
            .as_ref()
            .and_then(|d| d.status.as_deref())
            .unwrap_or("");
        if status == "missing" && acked_sessions.contains(session.as_str()) {
            findings.lost.push(format!(
                "session {session} (request {}) was acknowledged and is gone",
                detail.request_id
            ));
        } else if !matches!(status, "completed" | "failed" | "expired") {
            findings.stuck_sessions.push(format!(
                "session {session} (request {}) is still {status:?} after recovery",
                detail.request_id
            ));
        }
    }
}

fn verify(info: &RegisterInfo, message_hex: &str, signature_hex: &str) -> Result<(), String> {
    let scheme: mpc_tss::Scheme = info.scheme.parse().map_err(|e| format!("{e}"))?;
    let message = hex::decode(message_hex).map_err(|e| format!("message: {e}"))?;
    let bytes = hex::decode(signature_hex).map_err(|e| format!("signature: {e}"))?;
    let signature = mpc_tss::Signature::from_bytes(scheme, &bytes).map_err(|e| e.to_string())?;
    let input = mpc_tss::SigningInput::Message {
        message,
        hash: None,
    };
    mpc_tss::verify(scheme, &info.public_key, &input, &signature).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SignDetail;

    fn opts(max_steps: u64) -> CheckOptions {
        CheckOptions {
            max_steps,
            require_signing_after_faults: false,
        }
    }

    fn register(key: &str) -> Event {
        Event::Register {
            key_id: key.into(),
            scheme: "schnorr-ed25519".into(),
            public_key: String::new(),
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
        Event::Op(Box::new(Op {
            client: client.into(),
            kind,
            key_id: "k".into(),
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
                session_id: Some(session.into()),
                status: Some(status.into()),
                signature: sig.map(str::to_owned),
                failure_reason: None,
                attempt: 1,
                not_after_ms: 0,
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
    }

    #[test]
    fn probes_must_match_the_partition() {
        let probe = |expect, outcome| {
            Event::Op(Box::new(Op {
                expect: Some(expect),
                ..match op("probe", OpKind::Write, "p", 1, 2, outcome) {
                    Event::Op(o) => *o,
                    _ => unreachable!(),
                }
            }))
        };
        let h = vec![
            register("k"),
            probe(Outcome::Fail, Outcome::Unknown),
            probe(Outcome::Ok, Outcome::Ok),
        ];
        assert!(check(&h, opts(1000)).probe_violations.is_empty());
        let h = vec![register("k"), probe(Outcome::Fail, Outcome::Ok)];
        assert_eq!(check(&h, opts(1000)).probe_violations.len(), 1);
    }

    #[test]
    fn recovery_is_measured_from_each_fault() {
        let mut h = vec![register("k")];
        h.extend(load(0, 5_000_000));
        h.push(Event::Nemesis {
            at_us: 1_000_000,
            action: "kill".into(),
            target: "c1".into(),
        });
        h.push(op("a", OpKind::Write, "a1", 500_000, 600_000, Outcome::Ok));
        h.push(op(
            "a",
            OpKind::Write,
            "a2",
            1_100_000,
            1_700_000,
            Outcome::Ok,
        ));
        let f = check(&h, opts(1000));
        assert_eq!(f.recoveries.len(), 1);
        assert_eq!(f.recoveries[0].first_ack_ms, Some(700));
        assert!(f
            .summary("leader-kill")
            .starts_with("leader-kill: kills=1 lost=0"));
        assert!(f.passed());
        let strict = CheckOptions {
            max_steps: 1000,
            require_signing_after_faults: true,
        };
        let f = check(&h, strict);
        assert_eq!(f.signing_not_resumed.len(), 1, "{f:#?}");
        h.push(signed("s0", "r1", "S1", Some("aa"), "completed"));
        if let Some(Event::Op(o)) = h.last_mut() {
            o.start_us = 1_200_000;
            o.end_us = 1_300_000;
        }
        let f = check(&h, strict);
        assert!(f.signing_not_resumed.is_empty(), "{f:#?}");
        assert_eq!(f.recoveries[0].first_signature_ms, Some(300));
    }
}
