//! Layer 4: the one dispatcher of operations.
//!
//! Owns [`call`]: one JSON request in, one JSON envelope out. It parses the request, checks the
//! contract version once (for every op), and routes each op to its flow: `keyring` / `seal` /
//! `unseal` to the storage flow, `trust` to the HTTP transport, `app_token` to the app-only
//! flow, and every op that reads `stored` (`check`, `retrieve`, `inspect`) through
//! `flows::storage::around` (opened before, sealed after) to [`handle`], which parses the stored
//! token and picks the flow: `inspect`, on-behalf-of, per-resource or the IdP's own token.
//!
//! May use: `flows`, `upstream`, `pure`, `wire`. Used by: `jni_bridge` (and tests).

use crate::flows::fresh::{FastPolicy, Fresh, serve_fresh};
use crate::flows::{app, inspect, obo, own_token, resource, storage};
use crate::pure::stored::StoredToken;
use crate::upstream::http;
use crate::wire::{Answer, Binding, CONTRACT_VERSION, ErrorCode, Op, Request, err_answer, version_json};

/// `{"version":"…","contract":2}`.
pub fn version() -> String {
    version_json()
}

/// One request in, one answer envelope out. Never panics by design; an unreadable request
/// is an `internal_error` envelope whose description names only where parsing failed
/// (serde's own messages can quote input values, i.e. tokens).
pub fn call(request_json: &str) -> String {
    match serde_json::from_str::<Request>(request_json) {
        Ok(req) => route(req),
        Err(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Data => "does not match the contract",
                serde_json::error::Category::Eof => "is truncated",
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => "is not valid JSON",
            };
            let description = format!("The request {what} (line {}, column {}).", e.line(), e.column());
            err_answer(ErrorCode::InternalError, description, None, None, vec![]).to_json()
        }
    }
}

/// The fresh-path op `serve_fresh` (docs/CONTRACT.md): the stored value's bytes in; the app's
/// token response when `check` of the IdP's own token would serve it, else `None` (ask `check`).
/// `row`: the binding's realm, user, alias and subject (None: no binding). `flags`: bit 0
/// include the refresh token, bit 1 include the id token. Bytes that are not UTF-8 are `None`
/// too: `check` answers them.
pub fn serve_fresh_bytes(
    stored: &[u8],
    row: Option<[String; 4]>,
    now: i64,
    min_validity_s: i64,
    flags: i32,
) -> Option<String> {
    let stored = std::str::from_utf8(stored).ok()?;
    let binding = row.map(|[realm, user, alias, subject]| Binding { alias, subject, realm, user });
    let policy = FastPolicy { min_validity_s, include_refresh_token: flags & 1 != 0, include_id_token: flags & 2 != 0 };
    match serve_fresh(stored, binding.as_ref(), now, policy) {
        Fresh::Body(b) => Some(b),
        Fresh::Long => None,
    }
}

/// The answer to a `null` request string (Java passed no request at all).
pub fn null_request_answer() -> String {
    err_answer(ErrorCode::InternalError, "The request is null.", None, None, vec![]).to_json()
}

/// The version check (the only one) and the route of each op.
fn route(mut req: Request) -> String {
    if req.v != CONTRACT_VERSION {
        let description = format!("Unsupported contract version {}; this core speaks {CONTRACT_VERSION}.", req.v);
        return err_answer(ErrorCode::InternalError, description, None, None, vec![]).to_json();
    }
    match req.op {
        Op::Keyring => storage::keyring_op(req.keyring.clone().unwrap_or_default()),
        Op::Seal | Op::Unseal => storage::with_state(|state| storage::convert_op(state, &req)),
        Op::Trust => trust(&req),
        // No stored token involved: storage keys do not matter.
        Op::AppToken => app::handle(&req).to_json(),
        // Every op that reads `stored` runs inside `around`: opened before, sealed after.
        Op::Check | Op::Retrieve | Op::Inspect => {
            storage::with_state(|state| storage::around(state, &mut req, handle)).to_json()
        }
    }
}

/// `trust`: `{"ok":{"action":"trusted","ca_sha256":"<hex>","certificates":N,"diag":[]}}`, or
/// `idp_misconfigured` when the bundle holds no usable certificate.
fn trust(req: &Request) -> String {
    match http::trust(req.ca_pem.as_deref().unwrap_or("")) {
        Ok((sha, n)) => {
            serde_json::json!({"ok": {"action": "trusted", "ca_sha256": sha, "certificates": n, "diag": []}})
                .to_string()
        }
        Err(e) => err_answer(ErrorCode::IdpMisconfigured, e.0, None, None, vec![]).to_json(),
    }
}

/// A token op on the (opened) request: parses the stored token and picks the flow. The
/// version has been checked by [`call`]; tests call this directly with parsed requests.
pub fn handle(req: &Request) -> Answer {
    if req.op == Op::AppToken {
        return app::handle(req);
    }
    if matches!(req.op, Op::Keyring | Op::Seal | Op::Unseal | Op::Trust) {
        return err_answer(ErrorCode::InternalError, "Storage ops are not token retrievals.", None, None, vec![]);
    }
    let stored = match StoredToken::parse(req.stored.expose()) {
        Ok(s) => s,
        Err(e) => {
            return err_answer(
                ErrorCode::ReauthRequired,
                "The stored token cannot be used; the user must sign in again.",
                None,
                None,
                vec![format!("reauth: {}", e.describe())],
            );
        }
    };
    if req.op == Op::Inspect {
        return inspect::handle(req, &stored);
    }
    if let Some(o) = &req.obo {
        if req.resource.is_some() {
            return err_answer(
                ErrorCode::InternalError,
                "A request names either `resource` or `obo`, not both.",
                None,
                None,
                vec![],
            );
        }
        return obo::handle_obo(req, &stored, o);
    }
    if let Some(res) = &req.resource {
        return resource::handle(req, &stored, res);
    }
    own_token::handle(req, &stored)
}

#[cfg(test)]
mod tests;
