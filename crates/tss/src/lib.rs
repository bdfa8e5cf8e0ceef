//! The threshold signature protocols of mpc behind one small API, with no knowledge of
//! networks or disks.
//!
//! - **ECDSA on secp256k1** with CGGMP21 (`cggmp21`, the audited line). GG18/GG20
//!   implementations are deliberately not used: they carry known key-extraction attacks
//!   (BitForge, TSSHOCK).
//! - **Schnorr with FROST** (`givre`): Ed25519 and BIP-340 under a taproot-tweaked key. Both
//!   share `cggmp21`'s dealerless key generation, `key-share` and `round-based`, so one
//!   transport and one share format serve every scheme.
//!
//! The order of steps for a group of parties:
//!
//! 1. Each party keeps a pool of [`PrimePair`]s, filled in the background (about a minute of
//!    one core each).
//! 2. Once per group, ECDSA needs [`generate_aux_info`] (one prime pair per party); the
//!    resulting [`AuxInfo`] is reused for every key of the group.
//! 3. [`generate_key`] runs the DKG and yields each party's [`KeyShare`].
//! 4. [`sign`] runs the full signing protocol among exactly `t` signers; for ECDSA,
//!    [`presign`] ahead of time and later [`Presignature::issue_partial`] +
//!    [`PartialSignature::combine`] sign without interaction.
//!
//! A run talks through a [`Channel`] of opaque [`Outgoing`]/[`Incoming`] payloads that the
//! caller's transport must authenticate (and encrypt point to point). [`local::network`] is an
//! in-process transport for tests and measurements. Every signature leaving this crate has
//! been verified; [`verify`] checks one with libraries independent of the protocol crates.

mod codec;
mod error;
pub mod local;
mod material;
mod protocol;
mod signature;
mod wire;

pub(crate) use cggmp21::generic_ec;

pub use error::TssError;
pub use material::{AuxInfo, KeyShare, PartialSignature, Presignature, PrimePair, MATERIAL_FORMAT};
pub use mpc_types::{HashFunction, Scheme, SigningInput};
pub use protocol::{generate_aux_info, generate_key, presign, sign};
pub use signature::{ethereum_address, verify, Signature};
pub use wire::{Channel, Incoming, Outgoing, WireError};
