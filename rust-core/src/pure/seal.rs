//! Encryption at rest of the stored token (`FEDERATED_IDENTITY.TOKEN`).
//!
//! Every value this core hands back for storage is sealed with AES-256-GCM when a keyring is
//! configured: `ftk1.<kid>.<base64url(nonce || ciphertext || tag)>`, a fresh random 96-bit
//! nonce per value, and associated data that binds the value to its row (realm id, Keycloak
//! user id, IdP alias and the user's id at the IdP, `FederatedIdentityModel.getUserId()`), to
//! the format version and to the key id. Format 1 values (alias and subject only) are still
//! read and sealed in format 2 on their next write. While encrypting, a plain value in a row is
//! refused (`storage_plaintext_row`) unless plain rows are allowed (a migration window). The first key of the keyring encrypts; every key decrypts (rotation).
//!
//! Decryption is central: [`around`] opens `stored` before any op looks at it and seals every
//! `store` the op returns, so no op (present or future) sees or returns ciphertext, and none
//! returns a plaintext value for storage while encryption is on. Key material lives in
//! [`Zeroizing`] buffers and never appears in `Debug` output; the key file is read by the core
//! itself, so keys never pass through Java strings.

use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::contract::{Answer, Op, RedactedJson, Request};
use crate::errors::ErrorCode;
use crate::retrieve::err_answer;

/// Format (and AAD) version of new values; their prefix is `ftk2.`. Format 2 binds a value to
/// the realm id, the Keycloak user id, the IdP alias and the user's id at the IdP:
/// `ftk2.<kid>.<base64url(key check (6) || row tag (12) || nonce (12) || ciphertext || tag (16))>`.
pub const FORMAT: &str = "ftk2";
const PREFIX: &str = "ftk2.";
/// Format 1 (alias and subject only) is still read; such values are sealed in format 2 on the
/// next write.
pub const FORMAT_V1: &str = "ftk1";
const PREFIX_V1: &str = "ftk1.";
const KCV_LEN: usize = 6;
const ROW_TAG_LEN: usize = 12;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// A key file larger than this is refused (it is a handful of lines).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
const MAX_KEYS: usize = 32;

/// `encrypt`: new values are sealed with the first key. `decrypt-only`: new values are
/// written plain (the uninstall path), existing sealed values still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Encrypt,
    DecryptOnly,
}

impl Mode {
    pub fn parse(s: Option<&str>) -> Result<Mode, String> {
        match s.map(str::trim).unwrap_or("") {
            "" | "encrypt" => Ok(Mode::Encrypt),
            "decrypt-only" | "decrypt_only" => Ok(Mode::DecryptOnly),
            other => Err(format!("unknown mode '{other}' (use encrypt or decrypt-only)")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Encrypt => "encrypt",
            Mode::DecryptOnly => "decrypt-only",
        }
    }
}

/// One AES-256 key and its id. `Debug` shows the id only; the key is wiped on drop.
pub struct StorageKey {
    kid: String,
    key: Zeroizing<[u8; 32]>,
}

impl StorageKey {
    pub fn new(kid: &str, key: [u8; 32]) -> Result<StorageKey, String> {
        check_kid(kid)?;
        Ok(StorageKey { kid: kid.to_string(), key: Zeroizing::new(key) })
    }
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageKey").field("kid", &self.kid).field("key", &"[redacted]").finish()
    }
}

/// The configured keys: the first encrypts, all decrypt.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<StorageKey>,
    mode: Mode,
    /// Plain rows are used while encrypting (migration window).
    allow_plaintext: bool,
}

impl Keyring {
    pub fn new(keys: Vec<StorageKey>, mode: Mode) -> Result<Keyring, String> {
        if keys.is_empty() {
            return Err("no keys".into());
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid == k.kid) {
                return Err(format!("key id '{}' appears twice", k.kid));
            }
        }
        Ok(Keyring { keys, mode, allow_plaintext: false })
    }
    /// Plain rows are used while encrypting (a migration window) instead of refused.
    pub fn allowing_plaintext(mut self, allow: bool) -> Keyring {
        self.allow_plaintext = allow;
        self
    }
    pub fn allows_plaintext(&self) -> bool {
        self.allow_plaintext
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn primary(&self) -> &StorageKey {
        &self.keys[0]
    }
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }
    fn key(&self, kid: &str) -> Option<&StorageKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
    fn encrypting(&self) -> bool {
        self.mode == Mode::Encrypt
    }
}

/// The process-wide storage state, set by the `keyring` op at start-up.
#[derive(Debug)]
pub enum KeyState {
    /// No keys configured: values are written plain; a sealed value cannot be read.
    Off,
    Ready(Keyring),
    /// Keys were configured but could not be loaded: nothing that reads or writes the stored
    /// token runs (fail closed, so nothing is written plain by mistake).
    Failed(String),
}

static STATE: RwLock<KeyState> = RwLock::new(KeyState::Off);

/// The row a value belongs to: the realm id, the Keycloak user id, the IdP alias and the
/// user's id at the IdP (contract 1: `realm` and `user` are additions; absent counts as "").
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Binding {
    pub alias: String,
    pub subject: String,
    #[serde(default)]
    pub realm: String,
    #[serde(default)]
    pub user: String,
}

/// `"keyring": {"key_file": "/path", "mode": "encrypt"}` of the `keyring` op.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyringRequest {
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// While encrypting, plain values found in rows are used (and sealed on their next write)
    /// instead of refused (`storage_plaintext_row`): a migration window. Default false.
    #[serde(default)]
    pub allow_plaintext: Option<bool>,
}

/// A storage problem and its code (`storage_key_error`, `storage_binding_mismatch`,
/// `storage_plaintext_row`); nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String, pub ErrorCode);

fn check_kid(kid: &str) -> Result<(), String> {
    if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("a key id must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'".into());
    }
    Ok(())
}

/// 32 bytes from base64 (standard or URL-safe, padded or not) or 64 hex digits.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let t = text.trim().trim_end_matches('=');
    let bytes: Zeroizing<Vec<u8>> = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Zeroizing::new((0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0)).collect())
    } else {
        Zeroizing::new(STANDARD_NO_PAD.decode(t).or_else(|_| URL_SAFE_NO_PAD.decode(t)).ok()?)
    };
    let arr: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(arr)
}

