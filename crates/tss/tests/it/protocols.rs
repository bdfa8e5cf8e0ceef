use std::sync::Arc;

use k256::ecdsa::{RecoveryId, VerifyingKey};
use mpc_tss::{
    ethereum_address, verify, HashFunction, KeyShare, PartialSignature, Scheme, Signature,
    SigningInput, TssError,
};
use sha3::Digest as _;

use crate::fixtures::{aux_infos, keygen, run_all};

async fn sign_with(
    shares: &[Arc<KeyShare>],
    signers: &[u16],
    input: &SigningInput,
) -> Vec<Result<Signature, TssError>> {
    let t = u16::try_from(signers.len()).unwrap();
    let signers = signers.to_vec();
    let shares: Vec<_> = signers
        .iter()
        .map(|&s| shares[usize::from(s)].clone())
        .collect();
    let input = input.clone();
    let eid = format!("sign-{signers:?}").into_bytes();
    run_all(t, move |pos, ch| {
        let share = shares[usize::from(pos)].clone();
        let (signers, input, eid) = (signers.clone(), input.clone(), eid.clone());
        async move { mpc_tss::sign(&share, &eid, &signers, &input, ch).await }
    })
    .await
}

/// What `ecrecover(digest, v, r, s)` returns, computed with k256 alone.
fn ecrecover(digest: &[u8; 32], signature: &Signature) -> String {
    let Signature::Ecdsa { r, s, v } = signature else {
        panic!("not ECDSA")
    };
    let sig = k256::ecdsa::Signature::from_scalars(*r, *s).unwrap();
    let id = RecoveryId::from_byte(v - 27).unwrap();
    let key = VerifyingKey::recover_from_prehash(digest, &sig, id).unwrap();
    let point = key.to_encoded_point(false);
    format!(
        "0x{}",
        hex::encode(&sha3::Keccak256::digest(&point.as_bytes()[1..])[12..])
    )
}

