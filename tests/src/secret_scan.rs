//! Finds secrets in logs: every log line is searched for every secret in each encoding a log
//! could carry it in, and a hit names the file, the line, the secret's label and the encoding,
//! never the secret.
//!
//! The steps:
//!
//! 1. collect [`Secret`]s, each with a label that is safe to print: from PEM private keys
//!    ([`pem_file`]), raw or hex key files such as party master keys and `mpcctl signing-key
//!    new` files ([`key_file`]), tokens and PINs ([`text_file`], [`token`]), a party's share
//!    store opened with its master key ([`party_store`]), or every such file under a cluster's
//!    secret directory ([`secrets_dir`]);
//! 2. build a [`Scanner`] from them: each secret of at least [`MIN_SECRET_LEN`] bytes becomes
//!    needles for its raw bytes, lower and upper case hex, standard and URL-safe base64 (at the
//!    three alignments a secret can have inside a longer encoded blob, so padded, unpadded and
//!    embedded encodings all match) and decimal byte lists (`[1, 2, 3]`, `[1,2,3]`); a text
//!    secret (token, PIN) is also searched as its literal text, whatever its length;
//! 3. [`Scanner::scan_paths`] reads files and directories (recursively) line by line with one
//!    Aho-Corasick automaton and returns a [`Report`]: hits as
//!    `<file>:<line>: holds <label> (<encoding>)`, and the counts scanned.
//!
//! The `mpc-secret-scan` binary runs this over the docker cluster's logs; the test harness
//! runs it over its process logs when a `Cluster` or `Parties` is dropped.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use zeroize::Zeroizing;

/// Binary secrets shorter than this are ignored: too short to tell from chance.
pub const MIN_SECRET_LEN: usize = 16;

/// Hits shown by a report's `Display`; the count of the rest follows.
const HITS_SHOWN: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A log could not be read.
    #[error("log {}: {reason}", path.display())]
    Log { path: PathBuf, reason: String },
    /// A secret could not be collected from its file (the reason never holds the secret).
    #[error("secret source {}: {reason}", path.display())]
    Source { path: PathBuf, reason: String },
    /// A party's store could not be opened or a record in it decoded.
    #[error("share store of {party} in {}: {reason}", path.display())]
    Store {
        party: String,
        path: PathBuf,
        reason: String,
    },
    #[error("building the matcher: {0}")]
    Matcher(String),
}

fn source(path: &Path, reason: impl fmt::Display) -> ScanError {
    ScanError::Source {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// How a secret is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Key material: raw bytes and every encoding.
    Bytes,
    /// A token or PIN: its literal text (any length) and, when long enough, every encoding.
    Text,
    /// Text searched only as itself (a line of a PEM private key).
    Literal,
}

/// A secret and its printable label. Its bytes are zeroized on drop and never shown.
#[derive(Clone)]
pub struct Secret {
    label: String,
    bytes: Zeroizing<Vec<u8>>,
    kind: Kind,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label)
            .field("len", &self.bytes.len())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// Key material (a key, a share): ignored when shorter than [`MIN_SECRET_LEN`].
    pub fn bytes(label: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            label: label.into(),
            bytes: Zeroizing::new(bytes.to_vec()),
            kind: Kind::Bytes,
        }
    }

    /// A token, PIN or password given explicitly: searched as text whatever its length.
    pub fn text(label: impl Into<String>, text: &str) -> Self {
        Self {
            label: label.into(),
            bytes: Zeroizing::new(text.as_bytes().to_vec()),
            kind: Kind::Text,
        }
    }

    fn literal(label: impl Into<String>, text: &str) -> Self {
        Self {
            kind: Kind::Literal,
            ..Self::text(label, text)
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the scanner searches for it (long enough, or text given explicitly).
    pub fn searched(&self) -> bool {
        match self.kind {
            Kind::Bytes => self.bytes.len() >= MIN_SECRET_LEN,
            Kind::Text | Kind::Literal => !self.bytes.is_empty(),
        }
    }

    /// What a log could carry: (encoding, needle).
    fn needles(&self) -> Vec<(&'static str, Zeroizing<Vec<u8>>)> {
        let b = &self.bytes;
        let mut out = Vec::new();
        if !self.searched() {
            return out;
        }
        match self.kind {
            Kind::Bytes => out.push(("raw bytes", b.clone())),
            Kind::Text | Kind::Literal => out.push(("text", b.clone())),
        }
        if self.kind == Kind::Literal || b.len() < MIN_SECRET_LEN {
            return out;
        }
        let owned = |s: String| Zeroizing::new(s.into_bytes());
        out.push(("hex", owned(hex::encode(&b[..]))));
        out.push(("upper-case hex", owned(hex::encode_upper(&b[..]))));
        // Inside a longer base64 blob the secret starts at any offset modulo 3; from its first
        // byte on a group boundary (skip 0, 1 or 2), its whole groups encode the same way
        // whatever surrounds them. The standalone encodings, padded or not, hold skip 0's.
        for (name, engine) in [("base64", STANDARD_NO_PAD), ("base64url", URL_SAFE_NO_PAD)] {
            for skip in 0..3 {
                let rest = &b[skip..];
                let whole = rest.len() / 3 * 3;
                out.push((name, owned(engine.encode(&rest[..whole]))));
            }
        }
        for (name, sep) in [("byte list", ", "), ("byte list", ",")] {
            let list = b.iter().map(u8::to_string).collect::<Vec<_>>().join(sep);
            out.push((name, owned(list)));
        }
        out
    }
}

/// One secret found on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
    pub label: String,
    pub encoding: &'static str,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: holds {} ({})",
            self.file.display(),
            self.line,
            self.label,
            self.encoding
        )
    }
}

