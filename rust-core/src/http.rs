//! How one form POST reaches the token endpoint: pooled blocking clients, timeouts,
//! no redirects, a hard cap on the response body.
//!
//! One client per connect-timeout value is created lazily and kept for the life of the
//! process (so connections are pooled across calls). Proxies come from the environment
//! (`HTTPS_PROXY`, `NO_PROXY`, …) as reqwest does by default; TLS is rustls with the
//! platform's root certificates.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};

use crate::grant::TokenRequest;

/// The clients, by connect timeout in milliseconds.
static CLIENTS: LazyLock<Mutex<HashMap<u64, Client>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

const USER_AGENT: &str = concat!("fresh-token-core/", env!("CARGO_PKG_VERSION"));

/// Limits for one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// Total time for the request, body included.
    pub timeout: Duration,
    pub max_body_bytes: u64,
}

/// An HTTP answer, whatever its status.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    /// Whether a `Location` header came with it (its value is not kept).
    pub has_location: bool,
    pub body: Body,
    pub elapsed: Duration,
}

impl std::fmt::Debug for HttpResponse {
    /// The body may hold tokens: only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("retry_after", &self.retry_after)
            .field(
                "body_len",
                &match &self.body {
                    Body::Complete(b) => Some(b.len()),
                    Body::TooLarge => None,
                },
            )
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub enum Body {
    Complete(Vec<u8>),
    /// Longer than `max_body_bytes`; reading stopped at the cap.
    TooLarge,
}

/// Why no HTTP answer arrived. The text is the transport's own words (no request data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    Timeout(String),
    Connect(String),
    Tls(String),
    /// The URL is unusable (not http/https, malformed).
    InvalidUrl(String),
    /// Anything else on the way (connection reset, body read failure).
    Io(String),
}

fn client_for(connect_timeout: Duration) -> Result<Client, HttpFailure> {
    let key = connect_timeout.as_millis() as u64;
    let mut map = CLIENTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let client = Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| HttpFailure::Tls(format!("cannot build HTTP client: {}", chain(&e))))?;
    map.insert(key, client.clone());
    Ok(client)
}

/// POSTs a form to `url` and reads the answer within `limits`.
pub fn post_form(url: &str, req: &TokenRequest, limits: Limits) -> Result<HttpResponse, HttpFailure> {
    let parsed = reqwest::Url::parse(url).map_err(|e| HttpFailure::InvalidUrl(format!("token URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(HttpFailure::InvalidUrl(format!("token URL scheme '{}' is not http(s)", parsed.scheme())));
    }
    let client = client_for(limits.connect_timeout)?;
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

fn classify_reqwest(e: &reqwest::Error) -> HttpFailure {
    let text = chain(e);
    if e.is_timeout() {
        HttpFailure::Timeout(text)
    } else if e.is_builder() {
        HttpFailure::InvalidUrl(text)
    } else if e.is_connect() {
        if looks_like_tls(e) { HttpFailure::Tls(text) } else { HttpFailure::Connect(text) }
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
