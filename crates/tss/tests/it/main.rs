//! Every scheme run in process for several t-of-n, each signature checked by an independent
//! verifier. ECDSA uses cached prime pairs (`testdata/primes.jsonl`, made by
//! `scripts/gen-test-primes.sh`) so no test spends minutes on primes.

// Test helpers may panic: a failed unwrap (or a `panic!`) is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixtures;
mod material;
mod protocols;
