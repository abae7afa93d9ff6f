//! What one `check` / `retrieve` request comes to: decide, refresh when due, merge the
//! refresh response into the stored token, and shape what the app receives.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::contract::{
    Action, Answer, CONTRACT_VERSION, ErrAnswer, IdpConfig, OkAnswer, Op, Policy, RedactedJson, RefreshFailure,
    Request, Upstream,
};
use crate::errors::{ErrorCode, Failure, Outcome, classify_failure, classify_response};
use crate::freshness::{Decision, decide};
use crate::grant::{Credentials, CredentialsError, TokenRequest, refresh_request};
use crate::http::{Limits, post_form};
use crate::retry::{BACKOFF_BASE, Finished, RetryPolicy};
use crate::stored::{ACCESS_TOKEN_EXPIRATION, StoredToken, non_empty_str, number_or_string};

/// An `err` answer.
pub fn err_answer(
    code: ErrorCode,
    description: impl Into<String>,
    upstream: Option<Upstream>,
    retry_after_s: Option<u64>,
    diag: Vec<String>,
) -> Answer {
    Answer::Err(ErrAnswer {
        code,
        status: code.status(),
        error_description: description.into(),
        upstream,
        retry_after_s,
        diag,
        upstream_ms: None,
        store: None,
    })
}

/// Sets `upstream_ms` on an `err` answer (the IdP was asked); an `ok` is returned as is.
pub(crate) fn with_upstream_ms(mut answer: Answer, upstream_ms: u64) -> Answer {
    if let Answer::Err(e) = &mut answer {
        e.upstream_ms = Some(upstream_ms);
    }
    answer
}

/// Handles one parsed request.
pub fn handle(req: &Request) -> Answer {
    if req.v != CONTRACT_VERSION {
        return err_answer(
            ErrorCode::InternalError,
            format!("Unsupported contract version {}; this core speaks {CONTRACT_VERSION}.", req.v),
            None,
            None,
            vec![],
        );
    }
    if req.op == Op::AppToken {
        return crate::app::handle(req);
    }
    if matches!(req.op, Op::Keyring | Op::Seal | Op::Unseal | Op::Trust) {
        return err_answer(ErrorCode::InternalError, "Storage ops are not token retrievals.", None, None, vec![]);
    }
    let stored = match StoredToken::parse(req.stored.expose()) {
        Ok(s) => s,
        Err(e) => {
            return err_answer(
                ErrorCode::ReauthRequired,
                "The stored token cannot be used; the user must sign in again.",
                None,
                None,
                vec![format!("reauth: {}", e.describe())],
            );
        }
    };
    if req.op == Op::Inspect {
        return crate::inspect::handle(req, &stored);
    }
    if let Some(obo) = &req.obo {
        if req.resource.is_some() {
            return err_answer(
                ErrorCode::InternalError,
                "A request names either `resource` or `obo`, not both.",
                None,
                None,
                vec![],
            );
        }
        return crate::resource::handle_obo(req, &stored, obo);
    }
    if let Some(res) = &req.resource {
        return crate::resource::handle(req, &stored, res);
    }
    let now = req.now;
    let expiry = stored.expiry();
    let min_validity = req.policy.min_validity_s();
    let has_rt = stored.refresh_token().is_some();
    let left = |e: i64| e.saturating_sub(now);
    match decide(expiry, has_rt, now, min_validity) {
        Decision::Serve => {
            let why = match expiry {
                Some(e) if left(e) > min_validity => format!("serve: {} s left", left(e)),
                Some(e) => format!("serve: {} s left, no refresh token to refresh early", left(e)),
                None => "serve: expiry unknown and no refresh token".to_string(),
            };
            serve(&stored.fields, expiry, now, &req.policy, vec![why])
        }
        Decision::Reauth => err_answer(
            ErrorCode::ReauthRequired,
            "The access token has expired and no refresh token is stored; the user must sign in again.",
            None,
            None,
            vec![format!("reauth: expired {} s ago, no refresh token", left(expiry.unwrap_or(0)).saturating_neg())],
        ),
        Decision::Refresh => {
            let why = match expiry {
                Some(e) if left(e) > 0 => format!("refresh due: {} s left, min validity {min_validity} s", left(e)),
                Some(e) => format!("refresh due: expired {} s ago", left(e).saturating_neg()),
                None => "refresh due: expiry unknown".to_string(),
            };
            match req.op {
                Op::Check | Op::Inspect => Answer::Ok(OkAnswer {
                    action: Action::Refresh,
                    response: None,
                    store: None,
                    upstream_ms: None,
                    expires_at: expiry,
                    refresh_failure: None,
                    diag: vec![why],
                }),
                // Retrieve (storage and app-only ops never get here).
                _ => refresh(req, &stored, vec![why]),
            }
        }
    }
}