/// The key file: one key per line, `<kid> <key>` (key: 32 bytes in base64 or hex, e.g.
/// `openssl rand -base64 32`); blank lines and lines starting with `#` are ignored; the first
/// key encrypts. Errors name the line number, never its content.
pub fn parse_key_file(text: &str) -> Result<Vec<StorageKey>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(kid), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {} is not '<key id> <key>'", n + 1));
        };
        check_kid(kid).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some(bytes) = decode_key(key) else {
            return Err(format!(
                "line {}: the key is not 32 bytes in base64 or hex (e.g. openssl rand -base64 32)",
                n + 1
            ));
        };
        keys.push(StorageKey::new(kid, bytes)?);
        if keys.len() > MAX_KEYS {
            return Err(format!("more than {MAX_KEYS} keys"));
        }
    }
    if keys.is_empty() {
        return Err("it holds no key".into());
    }
    Ok(keys)
}

/// Reads and parses the key file; the second value lists warnings (e.g. loose permissions).
pub fn load_key_file(path: &str) -> Result<(Vec<StorageKey>, Vec<String>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it ({})", e.kind()))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("it is larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    let mut warnings = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warnings.push(format!(
                "the storage key file '{path}' can be read by group or others; restrict it (chmod 600) to Keycloak's user"
            ));
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read it ({})", e.kind()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    Ok((parse_key_file(text)?, warnings))
}

/// The associated data of format 1 (read only): format, key id, alias and subject, each
/// length-prefixed.
fn aad_v1(kid: &str, b: &Binding) -> Vec<u8> {
    length_prefixed(&[FORMAT_V1, kid, b.alias.as_str(), b.subject.as_str()])
}

/// The associated data of format 2: format, key id, realm id, Keycloak user id, alias and
/// subject, each length-prefixed.
fn aad_v2(kid: &str, b: &Binding) -> Vec<u8> {
    length_prefixed(&[FORMAT, kid, b.realm.as_str(), b.user.as_str(), b.alias.as_str(), b.subject.as_str()])
}

fn length_prefixed(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac as _;
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <HmacSha256 as hmac::Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Key check value: tells "another key under the same id" from "another row", not secret.
fn key_check(key: &StorageKey) -> [u8; KCV_LEN] {
    let full = mac(key.key.as_slice(), &[b"fresh-token ftk2 key check"]);
    let mut out = [0u8; KCV_LEN];
    out.copy_from_slice(&full[..KCV_LEN]);
    out
}

/// Row tag: a keyed hash of the format-2 associated data, so that a value read from another
/// row is told apart from a damaged one (`storage_binding_mismatch`). Reveals nothing of the
/// binding without the key.
fn row_tag(key: &StorageKey, aad: &[u8]) -> [u8; ROW_TAG_LEN] {
    let sub = Zeroizing::new(mac(key.key.as_slice(), &[b"fresh-token ftk2 row tag key"]));
    let full = mac(sub.as_slice(), &[aad]);
    let mut out = [0u8; ROW_TAG_LEN];
    out.copy_from_slice(&full[..ROW_TAG_LEN]);
    out
}

/// True for a value in one of our sealed formats (`ftk1.`, `ftk2.`).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX) || stored.starts_with(PREFIX_V1)
}

/// The key id of a sealed value (not secret), if it has one.
pub fn kid_of(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(PREFIX)
        .or_else(|| stored.strip_prefix(PREFIX_V1))?
        .split('.')
        .next()
        .filter(|k| check_kid(k).is_ok())
}

/// Seals `plain` with the keyring's first key, in format 2 (bound to realm, Keycloak user,
/// alias and subject). An empty Keycloak user is allowed only at a first login, before the
/// user exists; such a value is re-sealed with the user as soon as it is known.
pub fn seal(ring: &Keyring, b: &Binding, plain: &str) -> Result<String, StorageError> {
    check_binding(b)?;
    let key = ring.primary();
    let cipher = Aes256Gcm::new_from_slice(key.key.as_slice())
        .map_err(|_| StorageError("The storage key cannot be used.".into(), ErrorCode::StorageKeyError))?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|_| {
        StorageError("No random nonce could be drawn from the operating system.".into(), ErrorCode::StorageKeyError)
    })?;
    let aad = aad_v2(&key.kid, b);
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad })
        .map_err(|_| StorageError("The stored token could not be encrypted.".into(), ErrorCode::StorageKeyError))?;
    let mut blob = Vec::with_capacity(KCV_LEN + ROW_TAG_LEN + NONCE_LEN + ct.len());
    blob.extend_from_slice(&key_check(key));
    blob.extend_from_slice(&row_tag(key, &aad));
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(format!("{PREFIX}{}.{}", key.kid, URL_SAFE_NO_PAD.encode(blob)))
}

fn check_binding(b: &Binding) -> Result<(), StorageError> {
    if b.alias.is_empty() || b.subject.is_empty() || b.realm.is_empty() {
        return Err(StorageError(
            "The request names no row (binding realm, alias and subject) to bind the stored token to.".into(),
            ErrorCode::StorageKeyError,
        ));
    }
    Ok(())
}

/// An opened value and whether it must be sealed again on the next write: format 1 (no
/// realm or Keycloak user in its associated data) or sealed before the Keycloak user existed.
#[derive(Debug)]
pub struct Opened {
    pub plain: String,
    pub rewrap: bool,
}

fn malformed(format: &str) -> StorageError {
    StorageError(
        format!("The stored token is an encrypted value ({format}) that is malformed."),
        ErrorCode::StorageKeyError,
    )
}

/// Opens a sealed value; a plain one is returned as it is.
pub fn open(state: &KeyState, b: Option<&Binding>, stored: &str) -> Result<String, StorageError> {
    open_row(state, b, stored).map(|o| o.plain)
}

