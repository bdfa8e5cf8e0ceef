//! End-to-end protection of protocol messages between parties.
//!
//! Every envelope is signed by its sender (Ed25519) over a header binding the session, the
//! attempt, the phase, sender, receiver and a per-sender sequence number. Point-to-point
//! payloads are also encrypted with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from
//! the X25519 secret of sender and receiver, salted with the session and attempt, and
//! specific to the direction; the nonce is the sequence number, never repeated under a key.
//! The router in between can drop or delay envelopes, but it cannot read, alter, forge or
//! replay them: the receiver refuses any sequence number not above the last it accepted from
//! that sender, and blames the sender named in a bad envelope.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hkdf::Hkdf;
use mpc_proto::v1 as pb;
use sha2::Sha256;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use crate::identity::Identity;

/// A peer's registered public keys.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    pub signing: VerifyingKey,
    pub encryption: PublicKey,
}

/// Why an envelope was refused; `sender` is the party the envelope claims to come from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("envelope from {sender} refused: {reason}")]
pub struct EnvelopeError {
    pub sender: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0} is not a participant of this session")]
    UnknownReceiver(String),
    #[error("encryption failed")]
    Encrypt,
}

/// Seals and opens the envelopes of one attempt of one session.
pub struct EnvelopeCodec {
    session_id: String,
    attempt: u32,
    me: String,
    identity: std::sync::Arc<Identity>,
    peers: HashMap<String, PeerKeys>,
    next_sequence: u64,
    last_accepted: HashMap<String, u64>,
    ciphers: HashMap<(String, String), ChaCha20Poly1305>,
}

impl std::fmt::Debug for EnvelopeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeCodec")
            .field("session_id", &self.session_id)
            .field("attempt", &self.attempt)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn header(
    session_id: &str,
    attempt: u32,
    phase: u32,
    sender: &str,
    receiver: &str,
    sequence: u64,
) -> Vec<u8> {
    let mut h = b"mpc-envelope-v1".to_vec();
    for part in [session_id, sender, receiver] {
        h.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.extend_from_slice(part.as_bytes());
    }
    h.extend_from_slice(&attempt.to_be_bytes());
    h.extend_from_slice(&phase.to_be_bytes());
    h.extend_from_slice(&sequence.to_be_bytes());
    h
}

fn nonce(sequence: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&sequence.to_be_bytes());
    Nonce::from(n)
}

impl EnvelopeCodec {
    pub fn new(
        session_id: &str,
        attempt: u32,
        me: &str,
        identity: std::sync::Arc<Identity>,
        peers: HashMap<String, PeerKeys>,
    ) -> Self {
        Self {
            session_id: session_id.to_owned(),
            attempt,
            me: me.to_owned(),
            identity,
            peers,
            next_sequence: 1,
            last_accepted: HashMap::new(),
            ciphers: HashMap::new(),
        }
    }

    /// The AEAD for messages from `sender` to `receiver`; one of them is this party.
    fn cipher(&mut self, sender: &str, receiver: &str) -> Option<&ChaCha20Poly1305> {
        let peer = if sender == self.me { receiver } else { sender };
        let direction = (sender.to_owned(), receiver.to_owned());
        if !self.ciphers.contains_key(&direction) {
            let keys = self.peers.get(peer)?;
            let shared = self.identity.shared_secret(&keys.encryption);
            let mut salt = self.session_id.as_bytes().to_vec();
            salt.extend_from_slice(&self.attempt.to_be_bytes());
            let hk = Hkdf::<Sha256>::new(Some(&salt), &shared[..]);
            let mut info = b"mpc-p2p-v1".to_vec();
            info.extend_from_slice(sender.as_bytes());
            info.push(0);
            info.extend_from_slice(receiver.as_bytes());
            let mut key = Zeroizing::new([0u8; 32]);
            hk.expand(&info, &mut key[..]).ok()?;
            self.ciphers
                .insert(direction.clone(), ChaCha20Poly1305::new((&*key).into()));
        }
        self.ciphers.get(&direction)
    }

