//! Protocol material a party keeps: key shares, auxiliary info, prime pairs, presignatures.
//!
//! Everything persisted carries a format version and is encoded as JSON, so an old record is
//! recognised and refused by name rather than misread. Secret material has no `Debug` that
//! shows it, and its encodings come back in [`Zeroizing`] buffers.

use crate::generic_ec;
use cggmp21::key_share::AnyKeyShare;
use cggmp21::supported_curves::Secp256k1;
use givre::ciphersuite::{Bitcoin, Ciphersuite, Ed25519};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{HashFunction, Scheme, Signature, TssError};

/// The format version written by this build.
pub const MATERIAL_FORMAT: u16 = 1;

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    format: u16,
    #[serde(flatten)]
    body: T,
}

fn to_versioned_json<T: Serialize>(body: &T) -> Result<Zeroizing<Vec<u8>>, TssError> {
    serde_json::to_vec(&Versioned {
        format: MATERIAL_FORMAT,
        body,
    })
    .map(Zeroizing::new)
    .map_err(|e| TssError::Bug(format!("encoding protocol material: {e}")))
}

fn from_versioned_json<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, TssError> {
    #[derive(Deserialize)]
    struct Header {
        format: u16,
    }
    let header: Header = serde_json::from_slice(bytes).map_err(|e| TssError::Decode {
        what,
        reason: e.to_string(),
    })?;
    if header.format != MATERIAL_FORMAT {
        return Err(TssError::UnsupportedFormat {
            what,
            found: header.format,
            supported: MATERIAL_FORMAT,
        });
    }
    let v: Versioned<T> = serde_json::from_slice(bytes).map_err(|e| TssError::Decode {
        what,
        reason: e.to_string(),
    })?;
    Ok(v.body)
}

/// A pair of safe primes for one party's Paillier key. Generating one costs about a minute of
/// one core, so parties keep a pool filled in the background.
pub struct PrimePair(pub(crate) cggmp21::PregeneratedPrimes);

impl PrimePair {
    /// Generates a fresh pair. Slow: run it off any request path.
    pub fn generate() -> Self {
        PrimePair(cggmp21::PregeneratedPrimes::generate(&mut rand_core::OsRng))
    }

    /// The versioned JSON encoding, for the party's encrypted store. Secret (the primes
    /// factor the party's Paillier key).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TssError> {
        to_versioned_json(&PrimesBody { primes: &self.0 })
    }

    /// Reads what [`to_bytes`](PrimePair::to_bytes) wrote; other format versions are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let body: PrimesOwned = from_versioned_json("prime pair", bytes)?;
        Ok(PrimePair(body.primes))
    }
}

impl std::fmt::Debug for PrimePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrimePair(..)")
    }
}

#[derive(Serialize)]
struct PrimesBody<'a> {
    primes: &'a cggmp21::PregeneratedPrimes,
}
#[derive(Deserialize)]
struct PrimesOwned {
    primes: cggmp21::PregeneratedPrimes,
}

/// Auxiliary info (Paillier keys and ring-Pedersen parameters) of one party within a group of
/// parties. Generated once per group and reused for every ECDSA key of that group.
pub struct AuxInfo {
    pub(crate) index: u16,
    pub(crate) inner: cggmp21::key_share::AuxInfo,
}

impl AuxInfo {
    /// This party's index in the group the info was generated for.
    pub fn party_index(&self) -> u16 {
        self.index
    }

    /// How many parties the group has; a run must use all of them, in the same order.
    pub fn group_size(&self) -> u16 {
        u16::try_from(self.inner.parties.len()).unwrap_or(u16::MAX)
    }

    /// The versioned JSON encoding, for the party's encrypted store. Secret (it holds this
    /// party's Paillier secret key).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TssError> {
        to_versioned_json(&AuxBody {
            index: self.index,
            aux: &self.inner,
        })
    }

    /// Reads what [`to_bytes`](AuxInfo::to_bytes) wrote; other format versions are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let body: AuxOwned = from_versioned_json("auxiliary info", bytes)?;
        Ok(AuxInfo {
            index: body.index,
            inner: body.aux,
        })
    }
}

impl std::fmt::Debug for AuxInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuxInfo")
            .field("party_index", &self.party_index())
            .field("group_size", &self.group_size())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AuxBody<'a> {
    index: u16,
    aux: &'a cggmp21::key_share::AuxInfo,
}
#[derive(Deserialize)]
struct AuxOwned {
    index: u16,
    aux: cggmp21::key_share::AuxInfo,
}

