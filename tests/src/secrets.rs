//! Secrets the tests made themselves (tokens, PINs, extra keys), remembered for the log scan
//! that runs when a [`crate::Cluster`] or [`crate::Parties`] is dropped: every log the harness
//! wrote is searched for them, besides the keys the harness knows on its own.

use std::sync::Mutex;

use crate::secret_scan::{self, Secret};

static REMEMBERED: Mutex<Vec<Secret>> = Mutex::new(Vec::new());

fn add(secrets: impl IntoIterator<Item = Secret>) {
    // A test that panicked while holding the lock leaves the list as it was: still usable.
    let mut list = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
    list.extend(secrets);
}

/// Remembers key material (binary secrets shorter than 16 bytes are not searched for).
pub fn remember(label: impl Into<String>, bytes: &[u8]) {
    add([Secret::bytes(label, bytes)]);
}

/// Remembers a token, PIN or password: searched for as text whatever its length, and an mpc
/// token's secret bytes too.
pub fn remember_token(label: &str, token: &str) {
    add(secret_scan::token(label, token));
}

/// Everything remembered so far, by this test and any other of the same process.
pub fn remembered() -> Vec<Secret> {
    REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn remember_all(secrets: Vec<Secret>) {
    add(secrets);
}
