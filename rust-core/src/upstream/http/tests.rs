use super::*;
use proptest::prelude::*;

#[test]
fn ca_bundle_without_certificates_or_with_a_broken_one_is_refused() {
    assert!(read_ca_bundle(b"").unwrap_err().contains("no PEM certificate"));
    assert!(read_ca_bundle(b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n").is_err());
    assert!(read_ca_bundle(b"-----BEGIN CERTIFICATE-----\n!!!\n").is_err());
}

#[test]
fn debug_of_transport_never_shows_the_proxy_url() {
    let t = Transport {
        connect_timeout: Duration::from_secs(1),
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nCA-SAMPLE\n"),
        ca_sha256: None,
        proxy_url: Some("http://u:PROXY-PASS@p:3128"),
    };
    assert!(!format!("{t:?}").contains("PROXY-PASS"));
    assert!(!format!("{t:?}").contains("CA-SAMPLE"));
}

const CA: &str = include_str!("../../../tests/fixtures/ca.pem");

#[test]
fn a_bundle_handed_over_with_trust_is_found_by_its_digest_and_an_unknown_digest_is_refused() {
    let (hex, n) = trust(CA).unwrap();
    assert_eq!((hex.len(), n), (64, 1));
    let t = |d| Transport {
        connect_timeout: Duration::from_secs(1),
        ca_pem: None,
        ca_sha256: Some(d),
        proxy_url: Some(""),
    };
    assert!(client(&t(&hex)).is_ok());
    let unknown = "0".repeat(64);
    let e = client(&t(&unknown)).err().unwrap().0;
    assert!(e.contains("not handed to this core"), "{e}");
    assert!(client(&t("not-hex")).err().unwrap().0.contains("not a SHA-256"));
    assert!(trust("/etc/ssl/certs/ca-certificates.crt").is_err(), "a path is not a bundle: no file is read");
}

fn post(url: &str, timeout_ms: u64) -> Result<HttpResponse, HttpFailure> {
    let t =
        Transport { connect_timeout: Duration::from_millis(500), ca_pem: None, ca_sha256: None, proxy_url: Some("") };
    let req = crate::upstream::grant::TokenRequest {
        body: crate::wire::SecretValue::new("grant_type=refresh_token&refresh_token=RT-SAMPLE-http-1"),
        authorization: None,
    };
    post_form(
        &client(&t).unwrap(),
        url,
        &req,
        Limits { timeout: Duration::from_millis(timeout_ms), max_body_bytes: 1024 },
    )
}

/// A server that reads the request head and body, then answers with `then`.
fn one_shot(then: fn(std::net::TcpStream)) -> String {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("RT-SAMPLE-http-1") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            then(s);
        }
    });
    format!("http://{addr}/token")
}

#[test]
fn connect_refused_is_a_connect_failure_request_not_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = post(&format!("http://127.0.0.1:{port}/token"), 2000).unwrap_err();
    assert!(matches!(e, HttpFailure::Connect(_)), "{e:?}");
}

#[test]
fn connection_closed_after_the_request_was_read_is_io_maybe_processed() {
    let url = one_shot(drop);
    let e = post(&url, 2000).unwrap_err();
    assert!(matches!(e, HttpFailure::Io(_)), "{e:?}");
}

#[test]
fn no_answer_after_the_request_was_read_is_a_timeout_maybe_processed() {
    let url = one_shot(|s| {
        std::thread::sleep(Duration::from_millis(1500));
        drop(s);
    });
    let e = post(&url, 300).unwrap_err();
    assert!(matches!(e, HttpFailure::Timeout(_)), "{e:?}");
}

proptest! {
    #[test]
    fn read_ca_bundle_never_panics(s in ".*") {
        let _ = read_ca_bundle(s.as_bytes());
        let framed = format!("-----BEGIN CERTIFICATE-----\n{s}\n-----END CERTIFICATE-----\n");
        let _ = read_ca_bundle(framed.as_bytes());
    }
}
