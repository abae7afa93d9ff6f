//! One grant at the token endpoint, with the retry policy: the request built anew for every
//! attempt, POSTed, each answer classified, attempts repeated while the policy allows.

use std::time::{Duration, Instant, SystemTime};

use super::grant::{CredentialsError, TokenRequest};
use super::http::{Limits, post_form};
use super::retry::{BACKOFF_BASE, Finished, RetryPolicy};
use crate::pure::classify::{Failure, Outcome, classify_failure, classify_response};
use crate::wire::{Answer, ErrorCode, IdpConfig, err_answer};

/// What the attempts at the token endpoint came to.
pub struct Exchanged {
    pub finished: Finished,
    /// Time spent on all attempts and waits.
    pub upstream_ms: u64,
    /// HTTP status of the last answer, when one arrived.
    pub last_status: Option<u16>,
}

/// Whether the grant spends a one-time credential: a `refresh_token` grant at an IdP with
/// strict rotation must not be sent twice when the first attempt may have been processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    /// client_credentials, jwt-bearer (on-behalf-of), token exchange: nothing is spent.
    Repeatable,
}

/// POSTs `make()`'s request (built anew for every attempt) to `idp.token_url` with the
/// retry policy of `idp` and `grant`. `Err` is the description of a local configuration problem
/// (CA file, proxy URL) found before any network call. A request that cannot be built
/// ends the attempts as `idp_misconfigured`.
pub fn exchange(
    idp: &IdpConfig,
    grant: Grant,
    diag: &mut Vec<String>,
    mut make: impl FnMut() -> Result<TokenRequest, String>,
) -> Result<Exchanged, String> {
    let client = super::http::client(&super::http::transport_of(idp)).map_err(|e| e.0)?;
    let started = Instant::now();
    let mut last_status = None;
    let finished = super::retry::run(retry_policy(idp, grant), diag, |timeout| {
        let token_request = match make() {
            Ok(r) => r,
            Err(why) => {
                return Outcome::Failed(Failure { code: ErrorCode::IdpMisconfigured, upstream: None, reason: why });
            }
        };
        // The connect timeout is the pooled client's; the total timeout bounds it too.
        let limits = Limits { timeout, max_body_bytes: idp.max_body_bytes() };
        match post_form(&client, &idp.token_url, &token_request, limits) {
            Ok(resp) => {
                last_status = Some(resp.status);
                classify_response(&resp, SystemTime::now())
            }
            Err(f) => {
                last_status = None;
                classify_failure(&f)
            }
        }
    });
    Ok(Exchanged { finished, upstream_ms: started.elapsed().as_millis() as u64, last_status })
}

/// `idp_misconfigured` for client credentials that cannot be used (no network call).
pub fn credentials_error(e: CredentialsError, mut diag: Vec<String>) -> Answer {
    diag.push(e.diag);
    err_answer(ErrorCode::IdpMisconfigured, e.description, None, None, diag)
}

fn retry_policy(idp: &IdpConfig, grant: Grant) -> RetryPolicy {
    RetryPolicy {
        max_attempts: idp.max_attempts(),
        deadline: Duration::from_millis(idp.deadline_ms()),
        timeout: Duration::from_millis(idp.timeout_ms()),
        backoff_base: BACKOFF_BASE,
        repeat_maybe_processed: grant == Grant::Repeatable || idp.tolerates_refresh_token_reuse(),
    }
}
