//! How one form POST reaches the token endpoint: pooled blocking clients, timeouts,
//! no redirects, a hard cap on the response body.
//!
//! One client per [`Transport`] (connect timeout, extra CA bundle, proxy setting) is
//! created lazily and kept for the life of the process (so connections are pooled across
//! calls). Proxies come from the environment (`HTTPS_PROXY`, `NO_PROXY`, …) as reqwest
//! does by default, unless the request names one or none; TLS is rustls with the
//! platform's root certificates plus, optionally, the certificates of a PEM bundle handed over
//! in the request (`idp.ca_pem`: in memory, never a file another local user could plant).

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};

use sha2::{Digest as _, Sha256};

use super::grant::TokenRequest;
use crate::pure::response::{Body, HttpFailure, HttpResponse};
use crate::wire::IdpConfig;

/// The pooled clients, by what they were built with.
static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, Client>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// At most this many pooled clients; when full, the pool starts over.
const MAX_CLIENTS: usize = 32;

/// A PEM bundle larger than this is refused (a real bundle is a few hundred KB).
const MAX_CA_PEM_BYTES: usize = 16 * 1024 * 1024;

/// How requests leave the process: which pooled client to use.
#[derive(Clone, Copy)]
pub struct Transport<'a> {
    pub connect_timeout: Duration,
    /// A PEM bundle (the text) of extra trusted roots, added to the default ones.
    pub ca_pem: Option<&'a str>,
    /// Or: the SHA-256 (hex) of a bundle handed over before with the `trust` op.
    pub ca_sha256: Option<&'a str>,
    /// `None`: proxy from the environment; `Some("")`: no proxy; `Some(url)`: that proxy.
    pub proxy_url: Option<&'a str>,
}

impl std::fmt::Debug for Transport<'_> {
    /// A proxy URL may carry credentials: only whether one is set is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proxy = match self.proxy_url {
            None => "environment",
            Some("") => "none",
            Some(_) => "explicit",
        };
        f.debug_struct("Transport")
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_pem_bytes", &self.ca_pem.map(str::len))
            .field("ca_sha256", &self.ca_sha256)
            .field("proxy", &proxy)
            .finish()
    }
}

/// How requests to this IdP leave the process (pooled client key).
pub fn transport_of(idp: &IdpConfig) -> Transport<'_> {
    Transport {
        connect_timeout: Duration::from_millis(idp.connect_timeout_ms()),
        ca_pem: idp.ca_pem.as_deref(),
        ca_sha256: idp.ca_sha256.as_deref(),
        proxy_url: idp.proxy_url.as_ref().map(crate::wire::SecretValue::expose),
    }
}

/// The pool key: connect timeout, SHA-256 of the CA bundle (so another truststore gets a new
/// client), proxy setting.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    connect_timeout_ms: u64,
    ca_pem: Option<[u8; 32]>,
    proxy_url: Option<String>,
}

/// A local configuration problem found before any network call (unusable CA bundle,
/// unusable proxy URL). The text names the problem, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError(pub String);

const USER_AGENT: &str = concat!("fresh-token-core/", env!("CARGO_PKG_VERSION"));

/// Limits for one request (the connect timeout belongs to the [`Transport`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total time for the request, body included.
    pub timeout: Duration,
    pub max_body_bytes: u64,
}

/// The extra roots of a PEM bundle: every `CERTIFICATE` block, each checked to be a
/// usable trust anchor. An empty bundle, or one with a broken block, is an error.
pub fn read_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::{PemObject as _, SectionKind};
    let mut ders = Vec::new();
    for (i, item) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).enumerate() {
        match item {
            Ok((SectionKind::Certificate, der)) => {
                let cert = rustls_pki_types::CertificateDer::from(der.as_slice());
                if webpki::anchor_from_trusted_cert(&cert).is_err() {
                    return Err(format!("PEM block {} is not a valid X.509 certificate", i + 1));
                }
                ders.push(der);
            }
            Ok(_) => {}
            // The PEM error can quote a line of the file: not passed on.
            Err(_) => return Err(format!("PEM block {} is malformed", i + 1)),
        }
    }
    if ders.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(ders)
}

fn bad_ca(what: impl std::fmt::Display) -> TransportError {
    TransportError(format!("The CA certificates (Keycloak's truststore, idp.ca_pem) cannot be used: {what}."))
}

