//! The protocol runs. Each is an async function driven by whoever polls it: they compute
//! heavily between messages, so a caller on an async runtime runs them on a blocking pool.
//!
//! Indices: `i` and `n` are positions in the sorted list of the key's parties; `signers` are
//! those positions for the parties taking part in one signing, and a signer's own index in
//! the signing run is its position within `signers`.

use cggmp21::round_based::MpcParty;
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::ExecutionId;
use givre::ciphersuite::{Bitcoin, Ciphersuite, Ed25519};
use rand_core::OsRng;
use sha2::Sha256;

use crate::generic_ec;
use crate::material::{AuxInfo, KeyShare, PrimePair};
use crate::signature::{ecdsa_signature, verify};
use crate::wire::{delivery, Blame, Channel};
use crate::{Presignature, Scheme, Signature, SigningInput, TssError};

fn aborted(protocol: &'static str, error: impl std::error::Error, blame: &Blame) -> TssError {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    TssError::Protocol {
        protocol,
        reason,
        blamed: blame.take(),
    }
}

fn check_group(i: u16, n: u16, t: Option<u16>) -> Result<(), TssError> {
    if n < 2 {
        return Err(TssError::InvalidInput {
            field: "parties",
            reason: format!("a group needs at least 2 parties, got {n}"),
        });
    }
    if i >= n {
        return Err(TssError::InvalidInput {
            field: "party_index",
            reason: format!("index {i} is outside a group of {n}"),
        });
    }
    if let Some(t) = t {
        if t < 2 || t > n {
            return Err(TssError::InvalidInput {
                field: "threshold",
                reason: format!("threshold {t} must be between 2 and the {n} parties"),
            });
        }
    }
    Ok(())
}

/// Generates this party's auxiliary info for a group of `n` parties (ECDSA only), consuming
/// one prime pair from the caller's pool.
pub async fn generate_aux_info(
    execution_id: &[u8],
    i: u16,
    n: u16,
    primes: PrimePair,
    channel: Channel,
) -> Result<AuxInfo, TssError> {
    check_group(i, n, None)?;
    let blame = Blame::default();
    let party = MpcParty::connected(delivery(channel, blame.clone()));
    cggmp21::aux_info_gen::<SecurityLevel128>(ExecutionId::new(execution_id), i, n, primes.0)
        .start(&mut OsRng, party)
        .await
        .map(|inner| AuxInfo { index: i, inner })
        .map_err(|e| aborted("auxiliary info generation", e, &blame))
}

async fn dkg<E: generic_ec::Curve>(
    execution_id: &[u8],
    i: u16,
    n: u16,
    t: u16,
    channel: Channel,
) -> Result<cggmp21::IncompleteKeyShare<E>, TssError> {
    let blame = Blame::default();
    let party = MpcParty::connected(delivery(channel, blame.clone()));
    cggmp21::keygen::<E>(ExecutionId::new(execution_id), i, n)
        .set_threshold(t)
        .start(&mut OsRng, party)
        .await
        .map_err(|e| aborted("key generation", e, &blame))
}

/// Distributed key generation without a dealer: `t` of the `n` parties will be able to sign.
/// ECDSA keys are completed with this party's auxiliary info for the same group.
pub async fn generate_key(
    scheme: Scheme,
    execution_id: &[u8],
    i: u16,
    n: u16,
    t: u16,
    aux_info: Option<&AuxInfo>,
    channel: Channel,
) -> Result<KeyShare, TssError> {
    check_group(i, n, Some(t))?;
    match scheme {
        Scheme::EcdsaSecp256k1 => {
            let aux = aux_info.ok_or_else(|| TssError::InvalidInput {
                field: "aux_info",
                reason: "ECDSA keys need the group's auxiliary info".into(),
            })?;
            if aux.party_index() != i || aux.group_size() != n {
                return Err(TssError::InvalidInput {
                    field: "aux_info",
                    reason: format!(
                        "auxiliary info is for index {} of {}, the key for index {i} of {n}",
                        aux.party_index(),
                        aux.group_size()
                    ),
                });
            }
            let core = dkg::<Secp256k1>(execution_id, i, n, t, channel).await?;
            let share = cggmp21::KeyShare::from_parts((core, aux.inner.clone()))
                .map_err(|e| TssError::Bug(format!("completing the key share: {e}")))?;
            Ok(KeyShare::EcdsaSecp256k1(share))
        }
        Scheme::SchnorrEd25519 => Ok(KeyShare::SchnorrEd25519(
            dkg::<<Ed25519 as Ciphersuite>::Curve>(execution_id, i, n, t, channel).await?,
        )),
        Scheme::SchnorrBip340 => Ok(KeyShare::SchnorrBip340(
            dkg::<<Bitcoin as Ciphersuite>::Curve>(execution_id, i, n, t, channel).await?,
        )),
    }
}

