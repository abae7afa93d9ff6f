//! How often, and when, to try the token endpoint again: bounded attempts with jittered
//! exponential backoff inside a deadline, honouring `Retry-After` when it fits.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::pure::classify::{DEFAULT_RETRY_AFTER, Failure, Outcome};
use crate::wire::Upstream;

/// Base of the exponential backoff: ~200 ms, ~400 ms, ~800 ms, … (before jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);

/// Less time than this left before the deadline: no new attempt.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub deadline: Duration,
    /// Per-attempt total timeout (cut to what is left of the deadline).
    pub timeout: Duration,
    pub backoff_base: Duration,
    /// Whether a request that may already have been processed by the IdP (read timeout,
    /// reset after send, 5xx) may be sent again. `false` for a `refresh_token` grant at an
    /// IdP with strict one-time rotation: sending the same refresh token twice would be
    /// reuse (the IdP revokes the family). Requests that were certainly not processed
    /// (connect failure, 429, OAuth `temporarily_unavailable`) are retried either way.
    pub repeat_maybe_processed: bool,
}

/// How the attempts ended.
pub enum Finished {
    Success {
        body: Map<String, Value>,
        attempts: u32,
    },
    Failed(Failure),
    /// Transient failures only, and no attempt or time left.
    RetryLater {
        upstream: Option<Upstream>,
        retry_after_s: u64,
        attempts: u32,
    },
}

impl std::fmt::Debug for Finished {
    /// A success body holds tokens: only its field names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finished::Success { body, attempts } => f
                .debug_struct("Success")
                .field("fields", &body.keys().collect::<Vec<_>>())
                .field("attempts", attempts)
                .finish(),
            Finished::Failed(x) => f.debug_tuple("Failed").field(x).finish(),
            Finished::RetryLater { upstream, retry_after_s, attempts } => f
                .debug_struct("RetryLater")
                .field("upstream", upstream)
                .field("retry_after_s", retry_after_s)
                .field("attempts", attempts)
                .finish(),
        }
    }
}

