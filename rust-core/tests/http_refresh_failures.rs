//! Refresh failures end to end inside the core: a still-valid token served when the refresh
//! fails for a reason the user cannot fix, and the retry policy per IdP kind (a refresh that
//! may have been redeemed is not sent again to a strict IdP).

use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

mod common;
use common::refresh::*;
use common::{NOW, call, endpoint, endpoint_then, requests};

#[tokio::test(flavor = "multi_thread")]
async fn still_valid_token_is_served_when_the_early_refresh_fails_transiently() {
    let server = endpoint(ResponseTemplate::new(503), Some(1)).await;

    let stored = json!({"access_token": OLD_AT, "refresh_token": OLD_RT, "accessTokenExpiration": NOW + 30});
    let a = call(request_with_stored(&server, stored, json!({"max_attempts": 1}))).await;
    assert_eq!(a["ok"]["action"], "serve", "{a}");
    assert_eq!(a["ok"]["response"]["access_token"], OLD_AT);
    assert_eq!(a["ok"]["response"]["expires_in"], 30);
    assert!(a["ok"].get("store").is_none());
    assert!(a["ok"]["upstream_ms"].is_u64(), "{a}");
    assert_eq!(a["ok"]["refresh_failure"]["code"], "retry_later", "{a}");
    assert_eq!(a["ok"]["refresh_failure"]["upstream"]["status"], 503, "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn still_valid_token_served_after_an_unusable_answer_names_upstream_error() {
    let server = endpoint(ResponseTemplate::new(200).set_body_string("<html>not json</html>"), Some(1)).await;

    let stored = json!({"access_token": OLD_AT, "refresh_token": OLD_RT, "accessTokenExpiration": NOW + 30});
    let a = call(request_with_stored(&server, stored, json!({"max_attempts": 1}))).await;
    assert_eq!(a["ok"]["action"], "serve", "{a}");
    assert_eq!(a["ok"]["refresh_failure"]["code"], "upstream_error", "{a}");
    assert_eq!(a["ok"]["refresh_failure"]["upstream"]["status"], 200, "{a}");
    assert!(!a.to_string().contains(OLD_RT), "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_serve_and_successful_refresh_carry_no_refresh_failure() {
    let server = endpoint(ResponseTemplate::new(200).set_body_json(success_body()), None).await;
    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert!(a["ok"].get("refresh_failure").is_none(), "{a}");
    let fresh = json!({"access_token": OLD_AT, "refresh_token": OLD_RT, "accessTokenExpiration": NOW + 3000});
    let b = call(request_with_stored(&server, fresh, json!({}))).await;
    assert_eq!(b["ok"]["action"], "serve", "{b}");
    assert!(b["ok"].get("refresh_failure").is_none() && b["ok"].get("upstream_ms").is_none(), "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn still_valid_token_is_not_served_when_the_refresh_token_is_rejected() {
    let server = endpoint(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})), None).await;

    let stored = json!({"access_token": OLD_AT, "refresh_token": OLD_RT, "accessTokenExpiration": NOW + 30});
    let a = call(request_with_stored(&server, stored, json!({}))).await;
    assert_eq!(a["err"]["code"], "reauth_required", "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_not_served_when_the_refresh_fails_transiently() {
    let server = endpoint(ResponseTemplate::new(503), None).await;

    let stored = json!({"access_token": OLD_AT, "refresh_token": OLD_RT, "accessTokenExpiration": NOW});
    let a = call(request_with_stored(&server, stored, json!({"max_attempts": 1}))).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert!(a["err"]["upstream_ms"].is_u64(), "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn err_without_an_upstream_call_has_no_upstream_ms() {
    let server = MockServer::start().await;
    let stored = json!({"access_token": OLD_AT, "accessTokenExpiration": NOW - 10});
    let a = call(request_with_stored(&server, stored, json!({}))).await;
    assert_eq!(a["err"]["code"], "reauth_required", "{a}");
    assert!(a["err"].get("upstream_ms").is_none(), "{a}");
}

/// A generic OIDC IdP (strict one-time rotation assumed): a refresh answered 5xx may have
/// been redeemed, so the same refresh token is not sent again; the answer is retry_later
/// and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn generic_oidc_refresh_answered_5xx_is_sent_once_and_is_retry_later_without_store() {
    for kind in [json!("oidc"), Value::Null] {
        let server = endpoint(ResponseTemplate::new(503).set_body_string("busy"), Some(1)).await;
        let a = call(request(&server, json!({"kind": kind}))).await;
        assert_eq!(a["err"]["code"], "retry_later", "{a}");
        assert!(a["err"].get("store").is_none_or(Value::is_null), "{a}");
        assert_eq!(requests(&server).await.len(), 1, "kind {kind}");
    }
}

/// Entra tolerates the same refresh token again within its lifetime: a 5xx is retried.
#[tokio::test(flavor = "multi_thread")]
async fn entra_refresh_answered_5xx_is_retried_with_the_same_refresh_token() {
    let server = endpoint_then(
        ResponseTemplate::new(503).set_body_string("busy"),
        1,
        ResponseTemplate::new(200).set_body_json(success_body()),
    )
    .await;
    let a = call(request(&server, json!({"kind": "entra"}))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body);
}

/// A generic OIDC IdP that is not reachable (connection refused): nothing was sent, so the
/// attempts go on as configured.
#[tokio::test(flavor = "multi_thread")]
async fn generic_oidc_refresh_not_sent_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let req = json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(), "policy": {},
        "idp": {"token_url": format!("http://127.0.0.1:{port}/token"), "client_id": "c", "max_attempts": 3,
                "deadline_ms": 5000, "kind": "oidc"}})
    .to_string();
    let a = call(req).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    let diag = a["err"]["diag"].to_string();
    assert!(diag.contains("attempt 3/3"), "{diag}");
}

/// A generic OIDC refresh whose connection is closed after the request was read: sent once.
#[test]
fn generic_oidc_refresh_closed_after_send_is_sent_once() {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let mut accepted = 0;
        // Accept for as long as the client keeps trying (up to 2 s).
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < until {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    accepted += 1;
                    let mut buf = [0u8; 8192];
                    let mut got = Vec::new();
                    while !String::from_utf8_lossy(&got).contains(OLD_RT) {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    drop(s);
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        accepted
    });
    let req = json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(), "policy": {},
        "idp": {"token_url": format!("http://{addr}/token"), "client_id": "c", "max_attempts": 3,
                "deadline_ms": 1500, "kind": "oidc"}})
    .to_string();
    let a: Value = serde_json::from_str(&fresh_token_core::call(&req)).unwrap();
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(seen.join().unwrap(), 1);
}