fn serve(fields: &Map<String, Value>, expiry: Option<i64>, now: i64, policy: &Policy, diag: Vec<String>) -> Answer {
    Answer::Ok(OkAnswer {
        action: Action::Serve,
        response: Some(app_response(fields, expiry, now, policy)),
        store: None,
        upstream_ms: None,
        expires_at: expiry,
        refresh_failure: None,
        diag,
    })
}

fn refresh(req: &Request, stored: &StoredToken, mut diag: Vec<String>) -> Answer {
    let Some(idp) = &req.idp else {
        return err_answer(
            ErrorCode::InternalError,
            "A refresh is due but the request has no `idp` settings.",
            None,
            None,
            diag,
        );
    };
    let Some(rt) = stored.refresh_token() else {
        // decide() only says Refresh with a refresh token; answer sanely all the same.
        return err_answer(
            ErrorCode::ReauthRequired,
            "No refresh token is stored; the user must sign in again.",
            None,
            None,
            diag,
        );
    };
    let creds = match Credentials::of_idp(idp) {
        Ok(c) => c,
        Err(e) => return credentials_error(e, diag),
    };
    let make = || refresh_request(&creds, &idp.token_url, rt, idp.scope());
    let Exchanged { finished, upstream_ms, last_status } = match exchange(idp, Grant::RefreshToken, &mut diag, make) {
        Ok(x) => x,
        Err(description) => return local_misconfiguration(description, diag),
    };
    match finished {
        Finished::Success { body, attempts } => {
            let merged = merge(stored, body, req.now, req.policy.default_lifetime_s());
            let expiry = merged.get(ACCESS_TOKEN_EXPIRATION).and_then(number_or_string);
            if expiry.is_none_or(|e| e <= req.now) {
                diag.push("refresh answer holds an access token that is already expired".into());
                let up = Upstream { status: last_status, ..Upstream::default() };
                return with_upstream_ms(
                    err_answer(
                        ErrorCode::UpstreamError,
                        ErrorCode::UpstreamError.upstream_description(),
                        Some(up),
                        None,
                        diag,
                    ),
                    upstream_ms,
                );
            }
            let status = last_status.map_or_else(|| "-".to_string(), |s| s.to_string());
            let rotated =
                if merged.get("refresh_token").and_then(Value::as_str) == Some(rt) { "kept" } else { "rotated" };
            diag.push(format!(
                "refreshed: upstream {status} in {upstream_ms} ms (attempt {attempts}), refresh token {rotated}, {} s valid",
                expiry.unwrap_or(0).saturating_sub(req.now)
            ));
            let store = serde_json::to_string(&merged).unwrap_or_default();
            Answer::Ok(OkAnswer {
                action: Action::Refreshed,
                response: Some(app_response(&merged, expiry, req.now, &req.policy)),
                store: Some(RedactedJson(store)),
                upstream_ms: Some(upstream_ms),
                expires_at: expiry,
                refresh_failure: None,
                diag,
            })
        }
        Finished::Failed(f) if f.code == ErrorCode::UpstreamError && still_valid(stored, req.now) => {
            diag.push(f.reason);
            let failure = RefreshFailure { code: f.code, upstream: f.upstream };
            serve_still_valid(req, stored, upstream_ms, failure, diag)
        }
        Finished::Failed(f) => {
            diag.push(f.reason);
            with_upstream_ms(err_answer(f.code, f.code.upstream_description(), f.upstream, None, diag), upstream_ms)
        }
        Finished::RetryLater { upstream, .. } if still_valid(stored, req.now) => {
            let failure = RefreshFailure { code: ErrorCode::RetryLater, upstream };
            serve_still_valid(req, stored, upstream_ms, failure, diag)
        }
        Finished::RetryLater { upstream, retry_after_s, .. } => with_upstream_ms(
            err_answer(
                ErrorCode::RetryLater,
                ErrorCode::RetryLater.upstream_description(),
                upstream,
                Some(retry_after_s),
                diag,
            ),
            upstream_ms,
        ),
    }
}

