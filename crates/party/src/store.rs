//! The share store: one file per record under `<data_dir>/store/<kind>/<id>`, each sealed with
//! AES-256-GCM under the master key. The record kind, its id, the party id and the format
//! version are bound as associated data, so a record copied to another name, another party or
//! another format does not open. Writes are atomic: a temporary file, fsync, rename, fsync of
//! the directory. Files are created 0600 and directories 0700 whatever the umask: sealed
//! records are still secret material (a copy is all an attacker with the master key needs).
//!
//! A record that must be used at most once (a prime pair, a presignature) leaves the store
//! through [`ShareStore::take`]: it is renamed to a claimed name first, and only the caller
//! whose rename succeeded reads it. Presignatures have more bookkeeping on top (see
//! `presignatures.rs`).

mod presignatures;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::master_key::MasterKey;
use crate::PartyError;

use self::presignatures::Ledger;

const MAGIC: &[u8; 4] = b"MPCS";
/// The record format this build writes and reads.
pub const RECORD_FORMAT: u16 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 2 + NONCE_LEN;
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;
/// Marks a record renamed by [`ShareStore::take`]: `.<id>.claimed-<random>`.
const CLAIMED: &str = ".claimed-";
const TMP_SUFFIX: &str = ".tmp";

/// What a record holds; also its directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Identity,
    AuxInfo,
    /// Sealed with the digest of its key's policy record bound in (see [`ShareStore::put_share`]).
    KeyShare,
    /// The admin-signed policy a key was generated under.
    KeyPolicy,
    /// The newest successor of a key's policy this party adopted (none until an admin
    /// changes the policy).
    KeyPolicyUpdate,
    PrimePair,
    Presignature,
    /// An approval set already used, by its fingerprint: which session used it, until when.
    ApprovalUse,
}

impl RecordKind {
    pub const ALL: [RecordKind; 8] = [
        RecordKind::Identity,
        RecordKind::AuxInfo,
        RecordKind::KeyShare,
        RecordKind::KeyPolicy,
        RecordKind::KeyPolicyUpdate,
        RecordKind::PrimePair,
        RecordKind::Presignature,
        RecordKind::ApprovalUse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Identity => "identity",
            RecordKind::AuxInfo => "aux-info",
            RecordKind::KeyShare => "key-share",
            RecordKind::KeyPolicy => "key-policy",
            RecordKind::KeyPolicyUpdate => "key-policy-update",
            RecordKind::PrimePair => "prime-pair",
            RecordKind::Presignature => "presignature",
            RecordKind::ApprovalUse => "approval-use",
        }
    }
}

/// What binds a key share to its policy record: the digest of the sealed policy's plaintext.
pub fn policy_binding(policy_plaintext: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(policy_plaintext).into()
}

/// A key share opened by [`ShareStore::peek_shares`]: its key id and its plaintext.
pub type PeekedShare = (String, Zeroizing<Vec<u8>>);

pub struct ShareStore {
    root: PathBuf,
    sealer: Sealer,
    ledger: Mutex<Ledger>,
}

impl std::fmt::Debug for ShareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStore")
            .field("root", &self.root)
            .field("party_id", &self.sealer.party_id)
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

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A temporary name no other writer uses: two writers of one id never share a file.
fn tmp_name(id: &str) -> String {
    format!(".{id}.{}{TMP_SUFFIX}", random_suffix())
}

/// The record id of a claimed file's name, if it is one.
fn claimed_id(name: &str) -> Option<&str> {
    if name.ends_with(TMP_SUFFIX) {
        return None;
    }
    let rest = name.strip_prefix('.')?;
    let end = rest.rfind(CLAIMED)?;
    let id = &rest[..end];
    check_id(id).ok().map(|()| id)
}

/// Creates `dir` (and missing parents) 0700, and tightens it if it exists looser.
fn private_dir(dir: &Path) -> Result<(), PartyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    tighten(dir, DIR_MODE)
}

