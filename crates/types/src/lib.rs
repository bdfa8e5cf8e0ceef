//! The domain vocabulary every mpc crate shares, with nothing of ours beneath it: what the
//! replicated state stores, what certificates and tokens grant, and what the CLI parses are
//! the same types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Signing requests: schemes, hash functions, what is signed, and session kinds and states.
pub mod signing;
pub use signing::{FieldError, HashFunction, Scheme, SessionKind, SessionStatus, SigningInput};

/// The DVN relayer's jobs, verdicts and submissions as the replicated state keeps them.
pub mod relay;

/// What a client principal may do. Deny by default: a call needs a role that includes its
/// right, and signing additionally needs a grant for the key (see [`AccessRole::includes`]).
///
/// - `reader`: get, list and watch keys, sessions and parties; read the audit log;
/// - `signer`: a reader that may create signings with the keys or key tags it is granted;
/// - `operator`: a reader that may generate keys and update them;
/// - `admin`: everything, including membership, party enrolment, tokens and policies, and
///   signing with any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AccessRole {
    /// Reads keys, sessions, parties and the audit log.
    Reader,
    /// A reader that signs with the keys it is granted.
    Signer,
    /// A reader that generates and updates keys.
    Operator,
    /// Everything.
    Admin,
}

impl AccessRole {
    /// Every role, weakest first.
    pub const ALL: [AccessRole; 4] = [
        AccessRole::Reader,
        AccessRole::Signer,
        AccessRole::Operator,
        AccessRole::Admin,
    ];

    /// The role's name in certificates, tokens and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Reader => "reader",
            AccessRole::Signer => "signer",
            AccessRole::Operator => "operator",
            AccessRole::Admin => "admin",
        }
    }

    /// Whether a principal holding `self` may act as `needed`. Signer and operator are
    /// separate branches above reader: an operator cannot sign and a signer cannot make keys.
    pub fn includes(self, needed: AccessRole) -> bool {
        self == needed || self == AccessRole::Admin || needed == AccessRole::Reader
    }
}

impl fmt::Display for AccessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccessRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}; expected reader, signer, operator or admin")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_nest() {
        for role in AccessRole::ALL {
            assert_eq!(role.as_str().parse::<AccessRole>(), Ok(role));
            assert!(role.includes(AccessRole::Reader));
            assert!(AccessRole::Admin.includes(role));
        }
        assert!(!AccessRole::Operator.includes(AccessRole::Signer));
        assert!(!AccessRole::Signer.includes(AccessRole::Operator));
        assert!(!AccessRole::Reader.includes(AccessRole::Signer));
        assert!(!AccessRole::Operator.includes(AccessRole::Admin));
        assert!("root".parse::<AccessRole>().is_err());
    }

    #[test]
    fn the_audit_hash_covers_every_field() {
        let base = AuditFields {
            prev_hash: [0; 32],
            log_index: 7,
            position: 1,
            at_ms: 1000,
            actor: "client:admin",
            action: "key.update",
            subject: "k1",
            key_id: Some("k1"),
            outcome: "ok",
        };
        let h = audit_hash(&base);
        let variants = [
            AuditFields {
                prev_hash: [1; 32],
                ..base
            },
            AuditFields {
                log_index: 8,
                ..base
            },
            AuditFields {
                position: 2,
                ..base
            },
            AuditFields {
                at_ms: 1001,
                ..base
            },
            AuditFields {
                actor: "client:admi",
                ..base
            },
            AuditFields {
                action: "key.updat",
                ..base
            },
            AuditFields {
                subject: "k2",
                ..base
            },
            AuditFields {
                key_id: None,
                ..base
            },
            AuditFields {
                outcome: "rejected",
                ..base
            },
            // Moving a byte between two fields changes the hash too.
            AuditFields {
                actor: "client:admink",
                action: "ey.update",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(audit_hash(&v), h, "{v:?}");
        }
    }
}

