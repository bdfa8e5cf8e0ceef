//! End-to-end protection of protocol messages between parties.
//!
//! Every envelope is signed by its sender (Ed25519, verified strictly) over a header binding
//! the session, the attempt, the phase, sender, receiver, a per-sender sequence number and the
//! sender's run nonce, and over the payload. Point-to-point payloads are also encrypted with
//! ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the X25519 secret of sender and
//! receiver, salted with the session, the attempt and the sender's run nonce, and specific to
//! the direction; the AEAD nonce is the sequence number, never repeated under a key.
//!
//! The run nonce is 32 random bytes drawn by each [`EnvelopeCodec`], that is each run of an
//! assignment. Without it, a coordinator that sent one assignment (same session, same attempt)
//! twice would make the party run it twice with sequence numbers restarting at 1 under the same
//! key: two messages under one ChaCha20-Poly1305 key and nonce, which reveals their XOR and the
//! authentication key. With it, each run has keys of its own. Until the protobuf `Envelope`
//! has a field for it, the run nonce travels as the first 32 bytes of `payload` (signed with
//! it); the rest of `payload` is the ciphertext, or for a broadcast the protocol message. A
//! receiver holds each sender to the run nonce it first accepted from it, so envelopes of two
//! runs of one sender never mix.
//!
//! The router in between can drop or delay envelopes, but it cannot read, alter, forge or
//! replay them: the receiver refuses any sequence number not above the last it accepted from
//! that sender, and blames the sender named in a bad envelope.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use mpc_proto::v1 as pb;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use crate::identity::Identity;

/// Length of the per-run random value every payload starts with.
pub const RUN_NONCE_LEN: usize = 32;

type RunNonce = [u8; RUN_NONCE_LEN];

/// A peer's registered public keys.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    pub signing: VerifyingKey,
    pub encryption: PublicKey,
}

/// Why a peer's registered keys were refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("identity of {party}: {reason}")]
pub struct PeerKeyError {
    pub party: String,
    pub reason: &'static str,
}

/// 2^255 - 19, little-endian: X25519 u-coordinates at or above it are non-canonical.
const FIELD_PRIME: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

fn is_canonical_u(u: &[u8; 32]) -> bool {
    // Compare as little-endian integers, most significant byte first.
    for (byte, prime) in u.iter().rev().zip(FIELD_PRIME.iter().rev()) {
        if byte != prime {
            return byte < prime;
        }
    }
    false
}

impl PeerKeys {
    /// Checks keys received from the coordinator before anything is verified or encrypted
    /// with them: the signing key must be a canonical encoding of a point of large order (a
    /// small-order key "verifies" forged signatures), and the encryption key must be a
    /// canonical u-coordinate that gives a contributory shared secret with this party's key
    /// (a low-order point makes the shared secret all zeros, known to everyone).
    pub fn parse(
        identity: &Identity,
        party: &str,
        signing: &[u8],
        encryption: &[u8],
    ) -> Result<Self, PeerKeyError> {
        let refuse = |reason| PeerKeyError {
            party: party.to_owned(),
            reason,
        };
        let signing_bytes: [u8; 32] = signing
            .try_into()
            .map_err(|_| refuse("the signing key is not 32 bytes"))?;
        let signing = VerifyingKey::from_bytes(&signing_bytes)
            .map_err(|_| refuse("the signing key is not a curve point"))?;
        if signing.is_weak() {
            return Err(refuse("the signing key has small order"));
        }
        if VerifyingKey::from(signing.to_edwards()).to_bytes() != signing_bytes {
            return Err(refuse("the signing key is not canonically encoded"));
        }
        let encryption_bytes: [u8; 32] = encryption
            .try_into()
            .map_err(|_| refuse("the encryption key is not 32 bytes"))?;
        if !is_canonical_u(&encryption_bytes) {
            return Err(refuse("the encryption key is not canonically encoded"));
        }
        let encryption = PublicKey::from(encryption_bytes);
        if identity.shared_secret(&encryption).is_none() {
            return Err(refuse(
                "the encryption key has low order (the shared secret would be public)",
            ));
        }
        Ok(Self {
            signing,
            encryption,
        })
    }
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
    #[error("no key agreement with {0}")]
    NoKeyAgreement(String),
    #[error("sequence numbers of this run are exhausted")]
    Exhausted,
    #[error("encryption failed")]
    Encrypt,
}