/// What a scan looked at and found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub lines: u64,
    /// Distinct secrets searched for.
    pub secrets: usize,
    /// Secrets too short to search for.
    pub ignored: usize,
    pub hits: Vec<Hit>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.hits.is_empty()
    }

    /// One line: what was scanned and how many hits.
    pub fn summary(&self) -> String {
        let ignored = if self.ignored > 0 {
            format!(
                " ({} shorter than {MIN_SECRET_LEN} bytes ignored)",
                self.ignored
            )
        } else {
            String::new()
        };
        let verdict = if self.clean() {
            "no secret found".to_owned()
        } else {
            format!("{} HITS", self.hits.len())
        };
        format!(
            "secret scan: {verdict}: {} files, {} lines, {} secrets{ignored}",
            self.files, self.lines, self.secrets
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for hit in self.hits.iter().take(HITS_SHOWN) {
            writeln!(f, "{hit}")?;
        }
        if self.hits.len() > HITS_SHOWN {
            writeln!(f, "... and {} more hits", self.hits.len() - HITS_SHOWN)?;
        }
        f.write_str(&self.summary())
    }
}

/// Every needle of every secret in one automaton.
pub struct Scanner {
    matcher: Option<AhoCorasick>,
    /// Per pattern: (index into `labels`, encoding).
    patterns: Vec<(usize, &'static str)>,
    labels: Vec<String>,
    ignored: usize,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("secrets", &self.labels.len())
            .field("needles", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A secret given twice (the same key in two files) is searched once, under its first
    /// label; so is a needle two secrets share.
    pub fn new(secrets: &[Secret]) -> Result<Self, ScanError> {
        let mut seen_secrets: BTreeSet<(u8, &[u8])> = BTreeSet::new();
        let mut needles: Vec<(Zeroizing<Vec<u8>>, usize, &'static str)> = Vec::new();
        let mut labels = Vec::new();
        let mut ignored = 0;
        for secret in secrets {
            if !secret.searched() {
                ignored += 1;
                continue;
            }
            let kind = match secret.kind {
                Kind::Bytes => 0,
                Kind::Text => 1,
                Kind::Literal => 2,
            };
            if !seen_secrets.insert((kind, &secret.bytes[..])) {
                continue;
            }
            let index = labels.len();
            labels.push(secret.label.clone());
            for (encoding, needle) in secret.needles() {
                if !needle.is_empty() {
                    needles.push((needle, index, encoding));
                }
            }
        }
        // A stable sort keeps equal needles in insertion order: the first one stays.
        needles.sort_by(|a, b| a.0[..].cmp(&b.0[..]));
        needles.dedup_by(|later, first| later.0[..] == first.0[..]);
        let patterns = needles.iter().map(|(_, i, e)| (*i, *e)).collect();
        let matcher = if needles.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(needles.iter().map(|(n, _, _)| &n[..]))
                    .map_err(|e| ScanError::Matcher(e.to_string()))?,
            )
        };
        Ok(Self {
            matcher,
            patterns,
            labels,
            ignored,
        })
    }

    /// Labels of the secrets searched for.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Scans files, and every regular file under directories, in name order.
    pub fn scan_paths(&self, paths: &[PathBuf]) -> Result<Report, ScanError> {
        let mut files = Vec::new();
        for path in paths {
            regular_files(path, &mut files).map_err(|reason| ScanError::Log {
                path: path.clone(),
                reason,
            })?;
        }
        let mut report = self.empty_report();
        for file in files {
            let log = Zeroizing::new(std::fs::read(&file).map_err(|e| ScanError::Log {
                path: file.clone(),
                reason: e.to_string(),
            })?);
            self.scan_bytes(&file, &log, &mut report);
        }
        Ok(report)
    }

    /// A report with the secret counts and nothing scanned yet.
    pub fn empty_report(&self) -> Report {
        Report {
            secrets: self.labels.len(),
            ignored: self.ignored,
            ..Report::default()
        }
    }

    /// Scans one log held in memory, adding to `report`; `name` is what hits call the file.
    /// The log is searched whole, so that a raw secret holding a newline byte is found too;
    /// a hit is reported on the line where it starts.
    pub fn scan_bytes(&self, name: &Path, log: &[u8], report: &mut Report) {
        report.files += 1;
        let newlines: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        let partial_last = log.last().is_some_and(|&b| b != b'\n');
        report.lines += newlines.len() as u64 + u64::from(partial_last);
        let Some(matcher) = &self.matcher else {
            return;
        };
        let mut found = BTreeSet::new();
        for m in matcher.find_overlapping_iter(log) {
            if let Some(&(index, encoding)) = self.patterns.get(m.pattern().as_usize()) {
                // Lines before the match's start, plus one.
                let line = newlines.partition_point(|&n| n < m.start()) as u64 + 1;
                found.insert((line, index, encoding));
            }
        }
        for (line, index, encoding) in found {
            report.hits.push(Hit {
                file: name.to_path_buf(),
                line,
                label: self.labels.get(index).cloned().unwrap_or_default(),
                encoding,
            });
        }
    }
}

/// `path` if it is a file, else every regular file under it, sorted.
fn regular_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    entries.sort();
    for entry in entries {
        // Links are not followed: a log directory has none, and a loop would never end.
        let kind = std::fs::symlink_metadata(&entry).map_err(|e| e.to_string())?;
        if kind.is_dir() {
            regular_files(&entry, out)?;
        } else if kind.is_file() {
            out.push(entry);
        }
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, ScanError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| source(path, e))
}