/// One party's share of a key, for any scheme.
pub enum KeyShare {
    /// A CGGMP21 share on secp256k1, with the group's auxiliary info folded in.
    EcdsaSecp256k1(cggmp21::KeyShare<Secp256k1>),
    /// A FROST share for Ed25519 signatures.
    SchnorrEd25519(givre::KeyShare<<Ed25519 as Ciphersuite>::Curve>),
    /// A FROST share for BIP-340 signatures under the taproot-tweaked key.
    SchnorrBip340(givre::KeyShare<<Bitcoin as Ciphersuite>::Curve>),
}

#[derive(Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
enum KeyShareBody<'a> {
    EcdsaSecp256k1 {
        share: &'a cggmp21::KeyShare<Secp256k1>,
    },
    SchnorrEd25519 {
        share: &'a givre::KeyShare<<Ed25519 as Ciphersuite>::Curve>,
    },
    SchnorrBip340 {
        share: &'a givre::KeyShare<<Bitcoin as Ciphersuite>::Curve>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
enum KeyShareOwned {
    EcdsaSecp256k1 {
        share: cggmp21::KeyShare<Secp256k1>,
    },
    SchnorrEd25519 {
        share: givre::KeyShare<<Ed25519 as Ciphersuite>::Curve>,
    },
    SchnorrBip340 {
        share: givre::KeyShare<<Bitcoin as Ciphersuite>::Curve>,
    },
}

impl KeyShare {
    /// The signature scheme the key was generated for.
    pub fn scheme(&self) -> Scheme {
        match self {
            KeyShare::EcdsaSecp256k1(_) => Scheme::EcdsaSecp256k1,
            KeyShare::SchnorrEd25519(_) => Scheme::SchnorrEd25519,
            KeyShare::SchnorrBip340(_) => Scheme::SchnorrBip340,
        }
    }

    /// This party's index among the key's parties (its index at key generation).
    pub fn party_index(&self) -> u16 {
        match self {
            KeyShare::EcdsaSecp256k1(s) => s.core.i,
            KeyShare::SchnorrEd25519(s) => s.i,
            KeyShare::SchnorrBip340(s) => s.i,
        }
    }

    /// How many parties must take part in a signature (`t` of t-of-n).
    pub fn threshold(&self) -> u16 {
        match self {
            KeyShare::EcdsaSecp256k1(s) => s.min_signers(),
            KeyShare::SchnorrEd25519(s) => s.min_signers(),
            KeyShare::SchnorrBip340(s) => s.min_signers(),
        }
    }

    /// How many parties hold a share of the key (`n` of t-of-n).
    pub fn parties(&self) -> u16 {
        match self {
            KeyShare::EcdsaSecp256k1(s) => s.n(),
            KeyShare::SchnorrEd25519(s) => s.n(),
            KeyShare::SchnorrBip340(s) => s.n(),
        }
    }

    /// The public key as signatures verify against it:
    /// ECDSA — 33-byte compressed SEC1; Ed25519 — 32 bytes; BIP-340 — the 32-byte x-only
    /// taproot output key (the internal key tweaked with an empty merkle root, BIP-341).
    pub fn public_key(&self) -> Result<Vec<u8>, TssError> {
        match self {
            KeyShare::EcdsaSecp256k1(s) => Ok(s.shared_public_key.to_bytes(true).to_vec()),
            KeyShare::SchnorrEd25519(s) => Ok(s.shared_public_key.to_bytes(true).to_vec()),
            KeyShare::SchnorrBip340(s) => bip340_output_key(s.shared_public_key),
        }
    }

    /// This party's secret share `x_i` as big-endian scalar bytes (the share's own encoding
    /// carries it as these bytes in hex). Secret: for tools that must recognise it, such as
    /// the log scanner of the test suite; never to print or send.
    pub fn secret_share_bytes(&self) -> Zeroizing<Vec<u8>> {
        fn be<E: generic_ec::Curve>(
            x: &generic_ec::NonZero<generic_ec::SecretScalar<E>>,
        ) -> Zeroizing<Vec<u8>> {
            let scalar: &generic_ec::Scalar<E> = x.as_ref();
            Zeroizing::new(scalar.to_be_bytes().as_bytes().to_vec())
        }
        match self {
            KeyShare::EcdsaSecp256k1(s) => be(&s.core.x),
            KeyShare::SchnorrEd25519(s) => be(&s.x),
            KeyShare::SchnorrBip340(s) => be(&s.x),
        }
    }

    /// The versioned JSON encoding, scheme included, for the party's encrypted store.
    /// Secret.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TssError> {
        to_versioned_json(&match self {
            KeyShare::EcdsaSecp256k1(share) => KeyShareBody::EcdsaSecp256k1 { share },
            KeyShare::SchnorrEd25519(share) => KeyShareBody::SchnorrEd25519 { share },
            KeyShare::SchnorrBip340(share) => KeyShareBody::SchnorrBip340 { share },
        })
    }

    /// Decodes and validates a share (the share's own consistency checks run on decode).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        Ok(match from_versioned_json("key share", bytes)? {
            KeyShareOwned::EcdsaSecp256k1 { share } => KeyShare::EcdsaSecp256k1(share),
            KeyShareOwned::SchnorrEd25519 { share } => KeyShare::SchnorrEd25519(share),
            KeyShareOwned::SchnorrBip340 { share } => KeyShare::SchnorrBip340(share),
        })
    }
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("scheme", &self.scheme())
            .field("party_index", &self.party_index())
            .field("threshold", &self.threshold())
            .field("parties", &self.parties())
            .finish_non_exhaustive()
    }
}

