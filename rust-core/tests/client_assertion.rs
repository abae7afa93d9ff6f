//! `private_key_jwt`: the assertion verifies with the certificate's public key, carries the
//! right thumbprint and claims, and goes on the wire for refresh, OBO and app_token.

use base64::Engine as _;
use fresh_token_core::upstream::assertion::Signer;
use fresh_token_core::wire::AssertionConfig;
use fresh_token_core::wire::SecretValue;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha1::Digest as _;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{NOW, endpoint};

const CERT: &str = include_str!("fixtures/client.cert.pem");
const KEY8: &str = include_str!("fixtures/client.key.pkcs8.pem");
const KEY1: &str = include_str!("fixtures/client.key.pkcs1.pem");
const TOKEN_URL: &str = "https://login.example/tenant/oauth2/v2.0/token";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn cert_der() -> Vec<u8> {
    fresh_token_core::upstream::assertion::cert_der(CERT).unwrap()
}

/// The RSA public key of the certificate, as jsonwebtoken wants it.
fn cert_public_key() -> DecodingKey {
    let der = cert_der();
    let cert = rustls_pki_types::CertificateDer::from(der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
    let spki = ee.subject_public_key_info();
    let public = rsa::RsaPublicKey::from_public_key_der(spki.as_ref()).unwrap();
    DecodingKey::from_rsa_components(&b64url(&public.n().to_bytes_be()), &b64url(&public.e().to_bytes_be())).unwrap()
}

fn cfg(key: &str, alg: Option<&str>, lifetime: Option<i64>) -> AssertionConfig {
    serde_json::from_value(json!({"key_pem": key, "cert_pem": CERT, "alg": alg, "lifetime_s": lifetime})).unwrap()
}

fn decode(jwt: &str, alg: Algorithm) -> (jsonwebtoken::Header, Value) {
    let mut v = Validation::new(alg);
    v.set_audience(&[TOKEN_URL]);
    v.set_issuer(&["my-client"]);
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Value>(jwt, &cert_public_key(), &v).expect("verifies with the certificate key");
    (data.header, data.claims)
}

#[test]
fn ps256_default_assertion_verifies_with_the_certificate_key_and_has_x5t_s256() {
    for key in [KEY8, KEY1] {
        let signer = Signer::new(&cfg(key, None, None)).unwrap();
        let jwt = signer.sign("my-client", TOKEN_URL).unwrap();
        let (h, c) = decode(&jwt, Algorithm::PS256);
        assert_eq!(h.alg, Algorithm::PS256);
        assert_eq!(h.typ.as_deref(), Some("JWT"));
        assert_eq!(h.x5t_s256.as_deref(), Some(b64url(&sha2::Sha256::digest(cert_der())).as_str()));
        assert!(h.x5t.is_none());
        assert_eq!(c["sub"], "my-client");
        assert_eq!(c["iss"], "my-client");
        assert_eq!(c["aud"], TOKEN_URL);
        assert_eq!(c["iat"], c["nbf"]);
        assert_eq!(c["exp"].as_i64().unwrap() - c["nbf"].as_i64().unwrap(), 300);
    }
}

#[test]
fn rs256_assertion_verifies_and_has_sha1_x5t() {
    let signer = Signer::new(&cfg(KEY8, Some("RS256"), Some(60))).unwrap();
    let (h, c) = decode(&signer.sign("my-client", TOKEN_URL).unwrap(), Algorithm::RS256);
    assert_eq!(h.alg, Algorithm::RS256);
    assert_eq!(h.x5t.as_deref(), Some(b64url(&sha1::Sha1::digest(cert_der())).as_str()));
    assert!(h.x5t_s256.is_none());
    assert_eq!(c["exp"].as_i64().unwrap() - c["nbf"].as_i64().unwrap(), 60);
}

#[test]
fn lifetime_is_capped_at_600_and_jti_is_fresh_128_bits_each_time() {
    let signer = Signer::new(&cfg(KEY8, None, Some(86_400))).unwrap();
    let (_, a) = decode(&signer.sign("my-client", TOKEN_URL).unwrap(), Algorithm::PS256);
    let (_, b) = decode(&signer.sign("my-client", TOKEN_URL).unwrap(), Algorithm::PS256);
    assert!(a["exp"].as_i64().unwrap() - a["nbf"].as_i64().unwrap() <= 600);
    let (ja, jb) = (a["jti"].as_str().unwrap(), b["jti"].as_str().unwrap());
    assert_ne!(ja, jb);
    assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(ja).unwrap().len(), 16);
}