fn all_equal(results: Vec<Result<Signature, TssError>>) -> Signature {
    let sigs: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(
        sigs.windows(2).all(|w| w[0] == w[1]),
        "signers disagree on the signature"
    );
    sigs.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_keys_of_one_group_share_aux_info_and_sign_for_every_signer_set() {
    let aux = aux_infos(3, b"aux-group-of-3").await;
    for (t, signer_sets) in [
        (2u16, vec![vec![0u16, 1], vec![1, 2], vec![2, 0]]),
        (3, vec![vec![0, 1, 2]]),
    ] {
        let shares = keygen(Scheme::EcdsaSecp256k1, t, 3, Some(aux.clone())).await;
        let public_key = shares[0].public_key().unwrap();
        assert!(shares.iter().all(|s| s.public_key().unwrap() == public_key));
        assert_eq!(public_key.len(), 33);
        let address = ethereum_address(&public_key).unwrap();

        for signers in signer_sets {
            let input = SigningInput::Message {
                message: format!("pay 1 ETH, signers {signers:?}").into_bytes(),
                hash: Some(HashFunction::Keccak256),
            };
            let signature = all_equal(sign_with(&shares, &signers, &input).await);
            verify(Scheme::EcdsaSecp256k1, &public_key, &input, &signature).unwrap();
            let digest = input.ecdsa_digest().unwrap();
            assert_eq!(
                ecrecover(&digest, &signature),
                address,
                "{t}-of-3 {signers:?}"
            );

            let tampered = SigningInput::Message {
                message: b"pay 100 ETH".to_vec(),
                hash: Some(HashFunction::Keccak256),
            };
            assert!(verify(Scheme::EcdsaSecp256k1, &public_key, &tampered, &signature).is_err());
        }

        // A raw digest runs the full protocol too.
        let digest = SigningInput::Digest([7u8; 32]);
        let signers: Vec<u16> = (0..t).collect();
        let signature = all_equal(sign_with(&shares, &signers, &digest).await);
        assert_eq!(ecrecover(&[7u8; 32], &signature), address);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_presignatures_sign_a_message_without_interaction() {
    let aux = aux_infos(3, b"aux-presign").await;
    let shares = keygen(Scheme::EcdsaSecp256k1, 2, 3, Some(aux)).await;
    let public_key = shares[0].public_key().unwrap();
    let signers = vec![2u16, 0];
    let presign_shares = [shares[2].clone(), shares[0].clone()];
    let presignatures = run_all(2, move |pos, ch| {
        let share = presign_shares[usize::from(pos)].clone();
        let signers = signers.clone();
        async move { mpc_tss::presign(&share, b"presign-1", &signers, ch).await }
    })
    .await;

    let message = b"transfer 5 to alice".to_vec();
    let partials: Vec<PartialSignature> = presignatures
        .into_iter()
        .map(|p| {
            // A presignature survives the share store's encoding.
            let stored = p.unwrap().to_bytes().unwrap();
            mpc_tss::Presignature::from_bytes(&stored)
                .unwrap()
                .issue_partial(&message, HashFunction::Sha256)
        })
        .map(|p| PartialSignature::from_bytes(&p.to_bytes().unwrap()).unwrap())
        .collect();
    let signature =
        PartialSignature::combine(&partials, &public_key, &message, HashFunction::Sha256).unwrap();
    let input = SigningInput::Message {
        message: message.clone(),
        hash: Some(HashFunction::Sha256),
    };
    verify(Scheme::EcdsaSecp256k1, &public_key, &input, &signature).unwrap();
    assert_eq!(
        ecrecover(&HashFunction::Sha256.digest(&message), &signature),
        ethereum_address(&public_key).unwrap()
    );

    // Partials over another message do not combine into a valid signature for this one.
    assert!(
        PartialSignature::combine(&partials[..1], &public_key, &message, HashFunction::Sha256)
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frost_signs_for_several_thresholds() {
    for scheme in [Scheme::SchnorrEd25519, Scheme::SchnorrBip340] {
        for (t, n) in [(2u16, 2u16), (2, 3), (3, 5)] {
            let shares = keygen(scheme, t, n, None).await;
            let public_key = shares[0].public_key().unwrap();
            assert_eq!(public_key.len(), 32);
            let signers: Vec<u16> = (n - t..n).collect();
            let input = SigningInput::Message {
                message: b"frost message".to_vec(),
                hash: None,
            };
            let signature = all_equal(sign_with(&shares, &signers, &input).await);
            verify(scheme, &public_key, &input, &signature).unwrap();
            let other = SigningInput::Message {
                message: b"other".to_vec(),
                hash: None,
            };
            assert!(
                verify(scheme, &public_key, &other, &signature).is_err(),
                "{scheme} {t}-of-{n}"
            );
        }
    }
}

#[test]
fn ed25519_signatures_verify_with_ed25519_dalek_directly() {
    // verify() uses ed25519-dalek; this pins that the public key and signature encodings are
    // the standard ones (RFC 8032) by checking a signature that dalek itself produced.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    use ed25519_dalek::Signer;
    let sig = key.sign(b"m");
    let input = SigningInput::Message {
        message: b"m".to_vec(),
        hash: None,
    };
    verify(
        Scheme::SchnorrEd25519,
        key.verifying_key().as_bytes(),
        &input,
        &Signature::Schnorr(sig.to_bytes()),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_aborts_the_run_and_blames_its_sender() {
    let shares = keygen(Scheme::SchnorrEd25519, 2, 2, None).await;
    // Party index 1 sends garbage instead of its round-one commitment.
    let (inject, incoming) = futures::channel::mpsc::unbounded();
    inject
        .unbounded_send(mpc_tss::Incoming {
            sender: 1,
            broadcast: true,
            payload: vec![0xff; 3],
        })
        .unwrap();
    let (outgoing, _sent) = futures::channel::mpsc::unbounded();
    let channel = mpc_tss::Channel::new(incoming, outgoing);
    let input = SigningInput::Message {
        message: b"x".to_vec(),
        hash: None,
    };
    let err = mpc_tss::sign(&shares[0], b"eid", &[0, 1], &input, channel)
        .await
        .unwrap_err();
    assert_eq!(err.blamed(), &[1], "{err}");
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_field() {
    let (mut channels, _router) = mpc_tss::local::network(2);
    let err = mpc_tss::generate_key(
        Scheme::SchnorrEd25519,
        b"e",
        0,
        2,
        3,
        None,
        channels.remove(0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TssError::InvalidInput {
                field: "threshold",
                ..
            }
        ),
        "{err}"
    );
    let (mut channels, _router) = mpc_tss::local::network(2);
    let err = mpc_tss::generate_key(
        Scheme::EcdsaSecp256k1,
        b"e",
        0,
        2,
        2,
        None,
        channels.remove(0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TssError::InvalidInput {
                field: "aux_info",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        SigningInput::Message {
            message: vec![1],
            hash: None
        }
        .validate_for(Scheme::EcdsaSecp256k1),
        Err(mpc_types::FieldError { field: "hash", .. })
    ));
}