fn signer_position(share_index: u16, signers: &[u16], threshold: u16) -> Result<u16, TssError> {
    if signers.len() != usize::from(threshold) {
        return Err(TssError::InvalidInput {
            field: "signers",
            reason: format!(
                "exactly {threshold} signers take part, got {}",
                signers.len()
            ),
        });
    }
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != signers.len() {
        return Err(TssError::InvalidInput {
            field: "signers",
            reason: "a signer is listed twice".into(),
        });
    }
    signers
        .iter()
        .position(|&s| s == share_index)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| TssError::InvalidInput {
            field: "signers",
            reason: format!("this party (index {share_index}) is not among the signers"),
        })
}

fn ecdsa_scalar(digest: [u8; 32]) -> cggmp21::DataToSign<Secp256k1> {
    cggmp21::DataToSign::from_scalar(generic_ec::Scalar::from_be_bytes_mod_order(digest))
}

/// Runs the full signing protocol among `signers` and returns the verified signature.
pub async fn sign(
    share: &KeyShare,
    execution_id: &[u8],
    signers: &[u16],
    input: &SigningInput,
    channel: Channel,
) -> Result<Signature, TssError> {
    input.validate_for(share.scheme())?;
    let me = signer_position(share.party_index(), signers, share.threshold())?;
    let public_key = share.public_key()?;
    let blame = Blame::default();
    let signature = match share {
        KeyShare::EcdsaSecp256k1(key) => {
            let digest = input.ecdsa_digest()?;
            let party = MpcParty::connected(delivery(channel, blame.clone()));
            let sig = cggmp21::signing(ExecutionId::new(execution_id), me, signers, key)
                .set_digest::<Sha256>()
                .sign(&mut OsRng, party, ecdsa_scalar(digest))
                .await
                .map_err(|e| aborted("ECDSA signing", e, &blame))?;
            return ecdsa_signature(sig, &public_key, &digest);
        }
        KeyShare::SchnorrEd25519(key) => {
            let party = MpcParty::connected(delivery(channel, blame.clone()));
            let sig = givre::signing::<Ed25519>(me, key, signers, input.schnorr_message())
                .sign(&mut OsRng, party)
                .await
                .map_err(|e| aborted("FROST signing", e, &blame))?;
            let mut out = [0u8; 64];
            sig.write_to_slice(&mut out);
            Signature::Schnorr(out)
        }
        KeyShare::SchnorrBip340(key) => {
            let party = MpcParty::connected(delivery(channel, blame.clone()));
            // BIP-341: a key with no script path is tweaked with an empty merkle root.
            let sig = givre::signing::<Bitcoin>(me, key, signers, input.schnorr_message())
                .set_taproot_tweak(None)
                .map_err(|e| aborted("FROST signing", e, &blame))?
                .sign(&mut OsRng, party)
                .await
                .map_err(|e| aborted("FROST signing", e, &blame))?;
            let mut out = [0u8; 64];
            sig.write_to_slice(&mut out);
            Signature::Schnorr(out)
        }
    };
    verify(share.scheme(), &public_key, input, &signature)?;
    Ok(signature)
}

/// Runs ECDSA presigning among `signers`: the result serves one later message, signed by the
/// same signers without interaction.
pub async fn presign(
    share: &KeyShare,
    execution_id: &[u8],
    signers: &[u16],
    channel: Channel,
) -> Result<Presignature, TssError> {
    let KeyShare::EcdsaSecp256k1(key) = share else {
        return Err(TssError::InvalidInput {
            field: "scheme",
            reason: format!("presignatures exist for ECDSA only, not {}", share.scheme()),
        });
    };
    let me = signer_position(share.party_index(), signers, share.threshold())?;
    let blame = Blame::default();
    let party = MpcParty::connected(delivery(channel, blame.clone()));
    cggmp21::signing(ExecutionId::new(execution_id), me, signers, key)
        .set_digest::<Sha256>()
        .generate_presignature(&mut OsRng, party)
        .await
        .map(Presignature)
        .map_err(|e| aborted("ECDSA presigning", e, &blame))
}
