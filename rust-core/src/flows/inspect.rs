//! `inspect`: what an admin may know about a stored token, never a token value.
//!
//! Answers `{"ok": {"action": "inspect", "status": {...}}}` with whether an access, refresh and
//! ID token are stored, when the access token expires, when the extension last refreshed it
//! (`fresh_token_refreshed_at`, written by the refresh merge) and how many per-resource /
//! on-behalf-of tokens are kept. No network, no change to the stored value.

use serde_json::{Map, Value};

use crate::pure::json::number_or_string;
use crate::pure::stored::{Format, OBO_KEY, REFRESHED_AT, RESOURCES_KEY, StoredToken};
use crate::wire::{Answer, InspectAnswer, Request, TokenStatus};

/// The status of a parsed stored token at `now`.
pub fn status(stored: &StoredToken, now: i64) -> TokenStatus {
    let expires_at = if stored.access_token().is_some() { stored.expiry() } else { None };
    TokenStatus {
        format: match stored.format {
            Format::Json => "json",
            Format::Form => "form",
        },
        has_access_token: stored.access_token().is_some(),
        has_refresh_token: stored.refresh_token().is_some(),
        has_id_token: stored.id_token().is_some(),
        access_token_expires_at: expires_at,
        access_token_expires_in: expires_at.map(|e| e.saturating_sub(now)),
        access_token_valid: expires_at.is_some_and(|e| e > now),
        refreshed_at: stored.fields.get(REFRESHED_AT).and_then(number_or_string).filter(|t| *t > 0),
        scope: stored.fields.get("scope").and_then(Value::as_str).map(str::to_string),
        resource_tokens: count(&stored.fields, RESOURCES_KEY),
        obo_tokens: count(&stored.fields, OBO_KEY),
    }
}

fn count(fields: &Map<String, Value>, key: &str) -> usize {
    fields.get(key).and_then(Value::as_object).map_or(0, Map::len)
}

/// Handles an `inspect` request whose stored value has been parsed.
pub fn handle(req: &Request, stored: &StoredToken) -> Answer {
    Answer::Inspect(InspectAnswer { action: "inspect", status: status(stored, req.now) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::jwt::make_jwt;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn inspect(stored: &str) -> Value {
        let req = json!({"v": 2, "op": "inspect", "now": NOW, "stored": stored});
        serde_json::from_str(&crate::call(&req.to_string())).unwrap()
    }

    #[test]
    fn status_of_a_refreshed_token_has_expiry_refreshed_at_and_counts_but_no_token_value() {
        let stored = json!({"access_token": "AT-SECRET", "refresh_token": "RT-SECRET", "id_token": "ID-SECRET",
            "scope": "openid User.Read", "accessTokenExpiration": NOW + 300, REFRESHED_AT: NOW - 60,
            "fresh_token_resources": {"api://x/.default": {"access_token": "RES-SECRET"}}})
        .to_string();
        let a = inspect(&stored);
        let s = &a["ok"]["status"];
        assert_eq!(a["ok"]["action"], "inspect");
        assert_eq!(s["has_access_token"], true);
        assert_eq!(s["has_refresh_token"], true);
        assert_eq!(s["has_id_token"], true);
        assert_eq!(s["access_token_expires_at"], NOW + 300);
        assert_eq!(s["access_token_expires_in"], 300);
        assert_eq!(s["access_token_valid"], true);
        assert_eq!(s["refreshed_at"], NOW - 60);
        assert_eq!(s["scope"], "openid User.Read");
        assert_eq!(s["resource_tokens"], 1);
        assert_eq!(s["obo_tokens"], 0);
        let text = a.to_string();
        for secret in ["AT-SECRET", "RT-SECRET", "ID-SECRET", "RES-SECRET"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn expired_token_from_login_has_negative_expires_in_and_no_refreshed_at() {
        let at = make_jwt(&json!({"exp": NOW - 5}));
        let a = inspect(&json!({"access_token": at, "refresh_token": "rt"}).to_string());
        let s = &a["ok"]["status"];
        assert_eq!(s["access_token_expires_at"], NOW - 5);
        assert_eq!(s["access_token_expires_in"], -5);
        assert_eq!(s["access_token_valid"], false);
        assert!(s["refreshed_at"].is_null());
        assert!(!a.to_string().contains(&at));
    }

    #[test]
    fn refresh_token_only_and_unknown_expiry_are_reported_as_not_valid() {
        let s = inspect(r#"{"refresh_token":"rt"}"#)["ok"]["status"].clone();
        assert_eq!(s["has_access_token"], false);
        assert!(s["access_token_expires_at"].is_null());
        assert_eq!(s["access_token_valid"], false);
        let s = inspect(r#"{"access_token":"opaque"}"#)["ok"]["status"].clone();
        assert!(s["access_token_expires_at"].is_null());
        assert_eq!(s["access_token_valid"], false);
    }

    #[test]
    fn form_encoded_rows_are_read_too() {
        let s =
            inspect("access_token=gho_x&token_type=bearer&accessTokenExpiration=1764100100")["ok"]["status"].clone();
        assert_eq!(s["format"], "form");
        assert_eq!(s["access_token_expires_in"], 100);
    }

    #[test]
    fn unreadable_row_is_an_error_without_its_content() {
        let a = inspect("garbage-SECRET-value");
        assert_eq!(a["err"]["code"], "reauth_required");
        assert!(!a.to_string().contains("SECRET"));
    }
}