// ---- collecting secrets -------------------------------------------------------------------

/// The secrets of every private key in a PEM file: the key's DER, the private key octets inside
/// it (the 32-byte scalar or seed of an EC or Ed25519 key), and each line of the PEM text.
pub fn pem_file(label: &str, path: &Path) -> Result<Vec<Secret>, ScanError> {
    let bytes = read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| source(path, "not PEM text"))?;
    pem_text(label, text).map_err(|reason| source(path, reason))
}

/// [`pem_file`] of text in memory.
pub fn pem_text(label: &str, text: &str) -> Result<Vec<Secret>, String> {
    let mut out = Vec::new();
    let mut body: Option<(String, Zeroizing<String>)> = None;
    let mut blocks = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(kind) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            body = kind
                .contains("PRIVATE KEY")
                .then(|| (kind.to_owned(), Zeroizing::new(String::new())));
            continue;
        }
        if line.starts_with("-----END ") {
            if let Some((kind, b64)) = body.take() {
                blocks += 1;
                let der = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.as_bytes())
                        .map_err(|_| format!("{kind} block is not base64"))?,
                );
                out.push(Secret::bytes(format!("{label} (key DER)"), &der));
                let mut octets = Vec::new();
                der_private_octets(&der, &mut octets, 0);
                for (i, o) in octets.iter().enumerate() {
                    let which = if octets.len() == 1 {
                        String::new()
                    } else {
                        format!(" #{}", i + 1)
                    };
                    out.push(Secret::bytes(format!("{label} (private key{which})"), o));
                }
            }
            continue;
        }
        if let Some((_, b64)) = &mut body {
            if line.contains(':') {
                continue; // an encapsulation header (Proc-Type, DEK-Info)
            }
            if line.len() >= MIN_SECRET_LEN {
                out.push(Secret::literal(format!("{label} (PEM line)"), line));
            }
            b64.push_str(line);
        }
    }
    if blocks == 0 {
        return Err("no PRIVATE KEY block".into());
    }
    Ok(out)
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Whether `der` is a whole sequence of TLVs.
fn is_der(der: &[u8]) -> bool {
    let mut rest = der;
    while !rest.is_empty() {
        match der_tlv(rest) {
            Some((_, _, r)) => rest = r,
            None => return false,
        }
    }
    !der.is_empty()
}

