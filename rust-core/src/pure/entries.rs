//! The entries kept inside the stored token JSON: per-resource tokens under
//! `fresh_token_resources` and on-behalf-of results under `fresh_token_obo`, each a token object
//! `{access_token, token_type, scope, expires_in, accessTokenExpiration, …extras}` keyed by scope
//! (stock Keycloak ignores the unknown top-level keys, so the row stays readable by stock code).

use serde_json::{Map, Value};

use super::json::{non_empty_str, number_or_string};
use super::stored::{ACCESS_TOKEN_EXPIRATION, EXTENSION_KEYS};
use crate::wire::Policy;

/// At most this many entries per map; when full, the entry expiring first goes.
pub const MAX_ENTRIES: usize = 16;

/// Fields of an IdP answer never kept in an entry nor shown with it.
const NOT_IN_ENTRY: [&str; 3] = ["refresh_token", "refresh_expires_in", "id_token"];

/// The entry `key` of the map `map_key`, when it is an object with an access token.
pub fn entry<'a>(fields: &'a Map<String, Value>, map_key: &str, key: &str) -> Option<&'a Map<String, Value>> {
    let e = fields.get(map_key)?.as_object()?.get(key)?.as_object()?;
    non_empty_str(e, "access_token").map(|_| e)
}

/// Expiry of an entry: `accessTokenExpiration` when > 0, else the JWT `exp`, else unknown.
pub fn entry_expiry(e: &Map<String, Value>) -> Option<i64> {
    e.get(ACCESS_TOKEN_EXPIRATION)
        .and_then(number_or_string)
        .filter(|x| *x > 0)
        .or_else(|| non_empty_str(e, "access_token").and_then(super::jwt::exp))
}

/// The expiry used for decisions: an absent entry counts as long expired.
pub fn decision_expiry(e: Option<&Map<String, Value>>) -> Option<i64> {
    match e {
        Some(e) => entry_expiry(e),
        None => Some(0),
    }
}

/// The diag line of an entry that is due: `<what> due: none stored`, `… due: N s left`,
/// `… due: expiry unknown`.
pub fn due_line(what: &str, current: Option<&Map<String, Value>>, expiry: Option<i64>, now: i64) -> String {
    match (current, expiry) {
        (None, _) => format!("{what} due: none stored"),
        (Some(_), Some(e)) => format!("{what} due: {} s left", e.saturating_sub(now)),
        (Some(_), None) => format!("{what} due: expiry unknown"),
    }
}

/// An entry from an IdP answer: `expires_in` as a number, `accessTokenExpiration` set
/// (from `expires_in`, else JWT `exp`, else the default lifetime), no refresh or id token.
pub fn new_entry(mut body: Map<String, Value>, now: i64, default_lifetime_s: i64) -> (Map<String, Value>, i64) {
    for k in NOT_IN_ENTRY.iter().chain(EXTENSION_KEYS.iter()) {
        body.shift_remove(*k);
    }
    match body.get("expires_in").map(number_or_string) {
        Some(Some(n)) => {
            body.insert("expires_in".into(), Value::from(n));
        }
        Some(None) => {
            body.shift_remove("expires_in");
        }
        None => {}
    }
    let expiry = super::merge::expiry_of(&body, now, default_lifetime_s);
    body.insert(ACCESS_TOKEN_EXPIRATION.into(), Value::from(expiry));
    (body, expiry)
}

/// Puts `entry` under `map_key`/`key`; a map that is not an object starts over; when the
/// map is full, the entry expiring first (unknown expiry first of all) goes.
pub fn insert_bounded(fields: &mut Map<String, Value>, map_key: &str, key: &str, entry: Map<String, Value>) {
    if !fields.get(map_key).is_some_and(Value::is_object) {
        fields.insert(map_key.to_string(), Value::Object(Map::new()));
    }
    let Some(Value::Object(map)) = fields.get_mut(map_key) else { return };
    if !map.contains_key(key) {
        while map.len() >= MAX_ENTRIES {
            let earliest = map
                .iter()
                .min_by_key(|(_, v)| v.as_object().and_then(entry_expiry).unwrap_or(i64::MIN))
                .map(|(k, _)| k.clone());
            match earliest {
                Some(k) => {
                    map.shift_remove(&k);
                }
                None => break,
            }
        }
    }
    map.insert(key.to_string(), Value::Object(entry));
}

/// What the app receives for an entry: its fields, `expires_in` remaining (absent when
/// unknown), `token_type` defaulted to `Bearer`; never a refresh or id token.
pub fn entry_response(e: &Map<String, Value>, expiry: Option<i64>, now: i64) -> Map<String, Value> {
    let policy = Policy { include_refresh_token: Some(false), include_id_token: Some(false), ..Policy::default() };
    super::merge::app_response(e, expiry, now, &policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::stored::RESOURCES_KEY;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn new_entry_drops_refresh_and_id_tokens_and_sets_expiration() {
        let (e, exp) = new_entry(
            obj(
                json!({"access_token":"a","refresh_token":"r","refresh_expires_in":9,"id_token":"i","expires_in":"3599","ext_expires_in":"3599","scope":"s"}),
            ),
            NOW,
            300,
        );
        assert_eq!(exp, NOW + 3599);
        assert_eq!(e["expires_in"], 3599);
        assert_eq!(e["ext_expires_in"], "3599");
        assert_eq!(e[ACCESS_TOKEN_EXPIRATION], NOW + 3599);
        for k in NOT_IN_ENTRY {
            assert!(e.get(k).is_none(), "{k}");
        }
    }

    #[test]
    fn insert_bounded_keeps_at_most_16_and_drops_the_earliest_expiry() {
        let mut f = Map::new();
        for i in 0..MAX_ENTRIES as i64 {
            insert_bounded(
                &mut f,
                RESOURCES_KEY,
                &format!("k{i}"),
                obj(json!({"access_token":"a","accessTokenExpiration": NOW + 100 + i})),
            );
        }
        // Replacing an existing key never evicts.
        insert_bounded(&mut f, RESOURCES_KEY, "k3", obj(json!({"access_token":"a","accessTokenExpiration": NOW + 1})));
        assert_eq!(f[RESOURCES_KEY].as_object().unwrap().len(), MAX_ENTRIES);
        insert_bounded(&mut f, RESOURCES_KEY, "new", obj(json!({"access_token":"a","accessTokenExpiration": NOW})));
        let m = f[RESOURCES_KEY].as_object().unwrap();
        assert_eq!(m.len(), MAX_ENTRIES);
        assert!(m.contains_key("new") && !m.contains_key("k3") && m.contains_key("k0"));
    }

    #[test]
    fn insert_bounded_replaces_a_map_that_is_not_an_object() {
        let mut f = obj(json!({RESOURCES_KEY: "garbage"}));
        insert_bounded(&mut f, RESOURCES_KEY, "s", obj(json!({"access_token":"a"})));
        assert_eq!(f[RESOURCES_KEY]["s"]["access_token"], "a");
    }
}
