//! A secp256k1 key on a PKCS#11 token (an HSM; SoftHSM2 in tests), found by its label.
//!
//! The token signs with raw `CKM_ECDSA` and answers r ‖ s (64 bytes), without the recovery
//! id and with s in either half: [`eth_signature`] normalises s and finds v by recovery
//! against the address derived from the key's `CKA_EC_POINT`.
//!
//! PKCS#11 calls block, so each runs on tokio's blocking pool. One logged-in session is
//! kept and reopened when the token drops it. The PIN is read once at start (from a file or
//! an environment variable), kept zeroized-on-drop, and never logged; a wrong PIN, a token
//! or a key label that is not there, fail at start with an error that says which.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use alloy::primitives::{Address, B256};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use k256::ecdsa::VerifyingKey;
use zeroize::Zeroizing;

use super::{address_of, eth_signature, EthSignature, Signer, SignerError};
use crate::config::HsmConfig;

/// DER of the secp256k1 curve's OID (1.3.132.0.10), as `CKA_EC_PARAMS` holds it.
const SECP256K1_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

fn hsm_err(operation: &'static str, e: CkError) -> SignerError {
    let reason = match &e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => {
            "the PIN is incorrect (CKR_PIN_INCORRECT)".to_owned()
        }
        CkError::Pkcs11(RvError::PinLocked, _) => "the PIN is locked (CKR_PIN_LOCKED)".to_owned(),
        _ => e.to_string(),
    };
    SignerError::Hsm { operation, reason }
}

/// Where the user PIN comes from.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// A file whose content, trimmed, is the PIN.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl PinSource {
    /// The source `config` names.
    pub fn of(config: &HsmConfig) -> Result<Self, SignerError> {
        match (&config.pin_file, &config.pin_env) {
            (Some(f), None) => Ok(PinSource::File(f.clone())),
            (None, Some(v)) => Ok(PinSource::Env(v.clone())),
            _ => Err(SignerError::Config(
                "give exactly one of pin_file and pin_env".into(),
            )),
        }
    }

    /// Reads the PIN.
    pub fn read(&self) -> Result<Zeroizing<String>, SignerError> {
        let pin = match self {
            PinSource::File(path) => return crate::secret_file::read(path, "PIN file"),
            PinSource::Env(var) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| SignerError::Config(format!("PIN variable {var} is not set")))?,
            ),
        };
        let trimmed = Zeroizing::new(pin.trim().to_owned());
        if trimmed.is_empty() {
            return Err(SignerError::Config("the PIN is empty".into()));
        }
        Ok(trimmed)
    }
}

/// Which token, by label or slot id.
#[derive(Debug, Clone)]
pub enum TokenSelector {
    /// The token with this label.
    Label(String),
    /// The slot with this id.
    Slot(u64),
}

impl TokenSelector {
    /// The selector `config` names.
    pub fn of(config: &HsmConfig) -> Result<Self, SignerError> {
        match (&config.token_label, config.slot) {
            (Some(l), None) => Ok(TokenSelector::Label(l.clone())),
            (None, Some(s)) => Ok(TokenSelector::Slot(s)),
            _ => Err(SignerError::Config(
                "give exactly one of token_label and slot".into(),
            )),
        }
    }
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "token {l:?}"),
            TokenSelector::Slot(s) => write!(f, "slot {s}"),
        }
    }
}

/// The settings of one HSM key.
#[derive(Debug, Clone)]
pub struct HsmSettings {
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// The key's label.
    pub key_label: String,
    /// The user PIN's source.
    pub pin: PinSource,
}

impl HsmSettings {
    /// From the configuration.
    pub fn of(config: &HsmConfig) -> Result<Self, SignerError> {
        Ok(Self {
            module: config.module.clone(),
            token: TokenSelector::of(config)?,
            key_label: config.key_label.clone(),
            pin: PinSource::of(config)?,
        })
    }
}

