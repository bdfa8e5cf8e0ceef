//! How everything persisted is encoded: one format-version byte, then postcard.
//!
//! The version byte lets a later release read what an older one wrote; a record with an
//! unknown version is refused as corrupt rather than misread.

use serde::{de::DeserializeOwned, Serialize};

use crate::StoreError;

/// The encoding version written today.
pub const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![FORMAT_V1]).map_err(|e| StoreError::Encode {
        what,
        reason: e.to_string(),
    })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            what,
            reason: e.to_string(),
        }),
        Some((v, _)) => Err(StoreError::Corrupt {
            what,
            reason: format!("unknown format version {v}"),
        }),
        None => Err(StoreError::Corrupt {
            what,
            reason: "empty record".into(),
        }),
    }
}
