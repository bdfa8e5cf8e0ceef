//! The leader's session scheduler.
//!
//! While this node leads, it hands every pending session to parties and drives it to an end:
//!
//! - **dispatch**: pick the parties (all key parties for keygen; `t` online ones for signing,
//!   a ready presignature's signer set when the request may use one), commit `StartSession`
//!   (which marks the presignature used in the same write), register the attempt with the
//!   router and send each party its assignment;
//! - **collect**: gather the parties' outcomes; verify a signature against the key (or
//!   combine partial signatures and verify the result) before committing it; fail the session
//!   with the reason and the blamed parties when a party reports an abort;
//! - **deadlines**: expire what runs out of time and tell its parties to stop;
//! - **presignatures**: keep a pool of them per ECDSA key, refilled in the background;
//! - **leader change**: a new leader re-dispatches running keygen and signing sessions under a
//!   new attempt (a signing session that had a presignature runs the full protocol: the
//!   presignature stays used), and fails interrupted presign sessions.
//!
//! [`core`] decides all of this without I/O; [`runtime`] carries out its actions and feeds
//! their results back; [`verdict`] judges what parties report.

mod core;
mod runtime;
mod verdict;

pub use self::core::{
    Action, Assignment, Event, OutcomeResult, PartyOutcome, PoolStock, SessionBrief,
    SessionContext, SessionScheduler, Settings, StartError,
};
pub use self::runtime::{session_span, Planner, Runtime};
