//! Presignatures: each must serve at most one signature. Two partial signatures from one
//! presignature over different messages give away the key share, so every way a presignature
//! could be used twice is closed here, on the party, whatever the coordinator asks.
//!
//! - **Concurrent use.** A presignature is claimed by renaming its record to a claimed name
//!   (atomic within a directory: one renamer wins, every other one finds the name gone), and
//!   only the winner reads it. The claim is noted as used in the ledger, durably, before a byte
//!   of the presignature is read; the record is destroyed before the partial signature leaves.
//! - **Crash.** A record found claimed at start is noted as used and destroyed, never put back.
//! - **Restored or copied files.** The ledger (`store/presignature-ledger/`) is an append-only
//!   log, sealed like every record, of each presignature written (with the identity of the file
//!   it was written to: inode and birth time) and of each one claimed. A presignature is used
//!   only if the ledger saw it written, never saw it claimed, and its file is the very file
//!   written then. Restoring a copy of `data_dir` (cp, rsync, tar, a volume restore, or just
//!   copying presignature files back) makes new files: the restored presignatures are refused
//!   and destroyed even when the restored ledger, older than their use, still lists them as
//!   unused.
//! - **Epoch.** The ledger has a random epoch, sealed in `epoch`; each presignature carries the
//!   epoch it was made under, and one from another epoch is refused. Deleting or losing the
//!   ledger starts a new epoch, which retires every presignature made before, so the used list
//!   cannot be dropped without dropping what it protects.
//!
//! What this cannot see: a rollback of the whole file system below the files, such as a VM or
//! disk snapshot, a ZFS/LVM/btrfs snapshot rollback, or a block-level image, brings back the
//! same inodes with the same birth times and the ledger as it was, and the party cannot tell
//! it from the present. Neither can it tell a second party process started on a block-level
//! clone. Then what protects is the coordinator: `StartSession` marks a presignature `Used` in
//! the same replicated Raft write that hands it to a session, and the scheduler never assigns
//! a presignature that is not `Available`. Operators must not restore a party from a disk
//! snapshot while its coordinator cluster may still hand out its presignatures.
//!
//! The used list grows by about 50 bytes on disk and 30 in memory per presignature used, for
//! the life of the epoch.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::{
    check_id, claimed_id, io, private_dir, sync_dir, tmp_name, write_atomic, write_new_file,
    Claimed, FileIdentity, RecordKind, Sealer, ShareStore, FILE_MODE, TMP_SUFFIX,
};
use crate::PartyError;

pub(super) const LEDGER_DIR: &str = "presignature-ledger";
/// The ledger's records are sealed under this label (in place of a record kind).
const LABEL: &str = "presignature-ledger";
const EPOCH: &str = "epoch";
const EPOCH_LEN: usize = 16;
/// Starts the plaintext of a presignature record: magic, then the epoch, then the presignature.
/// Older builds stored the presignature alone (JSON, starting with `{`).
const PLAINTEXT_MAGIC: &[u8; 4] = b"PSG2";
/// An entry longer than this is damage, not an entry cut short by a crash.
const MAX_ENTRY: usize = 256;
const BORN: u8 = 1;
const USED: u8 = 2;

type IdHash = [u8; 16];

fn id_hash(id: &str) -> IdHash {
    let digest = sha2::Sha256::new()
        .chain_update(b"mpc-presignature-id\0")
        .chain_update(id.as_bytes())
        .finalize();
    let mut h = [0u8; 16];
    h.copy_from_slice(&digest[..16]);
    h
}

fn refused(id: &str, reason: &str) -> PartyError {
    PartyError::Config {
        field: "presignature_id".into(),
        reason: format!("presignature {id} {reason}"),
    }
}

