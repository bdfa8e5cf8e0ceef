use mpc_tss::{KeyShare, Scheme, TssError};

use crate::fixtures::keygen;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/keyshare-ed25519-v1.json"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shares_round_trip_through_their_encoding() {
    for scheme in Scheme::ALL.into_iter().filter(|s| !s.needs_aux_info()) {
        let shares = keygen(scheme, 2, 3, None).await;
        for share in &shares {
            let bytes = share.to_bytes().unwrap();
            let back = KeyShare::from_bytes(&bytes).unwrap();
            assert_eq!(back.scheme(), scheme);
            assert_eq!(back.public_key().unwrap(), share.public_key().unwrap());
            assert_eq!(back.party_index(), share.party_index());
        }
    }
}

/// A share written by format version 1 must keep loading. Regenerate (only when the format
/// version changes) with UPDATE_GOLDEN=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_share_still_loads() {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let shares = keygen(Scheme::SchnorrEd25519, 2, 3, None).await;
        std::fs::write(GOLDEN, &*shares[0].to_bytes().unwrap()).unwrap();
    }
    let bytes = std::fs::read(GOLDEN).unwrap();
    let share = KeyShare::from_bytes(&bytes).unwrap();
    assert_eq!(share.scheme(), Scheme::SchnorrEd25519);
    assert_eq!((share.threshold(), share.parties()), (2, 3));

    let text = String::from_utf8(bytes)
        .unwrap()
        .replacen("\"format\":1", "\"format\":7", 1);
    let err = KeyShare::from_bytes(text.as_bytes()).unwrap_err();
    assert!(
        matches!(err, TssError::UnsupportedFormat { found: 7, .. }),
        "{err}"
    );
    let err = KeyShare::from_bytes(b"{\"format\":1,\"scheme\":\"schnorr-ed25519\"}").unwrap_err();
    assert!(
        matches!(
            err,
            TssError::Decode {
                what: "key share",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn debug_output_shows_no_secret() {
    let bytes = std::fs::read(GOLDEN).unwrap();
    let share = KeyShare::from_bytes(&bytes).unwrap();
    let shown = format!("{share:?}");
    assert_eq!(
        shown,
        "KeyShare { scheme: SchnorrEd25519, party_index: 0, threshold: 2, parties: 3, .. }"
    );
}

/// The secret share is the scalar the share's encoding carries as `"x"` (in hex): what a log
/// scanner must look for. (The test shows neither the share nor the scalar.)
#[test]
fn the_secret_share_is_the_scalar_the_encoding_carries() {
    let bytes = std::fs::read(GOLDEN).unwrap();
    let share = KeyShare::from_bytes(&bytes).unwrap();
    let secret = share.secret_share_bytes();
    assert_eq!(secret.len(), 32);
    let field = format!("\"x\":\"{}\"", hex::encode(&*secret));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains(&field),
        "the secret share is not the encoding's x"
    );
}
