//! The refresh flow, written once: obtain a token for a target (the IdP's own token, a
//! resource, the on-behalf-of exchange, an app-only token) and map how the attempts ended
//! (`Finished`) to one of: a fresh token to serve, serve the stored one that is still valid,
//! fail, retry later. Every flow calls [`obtain`]; what a flow does with a fresh token (merge
//! it, keep it as an entry, cache it) stays in the flow.

use serde_json::{Map, Value};

use crate::upstream::exchange::{Exchanged, Grant, exchange};
use crate::upstream::grant::TokenRequest;
use crate::upstream::retry::Finished;
use crate::wire::{
    Answer, ErrorCode, IdpConfig, RefreshFailure, Upstream, err_answer, local_misconfiguration, with_upstream_ms,
};

/// What is asked for, and how a failure is told.
pub(crate) struct Target<'a> {
    pub idp: &'a IdpConfig,
    pub grant: Grant,
    /// Keycloak's clock, epoch seconds: a fresh token must expire after it.
    pub now: i64,
    /// The token the caller holds now is still valid: a `retry_later` or `upstream_error`
    /// serves it instead of failing.
    pub still_valid: bool,
    /// Our description of a final failure's code.
    pub describe: fn(ErrorCode) -> &'static str,
    /// Time spent on earlier exchanges of this call, added to `upstream_ms` of a failure
    /// (on-behalf-of: the refresh of the user's token first).
    pub earlier_ms: u64,
    /// Names the answer in the diag line of an already expired token (`refresh`, `obo`, …).
    pub what: &'static str,
    /// Whether the `upstream_error` of an already expired token carries the HTTP status.
    pub expired_names_status: bool,
}

/// How obtaining a token ended.
pub(crate) enum Obtained<T> {
    /// The IdP answered a usable token (as `accept` made it), expiring at `expiry`.
    /// `upstream_ms` is this exchange's time only.
    Fresh { token: T, expiry: i64, attempts: u32, upstream_ms: u64, last_status: Option<u16> },
    /// The refresh failed for a reason the user cannot fix (`retry_later`, `upstream_error`)
    /// while the caller's token is still valid: serve that one. `upstream_ms` includes
    /// `earlier_ms`.
    StillValid { failure: RefreshFailure, upstream_ms: u64 },
    /// The `err` answer to give now (its `upstream_ms` includes `earlier_ms`).
    Failed(Answer),
}

/// Runs the grant `make()` builds (anew for every attempt) at `target.idp` and maps the end.
/// `accept` turns a success body into the caller's token and its expiry (`None`: the answer
/// holds no usable token); an expiry at or before `now` is an `upstream_error`. On `Failed`
/// the diag lines are moved into the answer; otherwise they stay in `diag`.
pub(crate) fn obtain<T>(
    target: &Target<'_>,
    diag: &mut Vec<String>,
    make: impl FnMut() -> Result<TokenRequest, String>,
    accept: impl FnOnce(Map<String, Value>) -> (T, Option<i64>),
) -> Obtained<T> {
    let take = |d: &mut Vec<String>| std::mem::take(d);
    let Exchanged { finished, upstream_ms, last_status } = match exchange(target.idp, target.grant, diag, make) {
        Ok(x) => x,
        Err(description) => return Obtained::Failed(local_misconfiguration(description, take(diag))),
    };
    let total_ms = target.earlier_ms.saturating_add(upstream_ms);
    match finished {
        Finished::Success { body, attempts } => match accept(body) {
            (token, Some(expiry)) if expiry > target.now => {
                Obtained::Fresh { token, expiry, attempts, upstream_ms, last_status }
            }
            _ => {
                diag.push(format!("{} answer holds an access token that is already expired", target.what));
                let up = target.expired_names_status.then(|| Upstream { status: last_status, ..Upstream::default() });
                let code = ErrorCode::UpstreamError;
                Obtained::Failed(with_upstream_ms(
                    err_answer(code, code.upstream_description(), up, None, take(diag)),
                    total_ms,
                ))
            }
        },
        Finished::Failed(f) if f.code == ErrorCode::UpstreamError && target.still_valid => {
            diag.push(f.reason);
            Obtained::StillValid {
                failure: RefreshFailure { code: f.code, upstream: f.upstream },
                upstream_ms: total_ms,
            }
        }
        Finished::RetryLater { upstream, .. } if target.still_valid => Obtained::StillValid {
            failure: RefreshFailure { code: ErrorCode::RetryLater, upstream },
            upstream_ms: total_ms,
        },
        Finished::Failed(f) => {
            diag.push(f.reason);
            Obtained::Failed(with_upstream_ms(
                err_answer(f.code, (target.describe)(f.code), f.upstream, None, take(diag)),
                total_ms,
            ))
        }
        Finished::RetryLater { upstream, retry_after_s, .. } => {
            let code = ErrorCode::RetryLater;
            Obtained::Failed(with_upstream_ms(
                err_answer(code, code.upstream_description(), upstream, Some(retry_after_s), take(diag)),
                total_ms,
            ))
        }
    }
}

/// `"200"` or `"-"` for the diag line of a fresh token.
pub(crate) fn status_text(last_status: Option<u16>) -> String {
    last_status.map_or_else(|| "-".to_string(), |s| s.to_string())
}

#[cfg(test)]
mod tests;