/// The OCTET STRINGs of 16 to 66 bytes in a PKCS#8 or SEC1 private key: the private key
/// itself (the public key is a BIT STRING, and the context-tagged parts are skipped).
fn der_private_octets(der: &[u8], out: &mut Vec<Zeroizing<Vec<u8>>>, depth: usize) {
    if depth > 8 {
        return;
    }
    let mut rest = der;
    while let Some((tag, content, r)) = der_tlv(rest) {
        rest = r;
        match tag {
            0x30 => der_private_octets(content, out, depth + 1),
            0x04 => {
                let before = out.len();
                if is_der(content) {
                    der_private_octets(content, out, depth + 1);
                }
                if out.len() == before && (MIN_SECRET_LEN..=66).contains(&content.len()) {
                    out.push(Zeroizing::new(content.to_vec()));
                }
            }
            _ => {}
        }
    }
}

/// A key file: exactly 32 raw bytes, or hex text (surrounding whitespace ignored), as party
/// master keys (`--master-key-file`) and `mpcctl signing-key new` files are written.
pub fn key_file(label: &str, path: &Path) -> Result<Secret, ScanError> {
    let bytes = read_secret_file(path)?;
    key_bytes(label, &bytes).map_err(|reason| source(path, reason))
}

fn key_bytes(label: &str, bytes: &[u8]) -> Result<Secret, String> {
    let text = bytes.trim_ascii();
    if !text.is_empty() && text.len().is_multiple_of(2) && text.iter().all(u8::is_ascii_hexdigit) {
        let key = Zeroizing::new(hex::decode(text).map_err(|_| "not hex".to_owned())?);
        return Ok(Secret::bytes(label, &key));
    }
    if bytes.len() == 32 {
        return Ok(Secret::bytes(label, bytes));
    }
    Err("neither 32 raw bytes nor hex text".into())
}

/// A token or PIN given as text; an mpc token (`mpc_<id>_<64 hex>`) also yields its 32
/// secret bytes.
pub fn token(label: &str, text: &str) -> Vec<Secret> {
    let text = text.trim();
    let mut out = vec![Secret::text(label, text)];
    if let Some(id) = mpc_types::token::id_of(text) {
        let start = mpc_types::token::PREFIX.len() + id.len() + 1;
        if let Some(Ok(secret)) = text.get(start..).map(hex::decode) {
            let secret = Zeroizing::new(secret);
            out.push(Secret::bytes(format!("{label} (secret bytes)"), &secret));
        }
    }
    out
}

/// Tokens, PINs or passwords, one per non-empty line (see [`token`]).
pub fn text_file(label: &str, path: &Path) -> Result<Vec<Secret>, ScanError> {
    let bytes = read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| source(path, "not UTF-8 text"))?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let label = if lines.len() == 1 {
            label.to_owned()
        } else {
            format!("{label} line {}", i + 1)
        };
        out.extend(token(&label, line));
    }
    Ok(out)
}

