//! Part B/C end to end inside the core: resource tokens and on-behalf-of against wiremock.

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{NOW, call, endpoint};

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
    let mut r = json!({"v":2,"op":"retrieve","now":NOW,"stored":stored.to_string(),
        "policy":{"min_validity_s":60},"idp":idp(server)});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r.to_string()
}

fn store_of(a: &Value) -> Value {
    serde_json::from_str(a["ok"]["store"].as_str().expect("store")).unwrap()
}

fn assert_clean(a: &Value) {
    let mut text = a["ok"]["diag"].to_string();
    let mut err = a["err"].clone();
    if let Some(e) = err.as_object_mut() {
        e.remove("store");
    }
    text.push_str(&err.to_string());
    text.push_str(&a["ok"]["response"].to_string());
    for s in [OLD_RT, NEW_RT, SECRET, TOP_AT] {
        assert!(!text.contains(s), "{s} leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_token_is_minted_with_the_top_level_refresh_token_and_kept_in_the_stored_json() {
    let server = endpoint(
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type":"Bearer","scope":API,"expires_in":"3599","ext_expires_in":"3599",
            "access_token":RES_AT,"refresh_token":NEW_RT,"id_token":"ID-NEW"})),
        Some(1),
    )
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
    let server = endpoint(
        ResponseTemplate::new(200).set_body_json(json!({"access_token":"AT-N","expires_in":3600,
            "fresh_token_resources": {"evil": {"access_token": "planted"}}})),
        None,
    )
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
    let server = endpoint(ResponseTemplate::new(503), None).await;
    let mut st = stored();
    st["fresh_token_resources"] = json!({API: {"access_token": RES_AT, "accessTokenExpiration": NOW + 30}});
    let a = call(request(&server, &st, json!({"resource": {"scope": API}}))).await;
    assert_eq!(a["ok"]["action"], "serve", "{a}");
    assert_eq!(a["ok"]["response"]["expires_in"], 30);
    assert!(a["ok"].get("store").is_none());
    assert_eq!(a["ok"]["refresh_failure"]["code"], "retry_later", "{a}");
    assert!(a["ok"]["upstream_ms"].is_u64(), "{a}");
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
    assert_eq!(a["err"]["upstream"]["error_codes"], json!([70008]), "{a}");
    assert!(a["err"]["upstream_ms"].is_u64(), "{a}");
}

const ASSERT_AT: &str = "AT-ASSERT-sample-0006";
const OBO_AT: &str = "AT-OBO-sample-0007";
const MID_SECRET: &str = "MID-SECRET-sample-0008";
const GRAPH: &str = "https://graph.microsoft.com/.default";

fn obo(mode: &str) -> Value {
    json!({"obo": {"client_id": "middle", "client_secret": MID_SECRET, "assertion_scope": API, "scope": GRAPH, "mode": mode}})
}

async fn mount_refresh(server: &MockServer, n: u64) {
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type":"Bearer","scope":API,"expires_in":3599,"access_token":ASSERT_AT,"refresh_token":NEW_RT})))
        .expect(n)
        .mount(server)
        .await;
}

