//! Outbound HTTP like Keycloak's: extra CA roots (`idp.ca_pem`, in memory) and the proxy setting
//! (`idp.proxy_url`), through `call()`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

mod common;
use common::{NOW, endpoint};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn token_body() -> String {
    json!({"access_token":"AT-NEW","refresh_token":"RT-NEW","expires_in":3600,"token_type":"Bearer"}).to_string()
}

fn request(token_url: &str, idp_extra: Value) -> String {
    let mut idp = json!({"token_url": token_url, "client_id": "c", "client_secret": "s",
        "connect_timeout_ms": 1000, "timeout_ms": 3000, "max_attempts": 1, "deadline_ms": 5000});
    for (k, v) in idp_extra.as_object().unwrap() {
        idp[k] = v.clone();
    }
    let stored = json!({"access_token":"AT-OLD","refresh_token":"RT-OLD","accessTokenExpiration": NOW - 5});
    json!({"v":2,"op":"retrieve","now":NOW,"stored":stored.to_string(),"idp":idp}).to_string()
}

fn call(req: &str) -> Value {
    serde_json::from_str(&fresh_token_core::call(req)).unwrap()
}

/// Reads one HTTP/1.1 request (head + Content-Length body); returns head and body.
fn read_request(stream: &mut impl std::io::Read) -> (String, String) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

fn ca_pem() -> String {
    std::fs::read_to_string(format!("{FIXTURES}/ca.pem")).unwrap()
}

fn http_ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_ca_pem_is_idp_misconfigured_without_a_network_call() {
    let server = endpoint(ResponseTemplate::new(200).set_body_string(token_body()), Some(0)).await;
    let key_only = std::fs::read_to_string(format!("{FIXTURES}/leaf.key.pem")).unwrap();
    // A path is not a bundle: the core never opens a file named in the request.
    let path = format!("{FIXTURES}/ca.pem");
    for (pem, words) in [
        ("this is not PEM".to_string(), "no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_string(),
            "not a valid X.509 certificate",
        ),
        (key_only, "no PEM certificate"),
        (path, "no PEM certificate"),
    ] {
        let a = common::call(request(&format!("{}/token", server.uri()), json!({"ca_pem": pem}))).await;
        assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
        let d = a["err"]["error_description"].as_str().unwrap();
        assert!(d.contains("idp.ca_pem") && d.contains(words), "{d}");
        assert!(!a.to_string().contains("PRIVATE KEY"), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usable_ca_pem_and_empty_proxy_url_still_reach_a_plain_http_token_url() {
    let server = endpoint(
        ResponseTemplate::new(200).set_body_string(token_body()).insert_header("content-type", "application/json"),
        Some(1),
    )
    .await;
    let extra = json!({"ca_pem": ca_pem(), "proxy_url": ""});
    let a = common::call(request(&format!("{}/token", server.uri()), extra)).await;
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
}

#[test]
fn unusable_proxy_url_is_idp_misconfigured_and_never_quoted() {
    let a = call(&request("http://127.0.0.1:9/token", json!({"proxy_url": "ht!tp://user:PROXY-PASS@:::"})));
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert!(!a.to_string().contains("PROXY-PASS"), "{a}");
}

#[test]
fn proxy_url_receives_the_absolute_form_request_for_an_http_token_url() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = std::thread::spawn(move || {
        let (mut s, _) = proxy.accept().unwrap();
        let (head, body) = read_request(&mut s);
        s.write_all(http_ok(&token_body()).as_bytes()).unwrap();
        (head, body)
    });
    // Nothing listens on this name: only the proxy can answer.
    let a = call(&request("http://token-endpoint.invalid:8080/tenant/token", json!({"proxy_url": proxy_url})));
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    let (head, body) = seen.join().unwrap();
    let request_line = head.lines().next().unwrap();
    assert_eq!(request_line, "POST http://token-endpoint.invalid:8080/tenant/token HTTP/1.1");
    assert!(body.starts_with("grant_type=refresh_token&refresh_token=RT-OLD"), "{body}");
}

/// A one-shot HTTPS token endpoint with a certificate of the test CA.
fn tls_server() -> (String, std::thread::JoinHandle<bool>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{FIXTURES}/leaf.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/leaf.key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}/token", listener.local_addr().unwrap().port());
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut probe = [0u8; 1];
        // A client that rejects the certificate ends the handshake: no request arrives.
        if tls.read(&mut probe).unwrap_or(0) == 0 {
            return false;
        }
        let mut rest = (probe.to_vec(), tls);
        let (head, _) = read_request(&mut std::io::Read::chain(&rest.0[..], &mut rest.1));
        assert!(head.starts_with("POST /token HTTP/1.1"), "{head}");
        rest.1.write_all(http_ok(&token_body()).as_bytes()).unwrap();
        rest.1.flush().unwrap();
        true
    });
    (url, handle)
}

#[test]
fn https_token_url_with_a_private_ca_needs_the_ca_pem() {
    let (url, server) = tls_server();
    let a = call(&request(&url, json!({"proxy_url": ""})));
    assert_eq!(a["err"]["code"], "idp_misconfigured", "{a}");
    assert!(!server.join().unwrap());

    let (url, server) = tls_server();
    let a = call(&request(&url, json!({"proxy_url": "", "ca_pem": ca_pem()})));
    assert_eq!(a["ok"]["action"], "refreshed", "{a}");
    assert!(server.join().unwrap());
}