enum Entry {
    Born(IdHash, FileIdentity),
    Used(IdHash),
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(42);
        match self {
            Entry::Born(h, identity) => {
                out.push(BORN);
                out.extend_from_slice(h);
                out.extend_from_slice(&identity.inode.to_be_bytes());
                match identity.born_ns {
                    Some(ns) => {
                        out.push(1);
                        out.extend_from_slice(&ns.to_be_bytes());
                    }
                    None => out.push(0),
                }
            }
            Entry::Used(h) => {
                out.push(USED);
                out.extend_from_slice(h);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let (&tag, rest) = bytes.split_first()?;
        let h: IdHash = rest.get(..16)?.try_into().ok()?;
        let rest = &rest[16..];
        match tag {
            USED if rest.is_empty() => Some(Entry::Used(h)),
            BORN => {
                let inode = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
                let born_ns = match rest.get(8..)? {
                    [0] => None,
                    [1, ns @ ..] => Some(u128::from_be_bytes(ns.try_into().ok()?)),
                    _ => return None,
                };
                Some(Entry::Born(h, FileIdentity { inode, born_ns }))
            }
            _ => None,
        }
    }
}

/// The ledger as loaded in memory; every change is appended to the log (synced) first.
pub(super) struct Ledger {
    dir: PathBuf,
    epoch: [u8; EPOCH_LEN],
    log_name: String,
    log: fs::File,
    log_len: u64,
    /// A failed append could not be undone: refuse everything rather than build on it.
    broken: bool,
    /// Created by this open: presignatures of an older build may be adopted.
    fresh: bool,
    live: HashMap<IdHash, FileIdentity>,
    used: HashSet<IdHash>,
}

impl Ledger {
    /// Loads the ledger, or starts a new epoch when there is none. `verify` opens every
    /// record first, so that a wrong master key cannot start a ledger that the right key
    /// would then fail to open.
    pub(super) fn open(
        root: &Path,
        sealer: &Sealer,
        verify: impl FnOnce() -> Result<usize, PartyError>,
    ) -> Result<Self, PartyError> {
        let dir = root.join(LEDGER_DIR);
        private_dir(&dir)?;
        let epoch_path = dir.join(EPOCH);
        let (epoch, fresh) = match fs::read(&epoch_path) {
            Ok(record) => {
                let plain = sealer.open(LABEL, EPOCH, &epoch_path, &record)?;
                let epoch: [u8; EPOCH_LEN] =
                    plain
                        .as_slice()
                        .try_into()
                        .map_err(|_| PartyError::Unreadable {
                            path: epoch_path.clone(),
                            reason: "the presignature epoch has the wrong length".into(),
                        })?;
                (epoch, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                verify()?;
                let mut epoch = [0u8; EPOCH_LEN];
                OsRng.fill_bytes(&mut epoch);
                write_atomic(&dir, EPOCH, &sealer.seal(LABEL, EPOCH, &epoch)?)?;
                (epoch, true)
            }
            Err(e) => return Err(io(&epoch_path, e)),
        };
        let log_name = format!("log-{}", hex::encode(epoch));

        // Logs of earlier epochs protect nothing any more (their presignatures are refused by
        // epoch); temporary files are leftovers of a crash.
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name == EPOCH || name == log_name {
                super::tighten(&path, FILE_MODE)?;
            } else if name.starts_with("log-") || name.ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed = true;
            }
        }

        let log_path = dir.join(&log_name);
        let existed = log_path.exists();
        let mut log = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&log_path)
            .map_err(|e| io(&log_path, e))?;
        if removed || !existed {
            sync_dir(&dir)?;
        }
        let mut bytes = Vec::new();
        log.seek(SeekFrom::Start(0))
            .and_then(|_| log.read_to_end(&mut bytes))
            .map_err(|e| io(&log_path, e))?;