/// The secrets of a party's share store, opened read-only with its master key (given as the
/// key's hex): the identity keys and the secret share of every key. Changes nothing on disk.
pub fn party_store(
    party_id: &str,
    data_dir: &Path,
    master_key_hex: &str,
) -> Result<Vec<Secret>, ScanError> {
    use mpc_party::master_key::MasterKey;
    use mpc_party::store::{RecordKind, ShareStore};
    let store_error = |reason: String| ScanError::Store {
        party: party_id.to_owned(),
        path: data_dir.to_path_buf(),
        reason,
    };
    let key = MasterKey::from_hex("master key", master_key_hex)
        .map_err(|e| store_error(e.to_string()))?;
    let mut out = Vec::new();
    let identity = ShareStore::peek(data_dir, party_id, &key, RecordKind::Identity, "self")
        .map_err(|e| store_error(e.to_string()))?;
    if let Some(identity) = identity {
        if identity.len() == 64 {
            out.push(Secret::bytes(
                format!("identity signing key of {party_id}"),
                &identity[..32],
            ));
            out.push(Secret::bytes(
                format!("identity encryption key of {party_id}"),
                &identity[32..],
            ));
        }
    }
    let shares = ShareStore::peek_shares(data_dir, party_id, &key)
        .map_err(|e| store_error(e.to_string()))?;
    for (key_id, record) in shares {
        let share = mpc_tss::KeyShare::from_bytes(&record)
            .map_err(|e| store_error(format!("key share {key_id}: {e}")))?;
        let secret = share.secret_share_bytes();
        let label = format!("share secret of {party_id} key {key_id}");
        out.push(Secret::bytes(&label, &secret));
        let reversed = Zeroizing::new(secret.iter().rev().copied().collect::<Vec<u8>>());
        out.push(Secret::bytes(format!("{label} (little-endian)"), &reversed));
    }
    Ok(out)
}

/// [`party_store`] with the master key read from its key file (32 raw bytes or hex); the
/// master key itself is among the secrets returned.
pub fn party_store_with_key_file(
    party_id: &str,
    data_dir: &Path,
    master_key_file: &Path,
) -> Result<Vec<Secret>, ScanError> {
    let master = key_file(&format!("master key of {party_id}"), master_key_file)?;
    let key_hex = Zeroizing::new(hex::encode(&master.bytes[..]));
    let mut out = party_store(party_id, data_dir, &key_hex)?;
    out.insert(0, master);
    Ok(out)
}

/// Token and PIN files: `token`, `tokens`, `pin`, `pins`, or such a word before or after a
/// dot, dash or underscore (`ci.token`, `token-admin`, `hsm_pin`).
fn is_text_secret_name(name: &str) -> bool {
    name.split(['.', '-', '_'])
        .any(|part| matches!(part, "token" | "tokens" | "pin" | "pins"))
}

/// What [`secrets_dir`] found.
#[derive(Debug, Default)]
pub struct Collected {
    pub secrets: Vec<Secret>,
    /// Files read as secrets, by kind ("PEM key", "key file", "token file").
    pub files: Vec<(PathBuf, &'static str)>,
    /// Files that hold no secret (certificates, public keys, settings).
    pub skipped: Vec<PathBuf>,
}

/// Every secret file under a directory such as a cluster's `.cluster`: PEM private keys (any
/// file holding a `PRIVATE KEY` block), key files (`*.key`: raw or hex, such as master keys
/// and signing keys) and token or PIN files (named `token`, `*.token`, `pin`, `hsm-pin`…,
/// one per line). Labels are the files' paths. Anything else (certificates, public keys) is skipped.
pub fn secrets_dir(dir: &Path) -> Result<Collected, ScanError> {
    let mut files = Vec::new();
    regular_files(dir, &mut files).map_err(|reason| source(dir, reason))?;
    let mut out = Collected::default();
    for file in files {
        let label = file.display().to_string();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let bytes = read_secret_file(&file)?;
        let pem = bytes
            .windows(b"PRIVATE KEY-----".len())
            .any(|w| w == b"PRIVATE KEY-----");
        if pem {
            out.secrets.extend(pem_file(&label, &file)?);
            out.files.push((file, "PEM key"));
        } else if name.ends_with(".key") {
            out.secrets
                .push(key_bytes(&label, &bytes).map_err(|reason| source(&file, reason))?);
            out.files.push((file, "key file"));
        } else if is_text_secret_name(&name) {
            out.secrets.extend(text_file(&label, &file)?);
            out.files.push((file, "token file"));
        } else {
            out.skipped.push(file);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use mpc_party::store::{RecordKind, ShareStore};

    use super::*;

    fn scan(secrets: &[Secret], log: &[u8]) -> Report {
        let scanner = Scanner::new(secrets).unwrap();
        let mut report = scanner.empty_report();
        scanner.scan_bytes(Path::new("test.log"), log, &mut report);
        report
    }

    /// The ways a log line could carry `secret`, each planted in a line of its own between
    /// clean lines: (what, line).
    fn plantings(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut line = |what: &str, body: Vec<u8>| {
            let mut l = format!("2026-01-01T00:00:00Z INFO leak {what}: ").into_bytes();
            l.extend(body);
            out.push((what.to_owned(), l));
        };
        line("raw bytes", secret.to_vec());
        line("hex", hex::encode(secret).into_bytes());
        line("upper-case hex", hex::encode_upper(secret).into_bytes());
        line("base64 padded", STANDARD.encode(secret).into_bytes());
        line(
            "base64 unpadded",
            STANDARD_NO_PAD.encode(secret).into_bytes(),
        );
        line("base64url padded", URL_SAFE.encode(secret).into_bytes());
        line(
            "base64url unpadded",
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        );
        for offset in 1..3 {
            for (name, engine) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
                let mut blob = vec![0x5a; offset];
                blob.extend_from_slice(secret);
                blob.extend_from_slice(b"trailing bytes");
                line(
                    &format!("{name} inside a blob at offset {offset}"),
                    engine.encode(&blob).into_bytes(),
                );
            }
        }
        line("Rust byte list", format!("{secret:?}").into_bytes());
        line(
            "JSON byte list",
            serde_json::to_string(secret).unwrap().into_bytes(),
        );
        out
    }

    /// Plants every planting of `secret` and checks each is found on its line, under a label
    /// starting with `label`, and that no report shows the secret.
    fn assert_found(secrets: &[Secret], secret: &[u8], label: &str) {
        for (what, planted) in plantings(secret) {
            let mut log = b"clean line before\n".to_vec();
            log.extend(&planted);
            log.extend(b"\nclean line after\n");
            let report = scan(secrets, &log);
            let shown = report.to_string();
            assert!(
                report
                    .hits
                    .iter()
                    .any(|h| h.line == 2 && h.label.starts_with(label)),
                "{label} as {what} was not found: {shown}"
            );
            assert!(
                report.hits.iter().all(|h| h.line == 2),
                "{label} as {what}: a clean line was reported: {shown}"
            );
            assert!(
                !shown.contains(&hex::encode(secret))
                    && !shown.contains(&STANDARD_NO_PAD.encode(secret)),
                "the report of {label} shows the secret"
            );
        }
    }

    fn private_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        crate::write_private(&path, bytes).unwrap();
        path
    }

    const GOLDEN_SHARE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/tss/testdata/keyshare-ed25519-v1.json"
    );

