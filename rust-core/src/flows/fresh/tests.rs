use super::*;
use crate::pure::keyring::{Keyring, Mode};
use crate::pure::seal::tests::{bind, key, ring, sealed};
use crate::wire::{Request, TokenValue};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: i64 = 1_764_100_000;

/// The long way: the `check` op through `storage::around` and `dispatch::handle`.
fn long_way(state: &KeyState, stored: &str, binding: Option<&Binding>, p: FastPolicy) -> Value {
    let mut req: Request = serde_json::from_value(json!({"v": 2, "op": "check", "now": NOW, "stored": "",
        "policy": {"min_validity_s": p.min_validity_s, "include_refresh_token": p.include_refresh_token,
                   "include_id_token": p.include_id_token}}))
    .unwrap();
    req.stored = TokenValue::new(stored.to_string());
    req.binding = binding.cloned();
    let a = storage::around(state, &mut req, crate::dispatch::handle);
    serde_json::from_str(&a.to_json()).unwrap()
}

/// The fast path serves exactly when `check` serves, with the same body.
fn agrees(state: &KeyState, stored: &str, binding: Option<&Binding>, p: FastPolicy) -> Fresh {
    let fast = serve_with(state, stored, binding, NOW, p);
    let long = long_way(state, stored, binding, p);
    let long_serves = long["ok"]["action"] == "serve";
    match &fast {
        Fresh::Body(b) => {
            assert!(long_serves, "fast served, check said {}", long["ok"]["action"]);
            let body: Value = serde_json::from_str(b).unwrap();
            assert_eq!(body, long["ok"]["response"]);
        }
        Fresh::Long => assert!(!long_serves, "check serves what the fast path sent the long way"),
    }
    fast
}

fn policy(min: i64, rt: bool, id: bool) -> FastPolicy {
    FastPolicy { min_validity_s: min, include_refresh_token: rt, include_id_token: id }
}

#[test]
fn a_fresh_plain_row_is_served_with_the_body_check_gives() {
    let st = json!({"token_type":"Bearer","access_token":"at","refresh_token":"rt","id_token":"id","expires_in":3599,
        "accessTokenExpiration": NOW + 3000, "fresh_token_refreshed_at": NOW - 5})
    .to_string();
    for (rt, id) in [(false, false), (true, true), (false, true)] {
        assert!(matches!(agrees(&KeyState::Off, &st, None, policy(60, rt, id)), Fresh::Body(_)));
    }
}

#[test]
fn a_row_due_for_refresh_or_reauth_goes_the_long_way() {
    let due = json!({"access_token":"at","refresh_token":"rt","accessTokenExpiration": NOW + 30}).to_string();
    assert_eq!(agrees(&KeyState::Off, &due, None, policy(60, false, true)), Fresh::Long);
    let expired = json!({"access_token":"at","accessTokenExpiration": NOW - 1}).to_string();
    assert_eq!(agrees(&KeyState::Off, &expired, None, policy(60, false, true)), Fresh::Long);
    let no_at = json!({"refresh_token":"rt"}).to_string();
    assert_eq!(agrees(&KeyState::Off, &no_at, None, policy(60, false, true)), Fresh::Long);
    // still valid, no refresh token to refresh early with: served
    let short = json!({"access_token":"at","accessTokenExpiration": NOW + 30}).to_string();
    assert!(matches!(agrees(&KeyState::Off, &short, None, policy(60, false, true)), Fresh::Body(_)));
}

#[test]
fn a_sealed_row_is_opened_with_its_binding_and_refused_without_it() {
    let state = ring(vec![key("k1", 7)]);
    let b = bind("entra", "sub-1");
    let plain = json!({"access_token":"AT-SEALED","refresh_token":"RT-SEALED","accessTokenExpiration": NOW + 3000});
    let v = sealed(&state, &b, &plain.to_string());
    match agrees(&state, &v, Some(&b), policy(60, false, true)) {
        Fresh::Body(body) => assert!(body.contains("AT-SEALED") && !body.contains("RT-SEALED")),
        Fresh::Long => panic!("a fresh sealed row must be served"),
    }
    assert_eq!(agrees(&state, &v, None, policy(60, false, true)), Fresh::Long);
    assert_eq!(agrees(&state, &v, Some(&bind("entra", "someone-else")), policy(60, false, true)), Fresh::Long);
    assert_eq!(agrees(&KeyState::Off, &v, Some(&b), policy(60, false, true)), Fresh::Long);
}

#[test]
fn storage_refusals_go_the_long_way() {
    let plain = json!({"access_token":"at","accessTokenExpiration": NOW + 3000}).to_string();
    let encrypting = ring(vec![key("k1", 7)]);
    assert_eq!(agrees(&encrypting, &plain, Some(&bind("entra", "s")), policy(60, false, true)), Fresh::Long);
    let failed = KeyState::Failed("the key file cannot be read".into());
    assert_eq!(agrees(&failed, &plain, None, policy(60, false, true)), Fresh::Long);
    let migrating = KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::Encrypt).unwrap().allowing_plaintext(true));
    assert!(matches!(agrees(&migrating, &plain, Some(&bind("entra", "s")), policy(60, false, true)), Fresh::Body(_)));
}

#[test]
fn debug_never_shows_the_body() {
    let d = format!("{:?}", Fresh::Body("{\"access_token\":\"SECRET\"}".into()));
    assert!(!d.contains("SECRET"), "{d}");
}

proptest! {
    #[test]
    fn the_fast_path_agrees_with_check_on_generated_rows(
        left in -100i64..5000, min in 0i64..400, has_rt in any::<bool>(), rt in any::<bool>(), id in any::<bool>(),
        exp_as_string in any::<bool>(), with_exp in any::<bool>(), token_type in proptest::option::of("[ A-Za-z]{0,6}"),
        expires_in in proptest::option::of(any::<i32>()), extra in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,6}", 0..4))
    {
        let mut st = serde_json::Map::new();
        for (k, v) in extra { st.insert(k, Value::from(v)); }
        st.insert("access_token".into(), Value::from("eyJhbGciOi.e30.sig"));
        if has_rt { st.insert("refresh_token".into(), Value::from("rt")); }
        if with_exp {
            let e = NOW + left;
            st.insert("accessTokenExpiration".into(), if exp_as_string { Value::from(e.to_string()) } else { Value::from(e) });
        }
        if let Some(t) = token_type { st.insert("token_type".into(), Value::from(t)); }
        if let Some(n) = expires_in { st.insert("expires_in".into(), Value::from(n)); }
        agrees(&KeyState::Off, &Value::Object(st).to_string(), None, policy(min, rt, id));
    }

    #[test]
    fn arbitrary_stored_strings_never_panic_and_never_serve_what_check_does_not(s in ".{0,64}") {
        agrees(&KeyState::Off, &s, None, policy(60, false, true));
    }
}