        let mut ledger = Ledger {
            dir,
            epoch,
            log_name,
            log,
            log_len: 0,
            broken: false,
            fresh,
            live: HashMap::new(),
            used: HashSet::new(),
        };
        let mut pos = 0usize;
        while let Some(len_bytes) = bytes.get(pos..pos + 4) {
            let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            // A crash during an append can leave its end cut off, or zeros where the file
            // system extended the file but never wrote it. That append never returned, so
            // nothing relied on it (a claim whose entry is lost left its claimed file, which
            // the recovery notes again).
            if bytes[pos..].iter().all(|&b| b == 0) {
                break;
            }
            if len > MAX_ENTRY {
                return Err(PartyError::Unreadable {
                    path: log_path,
                    reason: format!("damaged at byte {pos}"),
                });
            }
            let Some(sealed) = bytes.get(pos + 4..pos + 4 + len) else {
                break;
            };
            let entry = sealer
                .open(LABEL, &ledger.log_name, &log_path, sealed)
                .and_then(|plain| {
                    Entry::decode(&plain).ok_or_else(|| PartyError::Unreadable {
                        path: log_path.clone(),
                        reason: format!("an entry at byte {pos} is malformed"),
                    })
                });
            match entry {
                Ok(entry) => ledger.apply(entry),
                // The epoch record opened under this key, so this is damage, not a wrong key;
                // only the last entry can be a torn append.
                Err(_) if pos + 4 + len == bytes.len() => break,
                Err(e) => return Err(e),
            }
            pos += 4 + len;
        }
        let pos = u64::try_from(pos).unwrap_or(u64::MAX);
        if pos < u64::try_from(bytes.len()).unwrap_or(u64::MAX) {
            tracing::warn!(path = %log_path.display(), "dropping an incomplete last entry of the presignature ledger");
            ledger
                .log
                .set_len(pos)
                .and_then(|()| ledger.log.sync_all())
                .map_err(|e| io(&log_path, e))?;
        }
        ledger.log_len = pos;
        Ok(ledger)
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Born(h, identity) => {
                if !self.used.contains(&h) {
                    self.live.insert(h, identity);
                }
            }
            Entry::Used(h) => {
                self.live.remove(&h);
                self.used.insert(h);
            }
        }
    }

    /// Appends an entry and syncs it before the change counts.
    fn record(&mut self, sealer: &Sealer, entry: Entry) -> Result<(), PartyError> {
        let log_path = self.dir.join(&self.log_name);
        if self.broken {
            return Err(PartyError::Store {
                path: log_path,
                reason: "an earlier write to the presignature ledger failed; restart the party"
                    .into(),
            });
        }
        let sealed = sealer.seal(LABEL, &self.log_name, &entry.encode())?;
        let len = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
        let mut framed = Vec::with_capacity(4 + sealed.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&sealed);
        let written = self
            .log
            .write_all(&framed)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Cut a partial entry off so later appends do not land behind it.
            let undone = self
                .log
                .set_len(self.log_len)
                .and_then(|()| self.log.sync_all());
            if undone.is_err() {
                self.broken = true;
            }
            return Err(io(&log_path, e));
        }
        self.log_len += u64::try_from(framed.len()).unwrap_or(u64::MAX);
        self.apply(entry);
        Ok(())
    }

    fn note_used(&mut self, sealer: &Sealer, h: IdHash) -> Result<(), PartyError> {
        if self.used.contains(&h) {
            return Ok(());
        }
        self.record(sealer, Entry::Used(h))
    }
}

/// What a presignature record's plaintext holds, past the checks.
fn presignature_body<'a>(
    plain: &'a [u8],
    epoch: &[u8; EPOCH_LEN],
) -> Result<&'a [u8], &'static str> {
    let Some(rest) = plain.strip_prefix(PLAINTEXT_MAGIC) else {
        return Err("was stored by an older build");
    };
    match rest.split_at_checked(EPOCH_LEN) {
        Some((e, body)) if e == epoch => Ok(body),
        _ => Err("was made under another presignature epoch (the ledger was lost or replaced)"),
    }
}

impl ShareStore {
    /// Stores this party's presignature `id`. An id is stored once: one that is stored or was
    /// ever used on this party is refused.
    pub fn put_presignature(&self, id: &str, presignature: &[u8]) -> Result<(), PartyError> {
        check_id(id)?;
        let h = id_hash(id);
        let mut ledger = self.ledger()?;
        if ledger.used.contains(&h) {
            return Err(refused(
                id,
                "was already used on this party; it is never stored again",
            ));
        }
        if ledger.live.contains_key(&h) {
            return Err(refused(id, "is already stored on this party"));
        }
        self.write_presignature(&mut ledger, id, presignature)
    }