fn tighten(path: &Path, mode: u32) -> Result<(), PartyError> {
    let meta = fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    // A link's own mode means nothing, and chmod would reach through it to its target.
    if !meta.file_type().is_symlink() && meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))?;
    }
    Ok(())
}

/// Writes a new file (never an existing one) 0600 and syncs it.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<fs::File, PartyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io(path, e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(path, e));
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// Replaces `dir/name` with `bytes` atomically and durably.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), PartyError> {
    let tmp = dir.join(tmp_name(name));
    write_new_file(&tmp, bytes)?;
    let path = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(&path, e));
    }
    sync_dir(dir)
}

/// Creates `dir/name` with `bytes` atomically and durably unless it exists (then false).
fn write_new_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool, PartyError> {
    let tmp = dir.join(tmp_name(name));
    write_new_file(&tmp, bytes)?;
    let path = dir.join(name);
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(&path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), PartyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Which file a path names: an inode and, where the file system records it, its birth time.
/// A rename keeps both; any copy (cp, rsync, tar, a restore from backup) makes a new file, and
/// the birth time tells a new file from an old one that got a freed inode number back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    inode: u64,
    born_ns: Option<u128>,
}

impl FileIdentity {
    fn of(meta: &fs::Metadata) -> Self {
        let born_ns = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos());
        Self {
            inode: meta.ino(),
            born_ns,
        }
    }
}

/// Seals and opens records under the master key.
struct Sealer {
    party_id: String,
    cipher: Aes256Gcm,
}

