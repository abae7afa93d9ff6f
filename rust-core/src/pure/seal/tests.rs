//! Tests of sealing and opening; the key and binding helpers are shared with the storage
//! flow's tests (`flows/storage/tests.rs`).

use super::*;
use crate::pure::keyring::{Keyring, Mode, StorageKey, parse_key_file};

pub(crate) fn key(kid: &str, byte: u8) -> StorageKey {
    StorageKey::new(kid, [byte; 32]).unwrap()
}

pub(crate) fn ring(keys: Vec<StorageKey>) -> KeyState {
    KeyState::Ready(Keyring::new(keys, Mode::Encrypt).unwrap())
}

pub(crate) fn bind(alias: &str, subject: &str) -> Binding {
    Binding { alias: alias.into(), subject: subject.into(), realm: "realm-1".into(), user: "user-1".into() }
}

pub(crate) fn row(realm: &str, user: &str, alias: &str, subject: &str) -> Binding {
    Binding { alias: alias.into(), subject: subject.into(), realm: realm.into(), user: user.into() }
}

pub(crate) const PLAIN: &str = r#"{"access_token":"AT-PLAIN-123","refresh_token":"RT-PLAIN-456","expires_in":3600}"#;

pub(crate) fn sealed(state: &KeyState, b: &Binding, plain: &str) -> String {
    match state {
        KeyState::Ready(r) => seal(r, b, plain).unwrap(),
        _ => panic!("no ring"),
    }
}

pub(crate) fn sealed_v1(state: &KeyState, b: &Binding, plain: &str) -> String {
    let KeyState::Ready(r) = state else { panic!("no ring") };
    let key = r.primary();
    let cipher = Aes256Gcm::new_from_slice(key.key.as_slice()).unwrap();
    let nonce = [9u8; NONCE_LEN];
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad_v1(&key.kid, b) })
        .unwrap();
    format!("{PREFIX_V1}{}.{}", key.kid, URL_SAFE_NO_PAD.encode([&nonce[..], &ct[..]].concat()))
}

#[test]
fn seal_then_open_round_trips_and_hides_the_value() {
    let s = ring(vec![key("k1", 7)]);
    let b = bind("entra", "oid-1");
    let v = sealed(&s, &b, PLAIN);
    assert!(v.starts_with("ftk2.k1."), "{v}");
    assert!(!v.contains("AT-PLAIN") && !v.contains("RT-PLAIN"));
    assert_eq!(open(&s, Some(&b), &v).unwrap(), PLAIN);
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let s = ring(vec![key("k1", 7)]);
    let b = bind("entra", "oid-1");
    let a = sealed(&s, &b, PLAIN);
    let c = sealed(&s, &b, PLAIN);
    assert_ne!(a, c);
    let at = KCV_LEN + ROW_TAG_LEN;
    let na = &URL_SAFE_NO_PAD.decode(a.rsplit('.').next().unwrap()).unwrap()[at..at + NONCE_LEN];
    let nc = &URL_SAFE_NO_PAD.decode(c.rsplit('.').next().unwrap()).unwrap()[at..at + NONCE_LEN];
    assert_ne!(na, nc);
}

#[test]
fn a_value_does_not_open_for_another_alias_or_subject() {
    let s = ring(vec![key("k1", 7)]);
    let v = sealed(&s, &bind("entra", "oid-1"), PLAIN);
    for other in [bind("entra", "oid-2"), bind("entra2", "oid-1"), bind("entr", "aoid-1")] {
        let e = open(&s, Some(&other), &v).unwrap_err();
        assert_eq!(e.1, ErrorCode::StorageBindingMismatch, "{}", e.0);
        assert!(e.0.contains("encrypted for another row"), "{}", e.0);
    }
}

