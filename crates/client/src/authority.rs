//! What admins and initiators sign, from their side: Ed25519 key files, key policies for
//! keygens, party enrolments, and signing approvals (also as files that several initiators
//! sign in turn, for offline flows).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use mpc_proto::statements;
use mpc_proto::v1 as pb;
use mpc_types::statement::{Endorsed, Enrolment, KeyPolicy, PublicKey, Signed, SigningApproval};
use zeroize::Zeroizing;

use crate::ClientError;

fn bad(reason: impl Into<String>) -> ClientError {
    ClientError::Credentials(reason.into())
}

/// Reads an Ed25519 signing key: a private file ([`mpc_tls::secret_file`]) of 64 hex digits
/// (the seed).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, ClientError> {
    let meta =
        std::fs::metadata(path).map_err(|e| bad(format!("signing key {}: {e}", path.display())))?;
    mpc_tls::secret_file::check_private(&meta)
        .map_err(|reason| bad(format!("signing key {}: {reason}", path.display())))?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| bad(format!("signing key {}: {e}", path.display())))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut_slice()).map_err(|_| {
        bad(format!(
            "signing key {}: expected 64 hex digits",
            path.display()
        ))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Creates a new signing key file (0600; an existing file is never replaced) and returns the
/// public key.
pub fn create_signing_key(path: &Path) -> Result<PublicKey, ClientError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| bad(format!("signing key {}: {e}", path.display())))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| bad(format!("signing key {}: {e}", path.display())))?;
    Ok(key.verifying_key().to_bytes())
}

/// Parses an Ed25519 public key given as 64 hex digits.
pub fn parse_public_key(field: &str, text: &str) -> Result<PublicKey, ClientError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| bad(format!("{field}: expected 64 hex digits")))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| bad(format!("{field}: not an Ed25519 public key")))?;
    Ok(key)
}

/// Who may sign with a new key, as the admin signs it for a keygen request.
#[derive(Debug, Clone)]
pub struct PolicyTerms {
    /// The key the keygen will make.
    pub key_id: String,
    /// Its scheme (`ecdsa-secp256k1`, `schnorr-ed25519`, `schnorr-bip340`).
    pub scheme: String,
    /// Signers needed for a signature.
    pub threshold: u16,
    /// The key's parties, in key order.
    pub parties: Vec<String>,
    /// Initiators whose approvals count for signings with the key.
    pub initiators: Vec<PublicKey>,
    /// Distinct initiators' approvals each signing needs.
    pub approvals_needed: u16,
}

/// The admin's policy for a new key (version 1).
pub fn sign_policy(admin: &SigningKey, terms: PolicyTerms) -> pb::EndorsedKeyPolicy {
    sign_policy_version(admin, terms, 1)
}

/// The admin's policy at `version`: a key's first policy is 1, each change one above the
/// policy it replaces.
pub fn sign_policy_version(
    admin: &SigningKey,
    terms: PolicyTerms,
    version: u64,
) -> pb::EndorsedKeyPolicy {
    statements::policy_to(&Endorsed::new(
        admin,
        KeyPolicy {
            key_id: terms.key_id,
            scheme: terms.scheme,
            threshold: terms.threshold,
            parties: terms.parties,
            initiators: terms.initiators,
            approvals_needed: terms.approvals_needed,
            version,
        },
    ))
}

/// An admin's enrolment of a party's identity. `identity` is what `mpc-party identity`
/// prints: 128 hex digits, the Ed25519 key then the X25519 key.
pub fn enrol(
    admin: &SigningKey,
    party_id: &str,
    identity: &str,
) -> Result<pb::EnrollPartyRequest, ClientError> {
    let mut keys = [0u8; 64];
    hex::decode_to_slice(identity.trim(), &mut keys)
        .map_err(|_| bad("identity: expected 128 hex digits (as `mpc-party identity` prints)"))?;
    let (signing, encryption) = keys.split_at(32);
    let enrolment = Enrolment {
        party_id: party_id.to_owned(),
        signing_public_key: signing.try_into().map_err(|_| bad("identity"))?,
        encryption_public_key: encryption.try_into().map_err(|_| bad("identity"))?,
    };
    mpc_types::statement::check_identity_keys(
        &enrolment.signing_public_key,
        &enrolment.encryption_public_key,
    )
    .map_err(|(field, reason)| bad(format!("identity: the {field} {reason}")))?;
    let endorsed = Endorsed::new(admin, enrolment);
    Ok(pb::EnrollPartyRequest {
        party_id: endorsed.statement.party_id.clone(),
        signing_public_key: endorsed.statement.signing_public_key.to_vec(),
        encryption_public_key: endorsed.statement.encryption_public_key.to_vec(),
        admin: Some(statements::signature_to(&endorsed.by)),
    })
}

/// Milliseconds since the epoch, `ttl` from now: when an approval made now expires.
pub fn expiry_after(ttl: std::time::Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + ttl).as_millis()).unwrap_or(u64::MAX)
}

