//! A party's long-term identity: an Ed25519 key that signs its envelopes and its Hello, and an
//! X25519 key that peers encrypt point-to-point payloads to. Kept in the share store.

use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::store::{RecordKind, ShareStore};
use crate::PartyError;

const RECORD_ID: &str = "self";

pub struct Identity {
    signing: SigningKey,
    encryption: StaticSecret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field(
                "signing_public_key",
                &hex::encode(self.signing_public_key()),
            )
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity, creating and storing one on first start.
    pub fn load_or_create(store: &ShareStore) -> Result<Self, PartyError> {
        if let Some(bytes) = store.get(RecordKind::Identity, RECORD_ID)? {
            return Self::from_record(&bytes);
        }
        let identity = Identity {
            signing: SigningKey::generate(&mut OsRng),
            encryption: StaticSecret::random_from_rng(OsRng),
        };
        let mut bytes = Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(&identity.signing.to_bytes());
        #[expect(
            clippy::disallowed_methods,
            reason = "the identity record is sealed by the store; nothing compares it"
        )]
        bytes[32..].copy_from_slice(identity.encryption.as_bytes());
        store.put(RecordKind::Identity, RECORD_ID, &bytes[..])?;
        Ok(identity)
    }

    /// The identity of the party whose store lives under `data_dir`, read without opening
    /// the store (safe beside the running party); None before the party first started.
    pub fn peek(
        data_dir: &std::path::Path,
        party_id: &str,
        key: &crate::master_key::MasterKey,
    ) -> Result<Option<Self>, PartyError> {
        ShareStore::peek(data_dir, party_id, key, RecordKind::Identity, RECORD_ID)?
            .map(|bytes| Self::from_record(&bytes))
            .transpose()
    }

    fn from_record(bytes: &[u8]) -> Result<Self, PartyError> {
        {
            let bytes: &[u8; 64] = bytes.try_into().map_err(|_| PartyError::Unreadable {
                path: RecordKind::Identity.as_str().into(),
                reason: "identity record has the wrong length".into(),
            })?;
            let mut signing = Zeroizing::new([0u8; 32]);
            let mut encryption = Zeroizing::new([0u8; 32]);
            signing.copy_from_slice(&bytes[..32]);
            encryption.copy_from_slice(&bytes[32..]);
            Ok(Identity {
                signing: SigningKey::from_bytes(&signing),
                encryption: StaticSecret::from(*encryption),
            })
        }
    }

    pub fn signing_public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn encryption_public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.encryption).to_bytes()
    }

    /// Both public keys as an admin enrols them: 128 hex digits, the Ed25519 signing key
    /// then the X25519 encryption key.
    pub fn public_hex(&self) -> String {
        let mut both = self.signing_public_key().to_vec();
        both.extend_from_slice(&self.encryption_public_key());
        hex::encode(both)
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 secret shared with `peer`; None for a low-order peer key, whose "shared"
    /// secret is all zeros whatever this party's key (anyone could compute it).
    pub(crate) fn shared_secret(&self, peer: &PublicKey) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.encryption.diffie_hellman(peer);
        #[expect(
            clippy::disallowed_methods,
            reason = "the shared secret goes to the envelope's HKDF only"
        )]
        let bytes = || Zeroizing::new(shared.to_bytes());
        shared.was_contributory().then(bytes)
    }
}