/// What the attempts at the token endpoint came to.
pub(crate) struct Exchanged {
    pub finished: Finished,
    /// Time spent on all attempts and waits.
    pub upstream_ms: u64,
    /// HTTP status of the last answer, when one arrived.
    pub last_status: Option<u16>,
}

/// Whether the grant spends a one-time credential: a `refresh_token` grant at an IdP with
/// strict rotation must not be sent twice when the first attempt may have been processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    RefreshToken,
    /// client_credentials, jwt-bearer (on-behalf-of), token exchange: nothing is spent.
    Repeatable,
}

/// POSTs `make()`'s request (built anew for every attempt) to `idp.token_url` with the
/// retry policy of `idp` and `grant`. `Err` is the description of a local configuration problem
/// (CA file, proxy URL) found before any network call. A request that cannot be built
/// ends the attempts as `idp_misconfigured`.
pub(crate) fn exchange(
    idp: &IdpConfig,
    grant: Grant,
    diag: &mut Vec<String>,
    mut make: impl FnMut() -> Result<TokenRequest, String>,
) -> Result<Exchanged, String> {
    let client = crate::http::client(&idp.transport()).map_err(|e| e.0)?;
    let started = Instant::now();
    let mut last_status = None;
    let finished = crate::retry::run(retry_policy(idp, grant), diag, |timeout| {
        let token_request = match make() {
            Ok(r) => r,
            Err(why) => {
                return Outcome::Failed(Failure { code: ErrorCode::IdpMisconfigured, upstream: None, reason: why });
            }
        };
        // The connect timeout is the pooled client's; the total timeout bounds it too.
        let limits = Limits { timeout, max_body_bytes: idp.max_body_bytes() };
        match post_form(&client, &idp.token_url, &token_request, limits) {
            Ok(resp) => {
                last_status = Some(resp.status);
                classify_response(&resp, SystemTime::now())
            }
            Err(f) => {
                last_status = None;
                classify_failure(&f)
            }
        }
    });
    Ok(Exchanged { finished, upstream_ms: started.elapsed().as_millis() as u64, last_status })
}

/// `idp_misconfigured` for client credentials that cannot be used (no network call).
pub(crate) fn credentials_error(e: CredentialsError, mut diag: Vec<String>) -> Answer {
    diag.push(e.diag);
    err_answer(ErrorCode::IdpMisconfigured, e.description, None, None, diag)
}

/// `idp_misconfigured` for a local configuration problem, with its own description.
pub(crate) fn local_misconfiguration(description: String, mut diag: Vec<String>) -> Answer {
    diag.push("idp_misconfigured: local settings unusable, no network call".into());
    err_answer(ErrorCode::IdpMisconfigured, description, None, None, diag)
}

/// The stored access token has a known expiry still in the future.
fn still_valid(stored: &StoredToken, now: i64) -> bool {
    stored.access_token().is_some() && stored.expiry().is_some_and(|e| e > now)
}

/// A refresh failed for a reason the user cannot fix (`retry_later`, `upstream_error`)
/// while the stored access token is still valid: serve it; nothing is stored.
fn serve_still_valid(
    req: &Request,
    stored: &StoredToken,
    upstream_ms: u64,
    failure: RefreshFailure,
    mut diag: Vec<String>,
) -> Answer {
    let expiry = stored.expiry();
    let left = expiry.unwrap_or(req.now).saturating_sub(req.now);
    diag.push(format!("refresh failed; serving the stored access token, still valid for {left} s"));
    Answer::Ok(OkAnswer {
        action: Action::Serve,
        response: Some(app_response(&stored.fields, expiry, req.now, &req.policy)),
        store: None,
        upstream_ms: Some(upstream_ms),
        expires_at: expiry,
        refresh_failure: Some(failure),
        diag,
    })
}

fn retry_policy(idp: &IdpConfig, grant: Grant) -> RetryPolicy {
    RetryPolicy {
        max_attempts: idp.max_attempts(),
        deadline: Duration::from_millis(idp.deadline_ms()),
        timeout: Duration::from_millis(idp.timeout_ms()),
        backoff_base: BACKOFF_BASE,
        repeat_maybe_processed: grant == Grant::Repeatable || idp.tolerates_refresh_token_reuse(),
    }
}