/// Opens a sealed value of either format and says whether it must be sealed again.
pub fn open_row(state: &KeyState, b: Option<&Binding>, stored: &str) -> Result<Opened, StorageError> {
    let (format, rest) = if let Some(r) = stored.strip_prefix(PREFIX) {
        (FORMAT, r)
    } else if let Some(r) = stored.strip_prefix(PREFIX_V1) {
        (FORMAT_V1, r)
    } else {
        return Ok(Opened { plain: stored.to_string(), rewrap: false });
    };
    let Some((kid, body)) = rest.split_once('.') else {
        return Err(malformed(format));
    };
    if check_kid(kid).is_err() {
        return Err(malformed(format));
    }
    let ring = match state {
        KeyState::Ready(r) => r,
        KeyState::Off => {
            return Err(StorageError(
                format!(
                    "The stored token is encrypted with storage key '{kid}', but no storage keys are configured on this Keycloak node."
                ),
                ErrorCode::StorageKeyError,
            ));
        }
        KeyState::Failed(why) => return Err(failed(why)),
    };
    let Some(key) = ring.key(kid) else {
        return Err(StorageError(
            format!(
                "The stored token is encrypted with storage key '{kid}', which is not among this node's storage keys ({}).",
                ring.kids().join(", ")
            ),
            ErrorCode::StorageKeyError,
        ));
    };
    let Some(b) = b else {
        return Err(StorageError(
            "The request names no row (binding alias and subject) to decrypt the stored token for.".into(),
            ErrorCode::StorageKeyError,
        ));
    };
    if b.alias.is_empty() || b.subject.is_empty() {
        return Err(StorageError(
            "The request names no row (binding alias and subject) to decrypt the stored token for.".into(),
            ErrorCode::StorageKeyError,
        ));
    }
    let blob = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed(format))?;
    let cipher = Aes256Gcm::new_from_slice(key.key.as_slice())
        .map_err(|_| StorageError("The storage key cannot be used.".into(), ErrorCode::StorageKeyError))?;
    let undecryptable = || {
        StorageError(
            format!(
                "The stored token could not be decrypted with storage key '{kid}': the key is not the one it was encrypted with, \
                 or the value was altered or belongs to another user or identity provider."
            ),
            ErrorCode::StorageKeyError,
        )
    };
    let (aad, ct, rewrap) = if format == FORMAT_V1 {
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed(format));
        }
        (aad_v1(kid, b), &blob[..], true)
    } else {
        if blob.len() < KCV_LEN + ROW_TAG_LEN + NONCE_LEN + TAG_LEN {
            return Err(malformed(format));
        }
        let (kcv, rest) = blob.split_at(KCV_LEN);
        let (tag, ct) = rest.split_at(ROW_TAG_LEN);
        if kcv != key_check(key) {
            return Err(undecryptable());
        }
        let exact = aad_v2(kid, b);
        if tag == row_tag(key, &exact) {
            (exact, ct, false)
        } else {
            // Sealed at a first login, before the Keycloak user existed (user ""): opens for
            // that realm, alias and subject, and is sealed with the user on the next write.
            let pending = Binding { user: String::new(), ..b.clone() };
            let pending_aad = aad_v2(kid, &pending);
            if !b.user.is_empty() && tag == row_tag(key, &pending_aad) {
                (pending_aad, ct, true)
            } else {
                return Err(StorageError(
                    "The stored token is encrypted for another row (another realm, Keycloak user, identity provider or user at \
                     the identity provider) than the one it was read from: it was moved or copied in the database and is not \
                     used. The user signs in through the identity provider again to replace it."
                        .into(),
                    ErrorCode::StorageBindingMismatch,
                ));
            }
        }
    };
    let plain = cipher
        .decrypt(Nonce::from_slice(&ct[..NONCE_LEN]), Payload { msg: &ct[NONCE_LEN..], aad: &aad })
        .map_err(|_| undecryptable())?;
    let plain = String::from_utf8(plain).map_err(|_| {
        StorageError("The decrypted stored token is not UTF-8 text.".into(), ErrorCode::StorageKeyError)
    })?;
    Ok(Opened { plain, rewrap })
}

/// While encrypting, a plain value in a row is refused unless plain rows are allowed
/// (`allow-plaintext`, a migration window); empty rows are no token at all.
fn refuse_plaintext(state: &KeyState, stored: &str) -> Result<(), StorageError> {
    if let KeyState::Ready(r) = state {
        if r.encrypting() && !r.allow_plaintext && !stored.is_empty() && !is_sealed(stored) {
            return Err(StorageError(
                "The stored token of this row is not encrypted, but storage encryption is on: it is refused (a plain value \
                 may have been written by someone else than Keycloak). During a migration, allow plain rows with \
                 --spi-admin-realm-restapi-extension--fresh-token-storage--allow-plaintext=true and convert them with \
                 POST /admin/realms/{realm}/fresh-token-storage/encrypt."
                    .into(),
                ErrorCode::StoragePlaintextRow,
            ));
        }
    }
    Ok(())
}

fn failed(why: &str) -> StorageError {
    StorageError(
        format!(
            "The storage keys of this Keycloak node could not be loaded at start-up ({why}); no stored token is read or written."
        ),
        ErrorCode::StorageKeyError,
    )
}

fn storage_err(e: StorageError, diag: Vec<String>) -> Answer {
    err_answer(e.1, e.0, None, None, diag)
}

/// The value as it is to be stored now: sealed with the first key while encrypting, plain
/// otherwise (no keys, `decrypt-only`).
pub fn storage_form(state: &KeyState, b: Option<&Binding>, plain: &str) -> Result<String, StorageError> {
    match state {
        KeyState::Ready(r) if r.encrypting() => {
            let Some(b) = b else {
                return Err(StorageError(
                    "The request names no row (binding alias and subject) to bind the stored token to.".into(),
                    ErrorCode::StorageKeyError,
                ));
            };
            seal(r, b, plain)
        }
        KeyState::Ready(_) | KeyState::Off => Ok(plain.to_string()),
        KeyState::Failed(why) => Err(failed(why)),
    }
}

