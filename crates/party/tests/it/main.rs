//! Parties run as tasks of the test process against an in-process coordinator cluster
//! (`test_utils`): real TLS and gRPC on loopback, real share stores, real cryptography.
//! Killing and restarting parties and coordinators stays with the process tests (`tests/`).

mod signing;