/// Loads and initialises a module once per process: finalising it (which dropping a
/// context does) would end every other context's sessions on the same module.
fn module(path: &Path) -> Result<Pkcs11, SignerError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let modules = MODULES.get_or_init(Mutex::default);
    let mut modules = modules
        .lock()
        .map_err(|_| SignerError::Config("PKCS#11 module table poisoned".into()))?;
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let pkcs11 = Pkcs11::new(path)
        .map_err(|e| SignerError::Config(format!("PKCS#11 module {}: {e}", path.display())))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm_err("C_Initialize", e)),
    }
    modules.insert(path.to_owned(), pkcs11.clone());
    Ok(pkcs11)
}

/// The slot of the token `selector` names.
fn find_slot(pkcs11: &Pkcs11, selector: &TokenSelector) -> Result<Slot, SignerError> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| hsm_err("C_GetSlotList", e))?;
    let mut labels = Vec::new();
    for slot in slots {
        match selector {
            TokenSelector::Slot(id) if slot.id() == *id => return Ok(slot),
            TokenSelector::Slot(_) => {}
            TokenSelector::Label(want) => {
                let info = pkcs11
                    .get_token_info(slot)
                    .map_err(|e| hsm_err("C_GetTokenInfo", e))?;
                if !info.token_initialized() {
                    continue;
                }
                let label = info.label().trim_end().to_owned();
                if label == *want {
                    return Ok(slot);
                }
                labels.push(label);
            }
        }
    }
    Err(SignerError::Config(format!(
        "no {selector} on this PKCS#11 module (tokens present: {})",
        if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.join(", ")
        }
    )))
}

/// Opens a read-write session on `slot` and logs the user in.
fn open_session(
    pkcs11: &Pkcs11,
    slot: Slot,
    pin: &Zeroizing<String>,
) -> Result<Session, SignerError> {
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(|e| hsm_err("C_OpenSession", e))?;
    let auth = AuthPin::new(pin.as_str().into());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(hsm_err("C_Login", e)),
    }
}

/// The EC private key labelled `label`, if there is one.
fn find_private_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, SignerError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| hsm_err("C_FindObjects", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(SignerError::Config(format!(
            "{} private keys are labelled {label:?}; labels must be unique",
            more.len()
        ))),
    }
}

/// The public key of the pair labelled `label`, from its `CKA_EC_POINT`.
fn public_key(session: &Session, label: &str) -> Result<VerifyingKey, SignerError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| hsm_err("C_FindObjects", e))?;
    let Some(handle) = found.first() else {
        return Err(SignerError::Config(format!(
            "no public key labelled {label:?} beside the private key (its address cannot be known)"
        )));
    };
    let attrs = session
        .get_attributes(*handle, &[AttributeType::EcPoint, AttributeType::EcParams])
        .map_err(|e| hsm_err("C_GetAttributeValue", e))?;
    let mut point = None;
    for attr in attrs {
        match attr {
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::EcParams(p) if p != SECP256K1_PARAMS => {
                return Err(SignerError::Config(format!(
                    "key {label:?} is not on secp256k1"
                )))
            }
            _ => {}
        }
    }
    let point =
        point.ok_or_else(|| SignerError::Config(format!("key {label:?} has no CKA_EC_POINT")))?;
    parse_ec_point(&point).ok_or_else(|| {
        SignerError::Config(format!(
            "key {label:?}: CKA_EC_POINT is not a secp256k1 point"
        ))
    })
}

/// A `CKA_EC_POINT`: the SEC1 point, DER-wrapped in an OCTET STRING by most modules (as the
/// standard says) and bare by some.
fn parse_ec_point(bytes: &[u8]) -> Option<VerifyingKey> {
    if let Ok(k) = VerifyingKey::from_sec1_bytes(bytes) {
        return Some(k);
    }
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => {
            VerifyingKey::from_sec1_bytes(rest).ok()
        }
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => {
            VerifyingKey::from_sec1_bytes(rest).ok()
        }
        _ => None,
    }
}

/// The logged-in session and the key handle, reopened when the token drops them.
struct Token {
    pkcs11: Pkcs11,
    settings: HsmSettings,
    pin: Zeroizing<String>,
    session: Option<(Session, ObjectHandle)>,
}

