//! Cross-process tests: coordinator clusters of real processes on loopback.

mod api;
mod clock_skew;
mod cluster;
mod dvn;
mod image;
mod limits;
mod ops;
mod party_authority;
mod relay;
mod security;
mod signing;
mod snapshot;
mod storage;