    /// Seals, notes the file in the ledger, then publishes it under its name.
    fn write_presignature(
        &self,
        ledger: &mut Ledger,
        id: &str,
        presignature: &[u8],
    ) -> Result<(), PartyError> {
        let kind = RecordKind::Presignature;
        let mut plain = Zeroizing::new(Vec::with_capacity(
            PLAINTEXT_MAGIC.len() + EPOCH_LEN + presignature.len(),
        ));
        plain.extend_from_slice(PLAINTEXT_MAGIC);
        plain.extend_from_slice(&ledger.epoch);
        plain.extend_from_slice(presignature);
        let record = self.sealer.seal(kind.as_str(), id, &plain)?;
        let dir = self.dir(kind);
        let tmp = dir.join(tmp_name(id));
        let file = write_new_file(&tmp, &record)?;
        // The rename below keeps the inode and birth time, so they name the final file too.
        let noted = file.metadata().map_err(|e| io(&tmp, e)).and_then(|meta| {
            ledger.record(
                &self.sealer,
                Entry::Born(id_hash(id), FileIdentity::of(&meta)),
            )
        });
        drop(file);
        let path = dir.join(id);
        let published = noted.and_then(|()| fs::rename(&tmp, &path).map_err(|e| io(&path, e)));
        if let Err(e) = published {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&dir)
    }

    /// Takes presignature `id` for its one use: on success this caller is the only one that
    /// will ever get it, it is noted as used, and its record is gone from disk.
    pub fn take_presignature(&self, id: &str) -> Result<Zeroizing<Vec<u8>>, PartyError> {
        check_id(id)?;
        let h = id_hash(id);
        let (written, epoch) = {
            let ledger = self.ledger()?;
            if ledger.used.contains(&h) {
                return Err(refused(id, "was already used on this party"));
            }
            (ledger.live.get(&h).copied(), ledger.epoch)
        };
        // The in-memory check above is only a fast path; the rename decides, across threads
        // and processes alike.
        let Some(claimed) = self.claim(RecordKind::Presignature, id)? else {
            return Err(refused(id, "is not on this party (used, or never stored)"));
        };
        // Dropping `claimed` on an error removes the record: unused, and never usable again.
        {
            let mut ledger = self.ledger()?;
            // A second barrier within this process: only one claimant turns it to used.
            if ledger.used.contains(&h) {
                return Err(refused(id, "was already used on this party"));
            }
            ledger.record(&self.sealer, Entry::Used(h))?;
        }
        let opened = self.open_claimed(id, &claimed, written, &epoch);
        claimed.destroy()?;
        opened
    }

    fn open_claimed(
        &self,
        id: &str,
        claimed: &Claimed,
        written: Option<FileIdentity>,
        epoch: &[u8; EPOCH_LEN],
    ) -> Result<Zeroizing<Vec<u8>>, PartyError> {
        let (record, identity) = claimed.read()?;
        if written != Some(identity) {
            return Err(refused(
                id,
                "is not the file this party wrote (restored from a copy, or copied in): \
                 destroyed unused",
            ));
        }
        let plain = self.sealer.open(
            RecordKind::Presignature.as_str(),
            id,
            &claimed.path,
            &record,
        )?;
        let body = presignature_body(&plain, epoch).map_err(|reason| refused(id, reason))?;
        Ok(Zeroizing::new(body.to_vec()))
    }