    /// Wraps a protocol message; `receiver` None is a broadcast.
    pub fn seal(
        &mut self,
        phase: u32,
        receiver: Option<&str>,
        message: &[u8],
    ) -> Result<pb::Envelope, SealError> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let receiver_id = receiver.unwrap_or_default().to_owned();
        let head = header(
            &self.session_id,
            self.attempt,
            phase,
            &self.me,
            &receiver_id,
            sequence,
        );
        let payload = match receiver {
            None => message.to_vec(),
            Some(to) => {
                let me = self.me.clone();
                let cipher = self
                    .cipher(&me, to)
                    .ok_or_else(|| SealError::UnknownReceiver(to.to_owned()))?;
                cipher
                    .encrypt(
                        &nonce(sequence),
                        Payload {
                            msg: message,
                            aad: &head,
                        },
                    )
                    .map_err(|_| SealError::Encrypt)?
            }
        };
        let mut signed = head;
        signed.extend_from_slice(&payload);
        let signature = self.identity.sign(&signed);
        Ok(pb::Envelope {
            session_id: self.session_id.clone(),
            attempt: self.attempt,
            sender: self.me.clone(),
            receiver: receiver_id,
            sequence,
            payload,
            signature: signature.to_vec(),
            phase,
        })
    }

    /// Checks and unwraps an envelope addressed to this party (or broadcast).
    pub fn open(&mut self, envelope: &pb::Envelope) -> Result<(u32, Vec<u8>), EnvelopeError> {
        let refuse = |reason: &str| EnvelopeError {
            sender: envelope.sender.clone(),
            reason: reason.to_owned(),
        };
        if envelope.session_id != self.session_id || envelope.attempt != self.attempt {
            return Err(refuse("belongs to another session or attempt"));
        }
        if !envelope.receiver.is_empty() && envelope.receiver != self.me {
            return Err(refuse("addressed to another party"));
        }
        let keys = self
            .peers
            .get(&envelope.sender)
            .filter(|_| envelope.sender != self.me)
            .ok_or_else(|| refuse("the sender is not a participant"))?;
        let head = header(
            &envelope.session_id,
            envelope.attempt,
            envelope.phase,
            &envelope.sender,
            &envelope.receiver,
            envelope.sequence,
        );
        let mut signed = head.clone();
        signed.extend_from_slice(&envelope.payload);
        let signature = Signature::from_slice(&envelope.signature)
            .map_err(|_| refuse("malformed signature"))?;
        keys.signing
            .verify(&signed, &signature)
            .map_err(|_| refuse("bad signature"))?;
        let last = self
            .last_accepted
            .get(&envelope.sender)
            .copied()
            .unwrap_or(0);
        if envelope.sequence <= last {
            return Err(refuse(&format!(
                "replayed: sequence {} after {last}",
                envelope.sequence
            )));
        }
        let message = if envelope.receiver.is_empty() {
            envelope.payload.clone()
        } else {
            let me = self.me.clone();
            let cipher = self
                .cipher(&envelope.sender, &me)
                .ok_or_else(|| refuse("no key agreement with the sender"))?;
            cipher
                .decrypt(
                    &nonce(envelope.sequence),
                    Payload {
                        msg: &envelope.payload,
                        aad: &head,
                    },
                )
                .map_err(|_| refuse("does not decrypt"))?
        };
        self.last_accepted
            .insert(envelope.sender.clone(), envelope.sequence);
        Ok((envelope.phase, message))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::master_key::MasterKey;
    use crate::store::ShareStore;

    fn identity(dir: &std::path::Path, id: &str) -> Arc<Identity> {
        let key = MasterKey::from_hex("t", &"11".repeat(32)).unwrap();
        let store = ShareStore::open(&dir.join(id), id, &key).unwrap();
        Arc::new(Identity::load_or_create(&store).unwrap())
    }

    fn codecs() -> (EnvelopeCodec, EnvelopeCodec, EnvelopeCodec) {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|p| (p.to_string(), identity(dir.path(), p)))
            .collect();
        let peers: HashMap<String, PeerKeys> = ids
            .iter()
            .map(|(id, i)| {
                (
                    id.clone(),
                    PeerKeys {
                        signing: VerifyingKey::from_bytes(&i.signing_public_key()).unwrap(),
                        encryption: PublicKey::from(i.encryption_public_key()),
                    },
                )
            })
            .collect();
        let codec =
            |n: usize| EnvelopeCodec::new("s1", 0, &ids[n].0, ids[n].1.clone(), peers.clone());
        (codec(0), codec(1), codec(2))
    }

    #[test]
    fn point_to_point_is_private_and_broadcast_is_signed() {
        let (mut a, mut b, mut c) = codecs();
        let env = a.seal(1, Some("b"), b"secret round two share").unwrap();
        assert!(!env.payload.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            b.open(&env).unwrap(),
            (1, b"secret round two share".to_vec())
        );
        assert!(c.open(&env).is_err(), "a third party opened a p2p envelope");

        let bc = a.seal(1, None, b"commitment").unwrap();
        assert_eq!(c.open(&bc).unwrap().1, b"commitment");
    }

    #[test]
    fn tampered_forged_and_replayed_envelopes_are_refused_blaming_the_sender() {
        let (mut a, mut b, _) = codecs();
        let env = a.seal(1, Some("b"), b"m1").unwrap();

        let mut tampered = env.clone();
        tampered.payload[0] ^= 1;
        let err = b.open(&tampered).unwrap_err();
        assert_eq!(err.sender, "a");

        let mut rerouted = env.clone();
        rerouted.phase = 0;
        assert!(b.open(&rerouted).is_err(), "the header is not bound");

        b.open(&env).unwrap();
        let err = b.open(&env).unwrap_err();
        assert!(err.reason.contains("replayed"), "{err}");

        let mut other_attempt = a.seal(1, None, b"m2").unwrap();
        other_attempt.attempt = 1;
        assert!(b.open(&other_attempt).is_err());

        // The router (or b) cannot produce an envelope in a's name.
        let mut forged = b.seal(1, None, b"m3").unwrap();
        forged.sender = "a".into();
        assert!(a.open(&forged).is_err());
    }
}
