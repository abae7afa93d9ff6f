//! App-only tokens (`client_credentials`), cached in process memory.
//!
//! One cache per process, keyed by (token URL, client id, scope, SHA-256 fingerprint of
//! the client credential and the IdP's realm id and internal id); the secret or key
//! itself is never a key nor printed. Concurrent calls
//! for one key wait for the request in flight (single flight, bounded by the deadline).
//! A 429/503 answer leaves a "not before" instant: calls inside that window are answered
//! `retry_later` without asking the IdP.

use std::collections::HashMap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::refresh::{Obtained, Target, obtain, status_text};
use crate::pure::entries::new_entry;
use crate::pure::json::non_empty_str;
use crate::upstream::exchange::{Grant, credentials_error};
use crate::upstream::grant::{Credentials, token_request};
use crate::wire::{
    Action, Answer, ErrAnswer, ErrorCode, IdpConfig, OkAnswer, RefreshFailure, Request, TokenValue, err_answer,
};

/// At most this many keys are cached.
pub const MAX_KEYS: usize = 256;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    token_url: String,
    client_id: String,
    scope: String,
    /// SHA-256 of the client authentication method, credential, realm id and IdP id.
    credential: [u8; 32],
}

struct Cached {
    access_token: TokenValue,
    token_type: String,
    /// Epoch seconds on Keycloak's clock.
    expires_at: i64,
}

#[derive(Default)]
struct Slot {
    token: Option<Cached>,
    /// No upstream call before this instant (429/503).
    not_before: Option<Instant>,
    in_flight: bool,
    /// Bumped when a flight ends; waiters compare it to learn that theirs ended.
    generation: u64,
    /// The error the last flight ended with (handed to the calls that waited for it).
    last_error: Option<ErrAnswer>,
}

static CACHE: LazyLock<Mutex<HashMap<Key, Slot>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static FLIGHT_DONE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, HashMap<Key, Slot>> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// SHA-256 over the authentication method and every credential part, so two secrets (or
/// keys) never share an entry.
pub fn credential_fingerprint(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// Everything that authenticates the request (method, secret, or key + certificate +
/// algorithm of `private_key_jwt`) and the IdP's identity (realm id, IdP internal id).
/// Only hashed, never kept or printed.
fn credential_parts(idp: &IdpConfig) -> Vec<&str> {
    let a = idp.assertion.as_ref();
    vec![
        idp.client_auth.as_deref().unwrap_or("").trim(),
        idp.secret().map_or("", |s| s.expose()),
        a.map_or("", |a| a.key_pem.expose()),
        a.map_or("", |a| a.cert_pem.as_str()),
        a.and_then(|a| a.alg.as_deref()).unwrap_or(""),
        idp.realm_id.as_deref().unwrap_or(""),
        idp.idp_id.as_deref().unwrap_or(""),
    ]
}

/// Makes room for one more key: drops keys not in flight whose token is unusable and that
/// are not throttled, then, if still full, the one expiring first.
fn make_room(map: &mut HashMap<Key, Slot>, now: i64) {
    if map.len() < MAX_KEYS {
        return;
    }
    let instant = Instant::now();
    map.retain(|_, s| {
        s.in_flight || s.token.as_ref().is_some_and(|t| t.expires_at > now) || s.not_before.is_some_and(|n| n > instant)
    });
    while map.len() >= MAX_KEYS {
        let victim = map
            .iter()
            .filter(|(_, s)| !s.in_flight)
            .min_by_key(|(_, s)| s.token.as_ref().map_or(i64::MIN, |t| t.expires_at))
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                map.remove(&k);
            }
            None => break,
        }
    }
}

fn serve(t: &Cached, now: i64, action: Action, upstream_ms: Option<u64>, diag: Vec<String>) -> Answer {
    serve_with(t, now, action, upstream_ms, None, diag)
}

fn serve_with(
    t: &Cached,
    now: i64,
    action: Action,
    upstream_ms: Option<u64>,
    refresh_failure: Option<RefreshFailure>,
    diag: Vec<String>,
) -> Answer {
    let mut r = Map::new();
    r.insert("access_token".into(), Value::from(t.access_token.expose()));
    r.insert("token_type".into(), Value::from(t.token_type.as_str()));
    r.insert("expires_in".into(), Value::from(t.expires_at.saturating_sub(now).max(0)));
    let expires_at = Some(t.expires_at);
    Answer::Ok(OkAnswer { action, response: Some(r), store: None, upstream_ms, expires_at, refresh_failure, diag })
}

fn retry_later(retry_after_s: u64, diag: Vec<String>) -> Answer {
    err_answer(ErrorCode::RetryLater, ErrorCode::RetryLater.upstream_description(), None, Some(retry_after_s), diag)
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Resets `in_flight` and wakes the waiters even if the flight panics.
struct FlightGuard {
    key: Key,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut map = lock();
        if let Some(slot) = map.get_mut(&self.key) {
            if slot.in_flight {
                slot.in_flight = false;
                slot.generation = slot.generation.wrapping_add(1);
            }
        }
        FLIGHT_DONE.notify_all();
    }
}

