//! Part B/C end to end inside the core: resource tokens and on-behalf-of against wiremock.

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: i64 = 1_764_100_000;
const TOP_AT: &str = "AT-TOP-sample-0001";
const OLD_RT: &str = "RT-OLD-sample-0002";
const NEW_RT: &str = "RT-NEW-sample-0003";
const RES_AT: &str = "AT-RES-sample-0004";
const SECRET: &str = "SECRET-sample-0005";
const API: &str = "api://middle/.default";

fn stored() -> Value {
    json!({"access_token": TOP_AT, "refresh_token": OLD_RT, "refresh_expires_in": 7776000, "id_token": "ID",
           "token_type": "Bearer", "accessTokenExpiration": NOW + 3000})
}

fn idp(server: &MockServer) -> Value {
    json!({"token_url": format!("{}/token", server.uri()), "client_id": "broker", "client_secret": SECRET,
           "connect_timeout_ms": 1000, "timeout_ms": 2000, "max_attempts": 2, "deadline_ms": 5000})
}

fn request(server: &MockServer, stored: &Value, extra: Value) -> String {
    let mut r = json!({"v":1,"op":"retrieve","now":NOW,"stored":stored.to_string(),
        "policy":{"min_validity_s":60},"idp":idp(server)});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r.to_string()
}

async fn call(req: String) -> Value {
    let out = tokio::task::spawn_blocking(move || fresh_token_core::call(&req)).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

fn store_of(a: &Value) -> Value {
    serde_json::from_str(a["ok"]["store"].as_str().expect("store")).unwrap()
}

fn assert_clean(a: &Value) {
    let mut text = a["ok"]["diag"].to_string();
    text.push_str(&a["err"].to_string());
    text.push_str(&a["ok"]["response"].to_string());
    for s in [OLD_RT, NEW_RT, SECRET, TOP_AT] {
        assert!(!text.contains(s), "{s} leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_token_is_minted_with_the_top_level_refresh_token_and_kept_in_the_stored_json() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type":"Bearer","scope":API,"expires_in":"3599","ext_expires_in":"3599",
            "access_token":RES_AT,"refresh_token":NEW_RT,"id_token":"ID-NEW"})))
        .expect(1)
        .mount(&server)
        .await;
    let res = json!({"resource": {"scope": API, "refresh_scope": format!("{API} offline_access")}});
    let a = call(request(&server, &stored(), res.clone())).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let r = &a["ok"]["response"];
    assert_eq!(r["access_token"], RES_AT);
    assert_eq!(r["expires_in"], 3599);
    assert!(r.get("refresh_token").is_none() && r.get("id_token").is_none(), "{r}");
    assert_clean(&a);

    let body = String::from_utf8(server.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert_eq!(
        body,
        format!(
            "grant_type=refresh_token&refresh_token={OLD_RT}&client_id=broker&client_secret={SECRET}&scope=api%3A%2F%2Fmiddle%2F.default+offline_access"
        )
    );

    let st = store_of(&a);
    assert_eq!(st["access_token"], TOP_AT, "top-level access token untouched");
    assert_eq!(st["accessTokenExpiration"], NOW + 3000);
    assert_eq!(st["id_token"], "ID");
    assert_eq!(st["refresh_token"], NEW_RT, "rotated refresh token replaces the top-level one");
    assert!(st.get("refresh_expires_in").is_none(), "no lifetime came with the new refresh token");
    let e = &st["fresh_token_resources"][API];
    assert_eq!(e["access_token"], RES_AT);
    assert_eq!(e["accessTokenExpiration"], NOW + 3599);
    assert!(e.get("refresh_token").is_none() && e.get("id_token").is_none());

    // The written row serves the resource without a network call (expect(1) above).
    let again = call(request(&server, &st, res)).await;
    assert_eq!(again["ok"]["action"], "serve", "{again}");
    assert_eq!(again["ok"]["response"]["access_token"], RES_AT);
    // And the top-level token is served as before, without the map.
    let top = call(request(&server, &st, json!({}))).await;
    assert_eq!(top["ok"]["response"]["access_token"], TOP_AT);
    assert!(top["ok"]["response"].get("fresh_token_resources").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn top_level_refresh_keeps_the_resource_map() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token":"AT-N","expires_in":3600,
            "fresh_token_resources": {"evil": {"access_token": "planted"}}})))
        .mount(&server)
        .await;
    let mut st = stored();
    st["accessTokenExpiration"] = json!(NOW - 1);
    st["fresh_token_resources"] = json!({API: {"access_token": RES_AT, "accessTokenExpiration": NOW + 999}});
    let a = call(request(&server, &st, json!({}))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let s = store_of(&a);
    assert_eq!(s["fresh_token_resources"], st["fresh_token_resources"]);
    assert!(a["ok"]["response"].get("fresh_token_resources").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn still_valid_resource_token_is_served_when_its_early_refresh_fails_transiently() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let mut st = stored();
    st["fresh_token_resources"] = json!({API: {"access_token": RES_AT, "accessTokenExpiration": NOW + 30}});
    let a = call(request(&server, &st, json!({"resource": {"scope": API}}))).await;
    assert_eq!(a["ok"]["action"], "serve", "{a}");
    assert_eq!(a["ok"]["response"]["expires_in"], 30);
    assert!(a["ok"].get("store").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_refresh_token_for_a_resource_is_reauth_required_and_nothing_stored() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error":"invalid_grant","error_codes":[70008]})))
        .mount(&server)
        .await;
    let a = call(request(&server, &stored(), json!({"resource": {"scope": API}}))).await;
    assert_eq!(a["err"]["code"], "reauth_required", "{a}");
    assert!(a["err"].get("store").is_none());
}