impl Token {
    fn session(&mut self) -> Result<&(Session, ObjectHandle), SignerError> {
        if self.session.is_none() {
            let slot = find_slot(&self.pkcs11, &self.settings.token)?;
            let session = open_session(&self.pkcs11, slot, &self.pin)?;
            let key = find_private_key(&session, &self.settings.key_label)?.ok_or_else(|| {
                SignerError::Config(format!(
                    "no private key labelled {:?} on {}; create one with `mpc-dvn hsm init`",
                    self.settings.key_label, self.settings.token
                ))
            })?;
            self.session = Some((session, key));
        }
        self.session
            .as_ref()
            .ok_or_else(|| SignerError::Config("no session".into()))
    }

    /// Raw `CKM_ECDSA` over `digest`: r ‖ s. Reopens the session once if the token lost it.
    fn sign(&mut self, digest: &B256) -> Result<Vec<u8>, SignerError> {
        for reopen in [false, true] {
            if reopen {
                self.session = None;
            }
            let (session, key) = self.session()?;
            match session.sign(&Mechanism::Ecdsa, *key, digest.as_slice()) {
                Ok(sig) => return Ok(sig),
                Err(CkError::Pkcs11(
                    RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent
                    | RvError::UserNotLoggedIn
                    | RvError::ObjectHandleInvalid
                    | RvError::KeyHandleInvalid,
                    _,
                )) if !reopen => {
                    tracing::warn!(token = %self.settings.token, "HSM session lost; reopening");
                }
                Err(e) => return Err(hsm_err("C_Sign", e)),
            }
        }
        Err(SignerError::Hsm {
            operation: "C_Sign",
            reason: "the session was lost twice".into(),
        })
    }
}

/// A DVN signer (or the submitter's account) on a PKCS#11 token.
#[derive(Clone)]
pub struct HsmSigner {
    address: Address,
    token: Arc<Mutex<Token>>,
    label: String,
}

impl std::fmt::Debug for HsmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSigner")
            .field("key", &self.label)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn blocking_err(e: tokio::task::JoinError) -> SignerError {
    SignerError::Hsm {
        operation: "blocking task",
        reason: e.to_string(),
    }
}

impl HsmSigner {
    /// Opens the token, logs in and finds the key; fails with what is wrong (module, token,
    /// PIN, key label).
    pub async fn connect(settings: HsmSettings) -> Result<Self, SignerError> {
        tokio::task::spawn_blocking(move || Self::open(settings))
            .await
            .map_err(blocking_err)?
    }

    fn open(settings: HsmSettings) -> Result<Self, SignerError> {
        let pin = settings.pin.read()?;
        let pkcs11 = module(&settings.module)?;
        let label = format!("{} key {:?}", settings.token, settings.key_label);
        let mut token = Token {
            pkcs11,
            settings,
            pin,
            session: None,
        };
        let key_label = token.settings.key_label.clone();
        let address = {
            let (session, _) = token.session()?;
            address_of(&public_key(session, &key_label)?)
        };
        Ok(Self {
            address,
            token: Arc::new(Mutex::new(token)),
            label,
        })
    }
}

impl Signer for HsmSigner {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_digest(&self, digest: B256) -> Result<EthSignature, SignerError> {
        let token = Arc::clone(&self.token);
        let raw = tokio::task::spawn_blocking(move || {
            let mut token = token.lock().map_err(|_| SignerError::Hsm {
                operation: "C_Sign",
                reason: "session lock poisoned".into(),
            })?;
            token.sign(&digest)
        })
        .await
        .map_err(blocking_err)??;
        if raw.len() != 64 {
            return Err(SignerError::BadSignature(format!(
                "CKM_ECDSA answered {} bytes, not r ‖ s (64)",
                raw.len()
            )));
        }
        eth_signature(digest, &raw[..32], &raw[32..], self.address)
    }

