//! API tokens and the signed statements parties and coordinators check (`mpc_types`).
//!
//! Input: a mode byte, then:
//! - 0: a token string (`mpc_<id>_<secret>`, as a client sends it in `authorization`):
//!   `token::id_of` must accept exactly the strings `token::format` makes;
//! - 1: postcard of an `Endorsed<KeyPolicy>` (as stored in a key record and carried to the
//!   parties), checked and verified against the fixed admin key;
//! - 2: signer choices, then postcard of `(KeyPolicy, SigningApproval, now_ms)`: the request
//!   is signed by the chosen fixed initiator keys (and by one key outside the policy), and
//!   `KeyPolicy::authorise` must never count fewer distinct valid initiators than it asks;
//! - 3: postcard of an `Endorsed<Enrolment>`, then raw keys and a signature for
//!   `verifies_raw` over a keygen report, and `check_identity_keys`.

#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use mpc_fuzz::Bytes;
use mpc_types::statement::{
    self, check_identity_keys, verifies_raw, Endorsed, Enrolment, KeyPolicy, KeygenReport,
    PublicKey, Signed, SigningApproval, Statement,
};
use mpc_types::token;

/// Fixed keys: 0 is the admin, 1 to 4 are initiators, 5 is a stranger.
fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n.wrapping_add(1).wrapping_mul(37); 32])
}

fn public(n: u8) -> PublicKey {
    key(n).verifying_key().to_bytes()
}

fn check_token(text: &str) {
    let hash = token::token_hash(text);
    let Some(id) = token::id_of(text) else {
        return;
    };
    assert_eq!(id.len(), 16, "{text:?}");
    let secret_hex = &text[token::PREFIX.len() + 17..];
    let secret: [u8; 32] = hex::decode(secret_hex)
        .ok()
        .and_then(|s| s.try_into().ok())
        .expect("an accepted token has 32 bytes of hex secret");
    let again = token::format(id, &secret);
    assert_eq!(again, text, "id_of accepted a token format would not make");
    assert_eq!(token::token_hash(&again), hash);
}

fn check_policy(bytes: &[u8]) {
    let Ok(endorsed) = postcard::from_bytes::<Endorsed<KeyPolicy>>(bytes) else {
        return;
    };
    let _ = endorsed.statement.check();
    let _ = endorsed.statement.signing_bytes();
    let by_admin = endorsed.endorsed_by_one_of(&[public(0)]);
    if by_admin {
        assert!(endorsed.verifies());
    }
}

fn check_authorise(mut input: Bytes<'_>) {
    let signers = input.u8();
    let forge = input.u8();
    let Ok((mut policy, request, now_ms)) =
        postcard::from_bytes::<(KeyPolicy, SigningApproval, u64)>(input.rest())
    else {
        return;
    };
    // Initiators the fuzzer may choose among the fixed ones (bits 0-3), or keep its own.
    if signers & 0x80 != 0 {
        policy.initiators = (1..=4).map(public).collect();
    }
    let mut approvals: Vec<Signed> = (1..=5u8)
        .filter(|n| signers & (1 << (n - 1)) != 0)
        .map(|n| statement::sign(&key(n), &request))
        .collect();
    // Duplicates, and one signature damaged.
    if let Some(first) = approvals.first().cloned() {
        approvals.push(first);
    }
    if let Some(a) = approvals.get_mut(usize::from(forge % 8)) {
        a.signature[usize::from(forge / 8) % 64] ^= 1;
    }
    let _ = policy.check();
    let _ = request.fingerprint();
    if policy.authorise(&request, &approvals, now_ms).is_ok() {
        let valid: std::collections::BTreeSet<PublicKey> = approvals
            .iter()
            .filter(|a| policy.initiators.contains(&a.signer) && a.verifies(&request))
            .map(|a| a.signer)
            .collect();
        assert!(
            valid.len() >= usize::from(policy.approvals_needed),
            "authorised with {} valid approvals of {} needed",
            valid.len(),
            policy.approvals_needed
        );
        assert!(request.key_id == policy.key_id && request.not_after_ms > now_ms);
    }
}

fn check_enrolment(mut input: Bytes<'_>) {
    let enrolment = input.field();
    if let Ok(e) = postcard::from_bytes::<Endorsed<Enrolment>>(enrolment) {
        let _ = e.endorsed_by_one_of(&[public(0)]);
        let _ = check_identity_keys(
            &e.statement.signing_public_key,
            &e.statement.encryption_public_key,
        );
    }
    let public_key = input.field();
    let signature = input.field();
    let report = KeygenReport {
        session_id: "s1",
        key_id: "k1",
        public_key: input.rest(),
    };
    let _ = verifies_raw(public_key, &report, signature);
    if let (Ok(signing), Ok(encryption)) = (
        <PublicKey>::try_from(public_key),
        <PublicKey>::try_from(signature.get(..32).unwrap_or_default()),
    ) {
        let _ = check_identity_keys(&signing, &encryption);
    }
}

fn run(data: &[u8]) {
    let mut input = Bytes(data);
    match input.u8() % 4 {
        0 => {
            if let Ok(text) = std::str::from_utf8(input.rest()) {
                check_token(text);
            }
        }
        1 => check_policy(input.rest()),
        2 => check_authorise(input),
        _ => check_enrolment(input),
    }
}

fn policy() -> KeyPolicy {
    KeyPolicy {
        key_id: "k1".into(),
        scheme: "ecdsa-secp256k1".into(),
        threshold: 2,
        parties: vec!["party-1".into(), "party-2".into(), "party-3".into()],
        initiators: (1..=4).map(public).collect(),
        approvals_needed: 2,
        version: 1,
    }
}

fn make_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = vec![(
        "token".to_owned(),
        [
            &[0u8][..],
            token::format("0123456789abcdef", &[7; 32]).as_bytes(),
        ]
        .concat(),
    )];
    if let Ok(bytes) = postcard::to_allocvec(&Endorsed::new(&key(0), policy())) {
        seeds.push(("policy".to_owned(), [&[1u8][..], &bytes].concat()));
    }
    let request = SigningApproval {
        key_id: "k1".into(),
        digest: vec![7; 32],
        message: Vec::new(),
        hash: String::new(),
        derivation_path: Vec::new(),
        request_id: "r1".into(),
        not_after_ms: 2_000_000,
    };
    if let Ok(bytes) = postcard::to_allocvec(&(policy(), request, 1_000_000u64)) {
        seeds.push((
            "approvals".to_owned(),
            [&[2u8, 0x83, 0xff][..], &bytes].concat(),
        ));
    }
    let enrolment = Endorsed::new(
        &key(0),
        Enrolment {
            party_id: "party-1".into(),
            signing_public_key: public(1),
            encryption_public_key: [9; 32],
        },
    );
    if let Ok(bytes) = postcard::to_allocvec(&enrolment) {
        let report = KeygenReport {
            session_id: "s1",
            key_id: "k1",
            public_key: &[2; 33],
        };
        let signature = statement::sign(&key(1), &report).signature;
        let mut seed = vec![3u8];
        mpc_fuzz::push_field(&mut seed, &bytes);
        mpc_fuzz::push_field(&mut seed, &public(1));
        mpc_fuzz::push_field(&mut seed, &signature);
        seed.extend_from_slice(&[2; 33]);
        seeds.push(("enrolment".to_owned(), seed));
    }
    seeds
}

fuzz_target!(
    init: mpc_fuzz::seeds("tokens_and_statements", make_seeds),
    |data: &[u8]| run(data)
);