/// `op: app_token`.
pub fn handle(req: &Request) -> Answer {
    let Some(idp) = &req.idp else {
        return err_answer(ErrorCode::InternalError, "`app_token` needs `idp` settings.", None, None, vec![]);
    };
    let Some(scope) = req.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return err_answer(ErrorCode::InternalError, "`app_token` needs a non-empty `scope`.", None, None, vec![]);
    };
    let mut diag = Vec::new();
    let creds = match Credentials::of_idp(idp) {
        Ok(c) => c,
        Err(e) => return credentials_error(e, diag),
    };
    let now = req.now;
    let min_validity = req.policy.min_validity_s();
    let key = Key {
        token_url: idp.token_url.clone(),
        client_id: idp.client_id.clone(),
        scope: scope.to_string(),
        credential: credential_fingerprint(&credential_parts(idp)),
    };
    let deadline = Instant::now() + Duration::from_millis(idp.deadline_ms());
    let mut map = lock();
    let mut waited_for = None;
    loop {
        if !map.contains_key(&key) {
            make_room(&mut map, now);
        }
        let slot = map.entry(key.clone()).or_default();
        if let Some(t) = slot.token.as_ref().filter(|t| t.expires_at.saturating_sub(now) > min_validity) {
            let left = t.expires_at.saturating_sub(now);
            diag.push(format!("app token: served from the process cache, {left} s left"));
            return serve(t, now, Action::Serve, None, diag);
        }
        if let (Some(generation), Some(e)) = (waited_for, &slot.last_error) {
            if slot.generation != generation {
                let mut e = e.clone();
                e.upstream_ms = None; // this call did not ask the IdP itself
                e.diag.push("answer of the concurrent request this call waited for".into());
                return Answer::Err(e);
            }
        }
        let instant = Instant::now();
        if let Some(nb) = slot.not_before.filter(|nb| *nb > instant) {
            let s = ceil_secs(nb - instant).max(1);
            diag.push(format!("app token: throttled by the identity provider, no request for {s} s"));
            return retry_later(s, diag);
        }
        if !slot.in_flight {
            slot.in_flight = true;
            slot.last_error = None;
            break;
        }
        let generation = slot.generation;
        waited_for = Some(generation);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            diag.push("app token: the concurrent request did not finish before the deadline".into());
            return retry_later(1, diag);
        }
        map = FLIGHT_DONE.wait_timeout(map, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    drop(map);
    let guard = FlightGuard { key: key.clone() };
    let outcome = fetch(idp, &creds, scope, now, req.policy.default_lifetime_s(), &mut diag);
    let mut map = lock();
    let slot = map.entry(key).or_default();
    slot.in_flight = false;
    slot.generation = slot.generation.wrapping_add(1);
    let answer = match outcome {
        Fetched::Token(t, upstream_ms) => {
            let a = serve(&t, now, Action::Refreshed, Some(upstream_ms), diag);
            slot.token = Some(t);
            slot.not_before = None;
            a
        }
        Fetched::Failed { answer, not_before } => {
            let answer = *answer;
            if let Some(nb) = not_before {
                slot.not_before = Some(nb);
            }
            match (&slot.token, &answer) {
                // A still-valid cached token is served when the IdP is unavailable.
                (Some(t), Answer::Err(e))
                    if t.expires_at > now && matches!(e.code, ErrorCode::RetryLater | ErrorCode::UpstreamError) =>
                {
                    let mut d = e.diag.clone();
                    d.push(format!(
                        "app token request failed; serving the cached token, still valid for {} s",
                        t.expires_at.saturating_sub(now)
                    ));
                    let failure = RefreshFailure { code: e.code, upstream: e.upstream.clone() };
                    serve_with(t, now, Action::Serve, e.upstream_ms, Some(failure), d)
                }
                (_, Answer::Err(e)) => {
                    slot.last_error = Some(e.clone());
                    answer
                }
                _ => answer,
            }
        }
    };
    drop(map);
    drop(guard);
    answer
}

enum Fetched {
    Token(Cached, u64),
    Failed { answer: Box<Answer>, not_before: Option<Instant> },
}