/// Runs one op that reads `stored`: opens it first, seals any `store` of the answer.
/// On a storage failure nothing runs and the answer carries no `store`: the row is untouched.
pub fn around(state: &KeyState, req: &mut Request, op: impl FnOnce(&Request) -> Answer) -> Answer {
    if let KeyState::Failed(why) = state {
        return storage_err(failed(why), vec![]);
    }
    let binding = req.binding.clone();
    let bound = binding.as_ref().is_some_and(|b| check_binding(b).is_ok());
    if matches!(state, KeyState::Ready(r) if r.encrypting()) && !bound {
        return err_answer(
            ErrorCode::InternalError,
            "Storage encryption is on, but the request names no row (binding realm, alias and subject).",
            None,
            None,
            vec![],
        );
    }
    if let Err(e) = refuse_plaintext(state, req.stored.expose()) {
        return storage_err(e, vec!["storage: a plain row while encrypting; nothing is written".into()]);
    }
    if is_sealed(req.stored.expose()) {
        match open_row(state, binding.as_ref(), req.stored.expose()) {
            Ok(o) => req.stored = crate::secret::TokenValue::new(o.plain),
            Err(e) => {
                return storage_err(
                    e,
                    vec!["storage: the stored token could not be opened; nothing is written".into()],
                );
            }
        }
    }
    let mut answer = op(req);
    let store = match &mut answer {
        Answer::Ok(ok) => &mut ok.store,
        Answer::Err(err) => &mut err.store,
        // Status only: nothing to store.
        Answer::Inspect(_) => return answer,
    };
    if let Some(plain) = store.take() {
        match storage_form(state, binding.as_ref(), &plain.0) {
            Ok(v) => *store = Some(RedactedJson(v)),
            Err(e) => {
                return storage_err(
                    e,
                    vec!["storage: the new stored token could not be sealed; nothing is written".into()],
                );
            }
        }
        let how = if store.as_ref().is_some_and(|s| is_sealed(&s.0)) { "encrypted" } else { "plain" };
        match &mut answer {
            Answer::Ok(ok) => ok.diag.push(format!("storage: the new value is written {how}")),
            Answer::Err(err) => err.diag.push(format!("storage: the new value is written {how}")),
            Answer::Inspect(_) => {}
        }
    }
    answer
}

/// The storage state of this process.
pub fn with_state<T>(f: impl FnOnce(&KeyState) -> T) -> T {
    match STATE.read() {
        Ok(g) => f(&g),
        Err(poisoned) => f(&poisoned.into_inner()),
    }
}

fn set_state(s: KeyState) {
    match STATE.write() {
        Ok(mut g) => *g = s,
        Err(poisoned) => *poisoned.into_inner() = s,
    }
}

/// The `keyring`, `seal` and `unseal` ops (their answers are not token answers).
pub fn handle_op(req: &Request) -> String {
    if req.v != crate::contract::CONTRACT_VERSION {
        return err_answer(ErrorCode::InternalError, "Unsupported contract version.", None, None, vec![]).to_json();
    }
    match req.op {
        Op::Keyring => keyring_op(req.keyring.clone().unwrap_or_default()),
        Op::Seal | Op::Unseal => with_state(|state| convert_op(state, req)),
        _ => err_answer(ErrorCode::InternalError, "Not a storage op.", None, None, vec![]).to_json(),
    }
}

/// `keyring`: (re)configures the process-wide keys from the key file. An empty or absent
/// `key_file` switches encryption off. A failure leaves the process fail-closed.
pub fn keyring_op(k: KeyringRequest) -> String {
    let (state, answer) = build_state(&k);
    set_state(state);
    answer
}

/// The state a `keyring` request describes, and the answer to it.
pub fn build_state(k: &KeyringRequest) -> (KeyState, String) {
    let path = k.key_file.as_deref().map(str::trim).unwrap_or("");
    let mode = Mode::parse(k.mode.as_deref());
    if path.is_empty() {
        if let Err(e) = mode {
            return fail(format!("storage mode: {e}"));
        }
        let a = json!({"ok": {"action": "configured", "keyring": {"state": "off"}, "diag": ["storage: no key file: tokens are stored plain"]}});
        return (KeyState::Off, a.to_string());
    }
    let mode = match mode {
        Ok(m) => m,
        Err(e) => return fail(format!("storage mode: {e}")),
    };
    let allow_plaintext = k.allow_plaintext.unwrap_or(false);
    match load_key_file(path)
        .and_then(|(keys, warnings)| Ok((Keyring::new(keys, mode)?.allowing_plaintext(allow_plaintext), warnings)))
    {
        Ok((ring, mut warnings)) => {
            let kids = ring.kids();
            warnings.insert(
                0,
                format!("storage: {} key(s) loaded, first key '{}', mode {}", kids.len(), kids[0], mode.as_str()),
            );
            if allow_plaintext && mode == Mode::Encrypt {
                warnings.push(
                    "storage: plain rows are accepted while encrypting (allow-plaintext, a migration window): convert them \
                     with POST .../fresh-token-storage/encrypt and switch the option off"
                        .to_string(),
                );
            }
            let a = json!({"ok": {"action": "configured",
                "keyring": {"state": "ready", "mode": mode.as_str(), "primary": kids[0], "kids": kids,
                    "allow_plaintext": allow_plaintext},
                "diag": warnings}});
            (KeyState::Ready(ring), a.to_string())
        }
        Err(e) => fail(format!("the storage key file '{path}' cannot be used: {e}")),
    }
}

fn fail(why: String) -> (KeyState, String) {
    let answer = storage_err(failed(&why), vec![]).to_json();
    (KeyState::Failed(why), answer)
}