/// Seals and opens the envelopes of one run of one attempt of one session.
pub struct EnvelopeCodec {
    session_id: String,
    attempt: u32,
    me: String,
    identity: std::sync::Arc<Identity>,
    peers: HashMap<String, PeerKeys>,
    run_nonce: RunNonce,
    next_sequence: u64,
    last_accepted: HashMap<String, u64>,
    /// The run nonce each sender is held to, from the first envelope accepted from it.
    peer_runs: HashMap<String, RunNonce>,
    /// Keys this run encrypts with, by receiver.
    sealing: HashMap<String, ChaCha20Poly1305>,
    /// Keys this run decrypts with, by sender and the sender's run nonce.
    opening: HashMap<(String, RunNonce), ChaCha20Poly1305>,
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

fn length_prefixed(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(part);
}

fn header(
    session_id: &str,
    attempt: u32,
    phase: u32,
    sender: &str,
    receiver: &str,
    sequence: u64,
    run_nonce: &RunNonce,
) -> Vec<u8> {
    let mut h = b"mpc-envelope-v2".to_vec();
    for part in [session_id, sender, receiver] {
        length_prefixed(&mut h, part.as_bytes());
    }
    h.extend_from_slice(&attempt.to_be_bytes());
    h.extend_from_slice(&phase.to_be_bytes());
    h.extend_from_slice(&sequence.to_be_bytes());
    h.extend_from_slice(run_nonce);
    h
}

fn nonce(sequence: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&sequence.to_be_bytes());
    Nonce::from(n)
}

impl EnvelopeCodec {
    /// A codec for one run: it draws the run's nonce, so two codecs never share a key.
    pub fn new(
        session_id: &str,
        attempt: u32,
        me: &str,
        identity: std::sync::Arc<Identity>,
        peers: HashMap<String, PeerKeys>,
    ) -> Self {
        let mut run_nonce = [0u8; RUN_NONCE_LEN];
        OsRng.fill_bytes(&mut run_nonce);
        Self {
            session_id: session_id.to_owned(),
            attempt,
            me: me.to_owned(),
            identity,
            peers,
            run_nonce,
            next_sequence: 1,
            last_accepted: HashMap::new(),
            peer_runs: HashMap::new(),
            sealing: HashMap::new(),
            opening: HashMap::new(),
        }
    }