/// The fields of one audit entry that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct AuditFields<'a> {
    /// The hash of the entry before this one (zeros for the first).
    pub prev_hash: [u8; 32],
    /// The Raft log index of the command that made the entry.
    pub log_index: u64,
    /// The entry's place among those of the same command.
    pub position: u32,
    /// When the leader proposed the command, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who acted, e.g. `client:admin` or `scheduler`.
    pub actor: &'a str,
    /// What was done, e.g. `key.update`.
    pub action: &'a str,
    /// What it was done to (a session, key, party or token id).
    pub subject: &'a str,
    /// The key concerned, if any.
    pub key_id: Option<&'a str>,
    /// How it ended, e.g. `ok` or the reason of a refusal.
    pub outcome: &'a str,
}

/// The hash that chains audit entries: SHA3-256 over a domain tag, the previous entry's hash
/// and every field, each string length-prefixed, so that the coordinators and any client
/// checking a listing compute the same bytes without sharing an encoder.
pub fn audit_hash(f: &AuditFields<'_>) -> [u8; 32] {
    use sha3::{Digest, Sha3_256};
    let mut h = Sha3_256::new();
    h.update(b"mpc-audit-v1");
    h.update(f.prev_hash);
    h.update(f.log_index.to_be_bytes());
    h.update(f.position.to_be_bytes());
    h.update(f.at_ms.to_be_bytes());
    for part in [f.actor, f.action, f.subject] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    match f.key_id {
        Some(k) => {
            h.update([1]);
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
        }
        None => h.update([0]),
    }
    h.update((f.outcome.len() as u64).to_be_bytes());
    h.update(f.outcome.as_bytes());
    h.finalize().into()
}

/// API tokens: `mpc_<token_id>_<secret>`, a 16-hex-digit public id (what logs and the audit
/// may show) and 64 hex digits of secret. The cluster stores only [`token_hash`] of the whole
/// string, so the secret is made by the client and never travels except when used.
pub mod token {
    use sha2::{Digest, Sha256};

    /// What every token string starts with.
    pub const PREFIX: &str = "mpc_";

    /// The token string for an id and 32 secret bytes.
    pub fn format(token_id: &str, secret: &[u8; 32]) -> String {
        let mut out = String::with_capacity(PREFIX.len() + token_id.len() + 65);
        out.push_str(PREFIX);
        out.push_str(token_id);
        out.push('_');
        for b in secret {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The token id of a well-formed token string, or `None`.
    pub fn id_of(token: &str) -> Option<&str> {
        let rest = token.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        (hex(id, 16) && hex(secret, 64)).then_some(id)
    }

    /// What the cluster stores and compares.
    pub fn token_hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tokens_parse_back_and_refuse_malformed_ones() {
            let t = format("0123456789abcdef", &[7; 32]);
            assert_eq!(id_of(&t), Some("0123456789abcdef"));
            assert_eq!(token_hash(&t), token_hash(&t.clone()));
            for bad in [
                "",
                "mpc_0123456789abcdef",
                "mpc_0123456789ABCDEF_0707070707070707070707070707070707070707070707070707070707070707",
                "xyz_0123456789abcdef_0707070707070707070707070707070707070707070707070707070707070707",
                &t[..t.len() - 1],
            ] {
                assert_eq!(id_of(bad), None, "{bad}");
            }
        }
    }
}

/// What admins and initiators sign, and how it is checked: the statements parties trust only
/// when a key they know signed them (they never take the coordinator's word).
///
/// Every statement is signed over a domain-separated encoding ([`Statement::signing_bytes`]):
/// a tag naming the statement and its version, then each field length-prefixed, so that no
/// signature over one statement can be read as another.
pub mod statement {
    use ed25519_dalek::{Signature, VerifyingKey};

    /// An Ed25519 public key.
    pub type PublicKey = [u8; 32];

    /// A signature by `signer` over a statement.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    pub struct Signed {
        /// The key that signed.
        pub signer: PublicKey,
        /// The Ed25519 signature over the statement's signing bytes.
        #[serde(with = "serde_bytes64")]
        pub signature: [u8; 64],
    }