#[test]
fn a_tampered_value_or_key_id_does_not_open() {
    let s = ring(vec![key("k1", 7), key("k2", 7)]);
    let b = bind("entra", "oid-1");
    let v = sealed(&s, &b, PLAIN);
    let mut bytes = URL_SAFE_NO_PAD.decode(v.rsplit('.').next().unwrap()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = format!("ftk2.k1.{}", URL_SAFE_NO_PAD.encode(&bytes));
    assert_eq!(open(&s, Some(&b), &tampered).unwrap_err().1, ErrorCode::StorageKeyError);
    assert!(open(&s, Some(&b), &tampered).is_err());
    // Same key bytes under another id: the key id is authenticated too.
    let relabelled = v.replacen("ftk2.k1.", "ftk2.k2.", 1);
    assert!(open(&s, Some(&b), &relabelled).is_err());
    assert!(open(&s, Some(&b), "ftk2.k1.").is_err());
    assert!(open(&s, Some(&b), "ftk1.k1.").is_err());
    assert!(open(&s, Some(&b), "ftk2.k1.!!!").is_err());
    assert!(open(&s, Some(&b), "ftk1.").is_err());
}

#[test]
fn wrong_key_missing_key_and_no_keys_are_told_apart() {
    let b = bind("entra", "oid-1");
    let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
    let wrong = open(&ring(vec![key("k1", 8)]), Some(&b), &v).unwrap_err().0;
    assert!(wrong.contains("could not be decrypted"), "{wrong}");
    let unknown = open(&ring(vec![key("k9", 7)]), Some(&b), &v).unwrap_err().0;
    assert!(unknown.contains("'k1', which is not among") && unknown.contains("k9"), "{unknown}");
    let off = open(&KeyState::Off, Some(&b), &v).unwrap_err().0;
    assert!(off.contains("no storage keys are configured"), "{off}");
}

#[test]
fn rotation_old_key_still_opens_new_key_seals() {
    let b = bind("entra", "oid-1");
    let old = sealed(&ring(vec![key("2025", 1)]), &b, PLAIN);
    let rotated = ring(vec![key("2026", 2), key("2025", 1)]);
    assert_eq!(open(&rotated, Some(&b), &old).unwrap(), PLAIN);
    assert!(sealed(&rotated, &b, PLAIN).starts_with("ftk2.2026."));
}

#[test]
fn plain_values_pass_through_open() {
    for state in [KeyState::Off, ring(vec![key("k1", 7)])] {
        assert_eq!(open(&state, None, PLAIN).unwrap(), PLAIN);
        assert_eq!(open(&state, None, "access_token=a&refresh_token=b").unwrap(), "access_token=a&refresh_token=b");
    }
}

#[test]
fn key_file_parsing() {
    let k = "# comment\n\nk2 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nk1 0202020202020202020202020202020202020202020202020202020202020202\nk0 AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM\n";
    let keys = parse_key_file(k).unwrap();
    assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), ["k2", "k1", "k0"]);
    assert_eq!(*keys[0].key, [1u8; 32]);
    assert_eq!(*keys[1].key, [2u8; 32]);
    assert_eq!(*keys[2].key, [3u8; 32]);
    for bad in ["", "# only\n", "k1\n", "k1 short\n", "k.1 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", "k1 a b\n"]
    {
        assert!(parse_key_file(bad).is_err(), "{bad:?}");
    }
    let e = parse_key_file("k1 SECRETISHVALUE\n").err().unwrap();
    assert!(!e.contains("SECRETISHVALUE"), "{e}");
    assert!(
        Keyring::new(
            parse_key_file(
                "a AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\na AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
            )
            .unwrap(),
            Mode::Encrypt
        )
        .is_err()
    );
}

#[test]
fn debug_never_shows_key_material() {
    let s = ring(vec![key("k1", 0xAB)]);
    let d = format!("{s:?} {s:#?}");
    assert!(d.contains("k1") && d.contains("[redacted]"), "{d}");
    assert!(!d.contains("171") && !d.to_lowercase().contains("abab"), "{d}");
}

#[test]
fn another_key_under_the_same_id_is_a_key_error_not_a_binding_mismatch() {
    let b = bind("entra", "oid-1");
    let v = sealed(&ring(vec![key("k1", 7)]), &b, PLAIN);
    let e = open(&ring(vec![key("k1", 8)]), Some(&b), &v).unwrap_err();
    assert_eq!(e.1, ErrorCode::StorageKeyError, "{}", e.0);
}

#[test]
fn mac_is_standard_hmac_sha256_of_a_32_byte_key() {
    // RFC 4231 test case 2 needs a 4-byte key; this checks the zero-padding against the
    // variable-length HMAC of the same crate instead: the two must agree byte for byte.
    use hmac::Mac as _;
    let key = [0x0bu8; 32];
    let mut reference = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
    reference.update(b"Hi ");
    reference.update(b"There");
    let want: [u8; 32] = reference.finalize().into_bytes().into();
    assert_eq!(mac(&key, &[b"Hi ", b"There"]), want);
}