    /// A party store holding an identity, a policy and the golden Ed25519 share.
    fn party_dir(dir: &Path, master_hex: &str) -> PathBuf {
        let data = dir.join("party-1");
        let key = mpc_party::master_key::MasterKey::from_hex("test", master_hex).unwrap();
        let store = ShareStore::open(&data, "party-1", &key).unwrap();
        mpc_party::identity::Identity::load_or_create(&store).unwrap();
        store
            .put(RecordKind::KeyPolicy, "key-x", b"policy")
            .unwrap();
        store
            .put_share("key-x", &std::fs::read(GOLDEN_SHARE).unwrap())
            .unwrap();
        data
    }

    #[test]
    fn every_kind_of_secret_is_found_in_every_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = mpc_tls::pki::init(&pki).unwrap();

        // A PEM private key (as the PKI writes them): its private scalar and its DER.
        let pem = pem_file("TLS key ca", &ca.key).unwrap();
        let scalar = pem
            .iter()
            .find(|s| s.label == "TLS key ca (private key)")
            .expect("the PEM key's private scalar");
        assert_eq!(scalar.bytes.len(), 32);
        let der = pem
            .iter()
            .find(|s| s.label == "TLS key ca (key DER)")
            .expect("the PEM key's DER");
        assert_found(&pem, &scalar.bytes, "TLS key ca (private key)");
        assert_found(&pem, &der.bytes, "TLS key ca");
        // The PEM text itself: line by line, and escaped into one JSON line.
        let text = std::fs::read_to_string(&ca.key).unwrap();
        let report = scan(&pem, text.as_bytes());
        let lines = text.lines().count() as u64;
        for line in 2..lines {
            assert!(
                report.hits.iter().any(|h| h.line == line),
                "PEM line {line} was not found: {report}"
            );
        }
        let json = format!("{{\"key\":{}}}\n", serde_json::to_string(&text).unwrap());
        assert!(!scan(&pem, json.as_bytes()).clean());

