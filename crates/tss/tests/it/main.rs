//! Every scheme run in process for several t-of-n, each signature checked by an independent
//! verifier. ECDSA uses cached prime pairs (`testdata/primes.jsonl`, made by
//! `scripts/gen-test-primes.sh`) so no test spends minutes on primes.

mod fixtures;
mod protocols;
mod material;
