//! On-behalf-of (Entra jwt-bearer) and RFC 8693 token exchange for a downstream API: the
//! user's token for the middle tier (a per-resource token, `flows::resource::ensure`) is
//! exchanged for one of the downstream scope, kept under `fresh_token_obo`.

use serde_json::{Map, Value};

use super::refresh::{Obtained, Target, obtain, status_text};
use super::resource::{Got, ensure, ok_answer};
use crate::pure::entries::{decision_expiry, due_line, entry, entry_expiry, insert_bounded, new_entry};
use crate::pure::freshness::{Decision, decide};
use crate::pure::json::non_empty_str;
use crate::pure::stored::{OBO_KEY, RESOURCES_KEY, StoredToken};
use crate::upstream::exchange::{Grant, credentials_error};
use crate::upstream::grant::{Credentials, token_request};
use crate::wire::{Answer, ErrorCode, OboRequest, Op, RedactedJson, Request, err_answer, refresh_due};

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
pub fn handle_obo(req: &Request, stored: &StoredToken, obo: &OboRequest) -> Answer {
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
            diag.push(due_line("obo", current, expiry, now));
            if req.op == Op::Check {
                return refresh_due(expiry.filter(|_| current.is_some()), diag);
            }
            obo_exchange(req, stored, obo, mode, &key, current, diag)
        }
    }
}

fn obo_exchange(
    req: &Request,
    stored: &StoredToken,
    obo: &OboRequest,
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
    let creds = match Credentials::prepare(
        obo.client_id.trim(),
        obo.secret(),
        obo.client_auth.as_deref(),
        obo.assertion.as_ref(),
    ) {
        Ok(c) => c,
        Err(e) => return credentials_error(e, diag),
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
    let target = Target {
        idp,
        grant: Grant::Repeatable,
        now: req.now,
        still_valid: current.and_then(entry_expiry).is_some_and(|e| e > req.now),
        describe: obo_description,
        earlier_ms: got.upstream_ms.unwrap_or(0),
        what: "obo",
        expired_names_status: true,
    };
    let make = || token_request(&creds, &idp.token_url, &grant, Some(scope));
    let accept = |body| {
        let (entry, expiry) = new_entry(body, req.now, req.policy.default_lifetime_s());
        (entry, Some(expiry))
    };
    match obtain(&target, &mut diag, make, accept) {
        Obtained::Fresh { token: entry, expiry, attempts, upstream_ms, last_status } => {
            let mut fields = got.fields.clone().unwrap_or_else(|| stored.fields.clone());
            insert_bounded(&mut fields, OBO_KEY, key, entry.clone());
            let what = if mode == OboMode::EntraObo { "obo" } else { "token exchange" };
            diag.push(format!(
                "{what}: upstream {} in {upstream_ms} ms (attempt {attempts}), {} s valid",
                status_text(last_status),
                expiry.saturating_sub(req.now)
            ));
            let total_ms = target.earlier_ms.saturating_add(upstream_ms);
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
        Obtained::StillValid { failure, upstream_ms } => {
            let entry = current.cloned().unwrap_or_default();
            let expiry = entry_expiry(&entry);
            diag.push(format!(
                "obo failed; serving the stored obo token, still valid for {} s",
                expiry.unwrap_or(req.now).saturating_sub(req.now)
            ));
            let refresh_failure = Some(failure);
            ok_answer(
                Got { entry, expiry, fields: got.fields.clone(), upstream_ms: Some(upstream_ms), refresh_failure },
                req.now,
                diag,
            )
        }
        Obtained::Failed(answer) => with_store(answer, changed),
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
