//! The storage flow of encryption at rest: [`around`] opens `stored` before any op that reads
//! it and seals every `store` the op returns, so no op (present or future) sees or returns
//! ciphertext, and none returns a plaintext value for storage while encryption is on; the
//! `keyring` op (the process-wide keys, set once at start-up) and the `seal` / `unseal`
//! conversions. Sealing itself is `pure::seal`, the keys `pure::keyring`.

use std::sync::RwLock;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::pure::keyring::{KeyState, Keyring, Mode, load_key_file};
use crate::pure::merge;
use crate::pure::seal::{
    PREFIX, StorageError, check_binding, failed, is_sealed, kid_of, open, open_row, refuse_plaintext, storage_form,
};
use crate::pure::stored::StoredToken;
use crate::wire::{Answer, ErrorCode, KeyringRequest, Op, RedactedJson, Request, TokenValue, err_answer};

/// The process-wide storage state, set by the `keyring` op at start-up.
static STATE: RwLock<KeyState> = RwLock::new(KeyState::Off);

fn storage_err(e: StorageError, diag: Vec<String>) -> Answer {
    err_answer(e.1, e.0, None, None, diag)
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
            Ok(o) => req.stored = TokenValue::new(o.plain),
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
/// stored value is sealed, so Keycloak cannot look inside: we do it here, with the rule of
/// the refresh merge (`pure::merge::keep_previous_refresh_token`).
fn keep_previous_refresh_token(new_plain: &str, prev_plain: &str) -> Option<String> {
    let mut new: Map<String, Value> = serde_json::from_str(new_plain).ok()?;
    let prev = StoredToken::parse(prev_plain).ok()?;
    if !merge::keep_previous_refresh_token(&mut new, &prev) {
        return None;
    }
    serde_json::to_string(&new).ok()
}

#[cfg(test)]
mod tests;
