//! Encodings: compact binary for protocol messages on the wire, self-describing JSON for
//! persisted material (key shares, auxiliary info, primes, presignatures) so that a stored
//! record can be inspected and migrated.

use serde::{de::DeserializeOwned, Serialize};

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
