//! The refresh path end to end inside the core: `call()` against a wiremock token endpoint.
//! Blocking reqwest runs on `spawn_blocking` threads.

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{NOW, call, endpoint, endpoint_then, mount, requests};

const OLD_AT: &str = "AT-OLD-sample-0001";
const OLD_RT: &str = "RT-OLD-sample-0002";
const NEW_AT: &str = "AT-NEW-sample-0003";
const NEW_RT: &str = "RT-NEW-sample-0004";
const SECRET: &str = "CLIENT-SECRET-sample-0005";

fn stored_expired() -> String {
    json!({"access_token": OLD_AT, "expires_in": 3599, "refresh_expires_in": 0, "refresh_token": OLD_RT,
           "token_type": "Bearer", "id_token": "ID-OLD", "not-before-policy": 0, "scope": "openid",
           "accessTokenExpiration": NOW - 10})
    .to_string()
}

fn request(server: &MockServer, idp_extra: Value) -> String {
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
    json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(),
           "policy": {"min_validity_s": 60, "include_refresh_token": false, "include_id_token": true, "default_lifetime_s": 300},
           "idp": idp})
    .to_string()
}

fn assert_no_secrets_in_diag_or_error(answer: &Value) {
    let mut checked = answer["ok"]["diag"].to_string();
    checked.push_str(&answer["err"].to_string());
    for s in [OLD_AT, OLD_RT, NEW_AT, NEW_RT, SECRET] {
        assert!(!checked.contains(s), "{s} leaked: {checked}");
    }
}

fn success_body() -> Value {
    json!({"token_type": "Bearer", "scope": "openid profile", "expires_in": "3599", "ext_expires_in": "3599",
           "access_token": NEW_AT, "refresh_token": NEW_RT})
}

