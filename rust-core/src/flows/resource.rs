//! Tokens per resource from one refresh token (Entra: one refresh token mints tokens for
//! any resource, one resource per request), kept inside the stored token JSON.
//!
//! `fresh_token_resources` maps the requested scope string to a token object
//! `{access_token, token_type, scope, expires_in, accessTokenExpiration, …extras}`; stock
//! Keycloak ignores the unknown top-level key, so the row stays readable by stock code.

use serde_json::{Map, Value};

use crate::contract::{
    Action, Answer, OkAnswer, Policy, RedactedJson, RefreshFailure, Request, ResourceRequest, Upstream,
};
use crate::errors::ErrorCode;
use crate::freshness::{Decision, decide};
use crate::retrieve::{Exchanged, err_answer, exchange, local_misconfiguration, with_upstream_ms};
use crate::retry::Finished;
use crate::stored::{ACCESS_TOKEN_EXPIRATION, StoredToken, non_empty_str, number_or_string};

/// Top-level key of the per-resource tokens.
pub const RESOURCES_KEY: &str = "fresh_token_resources";
/// Top-level key of the on-behalf-of / token-exchange results.
pub const OBO_KEY: &str = "fresh_token_obo";
/// Our keys in the stored token: kept across top-level refreshes, never in a response.
pub const EXTENSION_KEYS: [&str; 3] = [RESOURCES_KEY, OBO_KEY, crate::inspect::REFRESHED_AT];
/// At most this many entries per map; when full, the entry expiring first goes.
pub const MAX_ENTRIES: usize = 16;

/// Fields of an IdP answer never kept in an entry nor shown with it.
const NOT_IN_ENTRY: [&str; 3] = ["refresh_token", "refresh_expires_in", "id_token"];

/// The entry `key` of the map `map_key`, when it is an object with an access token.
pub fn entry<'a>(fields: &'a Map<String, Value>, map_key: &str, key: &str) -> Option<&'a Map<String, Value>> {
    let e = fields.get(map_key)?.as_object()?.get(key)?.as_object()?;
    non_empty_str(e, "access_token").map(|_| e)
}

/// Expiry of an entry: `accessTokenExpiration` when > 0, else the JWT `exp`, else unknown.
pub fn entry_expiry(e: &Map<String, Value>) -> Option<i64> {
    e.get(ACCESS_TOKEN_EXPIRATION)
        .and_then(number_or_string)
        .filter(|x| *x > 0)
        .or_else(|| non_empty_str(e, "access_token").and_then(crate::jwt::exp))
}

/// The expiry used for decisions: an absent entry counts as long expired.
fn decision_expiry(e: Option<&Map<String, Value>>) -> Option<i64> {
    match e {
        Some(e) => entry_expiry(e),
        None => Some(0),
    }
}

/// An entry from an IdP answer: `expires_in` as a number, `accessTokenExpiration` set
/// (from `expires_in`, else JWT `exp`, else the default lifetime), no refresh or id token.
pub fn new_entry(mut body: Map<String, Value>, now: i64, default_lifetime_s: i64) -> (Map<String, Value>, i64) {
    for k in NOT_IN_ENTRY.iter().chain(EXTENSION_KEYS.iter()) {
        body.shift_remove(*k);
    }
    match body.get("expires_in").map(number_or_string) {
        Some(Some(n)) => {
            body.insert("expires_in".into(), Value::from(n));
        }
        Some(None) => {
            body.shift_remove("expires_in");
        }
        None => {}
    }
    let expiry = crate::retrieve::expiry_of(&body, now, default_lifetime_s);
    body.insert(ACCESS_TOKEN_EXPIRATION.into(), Value::from(expiry));
    (body, expiry)
}

/// Puts `entry` under `map_key`/`key`; a map that is not an object starts over; when the
/// map is full, the entry expiring first (unknown expiry first of all) goes.
pub fn insert_bounded(fields: &mut Map<String, Value>, map_key: &str, key: &str, entry: Map<String, Value>) {
    if !fields.get(map_key).is_some_and(Value::is_object) {
        fields.insert(map_key.to_string(), Value::Object(Map::new()));
    }
    let Some(Value::Object(map)) = fields.get_mut(map_key) else { return };
    if !map.contains_key(key) {
        while map.len() >= MAX_ENTRIES {
            let earliest = map
                .iter()
                .min_by_key(|(_, v)| v.as_object().and_then(entry_expiry).unwrap_or(i64::MIN))
                .map(|(k, _)| k.clone());
            match earliest {
                Some(k) => {
                    map.shift_remove(&k);
                }
                None => break,
            }
        }
    }
    map.insert(key.to_string(), Value::Object(entry));
}

