//! The fresh path without a JSON tree: the stored token read as its top-level members, each
//! value kept as the stored JSON text ([`RawValue`], borrowed, never re-serialised), and the
//! app's answer written from those slices. What it decides and writes is what
//! [`super::merge::app_response`] and [`super::stored::StoredToken::expiry`] say for the same
//! row; anything this reader does not take on (a form-encoded row, a duplicate or escaped key,
//! not an object) is `None`, and the caller goes the long way (the `check` op), which answers
//! every such case.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::json::number_or_string;
use super::stored::{ACCESS_TOKEN_EXPIRATION, EXTENSION_KEYS};

/// The top-level members of a stored JSON object, in their order; values as stored.
pub struct Members<'a>(Vec<(&'a str, &'a RawValue)>);

impl fmt::Debug for Members<'_> {
    /// Keys only; values are tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut out: Vec<(&'de str, &'de RawValue)> = Vec::with_capacity(12);
        // A key with an escape cannot be borrowed: an error here, the long way for the caller.
        while let Some(key) = map.next_key::<&'de str>()? {
            let value: &'de RawValue = map.next_value()?;
            if out.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            out.push((key, value));
        }
        Ok(Members(out))
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor)
    }
}

impl<'a> Members<'a> {
    /// The members of a stored JSON object; `None` for anything else (see the module doc).
    pub fn parse(plain: &'a str) -> Option<Members<'a>> {
        if !plain.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Members<'a>>(plain).ok()
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A string member, unescaped only when it holds an escape.
    fn str_of(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.get(key)?.get();
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    /// A non-empty (not only whitespace) string member (as `json::non_empty_str`).
    fn non_empty(&self, key: &str) -> Option<Cow<'a, str>> {
        self.str_of(key).filter(|s| !s.trim().is_empty())
    }

    pub fn has_refresh_token(&self) -> bool {
        self.non_empty("refresh_token").is_some()
    }

    /// As `StoredToken::expiry`: `accessTokenExpiration` when > 0, else the access token's
    /// JWT `exp`, else unknown; without an access token, `Some(0)`.
    pub fn expiry(&self) -> Option<i64> {
        let Some(at) = self.non_empty("access_token") else {
            return Some(0);
        };
        let stated = self
            .get(ACCESS_TOKEN_EXPIRATION)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .and_then(|v| number_or_string(&v))
            .filter(|e| *e > 0);
        stated.or_else(|| super::jwt::exp(&at))
    }

    /// The app's token response (as `merge::app_response` of the same row): the stored members
    /// in their order, without ours, `expires_in` the seconds left (appended when absent; left
    /// out when the expiry is unknown), `refresh_token` / `refresh_expires_in` and `id_token`
    /// only when allowed, `token_type` "Bearer" when the row has none.
    pub fn app_body(
        &self,
        expiry: Option<i64>,
        now: i64,
        include_refresh_token: bool,
        include_id_token: bool,
    ) -> String {
        let len: usize = self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = String::with_capacity(len + 48);
        let expires_in = expiry.map(|e| e.saturating_sub(now).max(0));
        let token_type_ok = self.non_empty("token_type").is_some();
        let (mut wrote_expires_in, mut wrote_token_type) = (false, false);
        out.push('{');
        let member = |out: &mut String, key: &str, value: &str| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push('"');
            out.push_str(key); // borrowed keys hold no escape and no control character
            out.push_str("\":");
            out.push_str(value);
        };
        for (key, raw) in &self.0 {
            let key = *key;
            if EXTENSION_KEYS.contains(&key)
                || (!include_refresh_token && (key == "refresh_token" || key == "refresh_expires_in"))
                || (!include_id_token && key == "id_token")
            {
                continue;
            }
            match key {
                "expires_in" => {
                    if let Some(n) = expires_in {
                        member(&mut out, key, &n.to_string());
                        wrote_expires_in = true;
                    }
                }
                "token_type" if !token_type_ok => {
                    member(&mut out, key, "\"Bearer\"");
                    wrote_token_type = true;
                }
                _ => {
                    member(&mut out, key, raw.get());
                    wrote_token_type |= key == "token_type";
                }
            }
        }
        if let (Some(n), false) = (expires_in, wrote_expires_in) {
            member(&mut out, "expires_in", &n.to_string());
        }
        if !wrote_token_type {
            member(&mut out, "token_type", "\"Bearer\"");
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::jwt::make_jwt;
    use crate::pure::merge::app_response;
    use crate::pure::stored::StoredToken;
    use crate::wire::Policy;
    use serde_json::json;

    const NOW: i64 = 1_764_100_000;

    fn both(stored: &str, include_rt: bool, include_id: bool) -> (Value, Value) {
        let members = Members::parse(stored).unwrap();
        let token = StoredToken::parse(stored).unwrap();
        assert_eq!(members.expiry(), token.expiry(), "expiry of {stored}");
        assert_eq!(members.has_refresh_token(), token.refresh_token().is_some());
        let policy =
            Policy { include_refresh_token: Some(include_rt), include_id_token: Some(include_id), ..Policy::default() };
        let fast: Value =
            serde_json::from_str(&members.app_body(members.expiry(), NOW, include_rt, include_id)).unwrap();
        let long = Value::Object(app_response(&token.fields, token.expiry(), NOW, &policy));
        (fast, long)
    }

    fn same(stored: Value) {
        for (rt, id) in [(false, false), (false, true), (true, false), (true, true)] {
            let (fast, long) = both(&stored.to_string(), rt, id);
            assert_eq!(fast, long, "policy rt={rt} id={id}");
            // The same order of members, too.
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&fast), keys(&long));
        }
    }

    #[test]
    fn an_entra_row_gives_the_same_answer_as_the_tree_path() {
        same(json!({"token_type":"Bearer","scope":"User.Read","expires_in":3599,"ext_expires_in":3599,
            "access_token":"eyJ.a.b","refresh_token":"rt","id_token":"id","accessTokenExpiration": NOW + 3000,
            "fresh_token_refreshed_at": NOW - 10, "fresh_token_resources": {"x": {"access_token": "r"}}}));
    }

    #[test]
    fn missing_token_type_and_expires_in_are_appended_in_the_tree_path_order() {
        same(json!({"access_token":"at","accessTokenExpiration": NOW + 100}));
        same(json!({"access_token":"at","token_type":"","accessTokenExpiration": NOW + 100}));
        same(json!({"access_token":"at","token_type":"  ","expires_in":"3599","accessTokenExpiration": NOW + 100}));
    }

    #[test]
    fn expiry_falls_back_to_the_jwt_exp_then_unknown() {
        let at = make_jwt(&json!({"exp": NOW + 500}));
        same(json!({"access_token": at, "expires_in": 3599}));
        same(json!({"access_token": "opaque", "expires_in": 3599}));
        same(json!({"access_token": "opaque", "accessTokenExpiration": "0"}));
        same(json!({"access_token": "opaque", "accessTokenExpiration": " 1764100100 "}));
    }

    #[test]
    fn escaped_values_are_copied_as_stored_and_read_unescaped() {
        same(json!({"access_token":"a\"b\\c\u{1}","token_type":"\u{20}","refresh_token":"\t","x":[1,{"y":null}],
            "accessTokenExpiration": NOW + 100}));
        let m = Members::parse(r#"{"access_token":"\u0020","refresh_token":"\u0041"}"#).unwrap();
        assert!(m.expiry() == Some(0) && m.has_refresh_token(), "a blank access token counts as none: long expired");
    }

    #[test]
    fn what_this_reader_does_not_take_on_goes_the_long_way() {
        assert!(Members::parse("access_token=a&token_type=bearer").is_none());
        assert!(Members::parse(r#"{"access_token":"a","access_token":"b"}"#).is_none());
        assert!(Members::parse(r#"{"acc\u0065ss_token":"a"}"#).is_none());
        assert!(Members::parse("[1]").is_none());
        assert!(Members::parse(r#"{"access_token":"a""#).is_none());
        assert!(Members::parse("").is_none());
    }

    #[test]
    fn debug_shows_keys_only() {
        let m = Members::parse(r#"{"access_token":"secret-value"}"#).unwrap();
        let d = format!("{m:?}");
        assert!(d.contains("access_token") && !d.contains("secret-value"));
    }
}