/// The new stored token after a refresh: the IdP's response with `expires_in` and
/// `refresh_expires_in` as numbers, `accessTokenExpiration` set, and the previous
/// refresh token (with its `refresh_expires_in`) and id token kept when none came back.
/// The IdP's other fields are preserved in their order.
pub fn merge(
    previous: &StoredToken,
    response: Map<String, Value>,
    now: i64,
    default_lifetime_s: i64,
) -> Map<String, Value> {
    let mut m = response;
    for key in ["expires_in", "refresh_expires_in"] {
        if let Some(v) = m.get(key) {
            match number_or_string(v) {
                Some(n) => {
                    m.insert(key.to_string(), Value::from(n));
                }
                None => {
                    m.shift_remove(key);
                }
            }
        }
    }
    if non_empty_str(&m, "refresh_token").is_none() {
        if let Some(old) = previous.refresh_token() {
            m.insert("refresh_token".into(), Value::from(old));
            match previous.fields.get("refresh_expires_in").and_then(number_or_string) {
                Some(n) => {
                    m.insert("refresh_expires_in".into(), Value::from(n));
                }
                None => {
                    m.shift_remove("refresh_expires_in");
                }
            }
        }
    }
    if non_empty_str(&m, "id_token").is_none() {
        if let Some(old) = previous.id_token() {
            m.insert("id_token".into(), Value::from(old));
        }
    }
    for key in crate::resource::EXTENSION_KEYS {
        match previous.fields.get(key) {
            Some(v) => {
                m.insert(key.to_string(), v.clone());
            }
            None => {
                // The IdP has no business sending these; never let it plant tokens there.
                m.shift_remove(key);
            }
        }
    }
    let expiry = expiry_of(&m, now, default_lifetime_s);
    m.insert(ACCESS_TOKEN_EXPIRATION.into(), Value::from(expiry));
    m.insert(crate::inspect::REFRESHED_AT.into(), Value::from(now));
    m
}

/// When a freshly received access token expires. The token's own `exp` (when it is a JWT)
/// bounds what `expires_in` promises: an IdP answering a huge `expires_in` must not make us
/// serve the token past its real expiry. A lifetime is also capped at a year, so
/// `accessTokenExpiration` stays an integer that stock Keycloak can read back. Without either,
/// `default_lifetime_s`.
pub(crate) fn expiry_of(m: &Map<String, Value>, now: i64, default_lifetime_s: i64) -> i64 {
    const MAX_LIFETIME_S: i64 = 366 * 24 * 3600;
    let jwt_exp = non_empty_str(m, "access_token").and_then(crate::jwt::exp);
    let expires_in = m.get("expires_in").and_then(number_or_string).filter(|e| *e > 0).map(|e| e.min(MAX_LIFETIME_S));
    match (expires_in, jwt_exp) {
        (Some(e), Some(x)) => now.saturating_add(e).min(x),
        (Some(e), None) => now.saturating_add(e),
        (None, Some(x)) => x,
        (None, None) => now.saturating_add(default_lifetime_s),
    }
}