/// Adds `initiator`'s approval of exactly `req` (which must name its request id), valid
/// until `not_after_ms`: the online form of [`ApprovalRequest`].
pub fn approve_signing(
    req: &mut pb::CreateSigningRequest,
    initiator: &SigningKey,
    not_after_ms: u64,
) -> Result<(), ClientError> {
    if req.request_id.is_empty() {
        return Err(bad("request_id: an approved signing request needs one"));
    }
    let mut request = ApprovalRequest {
        key_id: req.key_id.clone(),
        digest: hex::encode(&req.digest),
        message: hex::encode(&req.message),
        hash: req.hash.clone(),
        request_id: req.request_id.clone(),
        not_after_ms,
        approvals: Vec::new(),
    };
    request.approve(initiator)?;
    req.approvals = request.signatures()?;
    req.not_after_ms = not_after_ms;
    Ok(())
}

/// A signing request and the approvals gathered for it so far. As a file it is JSON with hex
/// bytes, so that each initiator can read what they approve before they sign.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalRequest {
    /// The key asked to sign.
    pub key_id: String,
    /// Hex; empty when a message is signed.
    pub digest: String,
    /// Hex; empty when a digest is signed.
    pub message: String,
    /// The hash the signers apply to the message (`keccak256`, `sha256`), or empty.
    pub hash: String,
    /// The request's idempotency id: the approvals serve this request only.
    pub request_id: String,
    /// Milliseconds since the epoch after which the approvals are void.
    pub not_after_ms: u64,
    /// The approvals gathered so far.
    #[serde(default)]
    pub approvals: Vec<ApprovalEntry>,
}

/// One initiator's approval of an [`ApprovalRequest`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalEntry {
    /// The initiator's Ed25519 public key, hex.
    pub signer: String,
    /// Its signature over the request's statement, hex.
    pub signature: String,
}

impl ApprovalRequest {
    /// The statement the initiators sign.
    pub fn statement(&self) -> Result<SigningApproval, ClientError> {
        let bytes = |field: &str, v: &str| {
            hex::decode(v).map_err(|_| bad(format!("approval request {field}: not hex")))
        };
        Ok(SigningApproval {
            key_id: self.key_id.clone(),
            digest: bytes("digest", &self.digest)?,
            message: bytes("message", &self.message)?,
            hash: self.hash.clone(),
            derivation_path: Vec::new(),
            request_id: self.request_id.clone(),
            not_after_ms: self.not_after_ms,
        })
    }

    /// Adds `initiator`'s approval (replacing an earlier one by the same key).
    pub fn approve(&mut self, initiator: &SigningKey) -> Result<(), ClientError> {
        let signed = mpc_types::statement::sign(initiator, &self.statement()?);
        let signer = hex::encode(signed.signer);
        self.approvals.retain(|a| a.signer != signer);
        self.approvals.push(ApprovalEntry {
            signer,
            signature: hex::encode(signed.signature),
        });
        Ok(())
    }

    /// The approvals as the API takes them; each must verify over this request.
    pub fn signatures(&self) -> Result<Vec<pb::Signature>, ClientError> {
        let statement = self.statement()?;
        self.approvals
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let signer = parse_public_key(&format!("approvals[{i}].signer"), &a.signer)?;
                let mut signature = [0u8; 64];
                hex::decode_to_slice(&a.signature, &mut signature)
                    .map_err(|_| bad(format!("approvals[{i}].signature: 128 hex digits")))?;
                let signed = Signed { signer, signature };
                if !signed.verifies(&statement) {
                    return Err(bad(format!(
                        "approvals[{i}] by {} does not verify over this request",
                        a.signer
                    )));
                }
                Ok(statements::signature_to(&signed))
            })
            .collect()
    }

    /// Reads a request file (JSON) as `write` leaves it.
    pub fn read(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("approval request {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| bad(format!("approval request {}: {e}", path.display())))
    }

    /// Writes the request as JSON, replacing `path` whole (through a temporary file).
    pub fn write(&self, path: &Path) -> Result<(), ClientError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| bad(format!("approval request: {e}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{text}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| bad(format!("approval request {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn approvals_survive_the_file_and_only_verifying_ones_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let mut request = ApprovalRequest {
            key_id: "k1".into(),
            digest: hex::encode([7u8; 32]),
            message: String::new(),
            hash: String::new(),
            request_id: "r1".into(),
            not_after_ms: 10,
            approvals: Vec::new(),
        };
        request.approve(&a).unwrap();
        let path = dir.path().join("req.json");
        request.write(&path).unwrap();
        let mut read = ApprovalRequest::read(&path).unwrap();
        read.approve(&b).unwrap();
        read.approve(&b).unwrap();
        assert_eq!(read.signatures().unwrap().len(), 2);
        // An approval of another request is caught before it is sent.
        read.request_id = "r2".into();
        assert!(read.signatures().is_err());
    }

    #[test]
    fn signing_key_files_are_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        let public = create_signing_key(&path).unwrap();
        assert_eq!(
            load_signing_key(&path).unwrap().verifying_key().to_bytes(),
            public
        );
        assert!(create_signing_key(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_signing_key(&path).is_err());
    }
}