/// `base * 2^(attempt-1)`, scaled by a random factor in [0.5, 1.0) ("equal jitter").
pub fn backoff(attempt: u32, base: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    h.write_u128(Instant::now().elapsed().as_nanos());
    let frac = (h.finish() % 1000) as f64 / 2000.0; // 0.0 ..< 0.5
    exp.mul_f64(0.5 + frac)
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Runs `attempt` (given the timeout for that attempt) until success, a final failure,
/// or no attempt or time left. Each transient failure adds a `diag` line.
pub fn run(policy: RetryPolicy, diag: &mut Vec<String>, mut attempt: impl FnMut(Duration) -> Outcome) -> Finished {
    let max = policy.max_attempts.max(1);
    let deadline = Instant::now() + policy.deadline;
    let mut n = 0;
    loop {
        n += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        match attempt(policy.timeout.min(left).max(Duration::from_millis(1))) {
            Outcome::Success(body) => return Finished::Success { body, attempts: n },
            Outcome::Failed(f) => return Finished::Failed(f),
            Outcome::Transient { upstream, retry_after, reason, maybe_processed } => {
                let give_up = |why: &str, diag: &mut Vec<String>| {
                    let retry_after_s = ceil_secs(retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                    diag.push(format!("attempt {n}/{max}: {reason}; {why}, retry after {retry_after_s} s"));
                    Finished::RetryLater { upstream: upstream.clone(), retry_after_s, attempts: n }
                };
                if n >= max {
                    return give_up("no attempts left", diag);
                }
                if maybe_processed && !policy.repeat_maybe_processed {
                    return give_up("not repeated: the IdP may have redeemed the one-time refresh token", diag);
                }
                let wait = retry_after.unwrap_or_else(|| backoff(n, policy.backoff_base));
                let left = deadline.saturating_duration_since(Instant::now());
                if wait + MIN_ATTEMPT_TIME > left {
                    let why = if retry_after.is_some() {
                        "Retry-After does not fit the deadline"
                    } else {
                        "deadline reached"
                    };
                    return give_up(why, diag);
                }
                diag.push(format!("attempt {n}/{max}: {reason}; retrying in {} ms", wait.as_millis()));
                std::thread::sleep(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ErrorCode;

    fn policy(max_attempts: u32, deadline_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            deadline: Duration::from_millis(deadline_ms),
            timeout: Duration::from_millis(1000),
            backoff_base: Duration::from_millis(1),
            repeat_maybe_processed: true,
        }
    }

    fn transient(retry_after: Option<Duration>) -> Outcome {
        Outcome::Transient { upstream: None, retry_after, reason: "upstream 503".into(), maybe_processed: true }
    }

    fn not_sent() -> Outcome {
        Outcome::Transient {
            upstream: None,
            retry_after: None,
            reason: "connect refused".into(),
            maybe_processed: false,
        }
    }

    #[test]
    fn maybe_processed_failure_is_not_repeated_when_the_policy_forbids_it() {
        let mut calls = 0;
        let mut p = policy(3, 5000);
        p.repeat_maybe_processed = false;
        let mut diag = vec![];
        let f = run(p, &mut diag, |_| {
            calls += 1;
            transient(None)
        });
        assert_eq!(calls, 1);
        assert!(matches!(f, Finished::RetryLater { attempts: 1, .. }));
        assert!(diag[0].contains("not repeated"), "{diag:?}");
    }

    #[test]
    fn not_sent_failure_is_retried_even_when_maybe_processed_ones_are_not() {
        let mut calls = 0;
        let mut p = policy(3, 5000);
        p.repeat_maybe_processed = false;
        let f = run(p, &mut vec![], |_| {
            calls += 1;
            if calls < 3 { not_sent() } else { Outcome::Success(Map::new()) }
        });
        assert_eq!(calls, 3);
        assert!(matches!(f, Finished::Success { attempts: 3, .. }));
    }

    #[test]
    fn not_sent_then_maybe_processed_stops_at_the_maybe_processed_one() {
        let mut calls = 0;
        let mut p = policy(5, 5000);
        p.repeat_maybe_processed = false;
        run(p, &mut vec![], |_| {
            calls += 1;
            if calls == 1 { not_sent() } else { transient(None) }
        });
        assert_eq!(calls, 2);
    }

    #[test]
    fn maybe_processed_failure_is_retried_when_reuse_is_tolerated() {
        let mut calls = 0;
        run(policy(3, 5000), &mut vec![], |_| {
            calls += 1;
            transient(None)
        });
        assert_eq!(calls, 3);
    }

    #[test]
    fn backoff_doubles_per_attempt_within_jitter_bounds() {
        for attempt in 1..=4u32 {
            let full = Duration::from_millis(200) * (1 << (attempt - 1));
            let d = backoff(attempt, Duration::from_millis(200));
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn transient_then_success_retries_and_counts_attempts() {
        let mut calls = 0;
        let mut diag = vec![];
        let f = run(policy(3, 5000), &mut diag, |_| {
            calls += 1;
            if calls < 3 { transient(None) } else { Outcome::Success(Map::new()) }
        });
        assert!(matches!(f, Finished::Success { attempts: 3, .. }));
        assert_eq!(diag.len(), 2);
    }

    #[test]
    fn final_failure_is_never_retried() {
        let mut calls = 0;
        let f = run(policy(3, 5000), &mut vec![], |_| {
            calls += 1;
            Outcome::Failed(Failure { code: ErrorCode::ReauthRequired, upstream: None, reason: "invalid_grant".into() })
        });
        assert_eq!(calls, 1);
        assert!(matches!(f, Finished::Failed(Failure { code: ErrorCode::ReauthRequired, .. })));
    }

    #[test]
    fn attempts_stop_at_max_attempts_with_default_retry_after() {
        let mut calls = 0;
        let f = run(policy(3, 5000), &mut vec![], |_| {
            calls += 1;
            transient(None)
        });
        assert_eq!(calls, 3);
        assert!(matches!(f, Finished::RetryLater { retry_after_s: 5, attempts: 3, .. }));
    }

    #[test]
    fn retry_after_beyond_deadline_stops_at_once_and_is_reported() {
        let mut calls = 0;
        let f = run(policy(3, 2000), &mut vec![], |_| {
            calls += 1;
            transient(Some(Duration::from_secs(30)))
        });
        assert_eq!(calls, 1);
        assert!(matches!(f, Finished::RetryLater { retry_after_s: 30, attempts: 1, .. }));
    }

    #[test]
    fn retry_after_inside_deadline_is_waited_for() {
        let started = Instant::now();
        let mut calls = 0;
        let f = run(policy(2, 5000), &mut vec![], |_| {
            calls += 1;
            if calls == 1 { transient(Some(Duration::from_millis(300))) } else { Outcome::Success(Map::new()) }
        });
        assert!(matches!(f, Finished::Success { attempts: 2, .. }));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn attempt_timeout_is_cut_to_what_is_left_of_the_deadline() {
        let mut seen = vec![];
        let mut p = policy(1, 200);
        p.timeout = Duration::from_secs(10);
        run(p, &mut vec![], |t| {
            seen.push(t);
            transient(None)
        });
        assert!(seen[0] <= Duration::from_millis(200));
    }

    #[test]
    fn debug_of_a_success_never_contains_token_values() {
        let mut body = Map::new();
        body.insert("access_token".into(), Value::from("AT-SAMPLE-retry-1"));
        let d = format!("{:?}", Finished::Success { body, attempts: 1 });
        assert!(d.contains("access_token") && !d.contains("AT-SAMPLE-retry-1"), "{d}");
    }

    #[test]
    fn zero_max_attempts_still_makes_one_attempt() {
        let mut calls = 0;
        run(policy(0, 1000), &mut vec![], |_| {
            calls += 1;
            transient(None)
        });
        assert_eq!(calls, 1);
    }
}