/// What the app receives for an entry: its fields, `expires_in` remaining (absent when
/// unknown), `token_type` defaulted to `Bearer`; never a refresh or id token.
pub fn entry_response(e: &Map<String, Value>, expiry: Option<i64>, now: i64) -> Map<String, Value> {
    let policy = Policy { include_refresh_token: Some(false), include_id_token: Some(false), ..Policy::default() };
    crate::retrieve::app_response(e, expiry, now, &policy)
}

/// A resource token the caller can use, and what changed on the way.
pub(crate) struct Got {
    pub entry: Map<String, Value>,
    pub expiry: Option<i64>,
    /// The whole new stored token, when it changed.
    pub fields: Option<Map<String, Value>>,
    pub upstream_ms: Option<u64>,
    /// Set when a refresh failed and the still-valid entry is served.
    pub refresh_failure: Option<RefreshFailure>,
}

/// A fresh token for resource `key` (refresh scope `refresh_scope`), refreshing it with the
/// top-level refresh token when due. `Err` is the answer to give now: an error, or for
/// `check` the `refresh` decision.
#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
pub(crate) fn ensure(
    req: &Request,
    stored: &StoredToken,
    key: &str,
    refresh_scope: &str,
    diag: &mut Vec<String>,
) -> Result<Got, Answer> {
    let now = req.now;
    let min_validity = req.policy.min_validity_s();
    let current = entry(&stored.fields, RESOURCES_KEY, key);
    let expiry = decision_expiry(current);
    let rt = stored.refresh_token();
    let left = |e: i64| e.saturating_sub(now);
    match decide(expiry, rt.is_some(), now, min_validity) {
        Decision::Serve => {
            diag.push(match expiry {
                Some(e) => format!("resource token: {} s left", left(e)),
                None => "resource token: expiry unknown and no refresh token".into(),
            });
            let entry = current.cloned().unwrap_or_default();
            Ok(Got { entry, expiry, fields: None, upstream_ms: None, refresh_failure: None })
        }
        Decision::Reauth => {
            diag.push("reauth: resource token missing or expired, no refresh token".into());
            Err(err_answer(
                ErrorCode::ReauthRequired,
                "No token for the requested resource and no refresh token is stored; the user must sign in again.",
                None,
                None,
                std::mem::take(diag),
            ))
        }
        Decision::Refresh => {
            diag.push(match (current, expiry) {
                (None, _) => "resource token refresh due: none stored".into(),
                (Some(_), Some(e)) => format!("resource token refresh due: {} s left", left(e)),
                (Some(_), None) => "resource token refresh due: expiry unknown".into(),
            });
            if req.op == crate::contract::Op::Check {
                return Err(Answer::Ok(OkAnswer {
                    action: Action::Refresh,
                    response: None,
                    store: None,
                    upstream_ms: None,
                    expires_at: expiry.filter(|_| current.is_some()),
                    refresh_failure: None,
                    diag: std::mem::take(diag),
                }));
            }
            refresh(req, stored, key, refresh_scope, current, diag)
        }
    }
}

