//! What an IdP answer means for the app: classification into the closed code set of
//! `docs/CONTRACT.md`.
//!
//! Decided on HTTP status, the OAuth `error` and `Retry-After`; Entra's AADSTS numbers
//! (`error_codes`, or `AADSTSnnnn` in the description) refine the decision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::json::{non_empty_str, number_or_string};
use super::response::{Body, HttpFailure, HttpResponse};
use crate::wire::{ErrorCode, Upstream};

/// AADSTS codes meaning the user must sign in again (expired/revoked grant, MFA, …).
pub const AADSTS_REAUTH: &[i64] = &[70008, 700082, 700084, 50173, 70043, 50076, 50079, 50158, 50055];
/// AADSTS codes meaning user consent is missing.
pub const AADSTS_CONSENT: &[i64] = &[65001];
/// AADSTS codes only an administrator can resolve.
pub const AADSTS_ADMIN: &[i64] = &[90094, 53003, 50057];
/// AADSTS codes meaning our configuration is wrong (client, tenant, scope, OBO assertion).
pub const AADSTS_MISCONFIGURED: &[i64] =
    &[7000215, 7000222, 700016, 90002, 700027, 70011, 28002, 700022, 50013, 500131];

/// The code an AADSTS number hints at, if it is one we know.
pub fn aadsts_hint(code: i64) -> Option<ErrorCode> {
    if AADSTS_REAUTH.contains(&code) {
        Some(ErrorCode::ReauthRequired)
    } else if AADSTS_CONSENT.contains(&code) {
        Some(ErrorCode::ConsentRequired)
    } else if AADSTS_ADMIN.contains(&code) {
        Some(ErrorCode::AdminActionRequired)
    } else if AADSTS_MISCONFIGURED.contains(&code) {
        Some(ErrorCode::IdpMisconfigured)
    } else {
        None
    }
}

/// The code an OAuth `error` value means, if it is one we know (transient ones excluded).
pub fn oauth_error_code(error: &str) -> Option<ErrorCode> {
    match error {
        "invalid_grant" | "interaction_required" | "login_required" => Some(ErrorCode::ReauthRequired),
        "consent_required" => Some(ErrorCode::ConsentRequired),
        "invalid_client" | "unauthorized_client" | "invalid_scope" | "unsupported_grant_type" | "invalid_request" => {
            Some(ErrorCode::IdpMisconfigured)
        }
        _ => None,
    }
}

/// OAuth `error` values that mean "try again later".
fn is_transient_error(error: &str) -> bool {
    matches!(error, "temporarily_unavailable" | "server_error")
}

/// Maximum characters of the IdP's `error_description` passed on.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Retry-After used when the IdP gave none (or none readable).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Retry-After values beyond this are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A failure that ends the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub upstream: Option<Upstream>,
    /// Our own words for the log: no token values, no secrets.
    pub reason: String,
}

/// What one exchange with the token endpoint came to.
#[derive(Clone, PartialEq)]
pub enum Outcome {
    /// 2xx with a usable token response (the object as the IdP sent it).
    Success(Map<String, Value>),
    /// Worth another attempt (or `retry_later` when none is left). `maybe_processed`: the
    /// request may have reached the IdP and been acted on (read timeout, connection reset
    /// after the request was written, 5xx); `false`: it was certainly not processed (connect
    /// refused, DNS, connect timeout, TLS handshake, 429, an OAuth `temporarily_unavailable`
    /// / `server_error` answer below 500). See [`crate::retry`].
    Transient { upstream: Option<Upstream>, retry_after: Option<Duration>, reason: String, maybe_processed: bool },
    /// Final.
    Failed(Failure),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success(m) => write!(f, "Success({:?})", m.keys().collect::<Vec<_>>()),
            Outcome::Transient { upstream, retry_after, reason, maybe_processed } => f
                .debug_struct("Transient")
                .field("upstream", upstream)
                .field("retry_after", retry_after)
                .field("reason", reason)
                .field("maybe_processed", maybe_processed)
                .finish(),
            Outcome::Failed(x) => write!(f, "Failed({x:?})"),
        }
    }
}

fn failed(code: ErrorCode, upstream: Option<Upstream>, reason: impl Into<String>) -> Outcome {
    Outcome::Failed(Failure { code, upstream, reason: reason.into() })
}

/// Classifies a transport failure (no HTTP answer). A connect failure (refused, DNS,
/// connect timeout) means the request was never written: not processed. A timeout after
/// the connection stood, or a reset / read failure, may come after the IdP acted on it.
pub fn classify_failure(f: &HttpFailure) -> Outcome {
    match f {
        HttpFailure::Timeout(t) => Outcome::Transient {
            upstream: None,
            retry_after: None,
            reason: format!("timeout (request may have been processed): {t}"),
            maybe_processed: true,
        },
        HttpFailure::Connect(t) => Outcome::Transient {
            upstream: None,
            retry_after: None,
            reason: format!("connection failed (request not sent): {t}"),
            maybe_processed: false,
        },
        HttpFailure::Io(t) => Outcome::Transient {
            upstream: None,
            retry_after: None,
            reason: format!("transport (request may have been processed): {t}"),
            maybe_processed: true,
        },
        HttpFailure::Tls(t) => failed(ErrorCode::IdpMisconfigured, None, format!("TLS failure: {t}")),
        HttpFailure::InvalidUrl(t) => failed(ErrorCode::IdpMisconfigured, None, format!("unusable token URL: {t}")),
    }
}

