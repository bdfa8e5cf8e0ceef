//! Signing with a threshold ECDSA key of this cluster (2-of-3 in the reference deployment):
//! the relayer asks the coordinators, the parties sign, and no single machine holds the key.
//!
//! An execute signature is requested as the 60-byte EIP-191 message with `keccak256`, not as
//! the digest: the parties then hash it themselves, which is what lets a presignature serve
//! the request (a raw digest always runs the full protocol). The request id is derived from
//! the key, the digest and an attempt number, so a retry after a lost answer (a leader change,
//! a restart of this relayer) finds the first session instead of signing twice, and a session
//! that failed makes way for the next attempt instead of answering its failure forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::{keccak256, Address, B256};
use ed25519_dalek::SigningKey as InitiatorKey;
use k256::ecdsa::VerifyingKey;
use mpc_client::Endpoints;
use mpc_proto::v1 as pb;
use mpc_proto::v1::keys_client::KeysClient;

use super::{address_of, eth_signature, EthSignature, Signer, SignerError};
use crate::execute::{eip191_digest, eip191_message};

/// The key's scheme as the cluster names it.
const ECDSA_SECP256K1: &str = "ecdsa-secp256k1";

/// Signing sessions one call may go through for a digest before it gives up; the next call
/// goes on from the attempt after the last failed one.
const ATTEMPTS_PER_CALL: u32 = 3;

/// Digests whose next attempt is remembered. Forgetting is harmless: a forgotten digest walks
/// again from attempt 0, through sessions that ended and answer at once.
const REMEMBERED_DIGESTS: usize = 4096;

/// The attempt each digest's next signing request starts from: past the ones whose sessions
/// failed (so that every call makes progress and a digest is never stuck on failed sessions),
/// or the one that signed.
#[derive(Debug, Default)]
struct AttemptBook {
    next: Mutex<HashMap<B256, u32>>,
}

impl AttemptBook {
    fn first(&self, digest: B256) -> u32 {
        self.next
            .lock()
            .map_or(0, |next| next.get(&digest).copied().unwrap_or(0))
    }

    fn failed(&self, digest: B256, attempt: u32) {
        self.update(digest, |next| {
            *next = (*next).max(attempt.saturating_add(1))
        });
    }

    /// `attempt` made the signature: a later request for the digest starts there and is
    /// answered at once.
    fn signed(&self, digest: B256, attempt: u32) {
        self.update(digest, |next| *next = attempt);
    }

    fn update(&self, digest: B256, change: impl FnOnce(&mut u32)) {
        if let Ok(mut next) = self.next.lock() {
            if next.len() >= REMEMBERED_DIGESTS && !next.contains_key(&digest) {
                next.clear();
            }
            change(next.entry(digest).or_insert(0));
        }
    }
}

/// A cluster key that signs for this relayer.
pub struct PlatformSigner {
    endpoints: Endpoints,
    key_id: String,
    address: Address,
    timeout: Duration,
    /// Approves each request when the key's policy asks initiators to.
    initiator: Option<InitiatorKey>,
    attempts: AttemptBook,
}