impl Sealer {
    /// `label` is the record kind's name (or the presignature ledger's); `binding` ties the
    /// record to another one (a key share to its policy), empty for most.
    fn associated_data(&self, label: &str, id: &str, binding: &[u8]) -> Vec<u8> {
        let mut aad = b"mpc-share-store".to_vec();
        for part in [label, id, &self.party_id] {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(&RECORD_FORMAT.to_be_bytes());
        if !binding.is_empty() {
            aad.push(0);
            aad.extend_from_slice(binding);
        }
        aad
    }

    fn seal(&self, label: &str, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, PartyError> {
        self.seal_bound(label, id, &[], plaintext)
    }

    fn seal_bound(
        &self,
        label: &str,
        id: &str,
        binding: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PartyError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.associated_data(label, id, binding);
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
        Ok(record)
    }

    /// Opens a sealed record. A wrong master key and a tampered record both fail here, by name.
    fn open(
        &self,
        label: &str,
        id: &str,
        path: &Path,
        record: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PartyError> {
        self.open_bound(label, id, &[], path, record)
    }

    fn open_bound(
        &self,
        label: &str,
        id: &str,
        binding: &[u8],
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
        let aad = self.associated_data(label, id, binding);
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
}

/// A record renamed out of sight by [`ShareStore::claim`]: this holder is the only one. It is
/// removed on drop whatever happened, so an error path cannot leave it to a second use (and a
/// crash leaves it to the sweep at the next start).
struct Claimed {
    path: PathBuf,
    dir: PathBuf,
    destroyed: bool,
}

impl Claimed {
    fn read(&self) -> Result<(Vec<u8>, FileIdentity), PartyError> {
        let mut file = fs::File::open(&self.path).map_err(|e| io(&self.path, e))?;
        let identity = FileIdentity::of(&file.metadata().map_err(|e| io(&self.path, e))?);
        let mut record = Vec::new();
        file.read_to_end(&mut record)
            .map_err(|e| io(&self.path, e))?;
        Ok((record, identity))
    }

    fn destroy(mut self) -> Result<(), PartyError> {
        self.destroyed = true;
        match fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.path, e)),
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.destroyed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ShareStore {
    /// Opens (creating if needed) the store of `party_id` under `data_dir`, and recovers it:
    /// leftovers of interrupted writes and claims are removed (a claimed record is destroyed,
    /// never put back), loose permissions are tightened, and presignatures that must not be
    /// used (used before, copied or restored, from another epoch) are destroyed. A wrong master
    /// key fails here or in [`ShareStore::verify_all`].
    pub fn open(data_dir: &Path, party_id: &str, key: &MasterKey) -> Result<Self, PartyError> {
        let root = data_dir.join("store");
        private_dir(&root)?;
        for kind in RecordKind::ALL {
            private_dir(&root.join(kind.as_str()))?;
        }
        let sealer = Sealer {
            party_id: party_id.to_owned(),
            cipher: key.cipher(),
        };
        sweep(&root)?;
        let ledger = Ledger::open(&root, &sealer, || verify_records(&root, &sealer))?;
        let store = Self {
            root,
            sealer,
            ledger: Mutex::new(ledger),
        };
        store.recover_presignatures()?;
        Ok(store)
    }

    /// Opens one record without opening the store: no sweep, no ledger recovery, so it is
    /// safe while a party process works on the same directory. None when it is not there.
    pub fn peek(
        data_dir: &Path,
        party_id: &str,
        key: &MasterKey,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, PartyError> {
        check_id(id)?;
        let path = data_dir.join("store").join(kind.as_str()).join(id);
        let record = match fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let sealer = Sealer {
            party_id: party_id.to_owned(),
            cipher: key.cipher(),
        };
        sealer.open(kind.as_str(), id, &path, &record).map(Some)
    }

    /// Opens every key share of the store under `data_dir` without opening the store, and
    /// changes nothing: no sweep, no recovery, no directory created (the directory may be a
    /// read-only mount or a copy). Safe beside a party process working on the same directory.
    /// For tools that must know the shares (the test suite's log scanner); each share comes
    /// with its key id, sorted by it. An empty list when the store holds no shares.
    pub fn peek_shares(
        data_dir: &Path,
        party_id: &str,
        key: &MasterKey,
    ) -> Result<Vec<PeekedShare>, PartyError> {
        let root = data_dir.join("store");
        let kind = RecordKind::KeyShare;
        if !root.join(kind.as_str()).is_dir() {
            return Ok(Vec::new());
        }
        let sealer = Sealer {
            party_id: party_id.to_owned(),
            cipher: key.cipher(),
        };
        let mut shares = Vec::new();
        for id in list(&root, kind)? {
            check_id(&id)?;
            let path = root.join(kind.as_str()).join(&id);
            let record = fs::read(&path).map_err(|e| io(&path, e))?;
            let binding = share_binding(&root, &sealer, &id)?;
            let share = sealer.open_bound(kind.as_str(), &id, &binding, &path, &record)?;
            shares.push((id, share));
        }
        Ok(shares)
    }

    fn dir(&self, kind: RecordKind) -> PathBuf {
        self.root.join(kind.as_str())
    }

    fn path(&self, kind: RecordKind, id: &str) -> PathBuf {
        self.dir(kind).join(id)
    }

    fn ledger(&self) -> Result<MutexGuard<'_, Ledger>, PartyError> {
        self.ledger.lock().map_err(|_| PartyError::Store {
            path: self.root.join(presignatures::LEDGER_DIR),
            reason: "the presignature ledger is unusable after a panic; restart the party".into(),
        })
    }

    /// Presignatures are stored and taken only through the ledger
    /// ([`ShareStore::put_presignature`], [`ShareStore::take_presignature`]).
    fn not_presignature(kind: RecordKind, what: &str) -> Result<(), PartyError> {
        if kind == RecordKind::Presignature {
            return Err(PartyError::Config {
                field: "record kind".into(),
                reason: format!("presignatures are not {what} as plain records"),
            });
        }
        Ok(())
    }

    /// Seals and writes a record atomically, replacing any earlier one.
    pub fn put(&self, kind: RecordKind, id: &str, plaintext: &[u8]) -> Result<(), PartyError> {
        check_id(id)?;
        Self::not_presignature(kind, "stored")?;
        if kind == RecordKind::KeyShare {
            return Err(PartyError::Config {
                field: "record kind".into(),
                reason: "key shares are stored only with put_share, never replaced".into(),
            });
        }
        let record = self.sealer.seal(kind.as_str(), id, plaintext)?;
        write_atomic(&self.dir(kind), id, &record)
    }

    /// Seals and writes a record that must not exist yet: false (and nothing written) when
    /// one does. Atomic against concurrent writers: the final name is created by a hard link,
    /// which never replaces a file.
    pub fn put_new(
        &self,
        kind: RecordKind,
        id: &str,
        plaintext: &[u8],
    ) -> Result<bool, PartyError> {
        check_id(id)?;
        Self::not_presignature(kind, "stored")?;
        let record = self.sealer.seal(kind.as_str(), id, plaintext)?;
        write_new_atomic(&self.dir(kind), id, &record)
    }

    /// Stores the share of `key_id`, bound to the policy record stored for it: the share opens
    /// only beside that very policy. A share is never overwritten: an error when one exists.
    pub fn put_share(&self, key_id: &str, plaintext: &[u8]) -> Result<(), PartyError> {
        check_id(key_id)?;
        let binding = self.share_binding(key_id)?;
        let kind = RecordKind::KeyShare;
        let record = self
            .sealer
            .seal_bound(kind.as_str(), key_id, &binding, plaintext)?;
        if write_new_atomic(&self.dir(kind), key_id, &record)? {
            Ok(())
        } else {
            Err(PartyError::Config {
                field: "key_id".into(),
                reason: format!("this party already holds a share of key {key_id}"),
            })
        }
    }

    /// The share of `key_id`, opened with its policy record's binding.
    pub fn get_share(&self, key_id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, PartyError> {
        check_id(key_id)?;
        let path = self.path(RecordKind::KeyShare, key_id);
        let record = match fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let binding = self.share_binding(key_id)?;
        self.sealer
            .open_bound(
                RecordKind::KeyShare.as_str(),
                key_id,
                &binding,
                &path,
                &record,
            )
            .map(Some)
    }

    /// Whether a share of `key_id` is on disk (readable or not).
    pub fn holds_share(&self, key_id: &str) -> bool {
        check_id(key_id).is_err() || self.path(RecordKind::KeyShare, key_id).exists()
    }

    fn share_binding(&self, key_id: &str) -> Result<[u8; 32], PartyError> {
        share_binding(&self.root, &self.sealer, key_id)
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
        if kind == RecordKind::KeyShare {
            return self.get_share(id);
        }
        self.sealer
            .open(kind.as_str(), id, &path, &record)
            .map(Some)
    }

    /// Renames a record to a claimed name. A rename within one directory is atomic: of any
    /// number of claimants (threads or processes) exactly one succeeds, the others find the
    /// name gone. The directory is synced so that a crash cannot bring the record back.
    fn claim(&self, kind: RecordKind, id: &str) -> Result<Option<Claimed>, PartyError> {
        check_id(id)?;
        let dir = self.dir(kind);
        let from = dir.join(id);
        let to = dir.join(format!(".{id}{CLAIMED}{}", random_suffix()));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&from, e)),
        }
        let claimed = Claimed {
            path: to,
            dir,
            destroyed: false,
        };
        sync_dir(&claimed.dir)?;
        Ok(Some(claimed))
    }

    /// Takes a record out of the store for a single use: None when it is not there (never
    /// stored, or another caller took it first). The record is gone from disk when this
    /// returns, whatever it returns.
    pub fn take(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, PartyError> {
        Self::not_presignature(kind, "taken")?;
        let Some(claimed) = self.claim(kind, id)? else {
            return Ok(None);
        };
        let opened = claimed
            .read()
            .and_then(|(record, _)| self.sealer.open(kind.as_str(), id, &claimed.path, &record));
        claimed.destroy()?;
        opened.map(Some)
    }

    /// Deletes a record durably (the directory is synced). Deleting a missing record is fine.
    pub fn delete(&self, kind: RecordKind, id: &str) -> Result<(), PartyError> {
        check_id(id)?;
        let path = self.path(kind, id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir(kind)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Ids of the records of one kind, sorted.
    pub fn list(&self, kind: RecordKind) -> Result<Vec<String>, PartyError> {
        list(&self.root, kind)
    }

    /// Opens every record once. Run at start: a party with a wrong master key or a damaged
    /// record refuses to start rather than fail in the middle of a session.
    pub fn verify_all(&self) -> Result<usize, PartyError> {
        verify_records(&self.root, &self.sealer)
    }
}

fn list(root: &Path, kind: RecordKind) -> Result<Vec<String>, PartyError> {
    let dir = root.join(kind.as_str());
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

fn verify_records(root: &Path, sealer: &Sealer) -> Result<usize, PartyError> {
    let mut count = 0;
    for kind in RecordKind::ALL {
        for id in list(root, kind)? {
            check_id(&id)?;
            let path = root.join(kind.as_str()).join(&id);
            let record = fs::read(&path).map_err(|e| io(&path, e))?;
            let binding = match kind {
                RecordKind::KeyShare => share_binding(root, sealer, &id)?.to_vec(),
                _ => Vec::new(),
            };
            sealer.open_bound(kind.as_str(), &id, &binding, &path, &record)?;
            count += 1;
        }
    }
    Ok(count)
}

/// The binding of a key share: the digest of its policy record's plaintext.
fn share_binding(root: &Path, sealer: &Sealer, key_id: &str) -> Result<[u8; 32], PartyError> {
    let kind = RecordKind::KeyPolicy;
    let path = root.join(kind.as_str()).join(key_id);
    let record = match fs::read(&path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PartyError::Unreadable {
                path,
                reason: format!("key {key_id} has no policy record: its share cannot be used"),
            })
        }
        Err(e) => return Err(io(&path, e)),
    };
    let policy = sealer.open(kind.as_str(), key_id, &path, &record)?;
    Ok(policy_binding(&policy))
}

/// At start, before anything runs: removes temporary files of interrupted writes and records
/// claimed before a crash (presignature claims are left to the ledger, which must note them as
/// used first), and tightens files an older build or an operator left readable by others.
fn sweep(root: &Path) -> Result<(), PartyError> {
    for kind in RecordKind::ALL {
        let dir = root.join(kind.as_str());
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let leftover = name.starts_with('.')
                && (name.ends_with(TMP_SUFFIX)
                    || (kind != RecordKind::Presignature && claimed_id(&name).is_some()));
            if leftover {
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed = true;
            } else {
                tighten(&path, FILE_MODE)?;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    pub(super) fn key(byte: u8) -> MasterKey {
        MasterKey::from_hex("test", &hex::encode([byte; 32])).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_share_opens_only_beside_its_policy_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        // No policy, no share.
        assert!(store.put_share("k1", b"share").is_err());
        store.put(RecordKind::KeyPolicy, "k1", b"policy A").unwrap();
        store.put_share("k1", b"share").unwrap();
        assert_eq!(&**store.get_share("k1").unwrap().unwrap(), b"share");
        let again = store.put_share("k1", b"other share").unwrap_err();
        assert!(
            again.to_string().contains("already holds a share"),
            "{again}"
        );
        assert!(store.put(RecordKind::KeyShare, "k1", b"x").is_err());
        assert_eq!(&**store.get_share("k1").unwrap().unwrap(), b"share");
        assert_eq!(store.verify_all().unwrap(), 2);
        // Another policy beside the share (even one sealed properly): the share stays shut,
        // and the party refuses to start with it.
        store.put(RecordKind::KeyPolicy, "k1", b"policy B").unwrap();
        assert!(store.get_share("k1").is_err());
        assert!(store.verify_all().is_err());
        // Records that must be new stay as first written.
        assert!(store.put_new(RecordKind::ApprovalUse, "a1", b"s1").unwrap());
        assert!(!store.put_new(RecordKind::ApprovalUse, "a1", b"s2").unwrap());
        assert_eq!(
            &**store.get(RecordKind::ApprovalUse, "a1").unwrap().unwrap(),
            b"s1"
        );
    }

    #[test]
    fn shares_are_peeked_without_changing_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ShareStore::peek_shares(dir.path(), "p", &key(1))
            .unwrap()
            .is_empty());
        assert!(
            !dir.path().join("store").exists(),
            "peeking created the store"
        );
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        store.put(RecordKind::KeyPolicy, "k1", b"policy").unwrap();
        store.put_share("k1", b"share one").unwrap();
        store.put(RecordKind::KeyPolicy, "k2", b"policy").unwrap();
        store.put_share("k2", b"share two").unwrap();
        let leftover = dir.path().join("store/key-share/.k3.00.tmp");
        fs::write(&leftover, b"half written").unwrap();
        let shares = ShareStore::peek_shares(dir.path(), "p", &key(1)).unwrap();
        let opened: Vec<(&str, &[u8])> =
            shares.iter().map(|(id, s)| (id.as_str(), &s[..])).collect();
        assert_eq!(
            opened,
            [("k1", &b"share one"[..]), ("k2", &b"share two"[..])]
        );
        assert!(leftover.exists(), "peeking swept the store");
        assert!(ShareStore::peek_shares(dir.path(), "p", &key(2)).is_err());
    }

    #[test]
    fn records_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store
            .put(RecordKind::AuxInfo, "k1", b"secret share")
            .unwrap();
        store.put(RecordKind::AuxInfo, "k1", b"replaced").unwrap();
        assert_eq!(
            &**store.get(RecordKind::AuxInfo, "k1").unwrap().unwrap(),
            b"replaced"
        );
        assert_eq!(
            store.list(RecordKind::AuxInfo).unwrap(),
            vec!["k1".to_string()]
        );
        assert!(store.get(RecordKind::AuxInfo, "k2").unwrap().is_none());
        store.delete(RecordKind::AuxInfo, "k1").unwrap();
        assert!(store.get(RecordKind::AuxInfo, "k1").unwrap().is_none());
        assert_eq!(store.verify_all().unwrap(), 0);
    }

    #[test]
    fn the_plaintext_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store
            .put(RecordKind::AuxInfo, "k1", b"very secret share bytes")
            .unwrap();
        let raw = fs::read(dir.path().join("store/aux-info/k1")).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn a_wrong_key_a_tampered_record_and_a_moved_record_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "party-1", &key(1)).unwrap();
        store.put(RecordKind::AuxInfo, "k1", b"share").unwrap();

        // The store's own bookkeeping is sealed too: a wrong key stops the open.
        let err = ShareStore::open(dir.path(), "party-1", &key(2)).unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(ShareStore::open(dir.path(), "party-2", &key(1)).is_err());

        // Records themselves: a wrong key, another party.
        let sealer = |party: &str, k: u8| Sealer {
            party_id: party.into(),
            cipher: key(k).cipher(),
        };
        let path = dir.path().join("store/aux-info/k1");
        let raw = fs::read(&path).unwrap();
        let err = sealer("party-1", 2)
            .open("aux-info", "k1", &path, &raw)
            .unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(verify_records(&store.root, &sealer("party-1", 2)).is_err());
        assert!(sealer("party-2", 1)
            .open("aux-info", "k1", &path, &raw)
            .is_err());

        fs::copy(&path, dir.path().join("store/aux-info/k2")).unwrap();
        assert!(
            store.get(RecordKind::AuxInfo, "k2").is_err(),
            "a renamed record opened"
        );

        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, raw).unwrap();
        assert!(store.get(RecordKind::AuxInfo, "k1").is_err());
    }

