//! The refresh request of `http_refresh.rs` and `http_refresh_failures.rs`: a stored token
//! that is due, the broker's IdP settings, the IdP's success answer, and the check that no
//! token or secret leaks into `diag` or an error.

use serde_json::{Value, json};
use wiremock::MockServer;

use super::NOW;

pub const OLD_AT: &str = "AT-OLD-sample-0001";
pub const OLD_RT: &str = "RT-OLD-sample-0002";
pub const NEW_AT: &str = "AT-NEW-sample-0003";
pub const NEW_RT: &str = "RT-NEW-sample-0004";
pub const SECRET: &str = "CLIENT-SECRET-sample-0005";

pub fn stored_expired() -> String {
    json!({"access_token": OLD_AT, "expires_in": 3599, "refresh_expires_in": 0, "refresh_token": OLD_RT,
           "token_type": "Bearer", "id_token": "ID-OLD", "not-before-policy": 0, "scope": "openid",
           "accessTokenExpiration": NOW - 10})
    .to_string()
}

pub fn request(server: &MockServer, idp_extra: Value) -> String {
    let mut idp = json!({
        "token_url": format!("{}/token", server.uri()),
        "client_id": "kc-broker",
        "client_secret": SECRET,
        "client_auth": "client_secret_post",
        "refresh_scope": "openid profile offline_access",
        "connect_timeout_ms": 1000,
        "timeout_ms": 2000,
        "max_body_bytes": 65536,
        "max_attempts": 3,
        "deadline_ms": 10000,
        "kind": "entra"
    });
    if let (Some(i), Some(e)) = (idp.as_object_mut(), idp_extra.as_object()) {
        for (k, v) in e {
            i.insert(k.clone(), v.clone());
        }
    }
    json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(),
           "policy": {"min_validity_s": 60, "include_refresh_token": false, "include_id_token": true, "default_lifetime_s": 300},
           "idp": idp})
    .to_string()
}

pub fn assert_no_secrets_in_diag_or_error(answer: &Value) {
    let mut checked = answer["ok"]["diag"].to_string();
    checked.push_str(&answer["err"].to_string());
    for s in [OLD_AT, OLD_RT, NEW_AT, NEW_RT, SECRET] {
        assert!(!checked.contains(s), "{s} leaked: {checked}");
    }
}

pub fn success_body() -> Value {
    json!({"token_type": "Bearer", "scope": "openid profile", "expires_in": "3599", "ext_expires_in": "3599",
           "access_token": NEW_AT, "refresh_token": NEW_RT})
}

pub fn request_with_stored(server: &MockServer, stored: Value, idp_extra: Value) -> String {
    let mut r: Value = serde_json::from_str(&request(server, idp_extra)).unwrap();
    r["stored"] = Value::from(stored.to_string());
    r.to_string()
}