    /// The AEAD key for messages from `sender` to `receiver` (one of them is this party) in
    /// the sender's run `sender_run`. None when the peer's key gives no contributory secret.
    fn derive(
        &self,
        sender: &str,
        receiver: &str,
        sender_run: &RunNonce,
    ) -> Option<ChaCha20Poly1305> {
        let peer = if sender == self.me { receiver } else { sender };
        let keys = self.peers.get(peer)?;
        let shared = self.identity.shared_secret(&keys.encryption)?;
        let mine = self.identity.encryption_public_key();
        let theirs = keys.encryption.to_bytes();
        let (sender_key, receiver_key) = if sender == self.me {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let mut salt = b"mpc-p2p-v2".to_vec();
        length_prefixed(&mut salt, self.session_id.as_bytes());
        salt.extend_from_slice(&self.attempt.to_be_bytes());
        salt.extend_from_slice(sender_run);
        let hk = Hkdf::<Sha256>::new(Some(&salt), &shared[..]);
        let mut info = Vec::new();
        length_prefixed(&mut info, sender.as_bytes());
        length_prefixed(&mut info, receiver.as_bytes());
        info.extend_from_slice(&sender_key);
        info.extend_from_slice(&receiver_key);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(&info, &mut key[..]).ok()?;
        Some(ChaCha20Poly1305::new((&*key).into()))
    }

    /// Wraps a protocol message; `receiver` None is a broadcast.
    pub fn seal(
        &mut self,
        phase: u32,
        receiver: Option<&str>,
        message: &[u8],
    ) -> Result<pb::Envelope, SealError> {
        let receiver_id = receiver.unwrap_or_default().to_owned();
        let sequence = self.next_sequence;
        let head = header(
            &self.session_id,
            self.attempt,
            phase,
            &self.me,
            &receiver_id,
            sequence,
            &self.run_nonce,
        );
        let mut payload = self.run_nonce.to_vec();
        match receiver {
            None => payload.extend_from_slice(message),
            Some(to) => {
                if !self.peers.contains_key(to) || to == self.me {
                    return Err(SealError::UnknownReceiver(to.to_owned()));
                }
                if !self.sealing.contains_key(to) {
                    let cipher = self
                        .derive(&self.me, to, &self.run_nonce)
                        .ok_or_else(|| SealError::NoKeyAgreement(to.to_owned()))?;
                    self.sealing.insert(to.to_owned(), cipher);
                }
                let cipher = self
                    .sealing
                    .get(to)
                    .ok_or_else(|| SealError::NoKeyAgreement(to.to_owned()))?;
                let ciphertext = cipher
                    .encrypt(
                        &nonce(sequence),
                        Payload {
                            msg: message,
                            aad: &head,
                        },
                    )
                    .map_err(|_| SealError::Encrypt)?;
                payload.extend_from_slice(&ciphertext);
            }
        }
        // Only a sealed envelope consumes its sequence number, and none is ever reused.
        self.next_sequence = sequence.checked_add(1).ok_or(SealError::Exhausted)?;
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
        let (run, body) = envelope
            .payload
            .split_first_chunk::<RUN_NONCE_LEN>()
            .ok_or_else(|| refuse("the payload is too short to carry the sender's run nonce"))?;
        let head = header(
            &envelope.session_id,
            envelope.attempt,
            envelope.phase,
            &envelope.sender,
            &envelope.receiver,
            envelope.sequence,
            run,
        );
        let mut signed = head.clone();
        signed.extend_from_slice(&envelope.payload);
        let signature = Signature::from_slice(&envelope.signature)
            .map_err(|_| refuse("malformed signature"))?;
        // Strict: no small-order R or key, no non-canonical s; one message, one signature.
        keys.signing
            .verify_strict(&signed, &signature)
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
        if self
            .peer_runs
            .get(&envelope.sender)
            .is_some_and(|pinned| pinned != run)
        {
            return Err(refuse(
                "comes from another run of its sender (the same session attempt was started \
                 twice)",
            ));
        }
        let message = if envelope.receiver.is_empty() {
            body.to_vec()
        } else {
            let slot = (envelope.sender.clone(), *run);
            if !self.opening.contains_key(&slot) {
                let cipher = self
                    .derive(&envelope.sender, &self.me, run)
                    .ok_or_else(|| refuse("no key agreement with the sender"))?;
                self.opening.insert(slot.clone(), cipher);
            }
            let cipher = self
                .opening
                .get(&slot)
                .ok_or_else(|| refuse("no key agreement with the sender"))?;
            cipher
                .decrypt(
                    &nonce(envelope.sequence),
                    Payload {
                        msg: body,
                        aad: &head,
                    },
                )
                .map_err(|_| refuse("does not decrypt"))?
        };
        self.last_accepted
            .insert(envelope.sender.clone(), envelope.sequence);
        self.peer_runs.insert(envelope.sender.clone(), *run);
        Ok((envelope.phase, message))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ed25519_dalek::Verifier;

    use super::*;
    use crate::master_key::MasterKey;
    use crate::store::ShareStore;

    fn identity(dir: &std::path::Path, id: &str) -> Arc<Identity> {
        let key = MasterKey::from_hex("t", &"11".repeat(32)).unwrap();
        let store = ShareStore::open(&dir.join(id), id, &key).unwrap();
        Arc::new(Identity::load_or_create(&store).unwrap())
    }

    struct Parties {
        ids: Vec<(String, Arc<Identity>)>,
        peers: HashMap<String, PeerKeys>,
    }

    impl Parties {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ids: Vec<_> = ["a", "b", "c"]
                .iter()
                .map(|p| (p.to_string(), identity(dir.path(), p)))
                .collect();
            let peers = ids
                .iter()
                .map(|(id, i)| {
                    let keys = PeerKeys::parse(
                        &ids[0].1,
                        id,
                        &i.signing_public_key(),
                        &i.encryption_public_key(),
                    )
                    .unwrap();
                    (id.clone(), keys)
                })
                .collect();
            Self { ids, peers }
        }

        /// A run of party `n` (0 = a, 1 = b, 2 = c) of attempt 0 of session s1.
        fn codec(&self, n: usize) -> EnvelopeCodec {
            EnvelopeCodec::new(
                "s1",
                0,
                &self.ids[n].0,
                self.ids[n].1.clone(),
                self.peers.clone(),
            )
        }
    }

    fn codecs() -> (EnvelopeCodec, EnvelopeCodec, EnvelopeCodec) {
        let parties = Parties::new();
        (parties.codec(0), parties.codec(1), parties.codec(2))
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
        let last = tampered.payload.len() - 1;
        tampered.payload[last] ^= 1;
        let err = b.open(&tampered).unwrap_err();
        assert_eq!(err.sender, "a");

        let mut other_run = env.clone();
        other_run.payload[0] ^= 1;
        assert!(b.open(&other_run).is_err(), "the run nonce is not bound");

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

    #[test]
    fn a_second_run_of_the_same_attempt_never_reuses_a_key_and_nonce() {
        let parties = Parties::new();
        let (mut first, mut second) = (parties.codec(0), parties.codec(0));
        let mut b = parties.codec(1);
        // Same session, attempt, direction, sequence number and message: under one key the
        // two ciphertexts would be identical (and their XOR would leak the plaintexts').
        let e1 = first.seal(1, Some("b"), b"round two share").unwrap();
        let e2 = second.seal(1, Some("b"), b"round two share").unwrap();
        assert_eq!((e1.sequence, e2.sequence), (1, 1));
        assert_ne!(e1.payload[..RUN_NONCE_LEN], e2.payload[..RUN_NONCE_LEN]);
        assert_ne!(e1.payload[RUN_NONCE_LEN..], e2.payload[RUN_NONCE_LEN..]);
        assert_ne!(
            first
                .derive("a", "b", &first.run_nonce)
                .map(|c| c.encrypt(&nonce(9), &[0u8; 32][..]).unwrap()),
            second
                .derive("a", "b", &second.run_nonce)
                .map(|c| c.encrypt(&nonce(9), &[0u8; 32][..]).unwrap()),
            "two runs derived one key"
        );

        // Each run is readable on its own; a receiver never mixes the two.
        assert_eq!(b.open(&e1).unwrap().1, b"round two share");
        let later = second.seal(1, Some("b"), b"next").unwrap();
        let err = b.open(&later).unwrap_err();
        assert!(err.reason.contains("another run"), "{err}");
        let mut fresh = parties.codec(1);
        assert_eq!(fresh.open(&e2).unwrap().1, b"round two share");
        assert_eq!(fresh.open(&later).unwrap().1, b"next");
    }

    /// ℓ, the order of the Ed25519 base point, little-endian.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn malleable_and_small_order_signatures_are_refused() {
        let (mut a, mut b, _) = codecs();
        // s + ℓ: the same signature in another encoding.
        let mut env = a.seal(1, None, b"m1").unwrap();
        let mut carry = 0u16;
        for (s, l) in env.signature[32..].iter_mut().zip(ELL) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        let err = b.open(&env).unwrap_err();
        assert!(err.reason.contains("signature"), "{err}");

        // A small-order key with R = identity and s = 0 "signs" every message under plain
        // verification; strict verification refuses it. (The key could not get past
        // PeerKeys::parse; this checks the verification itself.)
        let identity_point = {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        };
        let weak = VerifyingKey::from_bytes(&identity_point).unwrap();
        let mut peers = b.peers.clone();
        if let Some(keys) = peers.get_mut("a") {
            keys.signing = weak;
        }
        let mut b = EnvelopeCodec::new("s1", 0, "b", b.identity.clone(), peers);
        let mut forged = a.seal(1, None, b"anything").unwrap();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&identity_point);
        forged.signature = signature.to_vec();
        let run: RunNonce = forged.payload[..RUN_NONCE_LEN].try_into().unwrap();
        let mut signed = header("s1", 0, 1, "a", "", forged.sequence, &run);
        signed.extend_from_slice(&forged.payload);
        assert!(
            weak.verify(&signed, &Signature::from_bytes(&signature))
                .is_ok(),
            "the forgery is not one plain verification accepts"
        );
        let err = b.open(&forged).unwrap_err();
        assert!(err.reason.contains("bad signature"), "{err}");
    }

