//! The wiremock set-up shared by the Rust HTTP tests (`mod common;` in each): a token
//! endpoint at `POST /token`, the core called on a `spawn_blocking` thread (blocking reqwest
//! must not run on the async runtime), and what the endpoint received.
#![allow(dead_code)] // every test file uses its own part

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub mod refresh;

/// Keycloak's clock in the requests of these tests.
pub const NOW: i64 = 1_764_100_000;

/// `POST /token` on `server` answers `response`; with `expect`, exactly that many requests
/// must arrive (checked when the server is dropped).
pub async fn mount(server: &MockServer, response: ResponseTemplate, expect: Option<u64>) {
    let mock = Mock::given(method("POST")).and(path("/token")).respond_with(response);
    match expect {
        Some(n) => mock.expect(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

/// A new server whose `POST /token` answers `response` (see [`mount`]).
pub async fn endpoint(response: ResponseTemplate, expect: Option<u64>) -> MockServer {
    let server = MockServer::start().await;
    mount(&server, response, expect).await;
    server
}

/// A new server whose `POST /token` answers `first` to the first `times` requests and
/// `then` to every later one.
pub async fn endpoint_then(first: ResponseTemplate, times: u64, then: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/token")).respond_with(then).with_priority(2).mount(&server).await;
    server
}

/// The token endpoint URL of `server`.
pub fn token_url(server: &MockServer) -> String {
    format!("{}/token", server.uri())
}

/// `fresh_token_core::call` on a blocking thread; the answer parsed.
pub async fn call(req: String) -> Value {
    let out = tokio::task::spawn_blocking(move || fresh_token_core::call(&req)).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

/// Every request `server` received, in order.
pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

/// The form body of a received request.
pub fn body_of(r: &Request) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}
