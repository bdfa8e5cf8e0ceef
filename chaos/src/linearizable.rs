//! A linearizability checker for one read/write register, after Wing and Gong with Lowe's
//! memoisation (the algorithm of Knossos and Porcupine): search for an order of the
//! operations that respects real time and the register's sequential meaning, backtracking
//! when an operation's response comes before it could be placed, and never visiting the same
//! (set of placed operations, register value) twice.
//!
//! Operations whose outcome is unknown may take effect at any time after they were invoked,
//! or never: they are given a response at the end of time, where a write that "never
//! happened" can be placed harmlessly. Failed operations and reads without an answer have no
//! effect and are left out by the caller.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    Write(u32),
    Read(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOp {
    pub op: RegisterOp,
    pub start: u64,
    /// `None`: no response was seen.
    pub end: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists. `blocked` is the operation (an index into the input) whose response
    /// the deepest search could not get past.
    NotLinearizable {
        blocked: usize,
        placed: usize,
    },
    /// The search gave up after `steps`; nothing is known.
    Unknown {
        steps: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
}

/// A doubly linked list over the time-ordered call and return entries, so that placing an
/// operation unlinks its two entries in O(1) and backtracking links them back.
struct Entries {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Index of each operation's return entry.
    ret_of: Vec<usize>,
}

const HEAD: usize = 0;

impl Entries {
    fn new(ops: &[TimedOp]) -> Self {
        // Sort key: time, then calls before returns, so that operations touching at one
        // instant count as concurrent (the lenient reading, which never invents a violation).
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.start, 0, i));
            order.push((op.end.unwrap_or(u64::MAX), 1, i));
        }
        order.sort_unstable();
        // Slot 0 is the head sentinel; entry k lives in slot k + 1.
        let n = order.len() + 1;
        let mut entries = Vec::with_capacity(n);
        entries.push(Entry {
            op: usize::MAX,
            is_call: false,
        });
        let mut ret_of = vec![0; ops.len()];
        for (slot, (_, kind, op)) in order.into_iter().enumerate() {
            if kind == 1 {
                ret_of[op] = slot + 1;
            }
            entries.push(Entry {
                op,
                is_call: kind == 0,
            });
        }
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { usize::MAX })
            .collect();
        let prev = (0..n).map(|i| i.wrapping_sub(1)).collect();
        Self {
            entries,
            next,
            prev,
            ret_of,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != usize::MAX {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != usize::MAX {
            self.prev[n] = i;
        }
    }

    /// Places the operation called at `call`: both its entries leave the list.
    fn lift(&mut self, call: usize) {
        let ret = self.ret_of[self.entries[call].op];
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.ret_of[self.entries[call].op];
        self.relink(ret);
        self.relink(call);
    }
}

