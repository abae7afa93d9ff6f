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
    let a: Value = serde_json::from_str(&call(r#"{"v":2,"op":"steal","now":1,"stored":"x"}"#)).unwrap();
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
        let req = serde_json::json!({"v":2,"op":"check","now":now,"stored":stored,
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
        let req = serde_json::json!({"v":2,"op":"check","now":now,"stored":st.to_string()});
        let v: Value = serde_json::from_str(&call(&req.to_string())).unwrap();
        prop_assert!(v.get("ok").is_some() || v.get("err").is_some());
    }
}

#[test]
fn other_contract_version_is_internal_error_for_every_op() {
    for op in ["check", "retrieve", "inspect", "app_token", "keyring", "seal", "unseal", "trust"] {
        let req = serde_json::json!({"v": 3, "op": op, "now": 1, "stored": "{\"access_token\":\"a\"}"});
        let a: Value = serde_json::from_str(&call(&req.to_string())).unwrap();
        assert_eq!(a["err"]["code"], "internal_error", "{op}");
        assert_eq!(
            a["err"]["error_description"], "Unsupported contract version 3; this core speaks 2.",
            "{op}: the version is checked once, before any op runs"
        );
    }
}

#[test]
fn storage_ops_are_not_token_retrievals() {
    for op in ["keyring", "seal", "unseal", "trust"] {
        let req: Request = serde_json::from_value(serde_json::json!({"v": 2, "op": op, "now": 1})).unwrap();
        let a: Value = serde_json::from_str(&handle(&req).to_json()).unwrap();
        assert_eq!(a["err"]["error_description"], "Storage ops are not token retrievals.", "{op}");
    }
}
