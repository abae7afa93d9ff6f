use super::*;
use crate::pure::keyring::{Keyring, Mode};
use crate::pure::seal::tests::{PLAIN, bind, key, ring, row, sealed, sealed_v1};
use serde_json::json;

#[test]
fn build_state_reports_problems_without_key_material() {
    let dir = std::env::temp_dir().join(format!("ftk-atrest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.keys");
    std::fs::write(&good, "new AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nold 0202020202020202020202020202020202020202020202020202020202020202\n").unwrap();
    let (state, a) =
        build_state(&KeyringRequest { key_file: Some(good.display().to_string()), mode: None, allow_plaintext: None });
    assert!(matches!(state, KeyState::Ready(ref r) if r.primary().kid() == "new" && r.mode() == Mode::Encrypt), "{a}");
    let v: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["ok"]["keyring"]["kids"], json!(["new", "old"]));
    assert!(!a.contains("AQEB"));
    let (state, a) = build_state(&KeyringRequest {
        key_file: Some(good.display().to_string()),
        mode: Some("decrypt-only".into()),
        allow_plaintext: None,
    });
    assert!(matches!(state, KeyState::Ready(ref r) if r.mode() == Mode::DecryptOnly), "{a}");
    let bad = dir.join("bad.keys");
    std::fs::write(&bad, "k1 TOO-SHORT-SECRET\n").unwrap();
    let (state, a) =
        build_state(&KeyringRequest { key_file: Some(bad.display().to_string()), mode: None, allow_plaintext: None });
    assert!(matches!(state, KeyState::Failed(_)));
    let v: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["err"]["code"], "storage_key_error");
    assert!(!a.contains("TOO-SHORT-SECRET"), "{a}");
    let (state, _) = build_state(&KeyringRequest {
        key_file: Some(dir.join("absent").display().to_string()),
        mode: None,
        allow_plaintext: None,
    });
    assert!(matches!(state, KeyState::Failed(_)));
    let (state, _) = build_state(&KeyringRequest {
        key_file: Some(good.display().to_string()),
        mode: Some("sometimes".into()),
        allow_plaintext: None,
    });
    assert!(matches!(state, KeyState::Failed(_)));
    let (state, _) = build_state(&KeyringRequest { key_file: None, mode: None, allow_plaintext: None });
    assert!(matches!(state, KeyState::Off));
    std::fs::remove_dir_all(&dir).ok();
}