    /// At start: notes and destroys presignatures claimed before a crash, destroys those that
    /// must not be used, and adopts those an older build stored when the ledger is new.
    pub(super) fn recover_presignatures(&self) -> Result<(), PartyError> {
        let kind = RecordKind::Presignature;
        let dir = self.dir(kind);
        let mut ledger = self.ledger()?;
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if let Some(id) = claimed_id(&name) {
                tracing::warn!(
                    presignature = id,
                    "destroying a presignature claimed before the last stop; it is never used"
                );
                ledger.note_used(&self.sealer, id_hash(id))?;
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed = true;
                continue;
            }
            if name.starts_with('.') || check_id(&name).is_err() {
                // verify_all names what does not belong here.
                continue;
            }
            let id = name.as_str();
            let h = id_hash(id);
            let mut file = fs::File::open(&path).map_err(|e| io(&path, e))?;
            let identity = FileIdentity::of(&file.metadata().map_err(|e| io(&path, e))?);
            let mut record = Vec::new();
            file.read_to_end(&mut record).map_err(|e| io(&path, e))?;
            drop(file);
            let plain = self.sealer.open(kind.as_str(), id, &path, &record)?;
            let verdict = if ledger.used.contains(&h) {
                Err("was used before: this copy came back from a restore")
            } else if ledger.live.get(&h) != Some(&identity) {
                Err("is not the file this party wrote: restored from a copy, or copied in")
            } else {
                presignature_body(&plain, &ledger.epoch).map(|_| ())
            };
            let Err(reason) = verdict else {
                continue;
            };
            if ledger.fresh && !plain.starts_with(PLAINTEXT_MAGIC) {
                // Stored by an older build that kept no ledger; what it left on disk it had
                // not used (it deleted a presignature on use).
                tracing::info!(
                    presignature = id,
                    "adopting a presignature stored by an older build"
                );
                self.write_presignature(&mut ledger, id, &plain[..])?;
                continue;
            }
            tracing::warn!(
                presignature = id,
                reason,
                "destroying a presignature that must not be used"
            );
            ledger.note_used(&self.sealer, h)?;
            fs::remove_file(&path).map_err(|e| io(&path, e))?;
            removed = true;
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::super::tests::key;
    use super::*;

    fn open(dir: &Path) -> ShareStore {
        ShareStore::open(dir, "p", &key(1)).unwrap()
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    fn presignature_files(data: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(data.join("store/presignature"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_presignature_is_taken_once_and_its_id_never_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_presignature("k.s1", b"nonce share").unwrap();
        assert!(store.put_presignature("k.s1", b"another").is_err());
        assert_eq!(&**store.take_presignature("k.s1").unwrap(), b"nonce share");
        let err = store.take_presignature("k.s1").unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
        assert!(store.put_presignature("k.s1", b"again").is_err());
        assert!(presignature_files(dir.path()).is_empty());

        // What the ledger knows outlives the process.
        drop(store);
        let store = open(dir.path());
        assert!(store.put_presignature("k.s1", b"again").is_err());
        let err = store.take_presignature("k.s1").unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn concurrent_claims_of_one_presignature_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores on one directory stand for two processes: the file system decides. The
        // second is opened after each put, as a process that learns of it from the ledger.
        let first = Arc::new(open(dir.path()));
        for round in 0..20 {
            let id = format!("k.s{round}");
            first.put_presignature(&id, b"one use only").unwrap();
            let stores = [first.clone(), Arc::new(open(dir.path()))];
            let barrier = Arc::new(Barrier::new(8));
            let claims: Vec<_> = (0..8)
                .map(|i| {
                    let store = stores[i % 2].clone();
                    let barrier = barrier.clone();
                    let id = id.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.take_presignature(&id).ok()
                    })
                })
                .collect();
            let won: Vec<_> = claims
                .into_iter()
                .filter_map(|c| c.join().unwrap())
                .collect();
            assert_eq!(won.len(), 1, "round {round}");
            assert_eq!(&**won[0], b"one use only");
        }
        assert!(presignature_files(dir.path()).is_empty());
    }

    #[test]
    fn a_used_presignature_copied_back_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_presignature("k.s1", b"nonce share").unwrap();
        let backup = dir.path().join("backup");
        fs::copy(dir.path().join("store/presignature/k.s1"), &backup).unwrap();
        store.take_presignature("k.s1").unwrap();

        // While running: the file comes back, the ledger says used.
        fs::copy(&backup, dir.path().join("store/presignature/k.s1")).unwrap();
        let err = store.take_presignature("k.s1").unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");

        // At the next start it is destroyed.
        drop(store);
        let store = open(dir.path());
        assert!(presignature_files(dir.path()).is_empty());
        assert!(store.take_presignature("k.s1").is_err());
    }

    #[test]
    fn a_presignature_used_after_a_copy_of_data_dir_is_refused_after_restoring_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = open(&data);
        store.put_presignature("k.s1", b"nonce share 1").unwrap();
        store.put_presignature("k.s2", b"nonce share 2").unwrap();
        // The operator's backup: the whole data dir, ledger included, both unused.
        let backup = dir.path().join("backup");
        copy_dir(&data, &backup);
        assert_eq!(
            &**store.take_presignature("k.s1").unwrap(),
            b"nonce share 1"
        );
        drop(store);

        // The restore: data dir replaced by the backup, as cp/rsync/tar would.
        fs::remove_dir_all(&data).unwrap();
        copy_dir(&backup, &data);
        let store = open(&data);
        // The restored ledger predates the use of k.s1 and lists it as unused; the files are
        // not the ones this party wrote, so neither comes back into use.
        assert!(presignature_files(&data).is_empty());
        assert!(store.take_presignature("k.s1").is_err());
        assert!(store.take_presignature("k.s2").is_err());
    }

