//! `op: app_token` against wiremock: process cache, single flight, Retry-After window.
//! The cache is process-wide and mock ports can be reused: every test has its own client id.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{NOW, call, endpoint};

const GRAPH: &str = "https://graph.microsoft.com/.default";
const SECRET: &str = "APP-SECRET-sample-0001";

fn request(server: &MockServer, now: i64, secret: &str, client: &str) -> String {
    json!({"v":2,"op":"app_token","now":now,"policy":{"min_validity_s":60},"scope":GRAPH,
        "idp":{"token_url":format!("{}/token", server.uri()),"client_id":client,"client_secret":secret,
               "connect_timeout_ms":1000,"timeout_ms":3000,"max_attempts":2,"deadline_ms":8000}})
    .to_string()
}

fn token(at: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":at}))
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_calls_make_exactly_one_upstream_request() {
    let server = endpoint(token("AT-APP-1").set_delay(Duration::from_millis(400)), None).await;
    let calls: Vec<_> = (0..20).map(|_| tokio::spawn(call(request(&server, NOW, SECRET, "app-20")))).collect();
    let mut actions = Vec::new();
    for c in calls {
        let a = c.await.unwrap();
        assert_eq!(a["ok"]["response"]["access_token"], "AT-APP-1", "{a}");
        assert!(a["ok"].get("store").is_none());
        assert!(!a.to_string().contains(SECRET));
        actions.push(a["ok"]["action"].as_str().unwrap().to_string());
    }
    assert_eq!(count(&server).await, 1);
    assert_eq!(actions.iter().filter(|a| *a == "refreshed").count(), 1, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "serve").count(), 19);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_cached_until_within_min_validity_and_request_is_client_credentials() {
    let server = endpoint(token("AT-APP-2"), None).await;
    let a = call(request(&server, NOW, SECRET, "app-cache")).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert_eq!(a["ok"]["response"], json!({"access_token":"AT-APP-2","token_type":"Bearer","expires_in":3599}));
    let body = String::from_utf8(server.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert_eq!(
        body,
        format!(
            "grant_type=client_credentials&client_id=app-cache&client_secret={SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        )
    );
    let b = call(request(&server, NOW + 3000, SECRET, "app-cache")).await;
    assert_eq!(b["ok"]["action"], "serve", "{b}");
    assert_eq!(b["ok"]["response"]["expires_in"], 599);
    assert_eq!(count(&server).await, 1);
    let c = call(request(&server, NOW + 3540, SECRET, "app-cache")).await;
    assert_eq!(c["ok"]["action"], "refreshed", "{c}");
    assert_eq!(count(&server).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_client_secret_never_gets_the_cached_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("client_secret=first"))
        .respond_with(token("AT-FIRST"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("client_secret=second"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error":"invalid_client","error_codes":[7000215]})),
        )
        .mount(&server)
        .await;
    assert_eq!(call(request(&server, NOW, "first", "app-secrets")).await["ok"]["response"]["access_token"], "AT-FIRST");
    let b = call(request(&server, NOW, "second", "app-secrets")).await;
    assert_eq!(b["err"]["code"], "idp_misconfigured", "{b}");
    assert_eq!(count(&server).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_429_with_retry_after_is_retry_later_and_no_second_call_inside_the_window() {
    let server = endpoint(ResponseTemplate::new(429).insert_header("Retry-After", "30"), None).await;
    let a = call(request(&server, NOW, SECRET, "app-429")).await;
    assert_eq!(a["err"]["code"], "retry_later", "{a}");
    assert_eq!(a["err"]["retry_after_s"], 30);
    assert!(a["err"]["upstream_ms"].is_u64(), "the IdP was asked: {a}");
    assert_eq!(count(&server).await, 1);
    let b = call(request(&server, NOW + 1, SECRET, "app-429")).await;
    assert_eq!(b["err"]["code"], "retry_later", "{b}");
    let s = b["err"]["retry_after_s"].as_u64().unwrap();
    assert!((1..=30).contains(&s), "{b}");
    assert!(b["err"].get("upstream_ms").is_none(), "inside the window the IdP is not asked: {b}");
    assert_eq!(count(&server).await, 1, "no upstream call inside the Retry-After window");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ca_pem_is_idp_misconfigured_without_a_call() {
    let server = MockServer::start().await;
    let mut r: Value = serde_json::from_str(&request(&server, NOW, SECRET, "app-ca")).unwrap();
    r["idp"]["ca_pem"] = json!("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
    let a = call(r.to_string()).await;
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert!(a["err"].get("upstream_ms").is_none(), "{a}");
    assert_eq!(count(&server).await, 0);
}