/// Bundles handed over with the `trust` op (Java does it once per process: Keycloak's
/// truststore), by the SHA-256 of their text; requests name one with `idp.ca_sha256` so the
/// bundle does not cross JNI on every call. In memory only.
/// DER certificates of one bundle.
type Roots = Arc<Vec<Vec<u8>>>;

static TRUSTED: LazyLock<Mutex<HashMap<[u8; 32], Roots>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
const MAX_TRUSTED: usize = 8;

fn digest_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_digest(h: &str) -> Option<[u8; 32]> {
    let h = h.trim();
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The `trust` op: checks a PEM bundle and keeps its certificates in memory; answers the
/// SHA-256 (hex) that requests name as `idp.ca_sha256`, and the number of certificates.
pub fn trust(pem: &str) -> Result<(String, usize), TransportError> {
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(bad_ca(format_args!("it is larger than {MAX_CA_PEM_BYTES} bytes")));
    }
    let ders = read_ca_bundle(pem.as_bytes()).map_err(bad_ca)?;
    let digest: [u8; 32] = Sha256::digest(pem.as_bytes()).into();
    let n = ders.len();
    let mut map = TRUSTED.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_TRUSTED && !map.contains_key(&digest) {
        map.clear();
    }
    map.insert(digest, Arc::new(ders));
    Ok((digest_hex(&digest), n))
}

/// The extra roots of a transport and their digest (the pool key part).
fn extra_roots(t: &Transport<'_>) -> Result<Option<([u8; 32], Roots)>, TransportError> {
    if let Some(pem) = t.ca_pem.filter(|p| !p.trim().is_empty()) {
        if pem.len() > MAX_CA_PEM_BYTES {
            return Err(bad_ca(format_args!("it is larger than {MAX_CA_PEM_BYTES} bytes")));
        }
        let digest: [u8; 32] = Sha256::digest(pem.as_bytes()).into();
        let ders = match TRUSTED.lock().unwrap_or_else(|p| p.into_inner()).get(&digest) {
            Some(d) => Arc::clone(d),
            None => Arc::new(read_ca_bundle(pem.as_bytes()).map_err(bad_ca)?),
        };
        return Ok(Some((digest, ders)));
    }
    let Some(hex) = t.ca_sha256.filter(|h| !h.trim().is_empty()) else { return Ok(None) };
    let digest = parse_hex_digest(hex).ok_or_else(|| bad_ca("idp.ca_sha256 is not a SHA-256 in hex"))?;
    match TRUSTED.lock().unwrap_or_else(|p| p.into_inner()).get(&digest) {
        Some(d) => Ok(Some((digest, Arc::clone(d)))),
        None => Err(bad_ca("the bundle named by idp.ca_sha256 was not handed to this core (op trust)")),
    }
}

/// The pooled client for this transport, built on first use. A CA bundle that cannot be
/// used never gets a client, so it is reported on every call before any network call.
pub fn client(t: &Transport<'_>) -> Result<Client, TransportError> {
    let ca = extra_roots(t)?;
    let key = ClientKey {
        connect_timeout_ms: t.connect_timeout.as_millis() as u64,
        ca_pem: ca.as_ref().map(|(d, _)| *d),
        proxy_url: t.proxy_url.map(|p| p.trim().to_string()),
    };
    let mut map = CLIENTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let mut builder = Client::builder()
        .connect_timeout(t.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60));
    if let Some((_, ders)) = &ca {
        let mut certs = Vec::with_capacity(ders.len());
        for der in ders.iter() {
            certs.push(
                reqwest::Certificate::from_der(der)
                    .map_err(|e| TransportError(format!("A CA certificate cannot be used: {}.", chain(&e))))?,
            );
        }
        builder = builder.tls_certs_merge(certs);
    }
    match key.proxy_url.as_deref() {
        None => {}
        Some("") => builder = builder.no_proxy(),
        Some(url) => {
            // reqwest's error would quote the URL, which may hold proxy credentials.
            let usable = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()));
            if !usable {
                return Err(TransportError("The proxy URL (idp.proxy_url) is not an http(s) URL with a host.".into()));
            }
            let proxy = reqwest::Proxy::all(url)
                .map_err(|_| TransportError("The proxy URL (idp.proxy_url) is not a usable URL.".into()))?;
            builder = builder.proxy(proxy);
        }
    }
    let client =
        builder.build().map_err(|e| TransportError(format!("The HTTP client cannot be built: {}.", chain(&e))))?;
    if map.len() >= MAX_CLIENTS {
        map.clear();
    }
    map.insert(key, client.clone());
    Ok(client)
}