fn request(op: &str, stored: &str, extra: Value) -> Request {
    let mut v = json!({"v":2,"op":op,"now":1_764_100_000i64,"stored":stored,"binding":{"alias":"entra","subject":"oid-1","realm":"realm-1","user":"user-1"}});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

fn store_of(a: &Answer) -> Option<String> {
    match a {
        Answer::Ok(o) => o.store.as_ref().map(|s| s.0.clone()),
        Answer::Err(e) => e.store.as_ref().map(|s| s.0.clone()),
        Answer::Inspect(_) => None,
    }
}

#[test]
fn around_opens_stored_for_the_op_and_seals_its_store() {
    let s = ring(vec![key("k1", 7)]);
    let b = bind("entra", "oid-1");
    let v = sealed(&s, &b, PLAIN);
    let mut req = request("check", &v, json!({}));
    let a = around(&s, &mut req, |r| {
        assert_eq!(r.stored.expose(), PLAIN);
        let mut ok = match crate::dispatch::handle(r) {
            Answer::Ok(o) => o,
            Answer::Err(e) => panic!("{e:?}"),
            Answer::Inspect(_) => panic!("unexpected inspect answer"),
        };
        ok.store = Some(RedactedJson(r#"{"access_token":"AT-NEW-789"}"#.into()));
        Answer::Ok(ok)
    });
    let store = store_of(&a).unwrap();
    assert!(store.starts_with("ftk2.k1.") && !store.contains("AT-NEW"), "{store}");
    assert_eq!(open(&s, Some(&b), &store).unwrap(), r#"{"access_token":"AT-NEW-789"}"#);
}

#[test]
fn around_with_a_wrong_key_answers_storage_key_error_and_runs_nothing() {
    let b = bind("entra", "oid-1");
    let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
    for state in [ring(vec![key("k1", 8)]), KeyState::Off, KeyState::Failed("bad file".into())] {
        let mut req = request("retrieve", &v, json!({}));
        let a = around(&state, &mut req, |_| panic!("the op must not run"));
        let Answer::Err(e) = &a else { panic!() };
        assert_eq!(e.code, ErrorCode::StorageKeyError);
        assert_eq!(e.status, 500);
        assert!(e.store.is_none());
    }
}

#[test]
fn around_decrypt_only_writes_plain_and_off_writes_plain() {
    let b = bind("entra", "oid-1");
    let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
    let dec = KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::DecryptOnly).unwrap());
    let mut req = request("check", &v, json!({}));
    let a = around(&dec, &mut req, |r| {
        assert_eq!(r.stored.expose(), PLAIN);
        let mut ok = match crate::dispatch::handle(r) {
            Answer::Ok(o) => o,
            Answer::Err(e) => panic!("{e:?}"),
            Answer::Inspect(_) => panic!("unexpected inspect answer"),
        };
        ok.store = Some(RedactedJson("{\"access_token\":\"x\"}".into()));
        Answer::Ok(ok)
    });
    assert_eq!(store_of(&a).unwrap(), "{\"access_token\":\"x\"}");
}

#[test]
fn around_seals_the_store_of_an_err_answer_too() {
    let s = ring(vec![key("k1", 7)]);
    let b = bind("entra", "oid-1");
    let mut req = request("retrieve", &sealed(&s, &b, PLAIN), json!({}));
    let a = around(&s, &mut req, |_| {
        let mut e = err_answer(ErrorCode::RetryLater, "x", None, Some(1), vec![]);
        if let Answer::Err(ref mut err) = e {
            err.store = Some(RedactedJson(r#"{"refresh_token":"RT-ROTATED"}"#.into()));
        }
        e
    });
    let store = store_of(&a).unwrap();
    assert!(store.starts_with("ftk2.k1.") && !store.contains("RT-ROTATED"), "{store}");
    assert_eq!(open(&s, Some(&b), &store).unwrap(), r#"{"refresh_token":"RT-ROTATED"}"#);
}

#[test]
fn around_while_encrypting_needs_a_binding() {
    let s = ring(vec![key("k1", 7)]);
    let mut req: Request = serde_json::from_value(json!({"v":2,"op":"check","now":1,"stored":PLAIN})).unwrap();
    let a = around(&s, &mut req, |_| panic!("must not run"));
    assert!(matches!(a, Answer::Err(ref e) if e.code == ErrorCode::InternalError));
}

#[test]
fn convert_ops_encrypt_reencrypt_decrypt_and_keep_previous_refresh_token() {
    let b = bind("entra", "oid-1");
    let old = ring(vec![key("k1", 1)]);
    let new = ring(vec![key("k2", 2), key("k1", 1)]);
    let v1 = sealed(&old, &b, PLAIN);
    let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", &v1, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "reencrypted");
    let v2 = out["ok"]["store"].as_str().unwrap().to_string();
    assert!(v2.starts_with("ftk2.k2."));
    let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", &v2, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "unchanged");
    assert_eq!(out["ok"]["store"], v2.as_str());
    let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", PLAIN, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "encrypted");
    let out: Value = serde_json::from_str(&convert_op(&new, &request("unseal", &v2, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "decrypted");
    assert_eq!(out["ok"]["store"], PLAIN);
    let out: Value = serde_json::from_str(&convert_op(&KeyState::Off, &request("unseal", &v2, json!({})))).unwrap();
    assert_eq!(out["err"]["code"], "storage_key_error");
    // A login answer without refresh token keeps the previous (sealed) one.
    let login = r#"{"access_token":"AT-LOGIN","expires_in":60}"#;
    let out: Value = serde_json::from_str(&convert_op(&new, &request("seal", login, json!({"previous": v2})))).unwrap();
    let merged = open(&new, Some(&b), out["ok"]["store"].as_str().unwrap()).unwrap();
    let m: Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(m["refresh_token"], "RT-PLAIN-456");
    assert_eq!(m["access_token"], "AT-LOGIN");
}

/// A value as format 1 wrote it (before realm and Keycloak user were bound).

#[test]
fn format_1_values_still_open_and_the_next_write_seals_them_in_format_2() {
    let s = ring(vec![key("k1", 7)]);
    let b = bind("entra", "oid-1");
    let old = sealed_v1(&s, &b, PLAIN);
    let o = open_row(&s, Some(&b), &old).unwrap();
    assert_eq!(o.plain, PLAIN);
    assert!(o.rewrap, "format 1 is sealed again");
    // The bulk encrypt rewraps it even though its key is the first one.
    let out: Value = serde_json::from_str(&convert_op(&s, &request("seal", &old, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "reencrypted", "{out}");
    let v2 = out["ok"]["store"].as_str().unwrap();
    assert!(v2.starts_with("ftk2.k1."), "{v2}");
    assert!(!open_row(&s, Some(&b), v2).unwrap().rewrap);
    // A refresh's write (around) seals in format 2 too.
    let mut req = request("check", &old, json!({}));
    let a = around(&s, &mut req, |r| {
        assert_eq!(r.stored.expose(), PLAIN);
        Answer::Ok(crate::wire::OkAnswer {
            action: crate::wire::Action::Refreshed,
            response: None,
            store: Some(RedactedJson(PLAIN.into())),
            upstream_ms: None,
            expires_at: None,
            refresh_failure: None,
            diag: vec![],
        })
    });
    assert!(store_of(&a).unwrap().starts_with("ftk2.k1."));
}

#[test]
fn a_value_moved_to_another_realm_or_keycloak_user_is_refused_as_binding_mismatch() {
    let s = ring(vec![key("k1", 7)]);
    let v = sealed(&s, &row("realm-a", "user-1", "entra", "oid-1"), PLAIN);
    assert_eq!(open(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), &v).unwrap(), PLAIN);
    for other in [
        row("realm-b", "user-1", "entra", "oid-1"),
        row("realm-a", "user-2", "entra", "oid-1"),
        row("realm-a", "", "entra", "oid-1"),
    ] {
        let e = open(&s, Some(&other), &v).unwrap_err();
        assert_eq!(e.1, ErrorCode::StorageBindingMismatch, "{other:?}: {}", e.0);
        assert!(!e.0.contains("PLAIN"), "{}", e.0);
    }
    // Through `around` (a retrieve): the documented code, status 500, nothing to write.
    let mut req: Request = serde_json::from_value(json!({"v":2,"op":"retrieve","now":1,"stored":v,
        "binding":{"alias":"entra","subject":"oid-1","realm":"realm-a","user":"user-2"}}))
    .unwrap();
    let a = around(&s, &mut req, |_| panic!("the op must not run"));
    let Answer::Err(e) = &a else { panic!() };
    assert_eq!((e.code, e.status), (ErrorCode::StorageBindingMismatch, 500));
    assert!(e.store.is_none());
}

#[test]
fn a_value_sealed_before_the_keycloak_user_existed_opens_for_the_user_and_is_resealed() {
    let s = ring(vec![key("k1", 7)]);
    let first_login = row("realm-a", "", "entra", "oid-1");
    let v = sealed(&s, &first_login, PLAIN);
    let o = open_row(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), &v).unwrap();
    assert_eq!(o.plain, PLAIN);
    assert!(o.rewrap);
    // Still bound to realm, alias and subject.
    for other in [row("realm-b", "user-1", "entra", "oid-1"), row("realm-a", "user-1", "entra", "oid-2")] {
        assert_eq!(open(&s, Some(&other), &v).unwrap_err().1, ErrorCode::StorageBindingMismatch);
    }
    let mut req = request("seal", &v, json!({}));
    req.binding = Some(row("realm-a", "user-1", "entra", "oid-1"));
    let out: Value = serde_json::from_str(&convert_op(&s, &req)).unwrap();
    assert_eq!(out["ok"]["action"], "reencrypted", "{out}");
    let bound = out["ok"]["store"].as_str().unwrap();
    assert!(!open_row(&s, Some(&row("realm-a", "user-1", "entra", "oid-1")), bound).unwrap().rewrap);
    assert_eq!(
        open(&s, Some(&row("realm-a", "user-2", "entra", "oid-1")), bound).unwrap_err().1,
        ErrorCode::StorageBindingMismatch
    );
}

#[test]
fn a_plain_row_while_encrypting_is_refused_unless_plain_rows_are_allowed() {
    let s = ring(vec![key("k1", 7)]);
    let mut req = request("retrieve", PLAIN, json!({}));
    let a = around(&s, &mut req, |_| panic!("the op must not run"));
    let Answer::Err(e) = &a else { panic!() };
    assert_eq!((e.code, e.status), (ErrorCode::StoragePlaintextRow, 500));
    assert!(e.store.is_none());
    assert!(e.error_description.contains("allow-plaintext"), "{}", e.error_description);
    // The conversion itself (bulk encrypt, login) still seals plain values.
    let out: Value = serde_json::from_str(&convert_op(&s, &request("seal", PLAIN, json!({})))).unwrap();
    assert_eq!(out["ok"]["action"], "encrypted");
    // A plain previous value is not merged into a new login answer.
    let login = r#"{"access_token":"AT-LOGIN","expires_in":60}"#;
    let out: Value =
        serde_json::from_str(&convert_op(&s, &request("seal", login, json!({"previous": PLAIN})))).unwrap();
    let m: Value =
        serde_json::from_str(&open(&s, Some(&bind("entra", "oid-1")), out["ok"]["store"].as_str().unwrap()).unwrap())
            .unwrap();
    assert!(m.get("refresh_token").is_none(), "{m}");
    // Empty rows are no token, not a plain one.
    let mut empty = request("check", "", json!({}));
    let a = around(&s, &mut empty, crate::dispatch::handle);
    assert!(!matches!(a, Answer::Err(ref e) if e.code == ErrorCode::StoragePlaintextRow));
    // Allowed (migration window) and decrypt-only: plain rows are used.
    for state in [
        KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::Encrypt).unwrap().allowing_plaintext(true)),
        KeyState::Ready(Keyring::new(vec![key("k1", 7)], Mode::DecryptOnly).unwrap()),
    ] {
        let mut req = request("check", PLAIN, json!({}));
        let a = around(&state, &mut req, crate::dispatch::handle);
        assert!(matches!(a, Answer::Ok(_)), "{a:?}");
    }
}

#[test]
fn allow_plaintext_is_read_from_the_keyring_request() {
    let dir = std::env::temp_dir().join(format!("ftk-atrest-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("k.keys");
    std::fs::write(&f, "k1 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    let path = Some(f.display().to_string());
    let (state, a) = build_state(&KeyringRequest { key_file: path.clone(), mode: None, allow_plaintext: Some(true) });
    assert!(matches!(state, KeyState::Ready(ref r) if r.allows_plaintext()), "{a}");
    assert!(a.contains("\"allow_plaintext\":true"), "{a}");
    let (state, _) = build_state(&KeyringRequest { key_file: path, mode: None, allow_plaintext: None });
    assert!(matches!(state, KeyState::Ready(ref r) if !r.allows_plaintext()));
    std::fs::remove_dir_all(&dir).ok();
}