    mod serde_bytes64 {
        use serde::{Deserialize, Deserializer, Serializer};

        pub(super) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }

        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
            let v: Vec<u8> = Vec::deserialize(d)?;
            v.try_into()
                .map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))
        }
    }

    /// A statement that can be signed.
    pub trait Statement {
        /// The domain-separated encoding a signature covers.
        fn signing_bytes(&self) -> Vec<u8>;
    }

    impl Signed {
        /// Whether the signature is `signer`'s over `statement` (strict verification: no
        /// malleable or small-order forms).
        pub fn verifies(&self, statement: &impl Statement) -> bool {
            let Ok(key) = VerifyingKey::from_bytes(&self.signer) else {
                return false;
            };
            key.verify_strict(
                &statement.signing_bytes(),
                &Signature::from_bytes(&self.signature),
            )
            .is_ok()
        }
    }

    struct Writer(Vec<u8>);

    impl Writer {
        fn new(tag: &str) -> Self {
            let mut w = Self(Vec::with_capacity(256));
            w.bytes(tag.as_bytes());
            w
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
            self.0.extend_from_slice(b);
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) -> &mut Self {
            self.u64(items.len() as u64);
            for i in items {
                self.bytes(i);
            }
            self
        }
    }

    /// An admin's word that `party_id` holds these identity keys.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Enrolment {
        /// The party's name in keys, sessions and certificates.
        pub party_id: String,
        /// Ed25519: signs the party's envelopes and its Hello.
        pub signing_public_key: PublicKey,
        /// X25519: point-to-point payloads are encrypted to it.
        pub encryption_public_key: PublicKey,
    }

    impl Statement for Enrolment {
        fn signing_bytes(&self) -> Vec<u8> {
            let mut w = Writer::new("mpc-enrolment-v1");
            w.bytes(self.party_id.as_bytes())
                .bytes(&self.signing_public_key)
                .bytes(&self.encryption_public_key);
            w.0
        }
    }

    /// An admin's word that a key may be generated, and who may then ask it to sign.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct KeyPolicy {
        /// The key the policy governs, named before it exists.
        pub key_id: String,
        /// The key's scheme, as [`crate::Scheme`] spells it.
        pub scheme: String,
        /// Signers needed for a signature (t of n).
        pub threshold: u16,
        /// The key's parties, in key order.
        pub parties: Vec<String>,
        /// Initiators (Ed25519) whose approvals count for signings with the key.
        pub initiators: Vec<PublicKey>,
        /// Distinct initiators' approvals each signing needs (M of the N initiators).
        pub approvals_needed: u16,
        /// Raised by each change of the policy: a party keeps the highest version it has
        /// seen signed by an admin and refuses older ones.
        pub version: u64,
    }

    impl Statement for KeyPolicy {
        fn signing_bytes(&self) -> Vec<u8> {
            let mut w = Writer::new("mpc-key-policy-v1");
            w.bytes(self.key_id.as_bytes())
                .bytes(self.scheme.as_bytes())
                .u64(u64::from(self.threshold))
                .list(self.parties.iter().map(|p| p.as_bytes()))
                .list(self.initiators.iter().map(|k| k.as_slice()))
                .u64(u64::from(self.approvals_needed))
                .u64(self.version);
            w.0
        }
    }

    impl KeyPolicy {
        /// Checks the policy's own shape: which field is wrong and why.
        pub fn check(&self) -> Result<(), String> {
            let n = self.initiators.len();
            if n == 0 || n > 64 {
                return Err(format!("initiators: 1 to 64 keys, got {n}"));
            }
            let mut seen = std::collections::BTreeSet::new();
            if !self.initiators.iter().all(|k| seen.insert(k)) {
                return Err("initiators: a key is listed twice".into());
            }
            if self.approvals_needed == 0 || usize::from(self.approvals_needed) > n {
                return Err(format!(
                    "approvals_needed: between 1 and the number of initiators ({n}), got {}",
                    self.approvals_needed
                ));
            }
            Ok(())
        }

        /// Whether `next` may replace this policy: the same key (id, scheme, threshold,
        /// parties) and a higher version; its initiators and approvals may change. Says why
        /// not. The admin's signature over `next` is the caller's to judge.
        pub fn check_successor(&self, next: &KeyPolicy) -> Result<(), String> {
            let same_key = self.key_id == next.key_id
                && self.scheme == next.scheme
                && self.threshold == next.threshold
                && self.parties == next.parties;
            if !same_key {
                return Err(
                    "key: names another key id, scheme, threshold or parties than the policy \
                     it would replace"
                        .into(),
                );
            }
            if next.version <= self.version {
                return Err(format!(
                    "version: must be above the current {}, got {}",
                    self.version, next.version
                ));
            }
            next.check()
        }

        /// Counts the distinct initiators of this policy whose approvals of `request` verify,
        /// and refuses fewer than [`Self::approvals_needed`], an expired request, or a request
        /// for another key.
        pub fn authorise(
            &self,
            request: &SigningApproval,
            approvals: &[Signed],
            now_ms: u64,
        ) -> Result<(), String> {
            if request.key_id != self.key_id {
                return Err(format!(
                    "the approvals are for key {:?}, not {:?}",
                    request.key_id, self.key_id
                ));
            }
            if request.not_after_ms <= now_ms {
                return Err(format!(
                    "the approvals expired at {} (now {now_ms})",
                    request.not_after_ms
                ));
            }
            if request.not_after_ms - now_ms > MAX_APPROVAL_LIFETIME_MS {
                return Err(format!(
                    "the approvals are valid until {}, more than {} hours ahead",
                    request.not_after_ms,
                    MAX_APPROVAL_LIFETIME_MS / 3_600_000
                ));
            }
            let mut approved = std::collections::BTreeSet::new();
            for a in approvals {
                if self.initiators.contains(&a.signer) && a.verifies(request) {
                    approved.insert(a.signer);
                }
            }
            if approved.len() < usize::from(self.approvals_needed) {
                return Err(format!(
                    "{} valid approval(s) of the {} the key's policy demands",
                    approved.len(),
                    self.approvals_needed
                ));
            }
            Ok(())
        }
    }

    /// The longest an approval may stay valid: parties remember each used approval until it
    /// expires, so this bounds what they keep.
    pub const MAX_APPROVAL_LIFETIME_MS: u64 = 24 * 3_600_000;

    /// A statement with the signature that vouches for it.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Endorsed<T> {
        /// What is vouched for.
        pub statement: T,
        /// Who vouches, and their signature over it.
        pub by: Signed,
    }

    impl<T: Statement> Endorsed<T> {
        /// `statement` signed with `key`.
        pub fn new(key: &ed25519_dalek::SigningKey, statement: T) -> Self {
            let by = sign(key, &statement);
            Self { statement, by }
        }

        /// Whether the signature verifies, whoever made it.
        pub fn verifies(&self) -> bool {
            self.by.verifies(&self.statement)
        }

        /// Whether one of `keys` made the signature and it verifies.
        pub fn endorsed_by_one_of(&self, keys: &[PublicKey]) -> bool {
            keys.contains(&self.by.signer) && self.verifies()
        }
    }

    /// What a signing request's initiators approve: the exact request.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct SigningApproval {
        /// The key asked to sign.
        pub key_id: String,
        /// A raw 32-byte digest, or empty when a message is signed.
        pub digest: Vec<u8>,
        /// The message, or empty when a digest is signed.
        pub message: Vec<u8>,
        /// The hash the signers apply to `message` (`keccak256`, `sha256`), or empty.
        pub hash: String,
        /// Child key indices below the key (non-hardened), or empty for the key itself.
        pub derivation_path: Vec<u32>,
        /// The client's idempotency id of the request: one approval serves one request.
        pub request_id: String,
        /// Milliseconds since the epoch after which the approvals are void.
        pub not_after_ms: u64,
    }

    impl Statement for SigningApproval {
        fn signing_bytes(&self) -> Vec<u8> {
            let mut w = Writer::new("mpc-signing-approval-v1");
            w.bytes(self.key_id.as_bytes())
                .bytes(&self.digest)
                .bytes(&self.message)
                .bytes(self.hash.as_bytes())
                .u64(self.derivation_path.len() as u64);
            for i in &self.derivation_path {
                w.u64(u64::from(*i));
            }
            w.bytes(self.request_id.as_bytes()).u64(self.not_after_ms);
            w.0
        }
    }

    impl SigningApproval {
        /// Names the approved request: a party records it as used by one session.
        pub fn fingerprint(&self) -> [u8; 32] {
            use sha2::Digest;
            sha2::Sha256::digest(self.signing_bytes()).into()
        }
    }

    /// A party's word that a keygen gave it this public key: the leader commits a key only
    /// with every participant's report, and the state machine checks each against the
    /// party's recorded identity key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct KeygenReport<'a> {
        /// The keygen session.
        pub session_id: &'a str,
        /// The key it made.
        pub key_id: &'a str,
        /// The public key the party computed.
        pub public_key: &'a [u8],
    }

    impl Statement for KeygenReport<'_> {
        fn signing_bytes(&self) -> Vec<u8> {
            let mut w = Writer::new("mpc-keygen-report-v1");
            w.bytes(self.session_id.as_bytes())
                .bytes(self.key_id.as_bytes())
                .bytes(self.public_key);
            w.0
        }
    }

    /// Whether `signature` is `public_key`'s over `statement` (strict), for keys and
    /// signatures that arrive as plain bytes.
    pub fn verifies_raw(public_key: &[u8], statement: &impl Statement, signature: &[u8]) -> bool {
        let (Ok(key), Ok(signature)) = (
            <[u8; 32]>::try_from(public_key),
            <[u8; 64]>::try_from(signature),
        ) else {
            return false;
        };
        Signed {
            signer: key,
            signature,
        }
        .verifies(statement)
    }

    /// The shape checks a coordinator can make of a party's identity keys: the Ed25519 key
    /// is a point of full order, the X25519 key is not zero. (Each party also refuses a peer
    /// key whose Diffie-Hellman result would be low order.) Errors name the field.
    pub fn check_identity_keys(
        signing: &PublicKey,
        encryption: &PublicKey,
    ) -> Result<(), (&'static str, &'static str)> {
        match VerifyingKey::from_bytes(signing) {
            Ok(k) if !k.is_weak() => {}
            Ok(_) => return Err(("signing_public_key", "has small order")),
            Err(_) => return Err(("signing_public_key", "is not an Ed25519 point")),
        }
        if encryption.iter().all(|b| *b == 0) {
            return Err(("encryption_public_key", "is zero"));
        }
        Ok(())
    }

    /// Signs `statement` with an Ed25519 signing key (admins' and initiators' tools).
    pub fn sign(key: &ed25519_dalek::SigningKey, statement: &impl Statement) -> Signed {
        use ed25519_dalek::Signer;
        Signed {
            signer: key.verifying_key().to_bytes(),
            signature: key.sign(&statement.signing_bytes()).to_bytes(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn key(seed: u8) -> ed25519_dalek::SigningKey {
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        }

        fn policy(initiators: &[&ed25519_dalek::SigningKey], m: u16) -> KeyPolicy {
            KeyPolicy {
                key_id: "k1".into(),
                scheme: "ecdsa-secp256k1".into(),
                threshold: 2,
                parties: vec!["party-1".into(), "party-2".into()],
                initiators: initiators
                    .iter()
                    .map(|k| k.verifying_key().to_bytes())
                    .collect(),
                approvals_needed: m,
                version: 1,
            }
        }

        fn request(not_after_ms: u64) -> SigningApproval {
            SigningApproval {
                key_id: "k1".into(),
                digest: vec![7; 32],
                message: vec![],
                hash: String::new(),
                derivation_path: vec![],
                request_id: "r1".into(),
                not_after_ms,
            }
        }

        #[test]
        fn m_of_n_distinct_initiators_over_the_exact_request() {
            let (a, b, c, stranger) = (key(1), key(2), key(3), key(9));
            let p = policy(&[&a, &b, &c], 2);
            p.check().unwrap();
            let r = request(1_000);
            let ok = [sign(&a, &r), sign(&b, &r)];
            p.authorise(&r, &ok, 500).unwrap();
            // The same initiator twice is one approval.
            assert!(p.authorise(&r, &[sign(&a, &r), sign(&a, &r)], 500).is_err());
            // A stranger's approval does not count.
            assert!(p
                .authorise(&r, &[sign(&a, &r), sign(&stranger, &r)], 500)
                .is_err());
            // Expired, or valid for longer than parties remember approvals.
            assert!(p.authorise(&r, &ok, 1_000).is_err());
            let far = request(500 + MAX_APPROVAL_LIFETIME_MS + 1);
            assert!(p
                .authorise(&far, &[sign(&a, &far), sign(&b, &far)], 500)
                .is_err());
            // Approvals of another request (another request id, digest or key) do not count.
            let mut other = r.clone();
            other.request_id = "r2".into();
            assert!(p.authorise(&other, &ok, 500).is_err());
            other = r.clone();
            other.digest = vec![8; 32];
            assert!(p.authorise(&other, &ok, 500).is_err());
            other = r.clone();
            other.key_id = "k2".into();
            assert!(p.authorise(&other, &ok, 500).is_err());
            // A forged signature.
            let mut forged = sign(&b, &r);
            forged.signature[0] ^= 1;
            assert!(p.authorise(&r, &[sign(&a, &r), forged], 500).is_err());
        }

        #[test]
        fn statements_do_not_read_as_each_other() {
            let admin = key(4);
            let e = Enrolment {
                party_id: "party-1".into(),
                signing_public_key: [1; 32],
                encryption_public_key: [2; 32],
            };
            let s = sign(&admin, &e);
            assert!(s.verifies(&e));
            let mut moved = e.clone();
            moved.party_id = "party-2".into();
            assert!(!s.verifies(&moved));
            assert_ne!(e.signing_bytes(), policy(&[&admin], 1).signing_bytes());
        }

        #[test]
        fn an_endorsement_counts_only_from_the_keys_trusted() {
            let (admin, stranger) = (key(4), key(5));
            let p = Endorsed::new(&admin, policy(&[&key(1)], 1));
            assert!(p.verifies());
            assert!(p.endorsed_by_one_of(&[admin.verifying_key().to_bytes()]));
            assert!(!p.endorsed_by_one_of(&[stranger.verifying_key().to_bytes()]));
            // Another version of the same policy is another statement.
            let mut changed = p.clone();
            changed.statement.version = 2;
            assert!(!changed.verifies());
            // A stranger's endorsement of the same policy does not pass for the admin's.
            let mut relabelled = Endorsed::new(&stranger, p.statement.clone());
            relabelled.by.signer = admin.verifying_key().to_bytes();
            assert!(!relabelled.endorsed_by_one_of(&[admin.verifying_key().to_bytes()]));
        }

        #[test]
        fn identity_keys_are_checked_for_shape() {
            let good = key(1).verifying_key().to_bytes();
            assert!(check_identity_keys(&good, &[9; 32]).is_ok());
            assert!(check_identity_keys(&good, &[0; 32]).is_err());
            // The identity point has small order.
            let mut identity = [0u8; 32];
            identity[0] = 1;
            assert_eq!(
                check_identity_keys(&identity, &[9; 32]).map_err(|e| e.0),
                Err("signing_public_key")
            );
        }

        #[test]
        fn policies_check_their_shape() {
            let a = key(1);
            assert!(policy(&[], 1).check().is_err());
            assert!(policy(&[&a], 0).check().is_err());
            assert!(policy(&[&a], 2).check().is_err());
            assert!(policy(&[&a, &a], 1).check().is_err());
        }
    }
}