/// `seal`: the value in its storage form now (sealed with the first key while encrypting,
/// plain otherwise). `unseal`: the value plain. `action` says what happened: `unchanged`
/// (already in the wanted form: nothing to write), `encrypted`, `reencrypted` (under the
/// first key), `decrypted`. With `previous` (the row's current value), a login answer without
/// a refresh token keeps the previous refresh token, as stock Keycloak does.
pub fn convert_op(state: &KeyState, req: &Request) -> String {
    let b = req.binding.as_ref();
    let stored = req.stored.expose();
    let (plain, rewrap) = match open_row(state, b, stored) {
        Ok(o) => (Zeroizing::new(o.plain), o.rewrap),
        Err(e) => return storage_err(e, vec![]).to_json(),
    };
    let mut plain = plain;
    let mut diag = Vec::new();
    let mut merged = false;
    if let Some(prev) = req.previous.as_ref().filter(|p| !p.is_empty()) {
        if refuse_plaintext(state, prev.expose()).is_err() {
            diag.push("storage: the previous value is plain while encrypting; not merged".to_string());
        } else {
            match open(state, b, prev.expose()) {
                Ok(prev_plain) => {
                    if let Some(with_rt) = keep_previous_refresh_token(&plain, &prev_plain) {
                        plain = Zeroizing::new(with_rt);
                        merged = true;
                        diag.push("storage: kept the previous refresh token (the new answer has none)".to_string());
                    }
                }
                Err(_) => diag.push("storage: the previous value could not be opened; not merged".to_string()),
            }
        }
    }
    let (out, action) = if req.op == Op::Unseal {
        let action = if is_sealed(stored) { "decrypted" } else { "unchanged" };
        (plain.to_string(), action)
    } else {
        let already_primary = matches!(state, KeyState::Ready(r) if r.encrypting()
            && stored.starts_with(PREFIX) && kid_of(stored) == Some(r.primary().kid()));
        if already_primary && !merged && !rewrap {
            (stored.to_string(), "unchanged")
        } else {
            match storage_form(state, b, &plain) {
                Ok(v) => {
                    let action = match (is_sealed(stored), is_sealed(&v)) {
                        (false, true) => "encrypted",
                        (true, true) => "reencrypted",
                        (true, false) => "decrypted",
                        (false, false) => {
                            if merged {
                                "merged"
                            } else {
                                "unchanged"
                            }
                        }
                    };
                    (v, action)
                }
                Err(e) => return storage_err(e, diag).to_json(),
            }
        }
    };
    let mut ok = Map::new();
    ok.insert("action".into(), Value::from(action));
    ok.insert("store".into(), Value::from(out));
    ok.insert("diag".into(), Value::from(diag));
    json!({ "ok": ok }).to_string()
}