        // A master key file (hex) and a signing key file (`mpcctl signing-key new`).
        let master_hex = "6b".repeat(4) + &"5eed0123456789ab".repeat(3) + "00112233";
        let master = key_file(
            "master key of party-1",
            &private_file(dir.path(), "master.key", master_hex.as_bytes()),
        )
        .unwrap();
        assert_found(
            std::slice::from_ref(&master),
            &hex::decode(&master_hex).unwrap(),
            "master key of party-1",
        );
        let seed = [0x3c_u8; 32];
        let signing = key_file(
            "admin signing key",
            &private_file(
                dir.path(),
                "admin-signing.key",
                format!("{}\n", hex::encode(seed)).as_bytes(),
            ),
        )
        .unwrap();
        assert_found(&[signing], &seed, "admin signing key");
        // 32 raw bytes are a key file too; one holding newline bytes is found all the same.
        let raw_bytes: Vec<u8> = (0u8..32)
            .map(|i| if i % 5 == 0 { b'\n' } else { 0x80 + i })
            .collect();
        let raw = key_file("raw key", &private_file(dir.path(), "raw.key", &raw_bytes)).unwrap();
        assert_found(&[raw], &raw_bytes, "raw key");

        // A token: its text, and its secret bytes in every encoding.
        let token_secret = [0xc4_u8; 32];
        let token_text = mpc_types::token::format("0123456789abcdef", &token_secret);
        let tokens = text_file(
            "token ci",
            &private_file(dir.path(), "ci.token", format!("{token_text}\n").as_bytes()),
        )
        .unwrap();
        assert_found(&tokens, &token_secret, "token ci");
        assert_found(&tokens, token_text.as_bytes(), "token ci");
        let report = scan(
            &tokens,
            format!("authorization: Bearer {token_text}\n").as_bytes(),
        );
        assert!(report.hits.iter().any(|h| h.encoding == "text"), "{report}");
        // A PIN given explicitly: found as text although short.
        let pin = token("PIN of the HSM", "4711");
        assert!(!scan(&pin, b"login with pin 4711\n").clean());
        assert!(scan(&pin, b"login with pin 4712\n").clean());