fn bodies(reqs: &[wiremock::Request]) -> Vec<String> {
    reqs.iter().map(|r| String::from_utf8(r.body.clone()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_obo_gets_the_assertion_token_first_then_exchanges_it_and_stores_both() {
    let server = MockServer::start().await;
    mount_refresh(&server, 1).await;
    Mock::given(method("POST"))
        .and(body_string_contains("requested_token_use=on_behalf_of"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type":"Bearer","scope":"User.Read","expires_in":"3599","ext_expires_in":"3599",
            "access_token":OBO_AT,"refresh_token":"RT-OBO-never-kept"})))
        .expect(1)
        .mount(&server)
        .await;
    let a = call(request(&server, &stored(), obo("entra_obo"))).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert_eq!(a["ok"]["response"]["access_token"], OBO_AT);
    assert_eq!(a["ok"]["response"]["expires_in"], 3599);
    assert!(a["ok"]["response"].get("refresh_token").is_none());
    assert_clean(&a);
    assert!(!a["ok"]["diag"].to_string().contains(MID_SECRET) && !a["ok"]["diag"].to_string().contains(ASSERT_AT));

    let b = bodies(&server.received_requests().await.unwrap());
    assert_eq!(b.len(), 2);
    assert!(b[0].contains("scope=api%3A%2F%2Fmiddle%2F.default+offline_access"), "{}", b[0]);
    assert_eq!(
        b[1],
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={ASSERT_AT}&requested_token_use=on_behalf_of&client_id=middle&client_secret={MID_SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        )
    );

    let st = store_of(&a);
    assert_eq!(st["refresh_token"], NEW_RT);
    assert_eq!(st["access_token"], TOP_AT);
    assert_eq!(st["fresh_token_resources"][API]["access_token"], ASSERT_AT);
    let e = &st["fresh_token_obo"][format!("middle {GRAPH}")];
    assert_eq!(e["access_token"], OBO_AT);
    assert_eq!(e["accessTokenExpiration"], NOW + 3599);
    assert!(e.get("refresh_token").is_none());

    // Served from the row now: no further upstream call (expect(1) on both mocks).
    let again = call(request(&server, &st, obo("entra_obo"))).await;
    assert_eq!(again["ok"]["action"], "serve", "{again}");
    assert_eq!(again["ok"]["response"]["access_token"], OBO_AT);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_mode_sends_rfc8693_fields_with_a_fresh_stored_assertion_token() {
    let server = MockServer::start().await;
    mount_refresh(&server, 0).await;
    Mock::given(method("POST"))
        .and(body_string_contains("token-exchange"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token":OBO_AT,"expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut st = stored();
    st["fresh_token_resources"] = json!({API: {"access_token": ASSERT_AT, "accessTokenExpiration": NOW + 2000}});
    let mut r = obo("token_exchange");
    r["obo"]["client_auth"] = json!("client_secret_basic");
    let a = call(request(&server, &st, r)).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        bodies(&reqs)[0],
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={ASSERT_AT}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        )
    );
    assert!(reqs[0].headers.get("authorization").unwrap().to_str().unwrap().starts_with("Basic "));
    let s = store_of(&a);
    assert_eq!(s["fresh_token_obo"][format!("middle {GRAPH}")]["issued_token_type"], TOKEN_TYPE);
}

const TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[tokio::test(flavor = "multi_thread")]
async fn obo_errors_are_classified_and_a_refreshed_assertion_is_stored_all_the_same() {
    for (aadsts, code) in [(50013, "idp_misconfigured"), (65001, "consent_required"), (500131, "idp_misconfigured")] {
        let server = MockServer::start().await;
        mount_refresh(&server, 1).await;
        Mock::given(method("POST"))
            .and(body_string_contains("on_behalf_of"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error":"invalid_grant","error_description":format!("AADSTS{aadsts}: nope"),"error_codes":[aadsts]})))
            .expect(1)
            .mount(&server)
            .await;
        let a = call(request(&server, &stored(), obo("entra_obo"))).await;
        assert_eq!(a["err"]["code"], code, "{a}");
        assert_eq!(a["err"]["upstream"]["error_codes"][0], aadsts);
        assert!(a["err"]["upstream_ms"].is_u64(), "{a}");
        let st: Value = serde_json::from_str(a["err"]["store"].as_str().expect("store on err")).unwrap();
        assert_eq!(st["refresh_token"], NEW_RT);
        assert_eq!(st["fresh_token_resources"][API]["access_token"], ASSERT_AT);
        assert!(st.get("fresh_token_obo").is_none());
        assert_clean(&a);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn obo_check_answers_refresh_and_unknown_mode_is_idp_misconfigured() {
    let server = MockServer::start().await;
    let mut r: Value = serde_json::from_str(&request(&server, &stored(), obo("entra_obo"))).unwrap();
    r["op"] = json!("check");
    assert_eq!(call(r.to_string()).await["ok"]["action"], "refresh");
    let a = call(request(&server, &stored(), obo("magic"))).await;
    assert_eq!(a["err"]["code"], "idp_misconfigured");
    assert!(server.received_requests().await.unwrap().is_empty());
}