/// Stock Keycloak keeps the stored refresh token when a new login answer has none; the
/// stored value is sealed, so Keycloak cannot look inside: we do it here.
fn keep_previous_refresh_token(new_plain: &str, prev_plain: &str) -> Option<String> {
    let mut new: Map<String, Value> = serde_json::from_str(new_plain).ok()?;
    if new.get("refresh_token").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let prev = crate::stored::StoredToken::parse(prev_plain).ok()?;
    let rt = prev.refresh_token()?.to_string();
    new.insert("refresh_token".into(), Value::from(rt));
    if let Some(v) = prev.fields.get("refresh_expires_in") {
        new.insert("refresh_expires_in".into(), v.clone());
    }
    serde_json::to_string(&new).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, byte: u8) -> StorageKey {
        StorageKey::new(kid, [byte; 32]).unwrap()
    }
    fn ring(keys: Vec<StorageKey>) -> KeyState {
        KeyState::Ready(Keyring::new(keys, Mode::Encrypt).unwrap())
    }
    fn bind(alias: &str, subject: &str) -> Binding {
        Binding { alias: alias.into(), subject: subject.into(), realm: "realm-1".into(), user: "user-1".into() }
    }
    fn row(realm: &str, user: &str, alias: &str, subject: &str) -> Binding {
        Binding { alias: alias.into(), subject: subject.into(), realm: realm.into(), user: user.into() }
    }
    const PLAIN: &str = r#"{"access_token":"AT-PLAIN-123","refresh_token":"RT-PLAIN-456","expires_in":3600}"#;

    fn sealed(state: &KeyState, b: &Binding, plain: &str) -> String {
        match state {
            KeyState::Ready(r) => seal(r, b, plain).unwrap(),
            _ => panic!("no ring"),
        }
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_value() {
        let s = ring(vec![key("k1", 7)]);
        let b = bind("entra", "oid-1");
        let v = sealed(&s, &b, PLAIN);
        assert!(v.starts_with("ftk2.k1."), "{v}");
        assert!(!v.contains("AT-PLAIN") && !v.contains("RT-PLAIN"));
        assert_eq!(open(&s, Some(&b), &v).unwrap(), PLAIN);
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let s = ring(vec![key("k1", 7)]);
        let b = bind("entra", "oid-1");
        let a = sealed(&s, &b, PLAIN);
        let c = sealed(&s, &b, PLAIN);
        assert_ne!(a, c);
        let at = KCV_LEN + ROW_TAG_LEN;
        let na = &URL_SAFE_NO_PAD.decode(a.rsplit('.').next().unwrap()).unwrap()[at..at + NONCE_LEN];
        let nc = &URL_SAFE_NO_PAD.decode(c.rsplit('.').next().unwrap()).unwrap()[at..at + NONCE_LEN];
        assert_ne!(na, nc);
    }

    #[test]
    fn a_value_does_not_open_for_another_alias_or_subject() {
        let s = ring(vec![key("k1", 7)]);
        let v = sealed(&s, &bind("entra", "oid-1"), PLAIN);
        for other in [bind("entra", "oid-2"), bind("entra2", "oid-1"), bind("entr", "aoid-1")] {
            let e = open(&s, Some(&other), &v).unwrap_err();
            assert_eq!(e.1, ErrorCode::StorageBindingMismatch, "{}", e.0);
            assert!(e.0.contains("encrypted for another row"), "{}", e.0);
        }
    }

    #[test]
    fn a_tampered_value_or_key_id_does_not_open() {
        let s = ring(vec![key("k1", 7), key("k2", 7)]);
        let b = bind("entra", "oid-1");
        let v = sealed(&s, &b, PLAIN);
        let mut bytes = URL_SAFE_NO_PAD.decode(v.rsplit('.').next().unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("ftk2.k1.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(open(&s, Some(&b), &tampered).unwrap_err().1, ErrorCode::StorageKeyError);
        assert!(open(&s, Some(&b), &tampered).is_err());
        // Same key bytes under another id: the key id is authenticated too.
        let relabelled = v.replacen("ftk2.k1.", "ftk2.k2.", 1);
        assert!(open(&s, Some(&b), &relabelled).is_err());
        assert!(open(&s, Some(&b), "ftk2.k1.").is_err());
        assert!(open(&s, Some(&b), "ftk1.k1.").is_err());
        assert!(open(&s, Some(&b), "ftk2.k1.!!!").is_err());
        assert!(open(&s, Some(&b), "ftk1.").is_err());
    }

    #[test]
    fn wrong_key_missing_key_and_no_keys_are_told_apart() {
        let b = bind("entra", "oid-1");
        let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
        let wrong = open(&ring(vec![key("k1", 8)]), Some(&b), &v).unwrap_err().0;
        assert!(wrong.contains("could not be decrypted"), "{wrong}");
        let unknown = open(&ring(vec![key("k9", 7)]), Some(&b), &v).unwrap_err().0;
        assert!(unknown.contains("'k1', which is not among") && unknown.contains("k9"), "{unknown}");
        let off = open(&KeyState::Off, Some(&b), &v).unwrap_err().0;
        assert!(off.contains("no storage keys are configured"), "{off}");
    }

    #[test]
    fn rotation_old_key_still_opens_new_key_seals() {
        let b = bind("entra", "oid-1");
        let old = sealed(&ring(vec![key("2025", 1)]), &b, PLAIN);
        let rotated = ring(vec![key("2026", 2), key("2025", 1)]);
        assert_eq!(open(&rotated, Some(&b), &old).unwrap(), PLAIN);
        assert!(sealed(&rotated, &b, PLAIN).starts_with("ftk2.2026."));
    }

    #[test]
    fn plain_values_pass_through_open() {
        for state in [KeyState::Off, ring(vec![key("k1", 7)])] {
            assert_eq!(open(&state, None, PLAIN).unwrap(), PLAIN);
            assert_eq!(open(&state, None, "access_token=a&refresh_token=b").unwrap(), "access_token=a&refresh_token=b");
        }
    }

    #[test]
    fn key_file_parsing() {
        let k = "# comment\n\nk2 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nk1 0202020202020202020202020202020202020202020202020202020202020202\nk0 AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM\n";
        let keys = parse_key_file(k).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), ["k2", "k1", "k0"]);
        assert_eq!(*keys[0].key, [1u8; 32]);
        assert_eq!(*keys[1].key, [2u8; 32]);
        assert_eq!(*keys[2].key, [3u8; 32]);
        for bad in
            ["", "# only\n", "k1\n", "k1 short\n", "k.1 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", "k1 a b\n"]
        {
            assert!(parse_key_file(bad).is_err(), "{bad:?}");
        }
        let e = parse_key_file("k1 SECRETISHVALUE\n").err().unwrap();
        assert!(!e.contains("SECRETISHVALUE"), "{e}");
        assert!(
            Keyring::new(
                parse_key_file(
                    "a AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\na AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
                )
                .unwrap(),
                Mode::Encrypt
            )
            .is_err()
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let s = ring(vec![key("k1", 0xAB)]);
        let d = format!("{s:?} {s:#?}");
        assert!(d.contains("k1") && d.contains("[redacted]"), "{d}");
        assert!(!d.contains("171") && !d.to_lowercase().contains("abab"), "{d}");
    }

    #[test]
    fn build_state_reports_problems_without_key_material() {
        let dir = std::env::temp_dir().join(format!("ftk-atrest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.keys");
        std::fs::write(&good, "new AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nold 0202020202020202020202020202020202020202020202020202020202020202\n").unwrap();
        let (state, a) = build_state(&KeyringRequest {
            key_file: Some(good.display().to_string()),
            mode: None,
            allow_plaintext: None,
        });
        assert!(
            matches!(state, KeyState::Ready(ref r) if r.primary().kid() == "new" && r.mode() == Mode::Encrypt),
            "{a}"
        );
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["ok"]["keyring"]["kids"], json!(["new", "old"]));
        assert!(!a.contains("AQEB"));
        let (state, a) = build_state(&KeyringRequest {
            key_file: Some(good.display().to_string()),
            mode: Some("decrypt-only".into()),
            allow_plaintext: None,
        });
        assert!(matches!(state, KeyState::Ready(ref r) if r.mode() == Mode::DecryptOnly), "{a}");
        let bad = dir.join("bad.keys");
        std::fs::write(&bad, "k1 TOO-SHORT-SECRET\n").unwrap();
        let (state, a) = build_state(&KeyringRequest {
            key_file: Some(bad.display().to_string()),
            mode: None,
            allow_plaintext: None,
        });
        assert!(matches!(state, KeyState::Failed(_)));
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["err"]["code"], "storage_key_error");
        assert!(!a.contains("TOO-SHORT-SECRET"), "{a}");
        let (state, _) = build_state(&KeyringRequest {
            key_file: Some(dir.join("absent").display().to_string()),
            mode: None,
            allow_plaintext: None,
        });
        assert!(matches!(state, KeyState::Failed(_)));
        let (state, _) = build_state(&KeyringRequest {
            key_file: Some(good.display().to_string()),
            mode: Some("sometimes".into()),
            allow_plaintext: None,
        });
        assert!(matches!(state, KeyState::Failed(_)));
        let (state, _) = build_state(&KeyringRequest { key_file: None, mode: None, allow_plaintext: None });
        assert!(matches!(state, KeyState::Off));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn request(op: &str, stored: &str, extra: Value) -> Request {
        let mut v = json!({"v":1,"op":op,"now":1_764_100_000i64,"stored":stored,"binding":{"alias":"entra","subject":"oid-1","realm":"realm-1","user":"user-1"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn store_of(a: &Answer) -> Option<String> {
        match a {
            Answer::Ok(o) => o.store.as_ref().map(|s| s.0.clone()),
            Answer::Err(e) => e.store.as_ref().map(|s| s.0.clone()),
            Answer::Inspect(_) => None,
        }
    }

    #[test]
    fn around_opens_stored_for_the_op_and_seals_its_store() {
        let s = ring(vec![key("k1", 7)]);
        let b = bind("entra", "oid-1");
        let v = sealed(&s, &b, PLAIN);
        let mut req = request("check", &v, json!({}));
        let a = around(&s, &mut req, |r| {
            assert_eq!(r.stored.expose(), PLAIN);
            let mut ok = match crate::retrieve::handle(r) {
                Answer::Ok(o) => o,
                Answer::Err(e) => panic!("{e:?}"),
                Answer::Inspect(_) => panic!("unexpected inspect answer"),
            };
            ok.store = Some(RedactedJson(r#"{"access_token":"AT-NEW-789"}"#.into()));
            Answer::Ok(ok)
        });
        let store = store_of(&a).unwrap();
        assert!(store.starts_with("ftk2.k1.") && !store.contains("AT-NEW"), "{store}");
        assert_eq!(open(&s, Some(&b), &store).unwrap(), r#"{"access_token":"AT-NEW-789"}"#);
    }

    #[test]
    fn around_with_a_wrong_key_answers_storage_key_error_and_runs_nothing() {
        let b = bind("entra", "oid-1");
        let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
        for state in [ring(vec![key("k1", 8)]), KeyState::Off, KeyState::Failed("bad file".into())] {
            let mut req = request("retrieve", &v, json!({}));
            let a = around(&state, &mut req, |_| panic!("the op must not run"));
            let Answer::Err(e) = &a else { panic!() };
            assert_eq!(e.code, ErrorCode::StorageKeyError);
            assert_eq!(e.status, 500);
            assert!(e.store.is_none());
        }
    }

    #[test]
    fn around_decrypt_only_writes_plain_and_off_writes_plain() {
        let b = bind("entra", "oid-1");
        let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
        let dec = KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::DecryptOnly).unwrap());
        let mut req = request("check", &v, json!({}));
        let a = around(&dec, &mut req, |r| {
            assert_eq!(r.stored.expose(), PLAIN);
            let mut ok = match crate::retrieve::handle(r) {
                Answer::Ok(o) => o,
                Answer::Err(e) => panic!("{e:?}"),
                Answer::Inspect(_) => panic!("unexpected inspect answer"),
            };
            ok.store = Some(RedactedJson("{\"access_token\":\"x\"}".into()));
            Answer::Ok(ok)
        });
        assert_eq!(store_of(&a).unwrap(), "{\"access_token\":\"x\"}");
    }

    #[test]
    fn around_seals_the_store_of_an_err_answer_too() {
        let s = ring(vec![key("k1", 7)]);
        let b = bind("entra", "oid-1");
        let mut req = request("retrieve", &sealed(&s, &b, PLAIN), json!({}));
        let a = around(&s, &mut req, |_| {
            let mut e = err_answer(ErrorCode::RetryLater, "x", None, Some(1), vec![]);
            if let Answer::Err(ref mut err) = e {
                err.store = Some(RedactedJson(r#"{"refresh_token":"RT-ROTATED"}"#.into()));
            }
            e
        });
        let store = store_of(&a).unwrap();
        assert!(store.starts_with("ftk2.k1.") && !store.contains("RT-ROTATED"), "{store}");
        assert_eq!(open(&s, Some(&b), &store).unwrap(), r#"{"refresh_token":"RT-ROTATED"}"#);
    }

    #[test]
    fn around_while_encrypting_needs_a_binding() {
        let s = ring(vec![key("k1", 7)]);
        let mut req: Request = serde_json::from_value(json!({"v":1,"op":"check","now":1,"stored":PLAIN})).unwrap();
        let a = around(&s, &mut req, |_| panic!("must not run"));
        assert!(matches!(a, Answer::Err(ref e) if e.code == ErrorCode::InternalError));
    }

    #[test]
    fn convert_ops_encrypt_reencrypt_decrypt_and_keep_previous_refresh_token() {
        let b = bind("entra", "oid-1");
        let old = ring(vec![key("k1", 1)]);
        let new = ring(vec![key("k2", 2), key("k1", 1)]);
        let v1 = sealed(&old, &b, PLAIN);
        let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", &v1, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "reencrypted");
        let v2 = out["ok"]["store"].as_str().unwrap().to_string();
        assert!(v2.starts_with("ftk2.k2."));
        let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", &v2, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "unchanged");
        assert_eq!(out["ok"]["store"], v2.as_str());
        let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", PLAIN, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "encrypted");
        let out: Value = serde_json::from_str(&convert_op(&new, &request("unseal", &v2, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "decrypted");
        assert_eq!(out["ok"]["store"], PLAIN);
        let out: Value = serde_json::from_str(&convert_op(&KeyState::Off, &request("unseal", &v2, json!({})))).unwrap();
        assert_eq!(out["err"]["code"], "storage_key_error");
        // A login answer without refresh token keeps the previous (sealed) one.
        let login = r#"{"access_token":"AT-LOGIN","expires_in":60}"#;
        let out: Value =
            serde_json::from_str(&convert_op(&new, &request("seal", login, json!({"previous": v2})))).unwrap();
        let merged = open(&new, Some(&b), out["ok"]["store"].as_str().unwrap()).unwrap();
        let m: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(m["refresh_token"], "RT-PLAIN-456");
        assert_eq!(m["access_token"], "AT-LOGIN");
    }

    /// A value as format 1 wrote it (before realm and Keycloak user were bound).
    fn sealed_v1(state: &KeyState, b: &Binding, plain: &str) -> String {
        let KeyState::Ready(r) = state else { panic!("no ring") };
        let key = r.primary();
        let cipher = Aes256Gcm::new_from_slice(key.key.as_slice()).unwrap();
        let nonce = [9u8; NONCE_LEN];
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad_v1(&key.kid, b) })
            .unwrap();
        format!("{PREFIX_V1}{}.{}", key.kid, URL_SAFE_NO_PAD.encode([&nonce[..], &ct[..]].concat()))
    }

    #[test]
    fn format_1_values_still_open_and_the_next_write_seals_them_in_format_2() {
        let s = ring(vec![key("k1", 7)]);
        let b = bind("entra", "oid-1");
        let old = sealed_v1(&s, &b, PLAIN);
        let o = open_row(&s, Some(&b), &old).unwrap();
        assert_eq!(o.plain, PLAIN);
        assert!(o.rewrap, "format 1 is sealed again");
        // The bulk encrypt rewraps it even though its key is the first one.
        let out: Value = serde_json::from_str(&convert_op(&s, &request("seal", &old, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "reencrypted", "{out}");
        let v2 = out["ok"]["store"].as_str().unwrap();
        assert!(v2.starts_with("ftk2.k1."), "{v2}");
        assert!(!open_row(&s, Some(&b), v2).unwrap().rewrap);
        // A refresh's write (around) seals in format 2 too.
        let mut req = request("check", &old, json!({}));
        let a = around(&s, &mut req, |r| {
            assert_eq!(r.stored.expose(), PLAIN);
            Answer::Ok(crate::contract::OkAnswer {
                action: crate::contract::Action::Refreshed,
                response: None,
                store: Some(RedactedJson(PLAIN.into())),
                upstream_ms: None,
                expires_at: None,
                refresh_failure: None,
                diag: vec![],
            })
        });
        assert!(store_of(&a).unwrap().starts_with("ftk2.k1."));
    }

    #[test]
    fn a_value_moved_to_another_realm_or_keycloak_user_is_refused_as_binding_mismatch() {
        let s = ring(vec![key("k1", 7)]);
        let v = sealed(&s, &row("realm-a", "user-1", "entra", "oid-1"), PLAIN);
        assert_eq!(open(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), &v).unwrap(), PLAIN);
        for other in [
            row("realm-b", "user-1", "entra", "oid-1"),
            row("realm-a", "user-2", "entra", "oid-1"),
            row("realm-a", "", "entra", "oid-1"),
        ] {
            let e = open(&s, Some(&other), &v).unwrap_err();
            assert_eq!(e.1, ErrorCode::StorageBindingMismatch, "{other:?}: {}", e.0);
            assert!(!e.0.contains("PLAIN"), "{}", e.0);
        }
        // Through `around` (a retrieve): the documented code, status 500, nothing to write.
        let mut req: Request = serde_json::from_value(json!({"v":1,"op":"retrieve","now":1,"stored":v,
            "binding":{"alias":"entra","subject":"oid-1","realm":"realm-a","user":"user-2"}}))
        .unwrap();
        let a = around(&s, &mut req, |_| panic!("the op must not run"));
        let Answer::Err(e) = &a else { panic!() };
        assert_eq!((e.code, e.status), (ErrorCode::StorageBindingMismatch, 500));
        assert!(e.store.is_none());
    }

    #[test]
    fn another_key_under_the_same_id_is_a_key_error_not_a_binding_mismatch() {
        let b = bind("entra", "oid-1");
        let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
        let e = open(&ring(vec![key("k1", 8)]), Some(&b), &v).unwrap_err();
        assert_eq!(e.1, ErrorCode::StorageKeyError, "{}", e.0);
    }

    #[test]
    fn a_value_sealed_before_the_keycloak_user_existed_opens_for_the_user_and_is_resealed() {
        let s = ring(vec![key("k1", 7)]);
        let first_login = row("realm-a", "", "entra", "oid-1");
        let v = sealed(&s, &first_login, PLAIN);
        let o = open_row(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), &v).unwrap();
        assert_eq!(o.plain, PLAIN);
        assert!(o.rewrap);
        // Still bound to realm, alias and subject.
        for other in [row("realm-b", "user-1", "entra", "oid-1"), row("realm-a", "user-1", "entra", "oid-2")] {
            assert_eq!(open(&s, Some(&other), &v).unwrap_err().1, ErrorCode::StorageBindingMismatch);
        }
        let mut req = request("seal", &v, json!({}));
        req.binding = Some(row("realm-a", "user-1", "entra", "oid-1"));
        let out: Value = serde_json::from_str(&convert_op(&s, &req)).unwrap();
        assert_eq!(out["ok"]["action"], "reencrypted", "{out}");
        let bound = out["ok"]["store"].as_str().unwrap();
        assert!(!open_row(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), bound).unwrap().rewrap);
        assert_eq!(
            open(&s, Some(&row("realm-a", "user-2", "entra", "oid-1")), bound).unwrap_err().1,
            ErrorCode::StorageBindingMismatch
        );
    }

    #[test]
    fn a_plain_row_while_encrypting_is_refused_unless_plain_rows_are_allowed() {
        let s = ring(vec![key("k1", 7)]);
        let mut req = request("retrieve", PLAIN, json!({}));
        let a = around(&s, &mut req, |_| panic!("the op must not run"));
        let Answer::Err(e) = &a else { panic!() };
        assert_eq!((e.code, e.status), (ErrorCode::StoragePlaintextRow, 500));
        assert!(e.store.is_none());
        assert!(e.error_description.contains("allow-plaintext"), "{}", e.error_description);
        // The conversion itself (bulk encrypt, login) still seals plain values.
        let out: Value = serde_json::from_str(&convert_op(&s, &request("seal", PLAIN, json!({})))).unwrap();
        assert_eq!(out["ok"]["action"], "encrypted");
        // A plain previous value is not merged into a new login answer.
        let login = r#"{"access_token":"AT-LOGIN","expires_in":60}"#;
        let out: Value =
            serde_json::from_str(&convert_op(&s, &request("seal", login, json!({"previous": PLAIN})))).unwrap();
        let m: Value = serde_json::from_str(
            &open(&s, Some(&bind("entra", "oid-1")), out["ok"]["store"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert!(m.get("refresh_token").is_none(), "{m}");
        // Empty rows are no token, not a plain one.
        let mut empty = request("check", "", json!({}));
        let a = around(&s, &mut empty, crate::retrieve::handle);
        assert!(!matches!(a, Answer::Err(ref e) if e.code == ErrorCode::StoragePlaintextRow));
        // Allowed (migration window) and decrypt-only: plain rows are used.
        for state in [
            KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::Encrypt).unwrap().allowing_plaintext(true)),
            KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::DecryptOnly).unwrap()),
        ] {
            let mut req = request("check", PLAIN, json!({}));
            let a = around(&state, &mut req, crate::retrieve::handle);
            assert!(matches!(a, Answer::Ok(_)), "{a:?}");
        }
    }

    #[test]
    fn allow_plaintext_is_read_from_the_keyring_request() {
        let dir = std::env::temp_dir().join(format!("ftk-atrest-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k.keys");
        std::fs::write(&f, "k1 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
        let path = Some(f.display().to_string());
        let (state, a) =
            build_state(&KeyringRequest { key_file: path.clone(), mode: None, allow_plaintext: Some(true) });
        assert!(matches!(state, KeyState::Ready(ref r) if r.allows_plaintext()), "{a}");
        assert!(a.contains("\"allow_plaintext\":true"), "{a}");
        let (state, _) = build_state(&KeyringRequest { key_file: path, mode: None, allow_plaintext: None });
        assert!(matches!(state, KeyState::Ready(ref r) if !r.allows_plaintext()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
