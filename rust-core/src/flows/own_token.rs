//! The IdP's own token: what one `check` / `retrieve` without `resource` / `obo` comes to:
//! decide, refresh when due, merge the refresh response into the stored token
//! (`pure::merge`), and shape what the app receives.

use serde_json::{Map, Value};

use super::refresh::{Obtained, Target, obtain, status_text};
use crate::pure::freshness::{Decision, decide};
use crate::pure::json::number_or_string;
use crate::pure::merge::{app_response, merge};
use crate::pure::stored::{ACCESS_TOKEN_EXPIRATION, StoredToken};
use crate::upstream::exchange::{Grant, credentials_error};
use crate::upstream::grant::{Credentials, refresh_request};
use crate::wire::{
    Action, Answer, ErrorCode, OkAnswer, Op, Policy, RedactedJson, RefreshFailure, Request, err_answer, refresh_due,
};

/// `check` / `retrieve` of the IdP's own token (no `resource`, no `obo`) on the parsed,
/// opened stored token.
pub fn handle(req: &Request, stored: &StoredToken) -> Answer {
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
                Op::Check | Op::Inspect => refresh_due(expiry, vec![why]),
                // Retrieve (storage and app-only ops never get here).
                _ => refresh(req, stored, vec![why]),
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
    let target = Target {
        idp,
        grant: Grant::RefreshToken,
        now: req.now,
        still_valid: still_valid(stored, req.now),
        describe: ErrorCode::upstream_description,
        earlier_ms: 0,
        what: "refresh",
        expired_names_status: true,
    };
    let make = || refresh_request(&creds, &idp.token_url, rt, idp.scope());
    let accept = |body| {
        let merged = merge(stored, body, req.now, req.policy.default_lifetime_s());
        let expiry = merged.get(ACCESS_TOKEN_EXPIRATION).and_then(number_or_string);
        (merged, expiry)
    };
    match obtain(&target, &mut diag, make, accept) {
        Obtained::Fresh { token: merged, expiry, attempts, upstream_ms, last_status } => {
            let rotated =
                if merged.get("refresh_token").and_then(Value::as_str) == Some(rt) { "kept" } else { "rotated" };
            diag.push(format!(
                "refreshed: upstream {} in {upstream_ms} ms (attempt {attempts}), refresh token {rotated}, {} s valid",
                status_text(last_status),
                expiry.saturating_sub(req.now)
            ));
            let store = serde_json::to_string(&merged).unwrap_or_default();
            Answer::Ok(OkAnswer {
                action: Action::Refreshed,
                response: Some(app_response(&merged, Some(expiry), req.now, &req.policy)),
                store: Some(RedactedJson(store)),
                upstream_ms: Some(upstream_ms),
                expires_at: Some(expiry),
                refresh_failure: None,
                diag,
            })
        }
        Obtained::StillValid { failure, upstream_ms } => serve_still_valid(req, stored, upstream_ms, failure, diag),
        Obtained::Failed(answer) => answer,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn request(stored: &str, op: &str, idp: Option<Value>) -> Request {
        let mut v = json!({"v":2,"op":op,"now":NOW,"stored":stored,"policy":{"min_validity_s":60}});
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
        let a = answer(crate::dispatch::handle(&request(&s, "retrieve", None)));
        assert_eq!(a["ok"]["action"], "serve");
        assert_eq!(a["ok"]["response"]["expires_in"], 600);
        assert_eq!(a["ok"]["expires_at"], NOW + 600);
        assert!(a["ok"].get("store").is_none());
    }

    #[test]
    fn check_of_an_expiring_token_with_refresh_token_answers_refresh() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW + 30}).to_string();
        let a = answer(crate::dispatch::handle(&request(&s, "check", None)));
        assert_eq!(a["ok"]["action"], "refresh");
        assert!(a["ok"].get("response").is_none());
    }

    #[test]
    fn expired_token_without_refresh_token_is_reauth_required() {
        let s = json!({"access_token":"at","accessTokenExpiration": NOW - 1}).to_string();
        let a = answer(crate::dispatch::handle(&request(&s, "check", None)));
        assert_eq!(a["err"]["code"], "reauth_required");
        assert_eq!(a["err"]["status"], 400);
    }

    #[test]
    fn garbage_or_empty_stored_token_is_reauth_required() {
        for s in ["", "garbage", "{\"x\":1}"] {
            let a = answer(crate::dispatch::handle(&request(s, "retrieve", None)));
            assert_eq!(a["err"]["code"], "reauth_required", "{s:?}");
        }
    }

    #[test]
    fn retrieve_due_without_idp_settings_is_internal_error() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW}).to_string();
        let a = answer(crate::dispatch::handle(&request(&s, "retrieve", None)));
        assert_eq!(a["err"]["code"], "internal_error");
    }

    #[test]
    fn unsupported_client_auth_is_idp_misconfigured_without_network() {
        let s = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW}).to_string();
        let idp = json!({"token_url":"http://127.0.0.1:9/token","client_id":"c","client_auth":"private_key_jwt"});
        let a = answer(crate::dispatch::handle(&request(&s, "retrieve", Some(idp))));
        assert_eq!(a["err"]["code"], "idp_misconfigured");
    }
}