    async fn check(&self) -> Result<(), SignerError> {
        let token = Arc::clone(&self.token);
        tokio::task::spawn_blocking(move || {
            let mut token = token.lock().map_err(|_| SignerError::Hsm {
                operation: "C_GetSessionInfo",
                reason: "session lock poisoned".into(),
            })?;
            let alive = match token.session.as_ref() {
                Some((s, _)) => s.get_session_info().is_ok(),
                None => false,
            };
            if !alive {
                token.session = None;
                token.session()?;
            }
            Ok(())
        })
        .await
        .map_err(blocking_err)?
    }
}

/// What `mpc-dvn hsm init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOutcome {
    /// The key's Ethereum address.
    pub address: Address,
    /// Whether a token was initialised.
    pub token_created: bool,
    /// Whether the key pair was generated (false: it was there already).
    pub key_created: bool,
}

/// Makes sure the token holds a secp256k1 key pair labelled `settings.key_label`,
/// generating it on the token (the private key never leaves it) when absent. With
/// `so_pin`, a token labelled as `settings.token` names that is not there yet is first
/// initialised on a free slot, with the user PIN set (SoftHSM2 and other soft tokens).
pub async fn init_key(
    settings: HsmSettings,
    so_pin: Option<Zeroizing<String>>,
) -> Result<InitOutcome, SignerError> {
    tokio::task::spawn_blocking(move || init_key_blocking(&settings, so_pin))
        .await
        .map_err(blocking_err)?
}

fn init_key_blocking(
    settings: &HsmSettings,
    so_pin: Option<Zeroizing<String>>,
) -> Result<InitOutcome, SignerError> {
    let pin = settings.pin.read()?;
    let pkcs11 = module(&settings.module)?;
    let mut token_created = false;
    let slot = match (find_slot(&pkcs11, &settings.token), &settings.token, so_pin) {
        (Ok(slot), _, _) => slot,
        (Err(_), TokenSelector::Label(label), Some(so_pin)) => {
            let slot = free_slot(&pkcs11)?;
            let so = AuthPin::new(so_pin.as_str().into());
            pkcs11
                .init_token(slot, &so, label)
                .map_err(|e| hsm_err("C_InitToken", e))?;
            let session = pkcs11
                .open_rw_session(slot)
                .map_err(|e| hsm_err("C_OpenSession", e))?;
            session
                .login(UserType::So, Some(&so))
                .map_err(|e| hsm_err("C_Login (SO)", e))?;
            session
                .init_pin(&AuthPin::new(pin.as_str().into()))
                .map_err(|e| hsm_err("C_InitPIN", e))?;
            token_created = true;
            slot
        }
        (Err(e), _, _) => return Err(e),
    };
    let session = open_session(&pkcs11, slot, &pin)?;
    let label = settings.key_label.as_str();
    let key_created = if find_private_key(&session, label)?.is_some() {
        false
    } else {
        let id = label.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(SECP256K1_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| hsm_err("C_GenerateKeyPair", e))?;
        true
    };
    let address = address_of(&public_key(&session, label)?);
    Ok(InitOutcome {
        address,
        token_created,
        key_created,
    })
}