#[allow(clippy::result_large_err)]
fn refresh(
    req: &Request,
    stored: &StoredToken,
    key: &str,
    refresh_scope: &str,
    current: Option<&Map<String, Value>>,
    diag: &mut Vec<String>,
) -> Result<Got, Answer> {
    let take = |d: &mut Vec<String>| std::mem::take(d);
    let Some(idp) = &req.idp else {
        return Err(err_answer(
            ErrorCode::InternalError,
            "A refresh is due but the request has no `idp` settings.",
            None,
            None,
            take(diag),
        ));
    };
    let Some(rt) = stored.refresh_token() else {
        return Err(err_answer(ErrorCode::ReauthRequired, "No refresh token is stored.", None, None, take(diag)));
    };
    let creds = match crate::grant::Credentials::of_idp(idp) {
        Ok(c) => c,
        Err(e) => return Err(crate::retrieve::credentials_error(e, take(diag))),
    };
    let make = || crate::grant::refresh_request(&creds, &idp.token_url, rt, Some(refresh_scope));
    let Exchanged { finished, upstream_ms, last_status } =
        match exchange(idp, crate::retrieve::Grant::RefreshToken, diag, make) {
            Ok(x) => x,
            Err(description) => return Err(local_misconfiguration(description, take(diag))),
        };
    let still_valid = current.and_then(entry_expiry).is_some_and(|e| e > req.now);
    match finished {
        Finished::Success { body, attempts } => {
            let new_rt = non_empty_str(&body, "refresh_token").map(str::to_owned);
            let new_rt_life = body.get("refresh_expires_in").and_then(number_or_string);
            let (entry, expiry) = new_entry(body, req.now, req.policy.default_lifetime_s());
            if expiry <= req.now {
                diag.push("refresh answer holds an access token that is already expired".into());
                let up = Upstream { status: last_status, ..Upstream::default() };
                return Err(with_upstream_ms(
                    err_answer(
                        ErrorCode::UpstreamError,
                        ErrorCode::UpstreamError.upstream_description(),
                        Some(up),
                        None,
                        take(diag),
                    ),
                    upstream_ms,
                ));
            }
            let mut fields = stored.fields.clone();
            let rotated = match new_rt {
                Some(new_rt) => {
                    let rotated = new_rt != rt;
                    fields.insert("refresh_token".into(), Value::from(new_rt));
                    match new_rt_life {
                        Some(n) => fields.insert("refresh_expires_in".into(), Value::from(n)),
                        None => fields.shift_remove("refresh_expires_in"),
                    };
                    if rotated { "rotated" } else { "kept" }
                }
                None => "kept",
            };
            insert_bounded(&mut fields, RESOURCES_KEY, key, entry.clone());
            let status = last_status.map_or_else(|| "-".to_string(), |s| s.to_string());
            diag.push(format!(
                "resource token refreshed: upstream {status} in {upstream_ms} ms (attempt {attempts}), refresh token {rotated}, {} s valid",
                expiry.saturating_sub(req.now)
            ));
            Ok(Got {
                entry,
                expiry: Some(expiry),
                fields: Some(fields),
                upstream_ms: Some(upstream_ms),
                refresh_failure: None,
            })
        }
        Finished::Failed(f) if f.code == ErrorCode::UpstreamError && still_valid => {
            diag.push(f.reason);
            let failure = RefreshFailure { code: f.code, upstream: f.upstream };
            Ok(serve_still_valid(req.now, current, upstream_ms, failure, diag))
        }
        Finished::RetryLater { upstream, .. } if still_valid => {
            let failure = RefreshFailure { code: ErrorCode::RetryLater, upstream };
            Ok(serve_still_valid(req.now, current, upstream_ms, failure, diag))
        }
        Finished::Failed(f) => {
            diag.push(f.reason);
            Err(with_upstream_ms(
                err_answer(f.code, f.code.upstream_description(), f.upstream, None, take(diag)),
                upstream_ms,
            ))
        }
        Finished::RetryLater { upstream, retry_after_s, .. } => Err(with_upstream_ms(
            err_answer(
                ErrorCode::RetryLater,
                ErrorCode::RetryLater.upstream_description(),
                upstream,
                Some(retry_after_s),
                take(diag),
            ),
            upstream_ms,
        )),
    }
}

fn serve_still_valid(
    now: i64,
    current: Option<&Map<String, Value>>,
    upstream_ms: u64,
    failure: RefreshFailure,
    diag: &mut Vec<String>,
) -> Got {
    let entry = current.cloned().unwrap_or_default();
    let expiry = entry_expiry(&entry);
    let left = expiry.unwrap_or(now).saturating_sub(now);
    diag.push(format!("refresh failed; serving the stored resource token, still valid for {left} s"));
    Got { entry, expiry, fields: None, upstream_ms: Some(upstream_ms), refresh_failure: Some(failure) }
}

/// `check` / `retrieve` with `"resource"`.
pub fn handle(req: &Request, stored: &StoredToken, res: &ResourceRequest) -> Answer {
    let key = res.scope.trim();
    if key.is_empty() {
        return err_answer(ErrorCode::InternalError, "`resource.scope` is empty.", None, None, vec![]);
    }
    let refresh_scope = res.refresh_scope.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(key);
    let mut diag = Vec::new();
    match ensure(req, stored, key, refresh_scope, &mut diag) {
        Ok(got) => ok_answer(got, req.now, diag),
        Err(answer) => answer,
    }
}