/// What the app receives: the stored fields, `expires_in` as the *remaining* lifetime
/// (absent when unknown), `token_type` defaulted to `Bearer`, refresh token and its
/// lifetime removed unless asked for, id token removed unless allowed.
pub fn app_response(fields: &Map<String, Value>, expiry: Option<i64>, now: i64, policy: &Policy) -> Map<String, Value> {
    let mut r = fields.clone();
    for key in crate::resource::EXTENSION_KEYS {
        r.shift_remove(key);
    }
    match expiry {
        Some(e) => {
            r.insert("expires_in".into(), Value::from(e.saturating_sub(now).max(0)));
        }
        None => {
            r.shift_remove("expires_in");
        }
    }
    if !policy.include_refresh_token() {
        r.shift_remove("refresh_token");
        r.shift_remove("refresh_expires_in");
    }
    if !policy.include_id_token() {
        r.shift_remove("id_token");
    }
    if non_empty_str(&r, "token_type").is_none() {
        r.insert("token_type".into(), Value::from("Bearer"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::make_jwt;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn stored(v: Value) -> StoredToken {
        StoredToken::parse(&v.to_string()).unwrap()
    }

    fn policy(include_rt: bool, include_id: bool) -> Policy {
        Policy { include_refresh_token: Some(include_rt), include_id_token: Some(include_id), ..Policy::default() }
    }

    #[test]
    fn merge_stores_a_rotated_refresh_token() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt-old"}));
        let m = merge(&prev, obj(json!({"access_token":"new","refresh_token":"rt-new","expires_in":3600})), NOW, 300);
        assert_eq!(m["refresh_token"], "rt-new");
    }

    #[test]
    fn merge_keeps_old_refresh_token_and_its_lifetime_when_none_returned() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt-old","refresh_expires_in":"7200"}));
        let m = merge(&prev, obj(json!({"access_token":"new","expires_in":3600,"refresh_token":""})), NOW, 300);
        assert_eq!(m["refresh_token"], "rt-old");
        assert_eq!(m["refresh_expires_in"], 7200);
    }

    #[test]
    fn merge_keeps_old_id_token_when_none_returned_and_takes_a_new_one() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt","id_token":"id-old"}));
        let kept = merge(&prev, obj(json!({"access_token":"new","expires_in":60})), NOW, 300);
        assert_eq!(kept["id_token"], "id-old");
        let new = merge(&prev, obj(json!({"access_token":"new","expires_in":60,"id_token":"id-new"})), NOW, 300);
        assert_eq!(new["id_token"], "id-new");
    }

    #[test]
    fn merge_preserves_extra_fields_in_order() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let resp = obj(
            json!({"token_type":"Bearer","scope":"User.Read","expires_in":"3599","ext_expires_in":"3599","access_token":"new","refresh_token":"rt2","foo":{"bar":1}}),
        );
        let m = merge(&prev, resp, NOW, 300);
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "token_type",
                "scope",
                "expires_in",
                "ext_expires_in",
                "access_token",
                "refresh_token",
                "foo",
                "accessTokenExpiration",
                "fresh_token_refreshed_at"
            ]
        );
        assert_eq!(m["ext_expires_in"], "3599");
        assert_eq!(m["foo"], json!({"bar":1}));
    }

    #[test]
    fn merge_normalises_string_expires_in_to_a_number_and_sets_expiration() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let m = merge(
            &prev,
            obj(json!({"access_token":"new","expires_in":"3599","refresh_token":"rt2","refresh_expires_in":"86400"})),
            NOW,
            300,
        );
        assert_eq!(m["expires_in"], json!(3599));
        assert_eq!(m["refresh_expires_in"], json!(86400));
        assert_eq!(m[ACCESS_TOKEN_EXPIRATION], json!(NOW + 3599));
    }

    #[test]
    fn merge_records_when_it_refreshed_and_the_app_never_sees_it() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt","fresh_token_refreshed_at": NOW - 500}));
        let m =
            merge(&prev, obj(json!({"access_token":"new","expires_in":3600,"fresh_token_refreshed_at": 1})), NOW, 300);
        assert_eq!(m[crate::inspect::REFRESHED_AT], json!(NOW));
        assert!(
            app_response(&m, Some(NOW + 3600), NOW, &Policy::default()).get(crate::inspect::REFRESHED_AT).is_none()
        );
    }

    #[test]
    fn merge_never_promises_more_than_the_jwt_exp_even_with_a_huge_expires_in() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let at = make_jwt(&json!({"exp": NOW + 600}));
        let m = merge(&prev, obj(json!({"access_token": at, "expires_in": 10_000_000_000i64})), NOW, 300);
        assert_eq!(m[ACCESS_TOKEN_EXPIRATION], json!(NOW + 600));
    }

    #[test]
    fn merge_caps_a_huge_expires_in_of_an_opaque_token_at_a_year() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let m = merge(&prev, obj(json!({"access_token": "opaque", "expires_in": 10_000_000_000i64})), NOW, 300);
        assert_eq!(m[ACCESS_TOKEN_EXPIRATION], json!(NOW + 366 * 24 * 3600));
    }

    #[test]
    fn merge_takes_jwt_exp_when_expires_in_is_missing() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let at = make_jwt(&json!({"exp": NOW + 1234}));
        let m = merge(&prev, obj(json!({"access_token": at})), NOW, 300);
        assert_eq!(m[ACCESS_TOKEN_EXPIRATION], json!(NOW + 1234));
    }

    #[test]
    fn merge_takes_default_lifetime_when_neither_expires_in_nor_jwt_exp() {
        let prev = stored(json!({"access_token":"old","refresh_token":"rt"}));
        let m = merge(&prev, obj(json!({"access_token":"opaque","expires_in":0})), NOW, 300);
        assert_eq!(m[ACCESS_TOKEN_EXPIRATION], json!(NOW + 300));
    }

    #[test]
    fn app_response_has_remaining_expires_in() {
        let f = obj(json!({"access_token":"at","expires_in":3599,"accessTokenExpiration": NOW + 1000}));
        let r = app_response(&f, Some(NOW + 1000), NOW, &policy(false, true));
        assert_eq!(r["expires_in"], 1000);
    }

    #[test]
    fn app_response_strips_refresh_token_by_default_and_includes_it_on_request() {
        let f = obj(json!({"access_token":"at","refresh_token":"rt","refresh_expires_in":0,"id_token":"id"}));
        let stripped = app_response(&f, Some(NOW + 100), NOW, &Policy::default());
        assert!(stripped.get("refresh_token").is_none() && stripped.get("refresh_expires_in").is_none());
        let included = app_response(&f, Some(NOW + 100), NOW, &policy(true, true));
        assert_eq!(included["refresh_token"], "rt");
    }

    #[test]
    fn app_response_strips_id_token_when_not_allowed() {
        let f = obj(json!({"access_token":"at","id_token":"id"}));
        assert!(app_response(&f, None, NOW, &policy(false, false)).get("id_token").is_none());
        assert_eq!(app_response(&f, None, NOW, &policy(false, true))["id_token"], "id");
    }

    #[test]
    fn app_response_omits_expires_in_when_expiry_unknown_and_defaults_token_type() {
        let f = obj(json!({"access_token":"at","expires_in":"3599"}));
        let r = app_response(&f, None, NOW, &Policy::default());
        assert!(r.get("expires_in").is_none());
        assert_eq!(r["token_type"], "Bearer");
    }

    fn request(stored: &str, op: &str, idp: Option<Value>) -> Request {
        let mut v = json!({"v":1,"op":op,"now":NOW,"stored":stored,"policy":{"min_validity_s":60}});
        if let Some(i) = idp {
            v["idp"] = i;
        }
        serde_json::from_value(v).unwrap()
    }

    fn answer(a: Answer) -> Value {
        serde_json::from_str(&a.to_json()).unwrap()
    }

    #[test]
    fn fresh_token_is_served_without_store() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW + 600}).to_string();
        let a = answer(handle(&request(&s, "retrieve", None)));
        assert_eq!(a["ok"]["action"], "serve");
        assert_eq!(a["ok"]["response"]["expires_in"], 600);
        assert_eq!(a["ok"]["expires_at"], NOW + 600);
        assert!(a["ok"].get("store").is_none());
    }

    #[test]
    fn check_of_an_expiring_token_with_refresh_token_answers_refresh() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW + 30}).to_string();
        let a = answer(handle(&request(&s, "check", None)));
        assert_eq!(a["ok"]["action"], "refresh");
        assert!(a["ok"].get("response").is_none());
    }

    #[test]
    fn expired_token_without_refresh_token_is_reauth_required() {
        let s = json!({"access_token":"at","accessTokenExpiration": NOW - 1}).to_string();
        let a = answer(handle(&request(&s, "check", None)));
        assert_eq!(a["err"]["code"], "reauth_required");
        assert_eq!(a["err"]["status"], 400);
    }

    #[test]
    fn garbage_or_empty_stored_token_is_reauth_required() {
        for s in ["", "garbage", "{\"x\":1}"] {
            let a = answer(handle(&request(s, "retrieve", None)));
            assert_eq!(a["err"]["code"], "reauth_required", "{s:?}");
        }
    }

    #[test]
    fn retrieve_due_without_idp_settings_is_internal_error() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW}).to_string();
        let a = answer(handle(&request(&s, "retrieve", None)));
        assert_eq!(a["err"]["code"], "internal_error");
    }

    #[test]
    fn unsupported_client_auth_is_idp_misconfigured_without_network() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW}).to_string();
        let idp = json!({"token_url":"http://127.0.0.1:9/token","client_id":"c","client_auth":"private_key_jwt"});
        let a = answer(handle(&request(&s, "retrieve", Some(idp))));
        assert_eq!(a["err"]["code"], "idp_misconfigured");
    }

    #[test]
    fn other_contract_version_is_internal_error() {
        let mut r = request("{\"access_token\":\"a\"}", "check", None);
        r.v = 2;
        assert_eq!(answer(handle(&r))["err"]["code"], "internal_error");
    }
}
