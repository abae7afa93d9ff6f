//! The fresh path in one step: the stored bytes in, the app's token response out when the
//! stored token can be served as it is, without the JSON envelope of `check` on either side.
//!
//! [`serve_fresh`] opens the row like `storage::around` does (refusing what `around` refuses),
//! reads it with `pure::fresh_view` and decides with `pure::freshness::decide`, so the answer is
//! the one `check` would give. Anything else (a refresh due, a reauth, a row it does not read, a
//! storage refusal) is [`Fresh::Long`]: the caller asks `check`, which says why.

use crate::pure::fresh_view::Members;
use crate::pure::freshness::{Decision, decide};
use crate::pure::keyring::KeyState;
use crate::pure::seal::{check_binding, is_sealed, open_row, refuse_plaintext};
use crate::wire::Binding;

use super::storage;

/// What the fast path found.
#[derive(PartialEq, Eq)]
pub enum Fresh {
    /// The app's token response (the body `check` would put in `ok.response`).
    Body(String),
    /// Not served here: ask `check` (or `retrieve`).
    Long,
}

impl std::fmt::Debug for Fresh {
    /// Never the body: it holds tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fresh::Body(b) => write!(f, "Body({} bytes)", b.len()),
            Fresh::Long => f.write_str("Long"),
        }
    }
}

/// The policy of one fast check (the `policy` of `check`).
#[derive(Debug, Clone, Copy)]
pub struct FastPolicy {
    pub min_validity_s: i64,
    pub include_refresh_token: bool,
    pub include_id_token: bool,
}

/// Serve the stored token when `check` would serve it; see the module doc.
pub fn serve_fresh(stored: &str, binding: Option<&Binding>, now: i64, policy: FastPolicy) -> Fresh {
    storage::with_state(|state| serve_with(state, stored, binding, now, policy))
}

/// [`serve_fresh`] with an explicit storage state (tests).
pub fn serve_with(state: &KeyState, stored: &str, binding: Option<&Binding>, now: i64, policy: FastPolicy) -> Fresh {
    if matches!(state, KeyState::Failed(_)) {
        return Fresh::Long;
    }
    let bound = binding.is_some_and(|b| check_binding(b).is_ok());
    if matches!(state, KeyState::Ready(r) if r.encrypting()) && !bound {
        return Fresh::Long;
    }
    if refuse_plaintext(state, stored).is_err() {
        return Fresh::Long;
    }
    if is_sealed(stored) {
        return match open_row(state, binding, stored) {
            Ok(o) => serve_plain(&o.plain, now, policy),
            Err(_) => Fresh::Long,
        };
    }
    serve_plain(stored, now, policy)
}

fn serve_plain(plain: &str, now: i64, policy: FastPolicy) -> Fresh {
    let Some(m) = Members::parse(plain) else { return Fresh::Long };
    // Without an access token the expiry is 0 (long expired): refresh or reauth, `check` says which.
    let expiry = m.expiry();
    match decide(expiry, m.has_refresh_token(), now, policy.min_validity_s.max(0)) {
        Decision::Serve => Fresh::Body(m.app_body(expiry, now, policy.include_refresh_token, policy.include_id_token)),
        Decision::Refresh | Decision::Reauth => Fresh::Long,
    }
}

#[cfg(test)]
mod tests;
