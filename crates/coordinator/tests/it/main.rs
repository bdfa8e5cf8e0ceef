//! Coordinator clusters run as tasks of the test process (`test_utils::InProcessCluster`):
//! real RocksDB, real TLS and gRPC on loopback ports the kernel picked. Crashes and restarts
//! on the same data are the process tests' (`tests/`).

mod cluster;
mod http_api;