pub(crate) fn bip340_output_key(
    internal: generic_ec::NonZero<generic_ec::Point<<Bitcoin as Ciphersuite>::Curve>>,
) -> Result<Vec<u8>, TssError> {
    let normalized = Bitcoin::normalize_point(internal);
    let tweaked = givre::signing::taproot::tweak_public_key::<Bitcoin>(normalized, None)
        .ok_or_else(|| TssError::Bug("taproot tweak undefined for this key".into()))?;
    let bytes = tweaked.to_bytes(true);
    // x-only: drop the SEC1 parity byte.
    Ok(bytes.as_bytes()[1..].to_vec())
}

/// An ECDSA presignature: one party's precomputed share of a signing nonce for one signer set.
///
/// Using it consumes it; signing two messages with one presignature reveals the key.
pub struct Presignature(pub(crate) cggmp21::Presignature<Secp256k1>);

#[derive(Serialize)]
struct PresignatureBody<'a> {
    presignature: &'a cggmp21::Presignature<Secp256k1>,
}
#[derive(Deserialize)]
struct PresignatureOwned {
    presignature: cggmp21::Presignature<Secp256k1>,
}

impl Presignature {
    /// Issues this party's partial signature over `message` hashed with `hash`. The request
    /// must carry the message itself: a raw digest never meets a presignature.
    pub fn issue_partial(self, message: &[u8], hash: HashFunction) -> PartialSignature {
        let digest = hash.digest(message);
        let scalar = generic_ec::Scalar::<Secp256k1>::from_be_bytes_mod_order(digest);
        PartialSignature(
            self.0
                .issue_partial_signature(cggmp21::DataToSign::from_scalar(scalar)),
        )
    }

    /// The versioned JSON encoding, for the party's encrypted store. Secret, and to be
    /// deleted once used.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TssError> {
        to_versioned_json(&PresignatureBody {
            presignature: &self.0,
        })
    }

    /// Reads what [`to_bytes`](Presignature::to_bytes) wrote; other format versions are
    /// refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let body: PresignatureOwned = from_versioned_json("presignature", bytes)?;
        Ok(Presignature(body.presignature))
    }
}

impl std::fmt::Debug for Presignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presignature(..)")
    }
}

/// A partial ECDSA signature; not secret. A threshold of them combine into a signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialSignature(pub(crate) cggmp21::PartialSignature<Secp256k1>);

impl PartialSignature {
    /// The compact binary encoding a party sends to whoever combines the partials.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TssError> {
        crate::codec::encode(&self.0).map_err(|e| TssError::Bug(e.to_string()))
    }

    /// Reads what [`to_bytes`](PartialSignature::to_bytes) wrote; the bytes come from a
    /// peer, so anything else is a [`TssError::Decode`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        crate::codec::decode(bytes)
            .map(PartialSignature)
            .map_err(|e| TssError::Decode {
                what: "partial signature",
                reason: e.to_string(),
            })
    }

    /// Combines partial signatures from every signer of a presignature's set into a low-s
    /// signature, checked against `public_key` (33-byte SEC1) before it is returned.
    pub fn combine(
        partials: &[PartialSignature],
        public_key: &[u8],
        message: &[u8],
        hash: HashFunction,
    ) -> Result<Signature, TssError> {
        let inner: Vec<_> = partials.iter().map(|p| p.0.clone()).collect();
        let signature = cggmp21::PartialSignature::combine(&inner).ok_or_else(|| {
            TssError::InvalidSignature("partial signatures combine to zero".into())
        })?;
        let digest = hash.digest(message);
        crate::signature::ecdsa_signature(signature, public_key, &digest)
    }
}