/// `serve` or `refreshed` (when the stored token changed) with the entry as response.
pub(crate) fn ok_answer(got: Got, now: i64, diag: Vec<String>) -> Answer {
    let store = got.fields.as_ref().map(|f| RedactedJson(serde_json::to_string(f).unwrap_or_default()));
    Answer::Ok(OkAnswer {
        action: if store.is_some() { Action::Refreshed } else { Action::Serve },
        response: Some(entry_response(&got.entry, got.expiry, now)),
        store,
        upstream_ms: got.upstream_ms,
        expires_at: got.expiry,
        refresh_failure: got.refresh_failure,
        diag,
    })
}

/// How the middle tier exchanges the user's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OboMode {
    /// Entra on-behalf-of: jwt-bearer grant with `requested_token_use=on_behalf_of`.
    EntraObo,
    /// RFC 8693 token exchange.
    TokenExchange,
}

impl OboMode {
    /// `entra_obo` (also absent/empty) or `token_exchange`; anything else is `Err`.
    pub fn parse(mode: Option<&str>) -> Result<OboMode, String> {
        match mode.map(str::trim).unwrap_or("") {
            "" | "entra_obo" => Ok(OboMode::EntraObo),
            "token_exchange" => Ok(OboMode::TokenExchange),
            other => Err(other.chars().take(64).collect()),
        }
    }
}

pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The grant pairs of an OBO / token-exchange request for the user's token.
pub fn obo_grant(mode: OboMode, user_token: &str) -> Vec<(&'static str, &str)> {
    match mode {
        OboMode::EntraObo => {
            vec![("grant_type", GRANT_JWT_BEARER), ("assertion", user_token), ("requested_token_use", "on_behalf_of")]
        }
        OboMode::TokenExchange => vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("subject_token", user_token),
            ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
            ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ],
    }
}

/// Adds `store` (the stored token changed before a failure) to an `err` answer.
fn with_store(answer: Answer, fields: Option<&Map<String, Value>>) -> Answer {
    match (answer, fields) {
        (Answer::Err(mut e), Some(f)) => {
            e.store = Some(RedactedJson(serde_json::to_string(f).unwrap_or_default()));
            e.diag.push("the stored token changed before the failure: store is to be written".into());
            Answer::Err(e)
        }
        (a, _) => a,
    }
}

/// `check` / `retrieve` with `"obo"`.
pub fn handle_obo(req: &Request, stored: &StoredToken, obo: &crate::contract::OboRequest) -> Answer {
    let (client_id, scope, assertion_scope) = (obo.client_id.trim(), obo.scope.trim(), obo.assertion_scope.trim());
    if client_id.is_empty() || scope.is_empty() || assertion_scope.is_empty() {
        return err_answer(
            ErrorCode::InternalError,
            "`obo.client_id`, `obo.scope` and `obo.assertion_scope` must not be empty.",
            None,
            None,
            vec![],
        );
    }
    let mut diag = Vec::new();
    let mode = match OboMode::parse(obo.mode.as_deref()) {
        Ok(m) => m,
        Err(m) => {
            diag.push(format!("obo mode '{m}' is not supported"));
            return err_answer(
                ErrorCode::IdpMisconfigured,
                "The on-behalf-of mode is not supported (use entra_obo or token_exchange).",
                None,
                None,
                diag,
            );
        }
    };
    let now = req.now;
    let min_validity = req.policy.min_validity_s();
    let key = format!("{client_id} {scope}");
    let current = entry(&stored.fields, OBO_KEY, &key);
    let expiry = decision_expiry(current);
    let assertion_left =
        entry(&stored.fields, RESOURCES_KEY, assertion_scope).and_then(entry_expiry).map(|e| e.saturating_sub(now));
    let can_obtain = stored.refresh_token().is_some() || assertion_left.is_some_and(|l| l > 0);
    let left = |e: i64| e.saturating_sub(now);
    match decide(expiry, can_obtain, now, min_validity) {
        Decision::Serve => {
            diag.push(match expiry {
                Some(e) => format!("obo token: {} s left", left(e)),
                None => "obo token: expiry unknown".into(),
            });
            let entry = current.cloned().unwrap_or_default();
            ok_answer(Got { entry, expiry, fields: None, upstream_ms: None, refresh_failure: None }, now, diag)
        }
        Decision::Reauth => {
            diag.push("reauth: obo token missing or expired, no user token to exchange".into());
            err_answer(
                ErrorCode::ReauthRequired,
                "No token for the downstream API and nothing to obtain one with; the user must sign in again.",
                None,
                None,
                diag,
            )
        }
        Decision::Refresh => {
            diag.push(match (current, expiry) {
                (None, _) => "obo due: none stored".into(),
                (Some(_), Some(e)) => format!("obo due: {} s left", left(e)),
                (Some(_), None) => "obo due: expiry unknown".into(),
            });
            if req.op == crate::contract::Op::Check {
                return Answer::Ok(OkAnswer {
                    action: Action::Refresh,
                    response: None,
                    store: None,
                    upstream_ms: None,
                    expires_at: expiry.filter(|_| current.is_some()),
                    refresh_failure: None,
                    diag,
                });
            }
            obo_exchange(req, stored, obo, mode, &key, current, diag)
        }
    }
}

