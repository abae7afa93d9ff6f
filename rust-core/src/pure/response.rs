//! What came back from one HTTP request, as data: the answer (status, headers we read, the
//! capped body) or why none arrived. Built by `upstream::http`, read by `pure::classify`.

use std::time::Duration;

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
/// `Connect`, `Tls` and `InvalidUrl`: the request was not sent. `Timeout` (after the
/// connection stood) and `Io`: it may have been processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// The connection stood, the answer did not come in time.
    Timeout(String),
    /// No connection: refused, DNS, connect timeout, proxy CONNECT failure.
    Connect(String),
    Tls(String),
    /// The URL is unusable (not http/https, malformed).
    InvalidUrl(String),
    /// Anything else on the way (connection reset, body read failure).
    Io(String),
}