/// POSTs a form to `url` and reads the answer within `limits`.
pub fn post_form(client: &Client, url: &str, req: &TokenRequest, limits: Limits) -> Result<HttpResponse, HttpFailure> {
    let parsed = reqwest::Url::parse(url).map_err(|e| HttpFailure::InvalidUrl(format!("token URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(HttpFailure::InvalidUrl(format!("token URL scheme '{}' is not http(s)", parsed.scheme())));
    }
    let started = Instant::now();
    let mut rb = client
        .post(parsed)
        .timeout(limits.timeout)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(req.body.expose().to_owned());
    if let Some(auth) = &req.authorization {
        let mut v = HeaderValue::from_str(auth.expose())
            .map_err(|_| HttpFailure::InvalidUrl("client credentials cannot form an Authorization header".into()))?;
        v.set_sensitive(true);
        rb = rb.header(AUTHORIZATION, v);
    }
    let resp = rb.send().map_err(|e| classify_reqwest(&e))?;
    let header = |name| resp.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let status = resp.status().as_u16();
    let content_type = header(CONTENT_TYPE);
    let retry_after = header(RETRY_AFTER);
    let has_location = resp.headers().contains_key(LOCATION);
    let body = read_capped(resp, limits.max_body_bytes)?;
    Ok(HttpResponse { status, content_type, retry_after, has_location, body, elapsed: started.elapsed() })
}

fn read_capped(resp: reqwest::blocking::Response, cap: u64) -> Result<Body, HttpFailure> {
    if resp.content_length().is_some_and(|len| len > cap) {
        return Ok(Body::TooLarge);
    }
    let mut buf = Vec::new();
    match resp.take(cap.saturating_add(1)).read_to_end(&mut buf) {
        Ok(_) if buf.len() as u64 > cap => Ok(Body::TooLarge),
        Ok(_) => Ok(Body::Complete(buf)),
        Err(e) => Err(classify_io(&e)),
    }
}

fn classify_io(e: &std::io::Error) -> HttpFailure {
    let text = format!("reading the response: {}", chain(e));
    let is_timeout = e.kind() == std::io::ErrorKind::TimedOut
        || sources(e).any(|s| s.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout));
    if is_timeout { HttpFailure::Timeout(text) } else { HttpFailure::Io(text) }
}

/// Connect failures (refused, DNS, connect timeout, TLS handshake) are checked first: the
/// request was never written, so they are "not sent" even when they are also timeouts.
/// Everything after the connection stood (a timeout, a reset) may follow the IdP's work.
fn classify_reqwest(e: &reqwest::Error) -> HttpFailure {
    let text = chain(e);
    if e.is_builder() {
        HttpFailure::InvalidUrl(text)
    } else if e.is_connect() {
        if looks_like_tls(e) { HttpFailure::Tls(text) } else { HttpFailure::Connect(text) }
    } else if e.is_timeout() {
        HttpFailure::Timeout(text)
    } else {
        HttpFailure::Io(text)
    }
}

/// rustls reports handshake and certificate failures as `io::Error`s of kind
/// `InvalidData` wrapping a `rustls::Error` (hyper-util wraps that again in an
/// `io::Error` of kind `Other`, whose `source()` skips the inner one, hence `get_ref`).
fn looks_like_tls(e: &reqwest::Error) -> bool {
    const TLS_WORDS: [&str; 5] = ["certificate", "corrupt message", "fatal alert", "peer is incompatible", "handshake"];
    sources(e).any(|s| {
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(s);
        while let Some(cur) = inner {
            let text = cur.to_string().to_ascii_lowercase();
            if TLS_WORDS.iter().any(|w| text.contains(w)) {
                return true;
            }
            let Some(io) = cur.downcast_ref::<std::io::Error>() else { break };
            if io.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            inner = io.get_ref().map(|r| r as &(dyn std::error::Error + 'static));
        }
        false
    })
}

fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The error and its causes, de-duplicated, without the URL, at most 300 characters.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for s in sources(e) {
        let t = match s.downcast_ref::<reqwest::Error>() {
            // reqwest's Display names the URL; ours is known to the caller anyway.
            Some(r) if r.url().is_some() => {
                let kind = if r.is_timeout() {
                    "timed out"
                } else if r.is_connect() {
                    "connect failed"
                } else {
                    "request failed"
                };
                kind.to_string()
            }
            _ => s.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
    }
    let mut out = parts.join(": ");
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