fn obo_exchange(
    req: &Request,
    stored: &StoredToken,
    obo: &crate::contract::OboRequest,
    mode: OboMode,
    key: &str,
    current: Option<&Map<String, Value>>,
    mut diag: Vec<String>,
) -> Answer {
    let Some(idp) = &req.idp else {
        return err_answer(
            ErrorCode::InternalError,
            "An on-behalf-of exchange is due but the request has no `idp` settings.",
            None,
            None,
            diag,
        );
    };
    let creds = match crate::grant::Credentials::prepare(
        obo.client_id.trim(),
        obo.secret(),
        obo.client_auth.as_deref(),
        obo.assertion.as_ref(),
    ) {
        Ok(c) => c,
        Err(e) => return crate::retrieve::credentials_error(e, diag),
    };
    let assertion_scope = obo.assertion_scope.trim();
    let refresh_scope = format!("{assertion_scope} offline_access");
    let got = match ensure(req, stored, assertion_scope, &refresh_scope, &mut diag) {
        Ok(g) => g,
        Err(answer) => return answer,
    };
    let changed = got.fields.as_ref();
    let Some(user_token) = non_empty_str(&got.entry, "access_token") else {
        return with_store(
            err_answer(ErrorCode::ReauthRequired, "No user token to exchange.", None, None, diag),
            changed,
        );
    };
    let grant = obo_grant(mode, user_token);
    let scope = obo.scope.trim();
    let Exchanged { finished, upstream_ms, last_status } =
        match exchange(idp, crate::retrieve::Grant::Repeatable, &mut diag, || {
            crate::grant::token_request(&creds, &idp.token_url, &grant, Some(scope))
        }) {
            Ok(x) => x,
            Err(description) => return with_store(local_misconfiguration(description, diag), changed),
        };
    let total_ms = got.upstream_ms.unwrap_or(0).saturating_add(upstream_ms);
    let still_valid = current.and_then(entry_expiry).is_some_and(|e| e > req.now);
    let serve_current = |failure: RefreshFailure, mut diag: Vec<String>| {
        let entry = current.cloned().unwrap_or_default();
        let expiry = entry_expiry(&entry);
        diag.push(format!(
            "obo failed; serving the stored obo token, still valid for {} s",
            expiry.unwrap_or(req.now).saturating_sub(req.now)
        ));
        let refresh_failure = Some(failure);
        ok_answer(
            Got { entry, expiry, fields: got.fields.clone(), upstream_ms: Some(total_ms), refresh_failure },
            req.now,
            diag,
        )
    };
    match finished {
        Finished::Success { body, attempts } => {
            let (entry, expiry) = new_entry(body, req.now, req.policy.default_lifetime_s());
            if expiry <= req.now {
                diag.push("obo answer holds an access token that is already expired".into());
                let up = Upstream { status: last_status, ..Upstream::default() };
                let a = err_answer(
                    ErrorCode::UpstreamError,
                    ErrorCode::UpstreamError.upstream_description(),
                    Some(up),
                    None,
                    diag,
                );
                return with_store(with_upstream_ms(a, total_ms), changed);
            }
            let mut fields = got.fields.clone().unwrap_or_else(|| stored.fields.clone());
            insert_bounded(&mut fields, OBO_KEY, key, entry.clone());
            let status = last_status.map_or_else(|| "-".to_string(), |s| s.to_string());
            let what = if mode == OboMode::EntraObo { "obo" } else { "token exchange" };
            diag.push(format!(
                "{what}: upstream {status} in {upstream_ms} ms (attempt {attempts}), {} s valid",
                expiry.saturating_sub(req.now)
            ));
            ok_answer(
                Got {
                    entry,
                    expiry: Some(expiry),
                    fields: Some(fields),
                    upstream_ms: Some(total_ms),
                    refresh_failure: None,
                },
                req.now,
                diag,
            )
        }
        Finished::Failed(f) if f.code == ErrorCode::UpstreamError && still_valid => {
            diag.push(f.reason);
            serve_current(RefreshFailure { code: f.code, upstream: f.upstream }, diag)
        }
        Finished::RetryLater { upstream, .. } if still_valid => {
            serve_current(RefreshFailure { code: ErrorCode::RetryLater, upstream }, diag)
        }
        Finished::Failed(f) => {
            diag.push(f.reason);
            let a = err_answer(f.code, obo_description(f.code), f.upstream, None, diag);
            with_store(with_upstream_ms(a, total_ms), changed)
        }
        Finished::RetryLater { upstream, retry_after_s, .. } => with_store(
            with_upstream_ms(
                err_answer(
                    ErrorCode::RetryLater,
                    ErrorCode::RetryLater.upstream_description(),
                    upstream,
                    Some(retry_after_s),
                    diag,
                ),
                total_ms,
            ),
            changed,
        ),
    }
}