    #[test]
    fn weak_non_canonical_and_low_order_peer_keys_are_refused() {
        let parties = Parties::new();
        let me = &parties.ids[0].1;
        let peer = &parties.ids[1].1;
        let (signing, encryption) = (peer.signing_public_key(), peer.encryption_public_key());
        PeerKeys::parse(me, "b", &signing, &encryption).unwrap();

        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        // y = p + 1: the identity again, non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        for bad in [identity_point, non_canonical] {
            let err = PeerKeys::parse(me, "b", &bad, &encryption).unwrap_err();
            assert_eq!(err.party, "b");
            assert!(err.reason.contains("signing key"), "{err}");
        }
        assert!(PeerKeys::parse(me, "b", &signing[..31], &encryption).is_err());

        // Low-order X25519 points: 0, 1, and a point of order 8.
        let order_8 =
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [&[0u8; 32][..], &one[..], &order_8[..]] {
            let err = PeerKeys::parse(me, "b", &signing, bad).unwrap_err();
            assert!(err.reason.contains("low order"), "{err}");
            let low = PublicKey::from(<[u8; 32]>::try_from(bad).unwrap());
            assert!(me.shared_secret(&low).is_none());
        }
        let mut above_p = [0xffu8; 32];
        above_p[31] = 0x7f;
        let err = PeerKeys::parse(me, "b", &signing, &above_p).unwrap_err();
        assert!(err.reason.contains("canonical"), "{err}");
    }
}
