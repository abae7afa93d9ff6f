//! The answers of `docs/CONTRACT.md`: the `ok` / `err` envelope, what the IdP said
//! (`Upstream`), and the small builders every layer uses for an `err` answer.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error_code::ErrorCode;

/// The answer envelope: `{"ok": {...}}` or `{"err": {...}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Ok(OkAnswer),
    Err(ErrAnswer),
    /// The `ok` answer of `inspect`.
    #[serde(rename = "ok")]
    Inspect(InspectAnswer),
}

impl Answer {
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail (string keys, no maps with non-string keys);
        // fall back to a fixed envelope rather than panicking all the same.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"err":{"code":"internal_error","status":500,"error_description":"The answer could not be serialised.","retry_after_s":null,"diag":[]}}"#.to_string()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The stored token is served as is.
    Serve,
    /// (`check` only) a refresh is needed and possible.
    Refresh,
    /// A refresh happened; `store` holds the new stored string.
    Refreshed,
}

#[derive(Serialize)]
pub struct OkAnswer {
    pub action: Action,
    /// The object the app receives; absent for `action: refresh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Map<String, Value>>,
    /// The new stored string; present only after a refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<RedactedJson>,
    /// Time spent talking to the IdP (all attempts), present only after a refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// Absolute expiry (epoch seconds) of the served access token; null when unknown.
    pub expires_at: Option<i64>,
    /// Present only with `action: serve` after a failed refresh (`retry_later` or
    /// `upstream_error`) while the served token is still valid: what the failure was
    /// (contract 1 addition, for events and metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_failure: Option<RefreshFailure>,
    pub diag: Vec<String>,
}

/// A refresh that failed while a still-valid token was served: our code and what the
/// IdP said (never a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshFailure {
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
}

impl std::fmt::Debug for OkAnswer {
    /// The response holds tokens: only its field names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OkAnswer")
            .field("action", &self.action)
            .field("response_fields", &self.response.as_ref().map(|r| r.keys().collect::<Vec<_>>()))
            .field("store", &self.store)
            .field("upstream_ms", &self.upstream_ms)
            .field("expires_at", &self.expires_at)
            .field("refresh_failure", &self.refresh_failure)
            .field("diag", &self.diag)
            .finish()
    }
}

/// A string that serialises as itself but prints `[redacted]` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedJson(pub String);

impl std::fmt::Debug for RedactedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for RedactedJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrAnswer {
    pub code: ErrorCode,
    /// The HTTP status the app should see; fixed per code.
    pub status: u16,
    /// Our own words; never contains token values or secrets.
    pub error_description: String,
    /// What the IdP said, when it said something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    pub retry_after_s: Option<u64>,
    /// Time spent talking to the IdP (all attempts and waits) when this call asked it
    /// (contract 1 addition); absent when the IdP was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    pub diag: Vec<String>,
    /// Rarely present (OBO only): the stored token changed before the failure (the user's
    /// assertion token was refreshed, maybe with a rotated refresh token) and must be
    /// written all the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<RedactedJson>,
}

/// What the IdP answered, reduced to what is safe to show and log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Upstream {
    /// HTTP status; absent when no answer arrived (timeout, connection failure).
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The IdP's own description, truncated to about 500 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// Entra's AADSTS numbers, when given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<i64>,
    /// Entra's `suberror` (e.g. `consent_required`, `bad_token`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    /// Entra's `trace_id` / `correlation_id`, for support cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// The `ok` body of an `inspect` answer. Every field is metadata; none holds a token.
#[derive(Debug, Serialize)]
pub struct InspectAnswer {
    pub action: &'static str,
    pub status: TokenStatus,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TokenStatus {
    /// `json` or `form`: how the row was written.
    pub format: &'static str,
    pub has_access_token: bool,
    pub has_refresh_token: bool,
    pub has_id_token: bool,
    /// When the access token expires (epoch seconds), when known.
    pub access_token_expires_at: Option<i64>,
    /// Seconds left at `now` (negative: expired that long ago), when known.
    pub access_token_expires_in: Option<i64>,
    /// Whether the access token is valid at `now` (false when its expiry is unknown).
    pub access_token_valid: bool,
    /// When this extension last refreshed the token (epoch seconds); null: not since login.
    pub refreshed_at: Option<i64>,
    /// The granted scope as the IdP stated it (not a secret), when stored.
    pub scope: Option<String>,
    /// Number of per-resource tokens kept (`?scope=` on the broker token endpoint).
    pub resource_tokens: usize,
    /// Number of on-behalf-of tokens kept.
    pub obo_tokens: usize,
}

/// An `err` answer.
pub fn err_answer(
    code: ErrorCode,
    description: impl Into<String>,
    upstream: Option<Upstream>,
    retry_after_s: Option<u64>,
    diag: Vec<String>,
) -> Answer {
    Answer::Err(ErrAnswer {
        code,
        status: code.status(),
        error_description: description.into(),
        upstream,
        retry_after_s,
        diag,
        upstream_ms: None,
        store: None,
    })
}

/// `check` only: a refresh is due and possible (`action: refresh`); nothing else happens.
pub fn refresh_due(expires_at: Option<i64>, diag: Vec<String>) -> Answer {
    Answer::Ok(OkAnswer {
        action: Action::Refresh,
        response: None,
        store: None,
        upstream_ms: None,
        expires_at,
        refresh_failure: None,
        diag,
    })
}

/// Sets `upstream_ms` on an `err` answer (the IdP was asked); an `ok` is returned as is.
pub fn with_upstream_ms(mut answer: Answer, upstream_ms: u64) -> Answer {
    if let Answer::Err(e) = &mut answer {
        e.upstream_ms = Some(upstream_ms);
    }
    answer
}

/// `idp_misconfigured` for a local configuration problem, with its own description.
pub fn local_misconfiguration(description: String, mut diag: Vec<String>) -> Answer {
    diag.push("idp_misconfigured: local settings unusable, no network call".into());
    err_answer(ErrorCode::IdpMisconfigured, description, None, None, diag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_ok_answer_never_contains_response_or_store_values() {
        let mut response = Map::new();
        response.insert("access_token".into(), Value::from("AT-SAMPLE-debug-1"));
        let a = Answer::Ok(OkAnswer {
            action: Action::Refreshed,
            response: Some(response),
            store: Some(RedactedJson(r#"{"refresh_token":"RT-SAMPLE-debug-2"}"#.into())),
            upstream_ms: Some(1),
            expires_at: None,
            refresh_failure: None,
            diag: vec![],
        });
        let d = format!("{a:?} {a:#?}");
        assert!(d.contains("access_token"));
        assert!(!d.contains("AT-SAMPLE-debug-1") && !d.contains("RT-SAMPLE-debug-2"), "{d}");
    }

    #[test]
    fn ok_envelope_serialises_with_ok_key_and_omits_absent_store() {
        let a = Answer::Ok(OkAnswer {
            action: Action::Serve,
            response: Some(Map::new()),
            store: None,
            upstream_ms: None,
            expires_at: Some(5),
            refresh_failure: None,
            diag: vec![],
        });
        let v: Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(v["ok"]["action"], "serve");
        assert!(v["ok"].get("store").is_none());
        assert_eq!(v["ok"]["expires_at"], 5);
    }
}
