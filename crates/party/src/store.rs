//! The share store: one file per record under `<data_dir>/store/<kind>/<id>`, each sealed with
//! AES-256-GCM under the master key. The record kind, its id, the party id and the format
//! version are bound as associated data, so a record copied to another name, another party or
//! another format does not open. Writes are atomic: a temporary file, fsync, rename, fsync of
//! the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::master_key::MasterKey;
use crate::PartyError;

const MAGIC: &[u8; 4] = b"MPCS";
/// The record format this build writes and reads.
pub const RECORD_FORMAT: u16 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 2 + NONCE_LEN;

/// What a record holds; also its directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Identity,
    AuxInfo,
    KeyShare,
    PrimePair,
    Presignature,
}

impl RecordKind {
    pub const ALL: [RecordKind; 5] = [
        RecordKind::Identity,
        RecordKind::AuxInfo,
        RecordKind::KeyShare,
        RecordKind::PrimePair,
        RecordKind::Presignature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Identity => "identity",
            RecordKind::AuxInfo => "aux-info",
            RecordKind::KeyShare => "key-share",
            RecordKind::PrimePair => "prime-pair",
            RecordKind::Presignature => "presignature",
        }
    }
}

pub struct ShareStore {
    root: PathBuf,
    party_id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for ShareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStore")
            .field("root", &self.root)
            .field("party_id", &self.party_id)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: std::io::Error) -> PartyError {
    PartyError::Store {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Record ids become file names: keep them to a safe alphabet.
fn check_id(id: &str) -> Result<(), PartyError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PartyError::InvalidRecordId(id.to_owned()))
    }
}

impl ShareStore {
    /// Opens (creating if needed) the store of `party_id` under `data_dir`.
    pub fn open(data_dir: &Path, party_id: &str, key: &MasterKey) -> Result<Self, PartyError> {
        let root = data_dir.join("store");
        for kind in RecordKind::ALL {
            let dir = root.join(kind.as_str());
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        Ok(Self {
            root,
            party_id: party_id.to_owned(),
            cipher: Aes256Gcm::new(key.bytes().into()),
        })
    }

    fn path(&self, kind: RecordKind, id: &str) -> PathBuf {
        self.root.join(kind.as_str()).join(id)
    }

    fn associated_data(&self, kind: RecordKind, id: &str) -> Vec<u8> {
        let mut aad = b"mpc-share-store".to_vec();
        for part in [kind.as_str(), id, &self.party_id] {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(&RECORD_FORMAT.to_be_bytes());
        aad
    }

    /// Seals and writes a record atomically, replacing any earlier one.
    pub fn put(&self, kind: RecordKind, id: &str, plaintext: &[u8]) -> Result<(), PartyError> {
        check_id(id)?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.associated_data(kind, id);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| PartyError::Seal)?;
        let mut record = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&RECORD_FORMAT.to_be_bytes());
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&ciphertext);

        let path = self.path(kind, id);
        let dir = self.root.join(kind.as_str());
        let tmp = dir.join(format!(".{id}.tmp"));
        let mut file = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        file.write_all(&record).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        sync_dir(&dir)
    }

    /// Opens a record. A wrong master key and a tampered record both fail here, by name.
    pub fn get(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, PartyError> {
        check_id(id)?;
        let path = self.path(kind, id);
        let record = match fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        self.open_record(kind, id, &path, &record).map(Some)
    }

    fn open_record(
        &self,
        kind: RecordKind,
        id: &str,
        path: &Path,
        record: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PartyError> {
        let unreadable = |reason: &str| PartyError::Unreadable {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        if record.len() < HEADER_LEN || &record[..4] != MAGIC {
            return Err(unreadable("not a share store record"));
        }
        let version = u16::from_be_bytes([record[4], record[5]]);
        if version != RECORD_FORMAT {
            return Err(unreadable(&format!(
                "record format {version}; this build reads format {RECORD_FORMAT}"
            )));
        }
        let nonce = Nonce::from_slice(&record[6..HEADER_LEN]);
        let aad = self.associated_data(kind, id);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &record[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                unreadable(
                    "does not decrypt: wrong master key, or the record was altered, renamed or \
                     belongs to another party",
                )
            })
    }

    /// Deletes a record durably (the directory is synced). Deleting a missing record is fine.
    pub fn delete(&self, kind: RecordKind, id: &str) -> Result<(), PartyError> {
        check_id(id)?;
        let path = self.path(kind, id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.root.join(kind.as_str())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Ids of the records of one kind, sorted.
    pub fn list(&self, kind: RecordKind) -> Result<Vec<String>, PartyError> {
        let dir = self.root.join(kind.as_str());
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Opens every record once. Run at start: a party with a wrong master key or a damaged
    /// record refuses to start rather than fail in the middle of a session.
    pub fn verify_all(&self) -> Result<usize, PartyError> {
        let mut count = 0;
        for kind in RecordKind::ALL {
            for id in self.list(kind)? {
                self.get(kind, &id)?;
                count += 1;
            }
        }
        Ok(count)
    }
}

fn sync_dir(dir: &Path) -> Result<(), PartyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_hex("test", &hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn records_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store
            .put(RecordKind::KeyShare, "k1", b"secret share")
            .unwrap();
        store.put(RecordKind::KeyShare, "k1", b"replaced").unwrap();
        assert_eq!(
            &**store.get(RecordKind::KeyShare, "k1").unwrap().unwrap(),
            b"replaced"
        );
        assert_eq!(
            store.list(RecordKind::KeyShare).unwrap(),
            vec!["k1".to_string()]
        );
        assert!(store.get(RecordKind::KeyShare, "k2").unwrap().is_none());
        store.delete(RecordKind::KeyShare, "k1").unwrap();
        assert!(store.get(RecordKind::KeyShare, "k1").unwrap().is_none());
        assert_eq!(store.verify_all().unwrap(), 0);
    }

    #[test]
    fn the_plaintext_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store
            .put(RecordKind::KeyShare, "k1", b"very secret share bytes")
            .unwrap();
        let raw = fs::read(dir.path().join("store/key-share/k1")).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn a_wrong_key_a_tampered_record_and_a_moved_record_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store.put(RecordKind::KeyShare, "k1", b"share").unwrap();

        let wrong = ShareStore::open(dir.path(), "party-1", &key(2)).unwrap();
        let err = wrong.get(RecordKind::KeyShare, "k1").unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(wrong.verify_all().is_err());

        let other_party = ShareStore::open(dir.path(), "party-2", &key(1)).unwrap();
        assert!(other_party.get(RecordKind::KeyShare, "k1").is_err());

        let path = dir.path().join("store/key-share/k1");
        fs::copy(&path, dir.path().join("store/key-share/k2")).unwrap();
        assert!(
            store.get(RecordKind::KeyShare, "k2").is_err(),
            "a renamed record opened"
        );

        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, raw).unwrap();
        assert!(store.get(RecordKind::KeyShare, "k1").is_err());
    }

    #[test]
    fn record_ids_cannot_escape_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(
                store.put(RecordKind::KeyShare, bad, b"x").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_master_key_must_be_256_bits_and_is_never_shown() {
        let err = MasterKey::from_hex("MPC_MASTER_KEY", "abcd").unwrap_err();
        assert!(err.to_string().contains("MPC_MASTER_KEY"));
        assert!(!err.to_string().contains("abcd"));
        assert_eq!(format!("{:?}", key(7)), "MasterKey(..)");
    }
}
