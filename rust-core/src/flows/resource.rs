//! Tokens per resource from one refresh token (Entra: one refresh token mints tokens for
//! any resource, one resource per request), kept inside the stored token JSON under
//! `fresh_token_resources` (the entries themselves: `pure::entries`).

use serde_json::{Map, Value};

use super::refresh::{Obtained, Target, obtain, status_text};
use crate::pure::entries::{decision_expiry, due_line, entry, entry_expiry, entry_response, insert_bounded, new_entry};
use crate::pure::freshness::{Decision, decide};
use crate::pure::json::{non_empty_str, number_or_string};
use crate::pure::stored::{RESOURCES_KEY, StoredToken};
use crate::upstream::exchange::{Grant, credentials_error};
use crate::upstream::grant::refresh_request;
use crate::wire::{
    Action, Answer, ErrorCode, OkAnswer, Op, RedactedJson, RefreshFailure, Request, ResourceRequest, err_answer,
    refresh_due,
};

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
            diag.push(due_line("resource token refresh", current, expiry, now));
            if req.op == Op::Check {
                return Err(refresh_due(expiry.filter(|_| current.is_some()), std::mem::take(diag)));
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
    let creds = match crate::upstream::grant::Credentials::of_idp(idp) {
        Ok(c) => c,
        Err(e) => return Err(credentials_error(e, take(diag))),
    };
    let target = Target {
        idp,
        grant: Grant::RefreshToken,
        now: req.now,
        still_valid: current.and_then(entry_expiry).is_some_and(|e| e > req.now),
        describe: ErrorCode::upstream_description,
        earlier_ms: 0,
        what: "refresh",
        expired_names_status: true,
    };
    let make = || refresh_request(&creds, &idp.token_url, rt, Some(refresh_scope));
    let accept = |body: Map<String, Value>| {
        let new_rt = non_empty_str(&body, "refresh_token").map(str::to_owned);
        let new_rt_life = body.get("refresh_expires_in").and_then(number_or_string);
        let (entry, expiry) = new_entry(body, req.now, req.policy.default_lifetime_s());
        ((entry, new_rt, new_rt_life), Some(expiry))
    };
    match obtain(&target, diag, make, accept) {
        Obtained::Fresh { token: (entry, new_rt, new_rt_life), expiry, attempts, upstream_ms, last_status } => {
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
            diag.push(format!(
                "resource token refreshed: upstream {} in {upstream_ms} ms (attempt {attempts}), refresh token {rotated}, {} s valid",
                status_text(last_status),
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
        Obtained::StillValid { failure, upstream_ms } => {
            Ok(serve_still_valid(req.now, current, upstream_ms, failure, diag))
        }
        Obtained::Failed(answer) => Err(answer),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::stored::OBO_KEY;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn check(stored: Value, resource: Value) -> Value {
        let req: Request = serde_json::from_value(
            json!({"v":2,"op":"check","now":NOW,"stored":stored.to_string(),"resource":resource}),
        )
        .unwrap();
        serde_json::from_str(&crate::dispatch::handle(&req).to_json()).unwrap()
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
            serde_json::from_value(json!({"v":2,"op":"check","now":NOW,"stored":st.to_string()})).unwrap();
        let a: Value = serde_json::from_str(&crate::dispatch::handle(&req).to_json()).unwrap();
        let r = &a["ok"]["response"];
        assert_eq!(r["access_token"], "top");
        assert!(r.get(RESOURCES_KEY).is_none() && r.get(OBO_KEY).is_none(), "{r}");
    }

    proptest! {
        #[test]
        fn resource_check_never_panics_on_odd_maps(map in ".{0,40}", key in ".{0,10}", exp in any::<i64>(), now in any::<i64>()) {
            let garbage: Value = serde_json::from_str(&map).unwrap_or(Value::String(map.clone()));
            for m in [garbage, json!({key.clone(): {"access_token": "a", "accessTokenExpiration": exp}}), json!({key.clone(): 5})] {
                let st = json!({"access_token":"t","refresh_token":"rt", RESOURCES_KEY: m, OBO_KEY: map.clone()});
                let req = json!({"v":2,"op":"check","now":now,"stored":st.to_string(),"resource":{"scope":key.clone()},
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
                    let req = json!({"v":2,"op":op,"now":now,"stored":st.to_string(),
                        "obo":{"client_id":cid.clone(),"assertion_scope":scope.clone(),"scope":scope.clone(),"mode":mode.clone()}});
                    let out: Value = serde_json::from_str(&crate::call(&req.to_string())).unwrap();
                    prop_assert!(out.get("ok").is_some() || out.get("err").is_some());
                }
            }
        }
    }
}
