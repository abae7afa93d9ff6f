use super::*;
use proptest::prelude::*;
use serde_json::json;

fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        content_type: Some("application/json".into()),
        retry_after: None,
        has_location: false,
        body: Body::Complete(body.as_bytes().to_vec()),
        elapsed: Duration::ZERO,
    }
}

fn code_of(o: &Outcome) -> Option<ErrorCode> {
    match o {
        Outcome::Failed(f) => Some(f.code),
        Outcome::Transient { .. } => Some(ErrorCode::RetryLater),
        Outcome::Success(_) => None,
    }
}

fn entra(error: &str, code: i64) -> String {
    json!({"error": error, "error_description": format!("AADSTS{code}: something. Trace ID: x"),
           "error_codes": [code], "timestamp": "2025-11-25 10:00:00Z", "trace_id": "t", "correlation_id": "c"})
    .to_string()
}

#[test]
fn status_of_each_code_matches_the_contract_table() {
    use ErrorCode::*;
    let table = [
        (ReauthRequired, 400),
        (ConsentRequired, 400),
        (AdminActionRequired, 403),
        (RetryLater, 503),
        (IdpMisconfigured, 502),
        (UpstreamError, 502),
        (Forbidden, 403),
        (NativeUnavailable, 503),
        (InternalError, 500),
        (StorageKeyError, 500),
        (StorageBindingMismatch, 500),
        (StoragePlaintextRow, 500),
    ];
    for (code, status) in table {
        assert_eq!(code.status(), status, "{}", code.as_str());
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn entra_aadsts_codes_classify_as_the_table_says() {
    use ErrorCode::*;
    let table: &[(&str, i64, ErrorCode)] = &[
        ("invalid_grant", 70008, ReauthRequired),
        ("invalid_grant", 700082, ReauthRequired),
        ("invalid_grant", 700084, ReauthRequired),
        ("invalid_grant", 50173, ReauthRequired),
        ("invalid_grant", 70043, ReauthRequired),
        ("invalid_grant", 50076, ReauthRequired),
        ("interaction_required", 50079, ReauthRequired),
        ("interaction_required", 50158, ReauthRequired),
        ("invalid_grant", 50055, ReauthRequired),
        ("invalid_grant", 65001, ConsentRequired),
        ("invalid_grant", 90094, AdminActionRequired),
        ("invalid_grant", 53003, AdminActionRequired),
        ("invalid_grant", 50057, AdminActionRequired),
        ("invalid_client", 7000215, IdpMisconfigured),
        ("invalid_client", 7000222, IdpMisconfigured),
        ("unauthorized_client", 700016, IdpMisconfigured),
        ("invalid_request", 90002, IdpMisconfigured),
        ("invalid_client", 700027, IdpMisconfigured),
        ("invalid_scope", 70011, IdpMisconfigured),
        ("invalid_request", 28002, IdpMisconfigured),
        ("invalid_grant", 700022, IdpMisconfigured),
        ("invalid_grant", 50013, IdpMisconfigured),
        ("invalid_grant", 500131, IdpMisconfigured),
    ];
    for (error, aadsts, want) in table {
        let o = classify_response(&resp(400, &entra(error, *aadsts)), SystemTime::now());
        assert_eq!(code_of(&o), Some(*want), "{error} AADSTS{aadsts}");
    }
}

#[test]
fn plain_oauth_errors_classify_as_the_table_says() {
    use ErrorCode::*;
    let table: &[(&str, u16, ErrorCode)] = &[
        ("invalid_grant", 400, ReauthRequired),
        ("interaction_required", 400, ReauthRequired),
        ("login_required", 400, ReauthRequired),
        ("consent_required", 400, ConsentRequired),
        ("invalid_client", 401, IdpMisconfigured),
        ("unauthorized_client", 400, IdpMisconfigured),
        ("invalid_scope", 400, IdpMisconfigured),
        ("unsupported_grant_type", 400, IdpMisconfigured),
        ("invalid_request", 400, IdpMisconfigured),
        ("temporarily_unavailable", 400, RetryLater),
        ("server_error", 400, RetryLater),
        ("invalid_grant", 503, RetryLater),
        ("something_new", 400, UpstreamError),
    ];
    for (error, status, want) in table {
        let o = classify_response(&resp(*status, &json!({"error": error}).to_string()), SystemTime::now());
        assert_eq!(code_of(&o), Some(*want), "{error} {status}");
    }
}

#[test]
fn unknown_aadsts_code_falls_back_to_the_oauth_error() {
    let o = classify_response(&resp(400, &entra("invalid_grant", 9999999)), SystemTime::now());
    assert_eq!(code_of(&o), Some(ErrorCode::ReauthRequired));
}

#[test]
fn aadsts_in_description_is_used_when_error_codes_are_missing() {
    let body =
        json!({"error":"invalid_grant","error_description":"AADSTS65001: The user has not consented"}).to_string();
    let o = classify_response(&resp(400, &body), SystemTime::now());
    assert_eq!(code_of(&o), Some(ErrorCode::ConsentRequired));
}

#[test]
fn status_429_and_5xx_are_transient_whatever_the_body() {
    for (status, body) in [(429, "{}"), (500, "<html>oops</html>"), (502, ""), (503, r#"{"error":"invalid_grant"}"#)] {
        assert!(
            matches!(classify_response(&resp(status, body), SystemTime::now()), Outcome::Transient { .. }),
            "{status}"
        );
    }
}

#[test]
fn redirect_is_idp_misconfigured() {
    let mut r = resp(302, "");
    r.has_location = true;
    assert_eq!(code_of(&classify_response(&r, SystemTime::now())), Some(ErrorCode::IdpMisconfigured));
}

#[test]
fn unusable_answers_are_upstream_error() {
    let cases = [
        (200, "<html>login</html>"),
        (200, "{not json"),
        (200, r#"{"token_type":"Bearer"}"#),
        (200, r#"{"access_token":""}"#),
        (400, "<html>bad</html>"),
        (404, r#"{"message":"not found"}"#),
    ];
    for (status, body) in cases {
        assert_eq!(
            code_of(&classify_response(&resp(status, body), SystemTime::now())),
            Some(ErrorCode::UpstreamError),
            "{status} {body}"
        );
    }
}

#[test]
fn body_over_cap_is_upstream_error_on_200_and_transient_on_503() {
    let mut r = resp(200, "");
    r.body = Body::TooLarge;
    assert_eq!(code_of(&classify_response(&r, SystemTime::now())), Some(ErrorCode::UpstreamError));
    r.status = 503;
    assert!(matches!(classify_response(&r, SystemTime::now()), Outcome::Transient { .. }));
}

#[test]
fn success_needs_2xx_and_a_non_empty_access_token() {
    let o = classify_response(&resp(200, r#"{"access_token":"at","expires_in":"3599"}"#), SystemTime::now());
    assert!(matches!(o, Outcome::Success(m) if m["expires_in"] == "3599"));
}

#[test]
fn form_encoded_success_is_accepted_when_content_type_says_so() {
    let mut r = resp(200, "access_token=gho_x&token_type=bearer&scope=repo");
    r.content_type = Some("application/x-www-form-urlencoded; charset=utf-8".into());
    assert!(matches!(classify_response(&r, SystemTime::now()), Outcome::Success(m) if m["access_token"] == "gho_x"));
}

#[test]
fn upstream_carries_error_fields_and_truncated_description() {
    let long = "x".repeat(2000);
    let body = json!({"error":"invalid_grant","error_description": long,"error_codes":[70008],"suberror":"bad_token","trace_id":"tr","correlation_id":"co"}).to_string();
    let Outcome::Failed(f) = classify_response(&resp(400, &body), SystemTime::now()) else { panic!("not failed") };
    let up = f.upstream.unwrap();
    assert_eq!(up.status, Some(400));
    assert_eq!(up.error.as_deref(), Some("invalid_grant"));
    assert_eq!(up.error_codes, vec![70008]);
    assert_eq!(up.suberror.as_deref(), Some("bad_token"));
    assert_eq!(up.trace_id.as_deref(), Some("tr"));
    assert_eq!(up.correlation_id.as_deref(), Some("co"));
    assert_eq!(up.error_description.unwrap().chars().count(), MAX_DESCRIPTION_CHARS + 1);
}

#[test]
fn transport_failures_classify_timeouts_and_connect_as_transient_tls_and_url_as_misconfigured() {
    assert!(matches!(classify_failure(&HttpFailure::Timeout("t".into())), Outcome::Transient { .. }));
    assert!(matches!(classify_failure(&HttpFailure::Connect("c".into())), Outcome::Transient { .. }));
    assert!(matches!(classify_failure(&HttpFailure::Io("i".into())), Outcome::Transient { .. }));
    assert_eq!(code_of(&classify_failure(&HttpFailure::Tls("x".into()))), Some(ErrorCode::IdpMisconfigured));
    assert_eq!(code_of(&classify_failure(&HttpFailure::InvalidUrl("x".into()))), Some(ErrorCode::IdpMisconfigured));
}

fn maybe_processed(o: &Outcome) -> Option<bool> {
    match o {
        Outcome::Transient { maybe_processed, .. } => Some(*maybe_processed),
        _ => None,
    }
}

#[test]
fn connect_failures_are_not_sent_timeouts_resets_and_5xx_may_have_been_processed() {
    assert_eq!(maybe_processed(&classify_failure(&HttpFailure::Connect("refused".into()))), Some(false));
    assert_eq!(maybe_processed(&classify_failure(&HttpFailure::Timeout("read".into()))), Some(true));
    assert_eq!(maybe_processed(&classify_failure(&HttpFailure::Io("reset".into()))), Some(true));
    for status in [500u16, 502, 503, 504] {
        assert_eq!(
            maybe_processed(&classify_response(&resp(status, "busy"), SystemTime::now())),
            Some(true),
            "{status}"
        );
    }
    assert_eq!(maybe_processed(&classify_response(&resp(429, "slow down"), SystemTime::now())), Some(false));
    let unavailable = r#"{"error":"temporarily_unavailable","error_description":"try later"}"#;
    assert_eq!(maybe_processed(&classify_response(&resp(400, unavailable), SystemTime::now())), Some(false));
    assert_eq!(maybe_processed(&classify_response(&resp(503, unavailable), SystemTime::now())), Some(true));
}

#[test]
fn retry_after_seconds_and_http_date_are_read() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-1", now), None);
}

#[test]
fn http_date_parses_to_epoch_seconds() {
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(parse_http_date("Wed, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000));
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
}

#[test]
fn retry_after_header_is_carried_on_429() {
    let mut r = resp(429, "");
    r.retry_after = Some("12".into());
    let Outcome::Transient { retry_after, .. } = classify_response(&r, SystemTime::now()) else { panic!() };
    assert_eq!(retry_after, Some(Duration::from_secs(12)));
}

#[test]
fn aadsts_in_text_finds_numbers_in_order_without_duplicates() {
    assert_eq!(aadsts_in_text("AADSTS70008: x AADSTS50173 y AADSTS70008"), vec![70008, 50173]);
    assert_eq!(aadsts_in_text("AADSTS"), Vec::<i64>::new());
}

proptest! {
    #[test]
    fn classify_response_never_panics(status in 100u16..600, body in ".*", ra in proptest::option::of(".*")) {
        let mut r = resp(status, &body);
        r.retry_after = ra;
        let _ = classify_response(&r, SystemTime::now());
    }

    #[test]
    fn http_date_parser_never_panics(s in ".*") {
        let _ = parse_http_date(&s);
        let _ = parse_retry_after(&s, SystemTime::now());
    }

    #[test]
    fn truncate_description_never_panics_and_is_bounded(s in ".*") {
        prop_assert!(truncate_description(&s).chars().count() <= MAX_DESCRIPTION_CHARS + 1);
    }
}
