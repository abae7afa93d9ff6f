//! The refresh path end to end inside the core: `call()` against a wiremock token endpoint.
//! Blocking reqwest runs on `spawn_blocking` threads.

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::refresh::*;
use common::{NOW, call, endpoint, endpoint_then, mount, requests};

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
    let req = json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(),
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
    let req = json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(),
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
    let req = json!({"v": 2, "op": "retrieve", "now": NOW, "stored": stored_expired(),
        "idp": {"token_url": format!("{https}/token"), "client_id": "c", "max_attempts": 3}})
    .to_string();
    let a = call(req).await;
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert!(a["err"]["diag"].to_string().contains("TLS"), "{a}");
}