/// Checks a history of one register that held `initial` before any of `ops`.
pub fn check_register(initial: u32, ops: &[TimedOp], max_steps: u64) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    let mut list = Entries::new(ops);
    let words = ops.len().div_ceil(64);
    let mut placed = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = initial;
    let mut entry = list.next[HEAD];
    let mut steps = 0u64;
    let mut deepest = (0usize, 0usize);
    while list.next[HEAD] != usize::MAX {
        steps += 1;
        if steps > max_steps {
            return Verdict::Unknown { steps };
        }
        let Entry { op, is_call } = list.entries[entry];
        if is_call {
            let next_state = match ops[op].op {
                RegisterOp::Write(v) => Some(v),
                RegisterOp::Read(v) => (v == state).then_some(state),
            };
            if let Some(next_state) = next_state {
                placed[op / 64] |= 1 << (op % 64);
                if seen.insert((placed.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    list.lift(entry);
                    entry = list.next[HEAD];
                    continue;
                }
                placed[op / 64] &= !(1 << (op % 64));
            }
            entry = list.next[entry];
        } else {
            // A response of an operation not yet placed: everything placed so far must
            // be reconsidered.
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), op);
            }
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable {
                    blocked: deepest.1,
                    placed: deepest.0,
                };
            };
            let undone = list.entries[call].op;
            placed[undone / 64] &= !(1 << (undone % 64));
            state = previous;
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(v: u32, start: u64, end: u64) -> TimedOp {
        TimedOp {
            op: RegisterOp::Write(v),
            start,
            end: Some(end),
        }
    }
    fn r(v: u32, start: u64, end: u64) -> TimedOp {
        TimedOp {
            op: RegisterOp::Read(v),
            start,
            end: Some(end),
        }
    }
    fn lin(ops: &[TimedOp]) -> bool {
        match check_register(0, ops, 10_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::Unknown { .. } => panic!("search gave up"),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(lin(&[w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)]));
        assert!(lin(&[r(0, 0, 1)]));
        // A read of an overwritten value after the overwrite finished: stale.
        assert!(!lin(&[w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)]));
        // A read of a value nobody wrote.
        assert!(!lin(&[w(1, 0, 1), r(7, 2, 3)]));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // The read overlaps both writes.
        assert!(lin(&[w(1, 0, 10), w(2, 1, 3), r(1, 2, 11)]));
        assert!(lin(&[w(1, 0, 10), w(2, 1, 3), r(2, 2, 11)]));
        // Two reads that disagree about the order of the writes: the second read starts
        // after the first ended, so once 2 is seen, 1 may only come back if written again.
        assert!(!lin(&[
            w(1, 0, 100),
            w(2, 0, 100),
            r(2, 10, 20),
            r(1, 30, 40),
            r(2, 50, 60),
        ]));
        // Touching intervals count as concurrent.
        assert!(lin(&[w(1, 0, 5), r(0, 5, 6)]));
    }

    #[test]
    fn unknown_writes_may_happen_late_or_never() {
        let unknown = |v, start| TimedOp {
            op: RegisterOp::Write(v),
            start,
            end: None,
        };
        // Never took effect.
        assert!(lin(&[unknown(1, 0), r(0, 5, 6)]));
        // Took effect long after its client gave up.
        assert!(lin(&[unknown(1, 0), r(0, 5, 6), r(1, 50, 60)]));
        // But not before it was invoked.
        assert!(!lin(&[r(1, 0, 1), unknown(1, 5)]));
        // And once seen it cannot be unseen.
        assert!(!lin(&[unknown(1, 0), r(1, 5, 6), r(0, 7, 8)]));
    }

    #[test]
    fn the_blocking_operation_is_named() {
        let ops = [w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)];
        match check_register(0, &ops, 1000) {
            Verdict::NotLinearizable { blocked, .. } => assert_eq!(blocked, 2),
            v => panic!("{v:?}"),
        }
    }

    /// Brute force: some permutation respects real time and register semantics.
    fn brute_force(initial: u32, ops: &[TimedOp]) -> bool {
        fn go(ops: &[TimedOp], used: &mut Vec<bool>, state: u32) -> bool {
            if used.iter().all(|u| *u) {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // i can go next only if no unused op finished before i started.
                let blocked = (0..ops.len())
                    .any(|j| !used[j] && j != i && ops[j].end.is_some_and(|e| e < ops[i].start));
                if blocked {
                    continue;
                }
                let next = match ops[i].op {
                    RegisterOp::Write(v) => v,
                    RegisterOp::Read(v) if v == state => state,
                    RegisterOp::Read(_) => continue,
                };
                used[i] = true;
                if go(ops, used, next) {
                    return true;
                }
                used[i] = false;
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], initial)
    }

    fn arb_op() -> impl Strategy<Value = TimedOp> {
        (any::<bool>(), 0u32..3, 0u64..20, 1u64..8, any::<bool>()).prop_map(
            |(write, v, start, len, answered)| TimedOp {
                op: if write {
                    RegisterOp::Write(v)
                } else {
                    RegisterOp::Read(v)
                },
                start,
                // Only writes may go unanswered: the caller drops unanswered reads.
                end: (answered || !write).then_some(start + len),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn agrees_with_brute_force(ops in proptest::collection::vec(arb_op(), 0..7)) {
            let fast = check_register(0, &ops, 1_000_000);
            let slow = brute_force(0, &ops);
            prop_assert_eq!(fast == Verdict::Linearizable, slow, "{:?}", fast);
        }
    }
}