fn fetch(
    idp: &IdpConfig,
    creds: &Credentials<'_>,
    scope: &str,
    now: i64,
    default_lifetime_s: i64,
    diag: &mut Vec<String>,
) -> Fetched {
    let grant = [("grant_type", "client_credentials")];
    let failed = |answer| Fetched::Failed { answer: Box::new(answer), not_before: None };
    let target = Target {
        idp,
        grant: Grant::Repeatable,
        now,
        // A still-valid cached token is served by the caller, under the cache lock.
        still_valid: false,
        describe: ErrorCode::upstream_description,
        earlier_ms: 0,
        what: "app token",
        expired_names_status: false,
    };
    let make = || token_request(creds, &idp.token_url, &grant, Some(scope));
    let accept = |body| {
        let (entry, expiry) = new_entry(body, now, default_lifetime_s);
        let usable = non_empty_str(&entry, "access_token").is_some();
        (entry, usable.then_some(expiry))
    };
    match obtain(&target, diag, make, accept) {
        Obtained::Fresh { token: entry, expiry, attempts, upstream_ms, last_status } => {
            let access_token = non_empty_str(&entry, "access_token").unwrap_or_default().to_string();
            let token_type = non_empty_str(&entry, "token_type").unwrap_or("Bearer").to_string();
            diag.push(format!(
                "app token: upstream {} in {upstream_ms} ms (attempt {attempts}), {} s valid",
                status_text(last_status),
                expiry.saturating_sub(now)
            ));
            Fetched::Token(
                Cached { access_token: TokenValue::new(access_token), token_type, expires_at: expiry },
                upstream_ms,
            )
        }
        // `still_valid: false`: never asked for.
        Obtained::StillValid { .. } => failed(err_answer(
            ErrorCode::InternalError,
            "An app-only token has no stored token to fall back on.",
            None,
            None,
            std::mem::take(diag),
        )),
        Obtained::Failed(answer) => {
            // Throttled (429 / 503 with its wait): no request before the wait is over.
            let not_before = match &answer {
                Answer::Err(e) if e.code == ErrorCode::RetryLater => {
                    let throttled = e.upstream.as_ref().and_then(|u| u.status).is_some_and(|s| s == 429 || s == 503);
                    e.retry_after_s.filter(|_| throttled).map(|s| Instant::now() + Duration::from_secs(s))
                }
                _ => None,
            };
            Fetched::Failed { answer: Box::new(answer), not_before }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprints_differ_per_secret_and_method_and_are_not_the_secret() {
        let a = credential_fingerprint(&["client_secret_post", "s1"]);
        let b = credential_fingerprint(&["client_secret_post", "s2"]);
        let c = credential_fingerprint(&["client_secret_basic", "s1"]);
        let d = credential_fingerprint(&["client_secret_posts", "1"]);
        assert!(a != b && a != c && a != d);
    }

    fn pkjwt_idp(key_pem: &str, realm_id: &str, idp_id: &str) -> IdpConfig {
        serde_json::from_value(serde_json::json!({"token_url":"https://login.example/t/oauth2/v2.0/token",
            "client_id":"same-app","client_auth":"private_key_jwt","realm_id":realm_id,"idp_id":idp_id,
            "assertion":{"key_pem":key_pem,"cert_pem":"CERT","alg":"PS256"}}))
        .unwrap()
    }

    #[test]
    fn cache_keys_differ_when_only_the_key_pem_or_realm_or_idp_differs() {
        let base = credential_fingerprint(&credential_parts(&pkjwt_idp("KEY-A", "realm-a", "idp-a")));
        for other in [
            pkjwt_idp("KEY-B", "realm-a", "idp-a"),
            pkjwt_idp("KEY-A", "realm-b", "idp-a"),
            pkjwt_idp("KEY-A", "realm-a", "idp-b"),
        ] {
            assert_ne!(
                base,
                credential_fingerprint(&credential_parts(&other)),
                "{:?}",
                other.assertion.as_ref().map(|a| &a.alg)
            );
        }
    }

    #[test]
    fn app_token_without_scope_or_idp_is_internal_error() {
        for req in [
            r#"{"v":2,"op":"app_token","now":1,"scope":"s"}"#,
            r#"{"v":2,"op":"app_token","now":1,"idp":{"token_url":"http://127.0.0.1:9/t","client_id":"c"}}"#,
        ] {
            let a: Value = serde_json::from_str(&crate::call(req)).unwrap();
            assert_eq!(a["err"]["code"], "internal_error", "{a}");
        }
    }

    #[test]
    fn make_room_keeps_the_cache_bounded() {
        let mut map = HashMap::new();
        for i in 0..MAX_KEYS + 5 {
            make_room(&mut map, 100);
            let key = Key { token_url: format!("u{i}"), client_id: "c".into(), scope: "s".into(), credential: [0; 32] };
            let token =
                Cached { access_token: TokenValue::new("t"), token_type: "Bearer".into(), expires_at: 1000 + i as i64 };
            map.insert(key, Slot { token: Some(token), ..Slot::default() });
        }
        assert!(map.len() <= MAX_KEYS);
        assert!(!map.keys().any(|k| k.token_url == "u0"), "the earliest expiry goes first");
    }

    proptest! {
        #[test]
        fn app_token_never_panics_on_odd_requests(scope in ".{0,12}", auth in ".{0,20}", now in any::<i64>(), min in any::<i64>()) {
            // Port 9 (discard) on loopback: refused at once; one attempt, short deadline.
            let req = serde_json::json!({"v":2,"op":"app_token","now":now,"policy":{"min_validity_s":min},"scope":scope,
                "idp":{"token_url":"ftp://127.0.0.1:9/t","client_id":"c","client_auth":auth,"max_attempts":1,"deadline_ms":200}});
            let out: Value = serde_json::from_str(&crate::call(&req.to_string())).unwrap();
            prop_assert!(out.get("ok").is_some() || out.get("err").is_some());
        }
    }
}
