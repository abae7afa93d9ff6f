//! The storage keys of encryption at rest: the key file (read by the core itself, so keys
//! never pass through Java strings), the keyring (first key encrypts, all decrypt) and the
//! process's storage state. Key material lives in [`Zeroizing`] buffers and never appears in
//! `Debug` output.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

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
    pub(super) kid: String,
    pub(super) key: Zeroizing<[u8; 32]>,
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
    pub(super) allow_plaintext: bool,
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
    pub(super) fn key(&self, kid: &str) -> Option<&StorageKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
    pub fn encrypting(&self) -> bool {
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

pub fn check_kid(kid: &str) -> Result<(), String> {
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