/// Classifies an HTTP answer of the token endpoint.
pub fn classify_response(resp: &HttpResponse, now: SystemTime) -> Outcome {
    let status = resp.status;
    let retry_after = resp.retry_after.as_deref().and_then(|v| parse_retry_after(v, now));
    let bare = Upstream { status: Some(status), ..Upstream::default() };

    if (300..400).contains(&status) {
        let loc = if resp.has_location { " (Location withheld)" } else { "" };
        return failed(
            ErrorCode::IdpMisconfigured,
            Some(bare),
            format!("redirect {status}{loc} not followed: is the token URL right?"),
        );
    }
    let transient_status = status == 429 || status >= 500;
    let body = match &resp.body {
        Body::Complete(b) => b.as_slice(),
        Body::TooLarge if transient_status => {
            return Outcome::Transient {
                upstream: Some(bare),
                retry_after,
                reason: format!("upstream {status} (body over size cap)"),
                maybe_processed: status >= 500,
            };
        }
        Body::TooLarge => {
            return failed(ErrorCode::UpstreamError, Some(bare), format!("upstream {status}: body over the size cap"));
        }
    };
    let object = parse_object(body, resp.content_type.as_deref());
    let oauth = object.as_ref().and_then(|o| upstream_from_error_object(status, o));

    if transient_status {
        let upstream = Some(oauth.unwrap_or(bare));
        // 429 is a refusal before processing; a 5xx may come after the IdP acted on it.
        return Outcome::Transient {
            upstream,
            retry_after,
            reason: format!("upstream {status}"),
            maybe_processed: status >= 500,
        };
    }
    if (200..300).contains(&status) {
        if let Some(obj) = &object {
            if non_empty_str(obj, "access_token").is_some() {
                return Outcome::Success(object.unwrap_or_default());
            }
        }
    }
    if let Some(up) = oauth {
        return classify_oauth(up, retry_after);
    }
    let reason = match (&object, (200..300).contains(&status)) {
        (Some(_), true) => format!("upstream {status}: JSON without access_token"),
        (Some(_), false) => format!("upstream {status}: JSON without an OAuth error"),
        (None, _) => {
            format!("upstream {status}: not a JSON object ({})", describe_content_type(resp.content_type.as_deref()))
        }
    };
    failed(ErrorCode::UpstreamError, Some(bare), reason)
}

/// Classifies an OAuth error answer (status already known not to be 429/5xx/3xx).
pub fn classify_oauth(up: Upstream, retry_after: Option<Duration>) -> Outcome {
    let error = up.error.clone().unwrap_or_default();
    let status = up.status.unwrap_or(0);
    let codes = if up.error_codes.is_empty() { String::new() } else { format!(" AADSTS{:?}", up.error_codes) };
    if is_transient_error(&error) {
        return Outcome::Transient {
            upstream: Some(up),
            retry_after,
            reason: format!("upstream {status} {error}{codes}"),
            // An OAuth error answer below 500 says the grant was not carried out.
            maybe_processed: status >= 500,
        };
    }
    let hinted = up.error_codes.iter().find_map(|c| aadsts_hint(*c));
    let code = hinted.or_else(|| oauth_error_code(&error)).unwrap_or(ErrorCode::UpstreamError);
    let reason = format!("upstream {status} {error}{codes} -> {}", code.as_str());
    failed(code, Some(up), reason)
}

/// A JSON object from the body; for a form-urlencoded content type, the decoded pairs.
fn parse_object(body: &[u8], content_type: Option<&str>) -> Option<Map<String, Value>> {
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        return Some(m);
    }
    let is_form =
        content_type.is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let pairs = super::form::decode_pairs(text.trim())?;
    (!pairs.is_empty()).then(|| pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// The OAuth error fields of an answer object, when it has a string `error`.
fn upstream_from_error_object(status: u16, o: &Map<String, Value>) -> Option<Upstream> {
    let error = non_empty_str(o, "error")?;
    let description = o.get("error_description").and_then(Value::as_str).map(truncate_description);
    let mut error_codes: Vec<i64> = match o.get("error_codes") {
        Some(Value::Array(a)) => a.iter().filter_map(number_or_string).take(16).collect(),
        Some(v) => number_or_string(v).into_iter().collect(),
        None => Vec::new(),
    };
    if error_codes.is_empty() {
        error_codes = description.as_deref().map(aadsts_in_text).unwrap_or_default();
    }
    let short = |k: &str| o.get(k).and_then(Value::as_str).map(|s| s.chars().take(100).collect::<String>());
    Some(Upstream {
        status: Some(status),
        error: Some(error.chars().take(100).collect()),
        error_description: description,
        error_codes,
        suberror: short("suberror"),
        trace_id: short("trace_id"),
        correlation_id: short("correlation_id"),
    })
}

/// `AADSTSnnnn` numbers mentioned in a text, in order, without duplicates.
pub fn aadsts_in_text(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("AADSTS") {
        rest = &rest[i + 6..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).take(10).collect();
        if let Ok(n) = digits.parse::<i64>() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// At most [`MAX_DESCRIPTION_CHARS`] characters, with `…` when cut.
pub fn truncate_description(s: &str) -> String {
    let mut it = s.char_indices();
    match it.nth(MAX_DESCRIPTION_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

fn describe_content_type(ct: Option<&str>) -> String {
    match ct {
        None => "no content type".into(),
        Some(ct) => ct.split(';').next().unwrap_or("").trim().chars().take(60).collect(),
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (IMF-fixdate), relative to `now`.
/// A date in the past gives zero; unreadable values give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(v)?;
    let now_s = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now_s).max(0) as u64).min(MAX_RETRY_AFTER))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to epoch seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_dow, day, mon, year, hms, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as i64 + 1;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if t.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
