//! How everything persisted is encoded: one format-version byte, then postcard.
//!
//! The version byte lets a later release read what an older one wrote; a record with an
//! unknown version is refused as corrupt rather than misread.

use serde::{de::DeserializeOwned, Serialize};

use crate::StoreError;

/// The encoding version written today. Version 3 added the admin-signed key policies,
/// signing approvals and party enrolments.
pub const FORMAT_V3: u8 = 3;
/// Version 2 added the Raft address of every member, the audit hash chain and the parties'
/// signed keygen reports. Its keys have no policy that parties would accept, so it is
/// refused rather than migrated.
pub const FORMAT_V2: u8 = 2;
/// The version before: its membership, audit and session-completion records have another
/// shape, so it is refused with a clear reason rather than misread.
pub const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![FORMAT_V3]).map_err(|e| StoreError::Encode {
        what,
        reason: e.to_string(),
    })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V3, body)) => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            what,
            reason: e.to_string(),
        }),
        Some((&FORMAT_V2, _)) => Err(StoreError::Corrupt {
            what,
            reason: "format 2, written by a release before key policies and party \
                     enrolment: its keys carry no policy the parties would accept, so this \
                     release cannot use it (start the cluster on empty data directories)"
                .into(),
        }),
        Some((&FORMAT_V1, _)) => Err(StoreError::Corrupt {
            what,
            reason: "format 1, written by a release before TLS and the audit chain: this \
                     release cannot read it (start this node on an empty data directory; \
                     it catches up from the group)"
                .into(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::command::{CreateKeygen, Operation};
    use crate::model::Scheme;
    use crate::{Command, TypeConfig};

    fn golden_entry() -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(7, 2), 42),
            payload: EntryPayload::Normal(crate::Proposal {
                commands: vec![Command {
                    at_ms: 1_790_000_000_000,
                    actor: "peer:10.0.0.9:41000".into(),
                    op: Operation::CreateKeygen(CreateKeygen {
                        session_id: "019a0000-0000-7000-8000-000000000001".into(),
                        key_id: "6c1f3c0e-0000-4000-8000-000000000002".into(),
                        scheme: Scheme::SchnorrBip340,
                        threshold: 2,
                        parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
                        request_id: Some("req-1".into()),
                        description: "cold wallet".into(),
                        tags: BTreeMap::from([("env".into(), "prod".into())]),
                        deadline_ms: 1_790_000_300_000,
                        policy: crate::model::Endorsed::new(
                            &ed25519_dalek::SigningKey::from_bytes(&[0xad; 32]),
                            crate::model::KeyPolicy {
                                key_id: "6c1f3c0e-0000-4000-8000-000000000002".into(),
                                scheme: "schnorr-bip340".into(),
                                threshold: 2,
                                parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
                                initiators: vec![[0x1e; 32]],
                                approvals_needed: 1,
                                version: 1,
                            },
                        ),
                    }),
                }],
            }),
        }
    }

    /// A log entry written by this release must stay readable by every later one. If this
    /// fails, the encoding changed: bump the format version and keep reading version 3.
    /// `UPDATE_GOLDEN=1` rewrites the file (only for a deliberate new format).
    #[test]
    fn log_entries_of_format_v3_still_decode() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/log-entry-v3.hex");
        let encoded = encode("log entry", &golden_entry()).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, hex::encode(&encoded)).unwrap();
        }
        let golden = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(encoded, golden, "the v3 encoding of a log entry changed");
        let decoded: openraft::Entry<TypeConfig> = decode("log entry", &golden).unwrap();
        assert_eq!(decoded.log_id, golden_entry().log_id);
        assert_eq!(
            format!("{:?}", decoded.payload),
            format!("{:?}", golden_entry().payload)
        );
    }

    /// Versions 1 and 2 (golden entries earlier releases wrote) are refused with the reason.
    #[test]
    fn older_formats_are_refused_saying_why() {
        for version in [1, 2] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("testdata/log-entry-v{version}.hex"));
            let old = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
            let err = decode::<openraft::Entry<TypeConfig>>("log entry", &old).unwrap_err();
            assert!(
                err.to_string().contains(&format!("format {version}")),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut encoded = encode("log entry", &golden_entry()).unwrap();
        encoded[0] = 4;
        let err = decode::<openraft::Entry<TypeConfig>>("log entry", &encoded).unwrap_err();
        assert!(err.to_string().contains("unknown format version 4"));
        assert!(decode::<openraft::Entry<TypeConfig>>("log entry", &[]).is_err());
        assert!(decode::<openraft::Entry<TypeConfig>>("log entry", &[3, 0xff, 0xff]).is_err());
    }
}