    #[test]
    fn record_ids_cannot_escape_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(
                store.put(RecordKind::AuxInfo, bad, b"x").is_err(),
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

    #[test]
    fn store_files_are_0600_and_directories_0700() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = ShareStore::open(&data, "p", &key(1)).unwrap();
        store.put(RecordKind::AuxInfo, "k1", b"share").unwrap();
        store.put_presignature("key.p1", b"presignature").unwrap();
        assert_eq!(mode(&data.join("store/aux-info/k1")), 0o600);
        assert_eq!(mode(&data.join("store/presignature/key.p1")), 0o600);
        assert_eq!(mode(&data.join("store")), 0o700);
        let mut files = 0;
        for kind in [
            "aux-info",
            "presignature",
            "presignature-ledger",
            "identity",
        ] {
            let d = data.join("store").join(kind);
            assert_eq!(mode(&d), 0o700, "{kind}");
            for entry in fs::read_dir(&d).unwrap() {
                assert_eq!(mode(&entry.unwrap().path()), 0o600);
                files += 1;
            }
        }
        assert!(files >= 4, "{files}");

        // What an older build or an operator left loose is tightened at the next start.
        let share = data.join("store/aux-info/k1");
        fs::set_permissions(&share, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(
            data.join("store/aux-info"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        drop(store);
        ShareStore::open(&data, "p", &key(1)).unwrap();
        assert_eq!(mode(&share), 0o600);
        assert_eq!(mode(&data.join("store/aux-info")), 0o700);
    }

    #[test]
    fn concurrent_takes_of_one_record_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores on one directory stand for two processes: nothing in memory is shared,
        // only the file system decides.
        let stores = [
            Arc::new(ShareStore::open(dir.path(), "p", &key(1)).unwrap()),
            Arc::new(ShareStore::open(dir.path(), "p", &key(1)).unwrap()),
        ];
        for round in 0..20 {
            let id = format!("pair-{round}");
            stores[0]
                .put(RecordKind::PrimePair, &id, b"one use only")
                .unwrap();
            let barrier = Arc::new(Barrier::new(8));
            let takers: Vec<_> = (0..8)
                .map(|i| {
                    let store = stores[i % 2].clone();
                    let barrier = barrier.clone();
                    let id = id.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.take(RecordKind::PrimePair, &id).unwrap()
                    })
                })
                .collect();
            let won: Vec<_> = takers
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect();
            assert_eq!(won.len(), 1, "round {round}");
            assert_eq!(&**won[0], b"one use only");
        }
        let left: Vec<_> = fs::read_dir(dir.path().join("store/prime-pair"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "taken records stayed on disk: {left:?}");
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        store.put(RecordKind::PrimePair, "pair", b"secret").unwrap();
        let prime_dir = dir.path().join("store/prime-pair");
        // A crash right after the claim: the record is claimed but not yet destroyed.
        fs::rename(
            prime_dir.join("pair"),
            prime_dir.join(".pair.claimed-0011223344556677"),
        )
        .unwrap();
        fs::write(prime_dir.join(".other.00.tmp"), b"half written").unwrap();
        drop(store);
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        assert_eq!(fs::read_dir(&prime_dir).unwrap().count(), 0);
        assert!(store.take(RecordKind::PrimePair, "pair").unwrap().is_none());
    }

    #[test]
    fn presignatures_only_go_through_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), "p", &key(1)).unwrap();
        assert!(store.put(RecordKind::Presignature, "k.p", b"x").is_err());
        assert!(store.take(RecordKind::Presignature, "k.p").is_err());
    }

    #[test]
    fn claimed_names_give_back_their_ids() {
        assert_eq!(claimed_id(".k.p1.claimed-00ff"), Some("k.p1"));
        assert_eq!(claimed_id(".a.claimed-b.claimed-00ff"), Some("a.claimed-b"));
        assert_eq!(claimed_id(".k.p1.00ff.tmp"), None);
        assert_eq!(claimed_id("k.p1"), None);
        assert_eq!(claimed_id("..claimed-00"), None);
    }
}
