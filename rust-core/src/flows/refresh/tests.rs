use super::*;
use crate::wire::SecretValue;
use serde_json::Value;

/// A token endpoint on 127.0.0.1 answering every request with `status` and `body`.
fn endpoint(status: u16, body: &'static str) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("grant_type=") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    format!("http://{addr}/token")
}

fn idp(token_url: String) -> IdpConfig {
    serde_json::from_value(serde_json::json!({"token_url": token_url, "client_id": "c", "max_attempts": 1})).unwrap()
}

fn target(idp: &IdpConfig, still_valid: bool) -> Target<'_> {
    Target {
        idp,
        grant: Grant::Repeatable,
        now: 1_000,
        still_valid,
        describe: |_| "OUR-DESCRIPTION",
        earlier_ms: 70_000,
        what: "test",
        expired_names_status: true,
    }
}

fn make() -> Result<TokenRequest, String> {
    Ok(TokenRequest { body: SecretValue::new("grant_type=client_credentials"), authorization: None })
}

fn run(idp: &IdpConfig, still_valid: bool, expiry: Option<i64>) -> (Obtained<Map<String, Value>>, Vec<String>) {
    let mut diag = vec!["before".to_string()];
    let got = obtain(&target(idp, still_valid), &mut diag, make, |body| (body, expiry));
    (got, diag)
}

fn err(got: Obtained<Map<String, Value>>) -> Value {
    match got {
        Obtained::Failed(a) => serde_json::from_str(&a.to_json()).unwrap(),
        _ => panic!("expected Failed"),
    }
}

#[test]
fn a_usable_answer_is_fresh_with_this_exchange_time_and_the_diag_kept() {
    let i = idp(endpoint(200, r#"{"access_token":"AT","expires_in":60}"#));
    let (got, diag) = run(&i, false, Some(1_060));
    match got {
        Obtained::Fresh { token, expiry, attempts, upstream_ms, last_status } => {
            assert_eq!(token["access_token"], "AT");
            assert_eq!((expiry, attempts, last_status), (1_060, 1, Some(200)));
            assert!(upstream_ms < 70_000, "earlier_ms is not part of a fresh token's own time");
        }
        _ => panic!("expected Fresh"),
    }
    assert_eq!(diag[0], "before");
}

#[test]
fn an_already_expired_answer_is_upstream_error_naming_the_status_and_all_the_time() {
    let i = idp(endpoint(200, r#"{"access_token":"AT"}"#));
    for expiry in [Some(1_000), None] {
        let (got, diag) = run(&i, true, expiry);
        let a = err(got);
        assert_eq!(a["err"]["code"], "upstream_error");
        assert_eq!(a["err"]["upstream"]["status"], 200);
        assert!(a["err"]["upstream_ms"].as_u64().unwrap() >= 70_000);
        let d = a["err"]["diag"].as_array().unwrap();
        assert_eq!(d[0], "before");
        assert!(d.iter().any(|l| l == "test answer holds an access token that is already expired"), "{d:?}");
        assert!(diag.is_empty(), "the diag lines moved into the answer");
    }
}

#[test]
fn retry_later_serves_a_still_valid_token_and_fails_otherwise() {
    let i = idp(endpoint(503, r#"{"error":"temporarily_unavailable"}"#));
    match run(&i, true, None).0 {
        Obtained::StillValid { failure, upstream_ms } => {
            assert_eq!(failure.code, ErrorCode::RetryLater);
            assert_eq!(failure.upstream.and_then(|u| u.status), Some(503));
            assert!(upstream_ms >= 70_000);
        }
        _ => panic!("expected StillValid"),
    }
    let a = err(run(&i, false, None).0);
    assert_eq!(a["err"]["code"], "retry_later");
    assert!(a["err"]["retry_after_s"].as_u64().is_some());
    assert_eq!(a["err"]["error_description"], ErrorCode::RetryLater.upstream_description());
}

#[test]
fn a_final_failure_takes_the_targets_description_and_never_serves_the_stored_token() {
    let i = idp(endpoint(400, r#"{"error":"invalid_grant","error_description":"AADSTS70008: expired"}"#));
    let a = err(run(&i, true, None).0);
    assert_eq!(a["err"]["code"], "reauth_required");
    assert_eq!(a["err"]["error_description"], "OUR-DESCRIPTION");
    assert!(a["err"]["upstream_ms"].as_u64().unwrap() >= 70_000);
}

#[test]
fn unusable_local_settings_fail_before_any_network_call() {
    let mut i = idp("http://127.0.0.1:9/token".into());
    i.ca_pem = Some("not a PEM bundle".into());
    let a = err(run(&i, true, None).0);
    assert_eq!(a["err"]["code"], "idp_misconfigured");
    assert!(a["err"].get("upstream_ms").is_none(), "{a}");
}
