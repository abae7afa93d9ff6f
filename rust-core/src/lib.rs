//! Rust core of the fresh-token Keycloak extension.
//!
//! Java calls [`call`] (through [`jni_bridge`]) with one JSON request and gets one JSON
//! envelope back; `docs/CONTRACT.md` is the contract. Everything but `jni_bridge` is plain
//! Rust and testable without a JVM.

pub mod flows;
pub mod jni_bridge;
pub mod pure;
pub mod upstream;
pub mod wire;

// Old flat paths, kept only until the imports are rewritten in the next commits.
pub use flows::own_token as retrieve;
pub use flows::{app, inspect, resource};
pub use pure::classify as errors;
pub use pure::seal as atrest;
pub use pure::{form, freshness, jwt, stored};
pub use upstream::{assertion, grant, http, retry};
pub use wire::{contract, secret};

use contract::Request;
use errors::ErrorCode;

/// `{"version":"…","contract":1}`.
pub fn version() -> String {
    contract::version_json()
}

/// One request in, one answer envelope out. Never panics by design; an unreadable request
/// is an `internal_error` envelope whose description names only where parsing failed
/// (serde's own messages can quote input values, i.e. tokens).
pub fn call(request_json: &str) -> String {
    match serde_json::from_str::<Request>(request_json) {
        Ok(mut req) => match req.op {
            contract::Op::Keyring | contract::Op::Seal | contract::Op::Unseal => atrest::handle_op(&req),
            contract::Op::Trust => trust_op(&req),
            // No stored token involved: storage keys do not matter.
            contract::Op::AppToken => retrieve::handle(&req).to_json(),
            // Every op that reads `stored` runs inside `around`: opened before, sealed after.
            _ => atrest::with_state(|state| atrest::around(state, &mut req, retrieve::handle)).to_json(),
        },
        Err(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Data => "does not match the contract",
                serde_json::error::Category::Eof => "is truncated",
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => "is not valid JSON",
            };
            let description = format!("The request {what} (line {}, column {}).", e.line(), e.column());
            retrieve::err_answer(ErrorCode::InternalError, description, None, None, vec![]).to_json()
        }
    }
}

/// `trust`: `{"ok":{"action":"trusted","ca_sha256":"<hex>","certificates":N,"diag":[]}}`, or
/// `idp_misconfigured` when the bundle holds no usable certificate.
fn trust_op(req: &Request) -> String {
    if req.v != contract::CONTRACT_VERSION {
        return retrieve::err_answer(ErrorCode::InternalError, "Unsupported contract version.", None, None, vec![])
            .to_json();
    }
    match http::trust(req.ca_pem.as_deref().unwrap_or("")) {
        Ok((sha, n)) => {
            serde_json::json!({"ok": {"action": "trusted", "ca_sha256": sha, "certificates": n, "diag": []}})
                .to_string()
        }
        Err(e) => retrieve::err_answer(ErrorCode::IdpMisconfigured, e.0, None, None, vec![]).to_json(),
    }
}

/// The answer to a `null` request string (Java passed no request at all).
pub fn null_request_answer() -> String {
    retrieve::err_answer(ErrorCode::InternalError, "The request is null.", None, None, vec![]).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn unparseable_request_is_internal_error_envelope() {
        let a: Value = serde_json::from_str(&call("this is not json")).unwrap();
        assert_eq!(a["err"]["code"], "internal_error");
        assert_eq!(a["err"]["status"], 500);
        assert!(a.get("ok").is_none());
    }

    #[test]
    fn request_error_description_never_quotes_input_values() {
        let a = call(r#"{"v":"SECRET-IN-WRONG-PLACE","op":"check","now":1,"stored":"x"}"#);
        assert!(a.contains("internal_error"));
        assert!(!a.contains("SECRET-IN-WRONG-PLACE"), "{a}");
    }

    #[test]
    fn unknown_op_is_internal_error() {
        let a: Value = serde_json::from_str(&call(r#"{"v":1,"op":"steal","now":1,"stored":"x"}"#)).unwrap();
        assert_eq!(a["err"]["code"], "internal_error");
    }

    proptest! {
        #[test]
        fn call_never_panics_on_arbitrary_strings(s in ".*") {
            let out = call(&s);
            let v: Value = serde_json::from_str(&out).unwrap();
            prop_assert!(v.get("ok").is_some() || v.get("err").is_some());
        }

        #[test]
        fn call_never_panics_on_check_requests_with_arbitrary_stored_and_numbers(
            stored in ".*", now in any::<i64>(), min in proptest::option::of(any::<i64>()),
            life in proptest::option::of(any::<i64>()), rt in any::<bool>(), id in any::<bool>())
        {
            let req = serde_json::json!({"v":1,"op":"check","now":now,"stored":stored,
                "policy":{"min_validity_s":min,"default_lifetime_s":life,"include_refresh_token":rt,"include_id_token":id}});
            let v: Value = serde_json::from_str(&call(&req.to_string())).unwrap();
            prop_assert!(v.get("ok").is_some() || v.get("err").is_some());
        }

        #[test]
        fn call_never_panics_on_json_stored_tokens_with_odd_numbers(
            exp in any::<i64>(), now in any::<i64>(), ei in ".{0,8}", has_rt in any::<bool>())
        {
            let mut st = serde_json::json!({"access_token":"at","accessTokenExpiration":exp,"expires_in":ei});
            if has_rt { st["refresh_token"] = "rt".into(); }
            let req = serde_json::json!({"v":1,"op":"check","now":now,"stored":st.to_string()});
            let v: Value = serde_json::from_str(&call(&req.to_string())).unwrap();
            prop_assert!(v.get("ok").is_some() || v.get("err").is_some());
        }
    }
}