        // A party's store: its identity keys and share secret, opened with the master key.
        let data = party_dir(dir.path(), &master_hex);
        let store_secrets =
            party_store_with_key_file("party-1", &data, &dir.path().join("master.key")).unwrap();
        let labels: Vec<&str> = store_secrets.iter().map(Secret::label).collect();
        for expected in [
            "master key of party-1",
            "identity signing key of party-1",
            "identity encryption key of party-1",
            "share secret of party-1 key key-x",
            "share secret of party-1 key key-x (little-endian)",
        ] {
            assert!(
                labels.contains(&expected),
                "{expected} missing from {labels:?}"
            );
        }
        let share = mpc_tss::KeyShare::from_bytes(&std::fs::read(GOLDEN_SHARE).unwrap()).unwrap();
        let x = share.secret_share_bytes();
        assert_found(&store_secrets, &x, "share secret of party-1 key key-x");
        // The share's own encoding (a share record printed whole) holds it in hex.
        let report = scan(&store_secrets, &std::fs::read(GOLDEN_SHARE).unwrap());
        assert!(
            report
                .hits
                .iter()
                .any(|h| h.label == "share secret of party-1 key key-x"),
            "{report}"
        );
    }

    #[test]
    fn a_secrets_dir_yields_keys_and_tokens_and_skips_public_files() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("cluster");
        let pki = cluster.join("pki");
        mpc_tls::pki::init(&pki).unwrap();
        std::fs::create_dir_all(cluster.join("admin")).unwrap();
        std::fs::create_dir_all(cluster.join("secrets/party-1")).unwrap();
        private_file(
            &cluster.join("secrets/party-1"),
            "master.key",
            "ab".repeat(32).as_bytes(),
        );
        private_file(
            &cluster.join("admin"),
            "admin-signing.key",
            format!("{}\n", "cd".repeat(32)).as_bytes(),
        );
        private_file(&cluster.join("admin"), "tokens", b"mpc_0123456789abcdef_0707070707070707070707070707070707070707070707070707070707070707\n");
        std::fs::write(cluster.join("admin-keys"), "ef".repeat(32)).unwrap();
        let found = secrets_dir(&cluster).unwrap();
        let kinds: Vec<&str> = found.files.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "PEM key").count(),
            1,
            "{:?}",
            found.files
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "key file").count(),
            2,
            "{:?}",
            found.files
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "token file").count(),
            1,
            "{:?}",
            found.files
        );
        assert!(found.skipped.iter().any(|p| p.ends_with("admin-keys")));
        assert!(found.skipped.iter().any(|p| p.ends_with("ca.crt")));
        let log = format!("x={}\n", hex::encode([0xab; 32]));
        assert!(!scan(&found.secrets, log.as_bytes()).clean());
    }

    #[test]
    fn clean_logs_have_no_hits() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = mpc_tls::pki::init(&pki).unwrap();
        let mut secrets = pem_file("TLS key ca", &ca.key).unwrap();
        secrets.push(Secret::bytes("admin signing key", &[0xad; 32]));
        secrets.push(Secret::bytes("master key", &[0x42; 32]));
        secrets.extend(token(
            "token ci",
            &mpc_types::token::format("0123456789abcdef", &[0xc4; 32]),
        ));
        let share = mpc_tss::KeyShare::from_bytes(&std::fs::read(GOLDEN_SHARE).unwrap()).unwrap();
        secrets.push(Secret::bytes("share secret", &share.secret_share_bytes()));

        // What logs do show: public keys, certificates, token ids, other random material.
        let admin_public = ed25519_dalek::SigningKey::from_bytes(&[0xad; 32])
            .verifying_key()
            .to_bytes();
        let mut log = String::new();
        log.push_str("2026-01-01T00:00:00Z INFO mpc_coordinator: starting node_id=1\n");
        log.push_str(&format!(
            "INFO admin key {} trusted\n",
            hex::encode(admin_public)
        ));
        log.push_str(&format!(
            "INFO key created public_key={}\n",
            hex::encode(share.public_key().unwrap())
        ));
        log.push_str("INFO token.create token_id=0123456789abcdef role=signer\n");
        log.push_str(&format!(
            "INFO digest {} {}\n",
            hex::encode([0x43; 32]),
            STANDARD.encode([0x41; 48])
        ));
        log.push_str(&std::fs::read_to_string(&ca.cert).unwrap());
        log.push_str("{\"level\":\"WARN\",\"fields\":{\"message\":\"peer refused\",\"peer\":\"127.0.0.1:50051\"}}\n");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(logs.join("node1")).unwrap();
        std::fs::write(logs.join("node1/coordinator.log"), &log).unwrap();
        std::fs::write(
            logs.join("party.log"),
            "INFO share store opened records=3\n",
        )
        .unwrap();

        let scanner = Scanner::new(&secrets).unwrap();
        let report = scanner.scan_paths(&[logs]).unwrap();
        assert!(report.clean(), "{report}");
        assert_eq!(report.files, 2);
        assert_eq!(report.lines, log.lines().count() as u64 + 1);
        assert!(report.secrets >= 7, "{}", report.secrets);
        assert!(
            report
                .summary()
                .starts_with("secret scan: no secret found: 2 files"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn der_walk_finds_the_private_key_and_not_the_public_one() {
        // PKCS#8 of an Ed25519 key: OCTET STRING { OCTET STRING (32) }, then [1] public key.
        let mut der = vec![
            0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
        ];
        der.extend([0x70, 0x04, 0x22, 0x04, 0x20]);
        der.extend([7u8; 32]);
        der.extend([0x81, 0x21, 0x00]);
        der.extend([9u8; 32]);
        let mut found = Vec::new();
        der_private_octets(&der, &mut found, 0);
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0][..], &[7u8; 32]);
    }

    #[test]
    fn hits_name_file_line_label_and_encoding_never_the_secret() {
        let secret = Secret::bytes("the key", &[0xab; 32]);
        let log = format!("clean\nkey={}\n", hex::encode([0xab; 32]));
        let report = scan(&[secret], log.as_bytes());
        assert_eq!(report.hits.len(), 1);
        let shown = report.to_string();
        assert!(
            shown.starts_with("test.log:2: holds the key (hex)\n"),
            "{shown}"
        );
        assert!(!shown.contains("abab"), "{shown}");
        assert_eq!(report.lines, 2);
    }

    #[test]
    fn short_binary_secrets_are_ignored_but_explicit_text_is_not() {
        let report = scan(
            &[
                Secret::bytes("short", b"0123456789"),
                Secret::text("pin", "4711"),
            ],
            b"pin 4711 and 0123456789\n",
        );
        assert_eq!(report.ignored, 1);
        assert_eq!(report.hits.len(), 1);
        assert_eq!(report.hits[0].label, "pin");
    }
}