#[test]
fn debug_of_config_and_signer_never_shows_key_material() {
    let c = cfg(KEY8, None, None);
    let s = Signer::new(&c).unwrap();
    let d = format!("{c:?} {s:?} {:?}", SecretValue::new(KEY8));
    assert!(!d.contains("PRIVATE KEY") && !d.contains(&KEY8[40..80]), "{d}");
}

fn idp(server: &MockServer, extra: Value) -> Value {
    let mut i = json!({"token_url": format!("{}/token", server.uri()), "client_id": "cert-client",
        "client_auth": "private_key_jwt", "assertion": {"key_pem": KEY8, "cert_pem": CERT},
        "connect_timeout_ms": 1000, "timeout_ms": 3000, "max_attempts": 1, "deadline_ms": 5000});
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    i
}

async fn call(req: Value) -> Value {
    let req = req.to_string();
    let out = tokio::task::spawn_blocking(move || fresh_token_core::call(&req)).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    fresh_token_core::pure::form::decode_pairs(std::str::from_utf8(body).unwrap()).unwrap()
}

fn assert_assertion_pairs(pairs: &[(String, String)], client_id: &str, token_url: &str) {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("client_id").as_deref(), Some(client_id));
    assert_eq!(get("client_assertion_type").as_deref(), Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
    assert!(get("client_secret").is_none());
    let mut v = Validation::new(Algorithm::PS256);
    v.set_audience(&[token_url]);
    let claims =
        jsonwebtoken::decode::<Value>(&get("client_assertion").unwrap(), &cert_public_key(), &v).unwrap().claims;
    assert_eq!(claims["sub"], client_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_and_app_token_send_a_client_assertion_instead_of_a_secret() {
    let server =
        endpoint(ResponseTemplate::new(200).set_body_json(json!({"access_token":"AT","expires_in":3600})), None).await;
    let stored = json!({"access_token":"old","refresh_token":"rt","accessTokenExpiration": NOW - 1}).to_string();
    let a = call(json!({"v":2,"op":"retrieve","now":NOW,"stored":stored,"idp":idp(&server, json!({}))})).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let b = call(json!({"v":2,"op":"app_token","now":NOW,"scope":"https://graph.microsoft.com/.default","idp":idp(&server, json!({}))})).await;
    assert_eq!(b["ok"]["action"], "refreshed", "{b}");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    let url = format!("{}/token", server.uri());
    for r in &reqs {
        assert_assertion_pairs(&form(&r.body), "cert-client", &url);
        assert!(r.headers.get("authorization").is_none());
    }
    assert!(!a.to_string().contains("PRIVATE") && !b.to_string().contains("PRIVATE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn obo_authenticates_the_middle_tier_with_its_own_certificate() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("on_behalf_of"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token":"OBO","expires_in":3600})))
        .expect(1)
        .mount(&server)
        .await;
    let stored = json!({"access_token":"top","refresh_token":"rt","accessTokenExpiration": NOW + 3000,
        "fresh_token_resources": {"api://mid/.default": {"access_token":"user-at","accessTokenExpiration": NOW + 3000}}})
    .to_string();
    let obo = json!({"client_id":"mid","client_auth":"private_key_jwt","assertion":{"key_pem":KEY1,"cert_pem":CERT},
        "assertion_scope":"api://mid/.default","scope":"https://graph.microsoft.com/.default"});
    let a =
        call(json!({"v":2,"op":"retrieve","now":NOW,"stored":stored,"idp":idp(&server, json!({})),"obo":obo})).await;
    assert_eq!(a["ok"]["response"]["access_token"], "OBO", "{a}");
    let reqs = server.received_requests().await.unwrap();
    assert_assertion_pairs(&form(&reqs[0].body), "mid", &format!("{}/token", server.uri()));
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_key_or_certificate_or_missing_assertion_is_idp_misconfigured_without_a_call() {
    let server = MockServer::start().await;
    let stored = json!({"access_token":"old","refresh_token":"rt","accessTokenExpiration": NOW - 1}).to_string();
    for extra in [
        json!({"assertion": {"key_pem": "KEY-SAMPLE-not-a-key", "cert_pem": CERT}}),
        json!({"assertion": {"key_pem": KEY8, "cert_pem": "not a cert"}}),
        json!({"assertion": {"key_pem": KEY8, "cert_pem": CERT, "alg": "ES256"}}),
        json!({"assertion": null}),
    ] {
        for op in ["retrieve", "app_token"] {
            let a =
                call(json!({"v":2,"op":op,"now":NOW,"stored":stored,"scope":"s","idp":idp(&server, extra.clone())}))
                    .await;
            assert_eq!(a["err"]["code"], "idp_misconfigured", "{extra} {a}");
            assert!(!a.to_string().contains("KEY-SAMPLE") && !a.to_string().contains("PRIVATE"), "{a}");
        }
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