#[tokio::test(flavor = "multi_thread")]
async fn success_answers_refreshed_with_new_store_and_stripped_response() {
    let server = endpoint(ResponseTemplate::new(200).set_body_json(success_body()), Some(1)).await;

    let a = call(request(&server, json!({}))).await;
    let ok = &a["ok"];
    assert_eq!(ok["action"], "refreshed", "{a}");
    assert_eq!(ok["response"]["access_token"], NEW_AT);
    assert_eq!(ok["response"]["expires_in"], 3599);
    assert!(ok["response"].get("refresh_token").is_none());
    assert_eq!(ok["response"]["id_token"], "ID-OLD");
    assert_eq!(ok["expires_at"], NOW + 3599);
    let store: Value = serde_json::from_str(ok["store"].as_str().unwrap()).unwrap();
    assert_eq!(store["refresh_token"], NEW_RT);
    assert_eq!(store["expires_in"], 3599);
    assert_eq!(store["ext_expires_in"], "3599");
    assert_eq!(store["accessTokenExpiration"], NOW + 3599);
    assert!(ok["upstream_ms"].is_u64());
    assert_no_secrets_in_diag_or_error(&a);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_is_a_refresh_token_grant_with_post_credentials_and_scope() {
    let server = endpoint(ResponseTemplate::new(200).set_body_json(success_body()), None).await;

    call(request(&server, json!({}))).await;
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.headers.get("content-type").unwrap(), "application/x-www-form-urlencoded");
    assert_eq!(r.headers.get("accept").unwrap(), "application/json");
    assert!(r.headers.get("authorization").is_none());
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(
        body,
        format!(
            "grant_type=refresh_token&refresh_token={OLD_RT}&client_id=kc-broker&client_secret={SECRET}&scope=openid+profile+offline_access"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_basic_sends_authorization_header_and_no_secret_in_body() {
    let server = endpoint(ResponseTemplate::new(200).set_body_json(success_body()), None).await;

    let a = call(request(&server, json!({"client_auth": "client_secret_basic"}))).await;
    assert_eq!(a["ok"]["action"], "refreshed");
    let reqs = requests(&server).await;
    let auth = reqs[0].headers.get("authorization").unwrap().to_str().unwrap().to_string();
    assert!(auth.starts_with("Basic "));
    let body = String::from_utf8(reqs[0].body.clone()).unwrap();
    assert!(!body.contains(SECRET) && !body.contains("client_id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_grant_with_aadsts_body_is_reauth_required_without_retry_or_store() {
    let server = endpoint(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
            "error_codes": [70008], "timestamp": "2025-11-25 20:00:00Z",
            "trace_id": "0c3c1e7a", "correlation_id": "5e0a4b1f"})), Some(1)).await;

    let a = call(request(&server, json!({}))).await;
    let err = &a["err"];
    assert_eq!(err["code"], "reauth_required", "{a}");
    assert_eq!(err["status"], 400);
    assert_eq!(err["upstream"]["status"], 400);
    assert_eq!(err["upstream"]["error"], "invalid_grant");
    assert_eq!(err["upstream"]["error_codes"], json!([70008]));
    assert!(err["upstream"]["error_description"].as_str().unwrap().starts_with("AADSTS70008"));
    assert!(err["upstream_ms"].is_u64(), "the IdP was asked: upstream_ms is set on err: {a}");
    assert!(a.get("ok").is_none());
    assert_no_secrets_in_diag_or_error(&a);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_503_then_200_is_retried_and_refreshed() {
    let server = endpoint_then(
        ResponseTemplate::new(503).set_body_string("busy"),
        1,
        ResponseTemplate::new(200).set_body_json(success_body()),
    )
    .await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_429_with_retry_after_beyond_deadline_is_retry_later_after_one_call() {
    let server = endpoint(ResponseTemplate::new(429).insert_header("Retry-After", "30"), Some(1)).await;

    let a = call(request(&server, json!({"deadline_ms": 5000}))).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(a["err"]["status"], 503);
    assert_eq!(a["err"]["retry_after_s"], 30);
    assert_eq!(a["err"]["upstream"]["status"], 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_429_with_short_retry_after_is_waited_for_then_refreshed() {
    let server = endpoint_then(
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        1,
        ResponseTemplate::new(200).set_body_json(success_body()),
    )
    .await;

    let started = std::time::Instant::now();
    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn html_500_is_retried_up_to_max_attempts_then_retry_later() {
    let server = endpoint(
        ResponseTemplate::new(500).set_body_raw("<html><body>Internal error</body></html>", "text/html"),
        Some(3),
    )
    .await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(a["err"]["retry_after_s"], 5);
    assert_eq!(a["err"]["upstream"]["status"], 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn html_200_is_upstream_error() {
    let server = endpoint(ResponseTemplate::new(200).set_body_raw("<html>Sign in</html>", "text/html"), Some(1)).await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["err"]["code"], "upstream_error", "{a}");
    assert_eq!(a["err"]["status"], 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_200_is_upstream_error() {
    let server =
        endpoint(ResponseTemplate::new(200).set_body_raw(r#"{"access_token": "x", "#, "application/json"), Some(1))
            .await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["err"]["code"], "upstream_error", "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_cap_is_upstream_error() {
    let server = MockServer::start().await;
    let mut big = success_body();
    big["padding"] = Value::from("x".repeat(10_000));
    mount(&server, ResponseTemplate::new(200).set_body_json(big), Some(1)).await;

    let a = call(request(&server, json!({"max_body_bytes": 1024}))).await;
    assert_eq!(a["err"]["code"], "upstream_error", "{a}");
    assert!(a["err"]["diag"].to_string().contains("size cap"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_access_token_is_upstream_error() {
    let server = endpoint(
        ResponseTemplate::new(200)
            .set_body_json(json!({"token_type": "Bearer", "expires_in": 3599, "refresh_token": NEW_RT})),
        Some(1),
    )
    .await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["err"]["code"], "upstream_error", "{a}");
    assert_no_secrets_in_diag_or_error(&a);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_is_not_followed_and_is_idp_misconfigured() {
    let server = MockServer::start().await;
    let elsewhere = format!("{}/elsewhere", server.uri());
    mount(&server, ResponseTemplate::new(302).insert_header("Location", elsewhere), Some(1)).await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success_body()))
        .expect(0)
        .mount(&server)
        .await;

    let a = call(request(&server, json!({}))).await;
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert_eq!(a["err"]["upstream"]["status"], 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_answer_past_timeout_is_retry_later() {
    let server = endpoint(
        ResponseTemplate::new(200).set_body_json(success_body()).set_delay(std::time::Duration::from_secs(3)),
        None,
    )
    .await;

    let started = std::time::Instant::now();
    let a = call(request(&server, json!({"timeout_ms": 300, "max_attempts": 2, "deadline_ms": 2000}))).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(a["err"]["retry_after_s"], 5);
    assert!(a["err"].get("upstream").is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(a["err"]["diag"].to_string().contains("timeout"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_retry_later() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let req = json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(),
        "idp": {"token_url": format!("http://127.0.0.1:{port}/token"), "client_id": "c", "max_attempts": 2, "deadline_ms": 3000}})
    .to_string();
    let a = call(req).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert!(a["err"]["diag"].to_string().contains("connection failed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn already_refreshed_row_is_served_without_a_network_call() {
    let server = endpoint(ResponseTemplate::new(200).set_body_json(success_body()), Some(1)).await;

    let first = call(request(&server, json!({}))).await;
    let new_stored = first["ok"]["store"].as_str().unwrap().to_string();
    let mut again: Value = serde_json::from_str(&request(&server, json!({}))).unwrap();
    again["stored"] = Value::from(new_stored);
    let second = call(again.to_string()).await;
    assert_eq!(second["ok"]["action"], "serve", "{second}");
    assert_eq!(second["ok"]["response"]["access_token"], NEW_AT);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_response_without_refresh_token_keeps_the_old_one_in_store() {
    let server = endpoint(
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": NEW_AT, "expires_in": 300, "token_type": "Bearer"})),
        None,
    )
    .await;

    let a = call(request(&server, json!({}))).await;
    let store: Value = serde_json::from_str(a["ok"]["store"].as_str().unwrap()).unwrap();
    assert_eq!(store["refresh_token"], OLD_RT);
    assert_eq!(store["access_token"], NEW_AT);
}

fn request_with_stored(server: &MockServer, stored: Value, idp_extra: Value) -> String {
    let mut r: Value = serde_json::from_str(&request(server, idp_extra)).unwrap();
    r["stored"] = Value::from(stored.to_string());
    r.to_string()
}

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

/// A token endpoint that streams a chunked 200 body (no Content-Length) for as long as
/// the client reads, bounded at 64 MiB; returns its URL and the bytes it managed to send.
fn endless_chunked_server() -> (String, std::thread::JoinHandle<usize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 8192];
        let _ = s.read(&mut buf);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
        let mut sent = 0;
        while sent < 64 << 20 {
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            sent += 4096;
        }
        sent
    });
    (url, handle)
}

#[test]
fn body_without_length_is_cut_at_the_cap_without_reading_to_the_end() {
    let (url, server) = endless_chunked_server();
    let req = json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(),
        "idp": {"token_url": url, "client_id": "c", "max_body_bytes": 10000, "max_attempts": 1, "timeout_ms": 10000}})
    .to_string();
    let a: Value = serde_json::from_str(&fresh_token_core::call(&req)).unwrap();
    assert_eq!(a["err"]["code"], "upstream_error", "{a}");
    let sent = server.join().unwrap();
    assert!(sent < 64 << 20, "the client read the whole body ({sent} bytes)");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failure_is_idp_misconfigured_without_retry() {
    // https to a plain-HTTP server: the TLS handshake fails.
    let server = MockServer::start().await;
    let https = server.uri().replacen("http://", "https://", 1);
    let req = json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(),
        "idp": {"token_url": format!("{https}/token"), "client_id": "c", "max_attempts": 3}})
    .to_string();
    let a = call(req).await;
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert!(a["err"]["diag"].to_string().contains("TLS"), "{a}");
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
    let req = json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(), "policy": {},
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
    let req = json!({"v": 1, "op": "retrieve", "now": NOW, "stored": stored_expired(), "policy": {},
        "idp": {"token_url": format!("http://{addr}/token"), "client_id": "c", "max_attempts": 3,
                "deadline_ms": 1500, "kind": "oidc"}})
    .to_string();
    let a: Value = serde_json::from_str(&fresh_token_core::call(&req)).unwrap();
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(seen.join().unwrap(), 1);
}
