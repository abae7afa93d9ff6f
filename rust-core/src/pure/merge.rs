//! The stored token after an IdP answer, and what the app receives of it: the refresh merge
//! (with the keep-the-old-refresh-token rule, in one place), the expiry of a fresh token,
//! and the app's view of stored fields.

use serde_json::{Map, Value};

use super::json::{non_empty_str, number_or_string};
use super::stored::{ACCESS_TOKEN_EXPIRATION, EXTENSION_KEYS, REFRESHED_AT, StoredToken};
use crate::wire::Policy;

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
    keep_previous_refresh_token(&mut m, previous);
    if non_empty_str(&m, "id_token").is_none() {
        if let Some(old) = previous.id_token() {
            m.insert("id_token".into(), Value::from(old));
        }
    }
    for key in EXTENSION_KEYS {
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
    m.insert(REFRESHED_AT.into(), Value::from(now));
    m
}

/// The keep-the-old-refresh-token rule (stock Keycloak's, for a refresh or login answer that
/// has none): when `m` holds no refresh token, the previous one is put back with its
/// `refresh_expires_in` (as a number; dropped when the previous value has none). Whether it
/// was put back. Used by the refresh merge and by the `seal` op's merge with the row's value.
pub fn keep_previous_refresh_token(m: &mut Map<String, Value>, previous: &StoredToken) -> bool {
    if non_empty_str(m, "refresh_token").is_some() {
        return false;
    }
    let Some(old) = previous.refresh_token() else { return false };
    m.insert("refresh_token".into(), Value::from(old));
    match previous.fields.get("refresh_expires_in").and_then(number_or_string) {
        Some(n) => {
            m.insert("refresh_expires_in".into(), Value::from(n));
        }
        None => {
            m.shift_remove("refresh_expires_in");
        }
    }
    true
}

/// When a freshly received access token expires. The token's own `exp` (when it is a JWT)
/// bounds what `expires_in` promises: an IdP answering a huge `expires_in` must not make us
/// serve the token past its real expiry. A lifetime is also capped at a year, so
/// `accessTokenExpiration` stays an integer that stock Keycloak can read back. Without either,
/// `default_lifetime_s`.
pub fn expiry_of(m: &Map<String, Value>, now: i64, default_lifetime_s: i64) -> i64 {
    const MAX_LIFETIME_S: i64 = 366 * 24 * 3600;
    let jwt_exp = non_empty_str(m, "access_token").and_then(super::jwt::exp);
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
    for key in EXTENSION_KEYS {
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
    use crate::pure::jwt::make_jwt;
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
        assert_eq!(m[REFRESHED_AT], json!(NOW));
        assert!(app_response(&m, Some(NOW + 3600), NOW, &Policy::default()).get(REFRESHED_AT).is_none());
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
}
