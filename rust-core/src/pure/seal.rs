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
//! Opening before an op and sealing after it is the storage flow (`flows::storage::around`);
//! the keys are `pure::keyring`. Key material never appears in `Debug` output or errors.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use super::keyring::{KeyState, Keyring, StorageKey, check_kid};
use crate::wire::{Binding, ErrorCode};

/// Format (and AAD) version of new values; their prefix is `ftk2.`. Format 2 binds a value to
/// the realm id, the Keycloak user id, the IdP alias and the user's id at the IdP:
/// `ftk2.<kid>.<base64url(key check (6) || row tag (12) || nonce (12) || ciphertext || tag (16))>`.
pub const FORMAT: &str = "ftk2";
pub const PREFIX: &str = "ftk2.";
/// Format 1 (alias and subject only) is still read; such values are sealed in format 2 on the
/// next write.
pub const FORMAT_V1: &str = "ftk1";
const PREFIX_V1: &str = "ftk1.";
const KCV_LEN: usize = 6;
const ROW_TAG_LEN: usize = 12;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A storage problem and its code (`storage_key_error`, `storage_binding_mismatch`,
/// `storage_plaintext_row`); nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String, pub ErrorCode);

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

/// HMAC-SHA256 under a 32-byte key. HMAC pads a key shorter than the block (64 bytes) with
/// zeros, so the key is handed over padded: the same MAC, and no fallible length check.
fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut m =
        <HmacSha256 as hmac::digest::KeyInit>::new(hmac::digest::Key::<HmacSha256>::from_slice(block.as_slice()));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Key check value: tells "another key under the same id" from "another row", not secret.
fn key_check(key: &StorageKey) -> [u8; KCV_LEN] {
    let full = mac(&key.key, &[b"fresh-token ftk2 key check"]);
    let mut out = [0u8; KCV_LEN];
    out.copy_from_slice(&full[..KCV_LEN]);
    out
}

/// Row tag: a keyed hash of the format-2 associated data, so that a value read from another
/// row is told apart from a damaged one (`storage_binding_mismatch`). Reveals nothing of the
/// binding without the key.
fn row_tag(key: &StorageKey, aad: &[u8]) -> [u8; ROW_TAG_LEN] {
    let sub = Zeroizing::new(mac(&key.key, &[b"fresh-token ftk2 row tag key"]));
    let full = mac(&sub, &[aad]);
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

pub fn check_binding(b: &Binding) -> Result<(), StorageError> {
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
pub fn refuse_plaintext(state: &KeyState, stored: &str) -> Result<(), StorageError> {
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

pub fn failed(why: &str) -> StorageError {
    StorageError(
        format!(
            "The storage keys of this Keycloak node could not be loaded at start-up ({why}); no stored token is read or written."
        ),
        ErrorCode::StorageKeyError,
    )
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

#[cfg(test)]
pub(crate) mod tests;