/// A slot whose token is not initialised yet.
fn free_slot(pkcs11: &Pkcs11) -> Result<Slot, SignerError> {
    for slot in pkcs11
        .get_slots_with_token()
        .map_err(|e| hsm_err("C_GetSlotList", e))?
    {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|e| hsm_err("C_GetTokenInfo", e))?;
        if !info.token_initialized() {
            return Ok(slot);
        }
    }
    Err(SignerError::Config(
        "no free slot to initialise a token on".into(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::signer::recover_address;
    use std::os::unix::fs::PermissionsExt;

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    /// A SoftHSM2 configuration in a temporary directory, set for this process before the
    /// module is first loaded; `None` (the test skips) when SoftHSM2 is not installed,
    /// except under CI, where it must be.
    fn softhsm() -> Option<PathBuf> {
        static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
        if !Path::new(SOFTHSM).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "SoftHSM2 is required under CI: apt-get install softhsm2"
            );
            eprintln!("skipped: SoftHSM2 is not installed ({SOFTHSM}); apt-get install softhsm2");
            return None;
        }
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).unwrap();
            let conf = dir.path().join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            std::env::set_var("SOFTHSM2_CONF", &conf);
            Some(dir)
        });
        dir.as_ref().map(|d| d.path().to_owned())
    }

    fn pin_file(dir: &Path, name: &str, pin: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{pin}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn settings(dir: &Path, token: &str, key: &str, pin: &str) -> HsmSettings {
        HsmSettings {
            module: SOFTHSM.into(),
            token: TokenSelector::Label(token.into()),
            key_label: key.into(),
            pin: PinSource::File(pin_file(dir, &format!("{token}-{pin}"), pin)),
        }
    }

    #[tokio::test]
    async fn a_softhsm_key_signs_low_s_and_recovers_to_its_address() {
        let Some(dir) = softhsm() else { return };
        let s = settings(&dir, "dvn-sign", "dvn-signer", "1234");
        let made = init_key(s.clone(), Some(Zeroizing::new("5678".into())))
            .await
            .unwrap();
        assert!(made.token_created && made.key_created);
        // A second init finds the key and changes nothing.
        let again = init_key(s.clone(), None).await.unwrap();
        assert_eq!(again.address, made.address);
        assert!(!again.key_created && !again.token_created);

        let signer = HsmSigner::connect(s).await.unwrap();
        assert_eq!(signer.address(), made.address);
        signer.check().await.unwrap();
        for i in 0..8u8 {
            let digest = alloy::primitives::keccak256([i]);
            let sig = signer.sign_digest(digest).await.unwrap();
            let bytes = sig.to_bytes();
            assert!(matches!(bytes[64], 27 | 28));
            // Low s: the top bit of s is clear and s <= n/2.
            let s = k256::ecdsa::Signature::from_slice(&bytes[..64]).unwrap();
            assert!(s.normalize_s().is_none(), "high s");
            assert_eq!(recover_address(digest, &bytes).unwrap(), signer.address());
        }
        let sig = signer.sign_eip191(B256::repeat_byte(1)).await.unwrap();
        let digest = crate::execute::eip191_digest(B256::repeat_byte(1));
        assert_eq!(
            recover_address(digest, &sig.to_bytes()).unwrap(),
            signer.address()
        );
    }

    #[tokio::test]
    async fn a_wrong_pin_a_missing_key_or_token_fail_at_start_saying_which() {
        let Some(dir) = softhsm() else { return };
        let s = settings(&dir, "dvn-errors", "present", "1234");
        init_key(s.clone(), Some(Zeroizing::new("5678".into())))
            .await
            .unwrap();

        let wrong = settings(&dir, "dvn-errors", "present", "0000");
        let err = HsmSigner::connect(wrong).await.unwrap_err().to_string();
        assert!(
            err.contains("C_Login") && err.contains("PIN is incorrect"),
            "{err}"
        );
        assert!(!err.contains("0000"), "the PIN leaked: {err}");

        let missing = settings(&dir, "dvn-errors", "absent", "1234");
        let err = HsmSigner::connect(missing).await.unwrap_err().to_string();
        assert!(err.contains("no private key labelled \"absent\""), "{err}");

        let no_token = settings(&dir, "no-such-token", "present", "1234");
        let err = HsmSigner::connect(no_token).await.unwrap_err().to_string();
        assert!(err.contains("no token \"no-such-token\""), "{err}");

        let no_pin = HsmSettings {
            pin: PinSource::Env("MPC_DVN_TEST_UNSET_PIN".into()),
            ..s
        };
        let err = HsmSigner::connect(no_pin).await.unwrap_err().to_string();
        assert!(err.contains("MPC_DVN_TEST_UNSET_PIN is not set"), "{err}");
    }

    #[test]
    fn ec_points_are_read_bare_or_der_wrapped() {
        let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let bare = point.as_bytes().to_vec();
        let mut der = vec![0x04, bare.len() as u8];
        der.extend_from_slice(&bare);
        assert_eq!(parse_ec_point(&bare).unwrap(), *key.verifying_key());
        assert_eq!(parse_ec_point(&der).unwrap(), *key.verifying_key());
        assert!(parse_ec_point(&[0x04, 3, 1, 2]).is_none());
    }
}