/// Our description of an OBO failure (the refresh-token wording does not fit).
fn obo_description(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ReauthRequired => {
            "The identity provider rejected the on-behalf-of exchange for the user; the user must sign in again."
        }
        ErrorCode::ConsentRequired => {
            "The identity provider requires consent for the downstream API; the user (or an administrator) must consent."
        }
        other => other.upstream_description(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn check(stored: Value, resource: Value) -> Value {
        let req: Request = serde_json::from_value(
            json!({"v":1,"op":"check","now":NOW,"stored":stored.to_string(),"resource":resource}),
        )
        .unwrap();
        serde_json::from_str(&crate::retrieve::handle(&req).to_json()).unwrap()
    }

    #[test]
    fn fresh_resource_entry_is_served_without_refresh_or_id_token() {
        let st = json!({"access_token":"top","refresh_token":"rt","id_token":"id","accessTokenExpiration": NOW - 100,
            RESOURCES_KEY: {"api://x/.default": {"access_token":"res","token_type":"Bearer","expires_in":3600,
                "accessTokenExpiration": NOW + 1000, "refresh_token":"leak"}}});
        let a = check(st, json!({"scope":"api://x/.default"}));
        assert_eq!(a["ok"]["action"], "serve", "{a}");
        let r = &a["ok"]["response"];
        assert_eq!(r["access_token"], "res");
        assert_eq!(r["expires_in"], 1000);
        assert!(r.get("refresh_token").is_none() && r.get("id_token").is_none());
        assert_eq!(a["ok"]["expires_at"], NOW + 1000);
    }

    #[test]
    fn missing_or_stale_entry_with_refresh_token_answers_refresh_on_check() {
        let st = json!({"access_token":"top","refresh_token":"rt","accessTokenExpiration": NOW + 5000});
        assert_eq!(check(st.clone(), json!({"scope":"s"}))["ok"]["action"], "refresh");
        let mut st2 = st;
        st2[RESOURCES_KEY] = json!({"s": {"access_token":"r","accessTokenExpiration": NOW + 30}});
        assert_eq!(check(st2, json!({"scope":"s"}))["ok"]["action"], "refresh");
    }

    #[test]
    fn missing_entry_without_refresh_token_is_reauth_required() {
        let st = json!({"access_token":"top","accessTokenExpiration": NOW + 5000});
        assert_eq!(check(st, json!({"scope":"s"}))["err"]["code"], "reauth_required");
    }

    #[test]
    fn top_level_serve_never_shows_the_extension_maps() {
        let st = json!({"access_token":"top","accessTokenExpiration": NOW + 5000,
            RESOURCES_KEY: {"s": {"access_token":"r"}}, OBO_KEY: {"c s": {"access_token":"o"}}});
        let req: Request =
            serde_json::from_value(json!({"v":1,"op":"check","now":NOW,"stored":st.to_string()})).unwrap();
        let a: Value = serde_json::from_str(&crate::retrieve::handle(&req).to_json()).unwrap();
        let r = &a["ok"]["response"];
        assert_eq!(r["access_token"], "top");
        assert!(r.get(RESOURCES_KEY).is_none() && r.get(OBO_KEY).is_none(), "{r}");
    }

    #[test]
    fn new_entry_drops_refresh_and_id_tokens_and_sets_expiration() {
        let (e, exp) = new_entry(
            obj(
                json!({"access_token":"a","refresh_token":"r","refresh_expires_in":9,"id_token":"i","expires_in":"3599","ext_expires_in":"3599","scope":"s"}),
            ),
            NOW,
            300,
        );
        assert_eq!(exp, NOW + 3599);
        assert_eq!(e["expires_in"], 3599);
        assert_eq!(e["ext_expires_in"], "3599");
        assert_eq!(e[ACCESS_TOKEN_EXPIRATION], NOW + 3599);
        for k in NOT_IN_ENTRY {
            assert!(e.get(k).is_none(), "{k}");
        }
    }

    #[test]
    fn insert_bounded_keeps_at_most_16_and_drops_the_earliest_expiry() {
        let mut f = Map::new();
        for i in 0..MAX_ENTRIES as i64 {
            insert_bounded(
                &mut f,
                RESOURCES_KEY,
                &format!("k{i}"),
                obj(json!({"access_token":"a","accessTokenExpiration": NOW + 100 + i})),
            );
        }
        // Replacing an existing key never evicts.
        insert_bounded(&mut f, RESOURCES_KEY, "k3", obj(json!({"access_token":"a","accessTokenExpiration": NOW + 1})));
        assert_eq!(f[RESOURCES_KEY].as_object().unwrap().len(), MAX_ENTRIES);
        insert_bounded(&mut f, RESOURCES_KEY, "new", obj(json!({"access_token":"a","accessTokenExpiration": NOW})));
        let m = f[RESOURCES_KEY].as_object().unwrap();
        assert_eq!(m.len(), MAX_ENTRIES);
        assert!(m.contains_key("new") && !m.contains_key("k3") && m.contains_key("k0"));
    }

    #[test]
    fn insert_bounded_replaces_a_map_that_is_not_an_object() {
        let mut f = obj(json!({RESOURCES_KEY: "garbage"}));
        insert_bounded(&mut f, RESOURCES_KEY, "s", obj(json!({"access_token":"a"})));
        assert_eq!(f[RESOURCES_KEY]["s"]["access_token"], "a");
    }

    proptest! {
        #[test]
        fn resource_check_never_panics_on_odd_maps(map in ".{0,40}", key in ".{0,10}", exp in any::<i64>(), now in any::<i64>()) {
            let garbage: Value = serde_json::from_str(&map).unwrap_or(Value::String(map.clone()));
            for m in [garbage, json!({key.clone(): {"access_token": "a", "accessTokenExpiration": exp}}), json!({key.clone(): 5})] {
                let st = json!({"access_token":"t","refresh_token":"rt", RESOURCES_KEY: m, OBO_KEY: map.clone()});
                let req = json!({"v":1,"op":"check","now":now,"stored":st.to_string(),"resource":{"scope":key.clone()},
                    "obo":null});
                let out: Value = serde_json::from_str(&crate::call(&req.to_string())).unwrap();
                prop_assert!(out.get("ok").is_some() || out.get("err").is_some());
            }
        }

        #[test]
        fn obo_check_never_panics_on_odd_input(map in ".{0,40}", cid in ".{0,6}", scope in ".{0,6}", mode in ".{0,12}", exp in any::<i64>(), now in any::<i64>()) {
            let garbage: Value = serde_json::from_str(&map).unwrap_or(Value::String(map.clone()));
            let key = format!("{} {}", cid.trim(), scope.trim());
            for m in [garbage, json!({key.clone(): {"access_token": "a", "accessTokenExpiration": exp}})] {
                let st = json!({"access_token":"t", OBO_KEY: m.clone(), RESOURCES_KEY: m});
                for op in ["check", "retrieve"] {
                    let req = json!({"v":1,"op":op,"now":now,"stored":st.to_string(),
                        "obo":{"client_id":cid.clone(),"assertion_scope":scope.clone(),"scope":scope.clone(),"mode":mode.clone()}});
                    let out: Value = serde_json::from_str(&crate::call(&req.to_string())).unwrap();
                    prop_assert!(out.get("ok").is_some() || out.get("err").is_some());
                }
            }
        }
    }
}