    #[test]
    fn a_presignature_copied_in_while_running_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = open(&data);
        store.put_presignature("k.s1", b"nonce share").unwrap();
        // Replaced in place by a copy of itself, as `rsync` into the live directory would.
        let path = data.join("store/presignature/k.s1");
        let copy = dir.path().join("copy");
        fs::copy(&path, &copy).unwrap();
        fs::remove_file(&path).unwrap();
        fs::copy(&copy, &path).unwrap();
        let err = store.take_presignature("k.s1").unwrap_err();
        assert!(err.to_string().contains("not the file"), "{err}");
        assert!(presignature_files(&data).is_empty());
    }

    #[test]
    fn a_presignature_claimed_before_a_crash_is_destroyed_and_stays_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_presignature("k.s1", b"nonce share").unwrap();
        let backup = dir.path().join("backup");
        fs::copy(dir.path().join("store/presignature/k.s1"), &backup).unwrap();
        // The crash: claimed (renamed), then nothing more.
        let claimed = store
            .claim(RecordKind::Presignature, "k.s1")
            .unwrap()
            .unwrap();
        std::mem::forget(claimed);
        drop(store);

        let store = open(dir.path());
        assert!(presignature_files(dir.path()).is_empty());
        fs::copy(&backup, dir.path().join("store/presignature/k.s1")).unwrap();
        let err = store.take_presignature("k.s1").unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn losing_the_ledger_retires_every_presignature() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_presignature("k.s1", b"nonce share").unwrap();
        drop(store);
        fs::remove_dir_all(dir.path().join("store").join(LEDGER_DIR)).unwrap();
        let store = open(dir.path());
        assert!(presignature_files(dir.path()).is_empty());
        assert!(store.take_presignature("k.s1").is_err());
    }

    #[test]
    fn presignatures_of_an_older_build_are_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // What an older build wrote: the presignature alone, no ledger.
        let old = |id: &str| {
            store
                .sealer
                .seal("presignature", id, b"{\"old\":1}")
                .unwrap()
        };
        let (sealed, later) = (old("k.old"), old("k.old2"));
        drop(store);
        fs::remove_dir_all(dir.path().join("store").join(LEDGER_DIR)).unwrap();
        fs::write(dir.path().join("store/presignature/k.old"), &sealed).unwrap();
        let store = open(dir.path());
        assert_eq!(&**store.take_presignature("k.old").unwrap(), b"{\"old\":1}");

        // An old-format file appearing later, with a ledger in place, is refused.
        fs::write(dir.path().join("store/presignature/k.old2"), &later).unwrap();
        drop(store);
        let store = open(dir.path());
        assert!(presignature_files(dir.path()).is_empty());
        assert!(store.take_presignature("k.old2").is_err());
    }

    #[test]
    fn an_incomplete_last_ledger_entry_is_dropped_and_a_damaged_one_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_presignature("k.s1", b"one").unwrap();
        let log = dir
            .path()
            .join("store")
            .join(LEDGER_DIR)
            .join(store.ledger().unwrap().log_name.clone());
        drop(store);
        let good = fs::read(&log).unwrap();

        for tail in [&[0, 0, 0, 40, 1, 2, 3][..], &[0; 60][..]] {
            let mut torn = good.clone();
            torn.extend_from_slice(tail);
            fs::write(&log, &torn).unwrap();
            drop(open(dir.path()));
            assert_eq!(fs::read(&log).unwrap(), good);
        }
        let store = open(dir.path());
        assert_eq!(&**store.take_presignature("k.s1").unwrap(), b"one");
        drop(store);

        let mut damaged = fs::read(&log).unwrap();
        damaged[10] ^= 1;
        fs::write(&log, &damaged).unwrap();
        assert!(ShareStore::open(dir.path(), "p", &key(1)).is_err());
    }
}