impl std::fmt::Debug for PlatformSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformSigner")
            .field("key_id", &self.key_id)
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("initiator", &self.initiator.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl PlatformSigner {
    /// Looks the key up (it must be an ECDSA secp256k1 key) and derives its address from its
    /// public key, checking it against the address the cluster reports.
    pub async fn connect(
        endpoints: Endpoints,
        key_id: String,
        timeout: Duration,
        initiator: Option<InitiatorKey>,
    ) -> Result<Self, SignerError> {
        let key = get_key(&endpoints, &key_id).await?;
        if key.scheme != ECDSA_SECP256K1 {
            return Err(SignerError::Config(format!(
                "signer.key_id {key_id:?} is a {} key; a DVN signer needs {ECDSA_SECP256K1}",
                key.scheme
            )));
        }
        let public = VerifyingKey::from_sec1_bytes(&key.public_key).map_err(|e| {
            SignerError::Cluster(format!("key {key_id:?} has no usable public key: {e}"))
        })?;
        let address = address_of(&public);
        if !key.address.is_empty() && !key.address.eq_ignore_ascii_case(&address.to_string()) {
            return Err(SignerError::Cluster(format!(
                "key {key_id:?}: the cluster reports address {} but its public key is {address}",
                key.address
            )));
        }
        Ok(Self {
            endpoints,
            key_id,
            address,
            timeout,
            initiator,
            attempts: AttemptBook::default(),
        })
    }

    /// The idempotency id of the `attempt`-th request for `digest`: the same key, digest and
    /// attempt always make the same session.
    fn request_id(&self, digest: B256, attempt: u32) -> String {
        let mut pre = self.key_id.as_bytes().to_vec();
        pre.push(0);
        pre.extend_from_slice(digest.as_slice());
        pre.extend_from_slice(&attempt.to_be_bytes());
        format!("dvn-{}", alloy::hex::encode(keccak256(pre)))
    }

    /// Runs signing requests whose signature must be over `digest`. A request whose session
    /// failed or expired (a party down, a deadline missed) is followed by the next attempt's;
    /// one still running is waited for, never doubled.
    async fn sign(
        &self,
        req: pb::CreateSigningRequest,
        digest: B256,
    ) -> Result<EthSignature, SignerError> {
        let mut failures = Vec::new();
        let first = self.attempts.first(digest);
        for attempt in first..first.saturating_add(ATTEMPTS_PER_CALL) {
            let session = self.sign_once(req.clone(), digest, attempt).await?;
            match pb::SessionStatus::try_from(session.status) {
                Ok(pb::SessionStatus::Completed) => {
                    self.attempts.signed(digest, attempt);
                    return self.signature_of(&session, digest);
                }
                Ok(pb::SessionStatus::Failed | pb::SessionStatus::Expired) => {
                    self.attempts.failed(digest, attempt);
                    failures.push(format!(
                        "session {}: {}",
                        session.session_id, session.failure_reason
                    ));
                }
                _ => {
                    return Err(SignerError::Cluster(format!(
                        "session {} still running after {:?}",
                        session.session_id, self.timeout
                    )))
                }
            }
        }
        Err(SignerError::Cluster(format!(
            "{ATTEMPTS_PER_CALL} signings ended without a signature: {}",
            failures.join("; ")
        )))
    }

    async fn sign_once(
        &self,
        mut req: pb::CreateSigningRequest,
        digest: B256,
        attempt: u32,
    ) -> Result<pb::Session, SignerError> {
        req.key_id = self.key_id.clone();
        req.request_id = self.request_id(digest, attempt);
        req.timeout_seconds = u32::try_from(self.timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        if let Some(initiator) = &self.initiator {
            let not_after = mpc_client::authority::expiry_after(self.timeout * 2);
            mpc_client::authority::approve_signing(&mut req, initiator, not_after)
                .map_err(|e| SignerError::Config(format!("approving the request: {e}")))?;
        }
        mpc_client::sessions::sign(&self.endpoints, req, self.timeout, |_| {})
            .await
            .map_err(|e| SignerError::Cluster(e.to_string()))
    }

    fn signature_of(
        &self,
        session: &pb::Session,
        digest: B256,
    ) -> Result<EthSignature, SignerError> {
        let sig = &session.signature;
        if sig.len() < 64 {
            return Err(SignerError::BadSignature(format!(
                "session {}: {} bytes",
                session.session_id,
                sig.len()
            )));
        }
        // The cluster already normalises and attaches v; recompute both rather than trust
        // them, and check the signature is the key's over this very digest.
        eth_signature(digest, &sig[..32], &sig[32..64], self.address)
    }
}

async fn get_key(endpoints: &Endpoints, key_id: &str) -> Result<pb::Key, SignerError> {
    endpoints
        .call(|ch| {
            let key_id = key_id.to_owned();
            async move {
                KeysClient::new(ch)
                    .get_key(pb::GetKeyRequest {
                        key_id,
                        consistency: 0,
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|e| SignerError::Cluster(format!("key {key_id:?}: {e}")))
}

impl Signer for PlatformSigner {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_digest(&self, digest: B256) -> Result<EthSignature, SignerError> {
        let req = pb::CreateSigningRequest {
            digest: digest.to_vec(),
            ..Default::default()
        };
        self.sign(req, digest).await
    }

    async fn sign_eip191(&self, hash: B256) -> Result<EthSignature, SignerError> {
        let req = pb::CreateSigningRequest {
            message: eip191_message(hash).to_vec(),
            hash: "keccak256".into(),
            ..Default::default()
        };
        self.sign(req, eip191_digest(hash)).await
    }

    async fn check(&self) -> Result<(), SignerError> {
        get_key(&self.endpoints, &self.key_id).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_goes_on_past_the_attempts_that_failed() {
        let book = AttemptBook::default();
        let digest = B256::repeat_byte(7);
        assert_eq!(book.first(digest), 0);
        for attempt in 0..ATTEMPTS_PER_CALL {
            book.failed(digest, attempt);
        }
        assert_eq!(book.first(digest), ATTEMPTS_PER_CALL);
        // A late answer about an older attempt never sends the digest back.
        book.failed(digest, 0);
        assert_eq!(book.first(digest), ATTEMPTS_PER_CALL);
        assert_eq!(book.first(B256::repeat_byte(8)), 0);
        // Signed on the attempt after them: asked again, that session answers at once.
        book.signed(digest, ATTEMPTS_PER_CALL);
        assert_eq!(book.first(digest), ATTEMPTS_PER_CALL);
        // Signed by a later attempt than any failure it knew of (another relayer's call, or
        // a book that forgot): that attempt is the one to ask again.
        let fresh = B256::repeat_byte(9);
        book.signed(fresh, 5);
        assert_eq!(book.first(fresh), 5);
    }

    #[test]
    fn the_book_stays_bounded_and_forgetting_only_restarts_the_walk() {
        let book = AttemptBook::default();
        for i in 0..=REMEMBERED_DIGESTS as u64 {
            book.failed(B256::left_padding_from(&i.to_be_bytes()), 0);
        }
        let remembered = book.next.lock().map(|n| n.len()).unwrap_or(usize::MAX);
        assert!(
            remembered <= REMEMBERED_DIGESTS,
            "{remembered} digests remembered"
        );
        assert_eq!(book.first(B256::left_padding_from(&0u64.to_be_bytes())), 0);
    }
}
