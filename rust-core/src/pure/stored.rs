//! What is in `FEDERATED_IDENTITY.TOKEN`: the stored-token model.
//!
//! Understood: a JSON object (Keycloak's `oidc`, `microsoft` and OAuth2 providers), with
//! `expires_in`, `refresh_expires_in`, `accessTokenExpiration` as numbers or strings and
//! unknown fields preserved in order; and a form-encoded string
//! (`access_token=…&token_type=bearer&…`). Anything else is unreadable, which the op
//! logic answers with `reauth_required`.

use serde_json::{Map, Value};

use super::json::{non_empty_str, number_or_string};

/// Keycloak's field: absolute epoch seconds at which the access token expires.
pub const ACCESS_TOKEN_EXPIRATION: &str = "accessTokenExpiration";

/// Top-level key of the stored token: epoch seconds of the last refresh by this extension.
pub const REFRESHED_AT: &str = "fresh_token_refreshed_at";
/// Top-level key of the per-resource tokens.
pub const RESOURCES_KEY: &str = "fresh_token_resources";
/// Top-level key of the on-behalf-of / token-exchange results.
pub const OBO_KEY: &str = "fresh_token_obo";
/// Our keys in the stored token: kept across top-level refreshes, never in a response.
pub const EXTENSION_KEYS: [&str; 3] = [RESOURCES_KEY, OBO_KEY, REFRESHED_AT];

/// How the stored string was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Form,
}

/// Why a stored string could not be read. Carries no part of the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredError {
    /// Empty or only whitespace.
    Empty,
    /// Neither a JSON object nor a form-encoded string.
    Unreadable,
    /// Readable, but holds neither an access token nor a refresh token.
    NoToken,
}

impl StoredError {
    /// Our own words for the log; no stored data in them.
    pub fn describe(self) -> &'static str {
        match self {
            StoredError::Empty => "stored token is empty",
            StoredError::Unreadable => "stored token is neither a JSON object nor form-encoded",
            StoredError::NoToken => "stored token holds neither an access token nor a refresh token",
        }
    }
}

/// A parsed stored token: its fields in their original order.
#[derive(Clone, PartialEq)]
pub struct StoredToken {
    pub fields: Map<String, Value>,
    pub format: Format,
}

impl std::fmt::Debug for StoredToken {
    /// Field names only; values are tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("format", &self.format)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoredToken {
    /// Reads a stored string in either format.
    pub fn parse(s: &str) -> Result<StoredToken, StoredError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(StoredError::Empty);
        }
        let token = if t.starts_with('{') {
            match serde_json::from_str::<Value>(t) {
                Ok(Value::Object(fields)) => StoredToken { fields, format: Format::Json },
                _ => return Err(StoredError::Unreadable),
            }
        } else {
            Self::parse_form(t).ok_or(StoredError::Unreadable)?
        };
        if token.access_token().is_none() && token.refresh_token().is_none() {
            return Err(StoredError::NoToken);
        }
        Ok(token)
    }

    fn parse_form(t: &str) -> Option<StoredToken> {
        if !t.contains('=') {
            return None;
        }
        let mut fields = Map::new();
        for (k, v) in super::form::decode_pairs(t)? {
            if k.is_empty() {
                return None;
            }
            fields.insert(k, Value::String(v));
        }
        Some(StoredToken { fields, format: Format::Form })
    }

    pub fn access_token(&self) -> Option<&str> {
        non_empty_str(&self.fields, "access_token")
    }

    pub fn refresh_token(&self) -> Option<&str> {
        non_empty_str(&self.fields, "refresh_token")
    }

    pub fn id_token(&self) -> Option<&str> {
        non_empty_str(&self.fields, "id_token")
    }

    /// `accessTokenExpiration` when > 0.
    pub fn access_token_expiration(&self) -> Option<i64> {
        self.fields.get(ACCESS_TOKEN_EXPIRATION).and_then(number_or_string).filter(|e| *e > 0)
    }

    /// When the access token expires (epoch seconds): `accessTokenExpiration` when > 0,
    /// else the JWT `exp` of the access token, else unknown. Without an access token at
    /// all, `Some(0)`: long expired.
    pub fn expiry(&self) -> Option<i64> {
        let Some(at) = self.access_token() else {
            return Some(0);
        };
        self.access_token_expiration().or_else(|| super::jwt::exp(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::jwt::make_jwt;
    use proptest::prelude::*;
    use serde_json::json;

    const KEYCLOAK_OIDC: &str = r#"{"access_token":"eyJ.at.sig","expires_in":3599,"refresh_expires_in":0,"refresh_token":"rt-value","token_type":"Bearer","id_token":"eyJ.id.sig","not-before-policy":0,"scope":"openid","accessTokenExpiration":1764100000}"#;

    #[test]
    fn stock_keycloak_oidc_format_is_read_with_all_fields_in_order() {
        let t = StoredToken::parse(KEYCLOAK_OIDC).unwrap();
        assert_eq!(t.format, Format::Json);
        assert_eq!(t.access_token(), Some("eyJ.at.sig"));
        assert_eq!(t.refresh_token(), Some("rt-value"));
        assert_eq!(t.id_token(), Some("eyJ.id.sig"));
        assert_eq!(t.expiry(), Some(1764100000));
        let keys: Vec<&str> = t.fields.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "access_token",
                "expires_in",
                "refresh_expires_in",
                "refresh_token",
                "token_type",
                "id_token",
                "not-before-policy",
                "scope",
                "accessTokenExpiration"
            ]
        );
    }

    #[test]
    fn entra_raw_format_with_string_numbers_and_ext_expires_in_is_read() {
        let s = r#"{"token_type":"Bearer","scope":"User.Read profile openid email","expires_in":"3599","ext_expires_in":"3599","access_token":"EwB-opaque","refresh_token":"M.C5-rt","id_token":"eyJ.id.x","accessTokenExpiration":"1764103599"}"#;
        let t = StoredToken::parse(s).unwrap();
        assert_eq!(t.access_token(), Some("EwB-opaque"));
        assert_eq!(t.expiry(), Some(1764103599));
        assert_eq!(t.fields.get("ext_expires_in"), Some(&json!("3599")));
        assert_eq!(number_or_string(&t.fields["expires_in"]), Some(3599));
    }

    #[test]
    fn form_encoded_token_is_read_with_decoded_values() {
        let t = StoredToken::parse(
            "access_token=gho_abc%2B1&token_type=bearer&scope=repo+user&accessTokenExpiration=1764100000",
        )
        .unwrap();
        assert_eq!(t.format, Format::Form);
        assert_eq!(t.access_token(), Some("gho_abc+1"));
        assert_eq!(t.fields["scope"], json!("repo user"));
        assert_eq!(t.expiry(), Some(1764100000));
        assert_eq!(t.refresh_token(), None);
    }

    #[test]
    fn empty_and_whitespace_are_empty_errors() {
        assert_eq!(StoredToken::parse(""), Err(StoredError::Empty));
        assert_eq!(StoredToken::parse("  \n"), Err(StoredError::Empty));
    }

    #[test]
    fn garbage_is_unreadable() {
        for s in ["not a token", "{not json", "[1,2]", "{\"a\":1", "null", "%%%=%"] {
            assert_eq!(StoredToken::parse(s), Err(StoredError::Unreadable), "{s}");
        }
    }

    #[test]
    fn object_without_any_token_is_no_token() {
        assert_eq!(StoredToken::parse(r#"{"token_type":"Bearer"}"#), Err(StoredError::NoToken));
        assert_eq!(StoredToken::parse(r#"{"access_token":""}"#), Err(StoredError::NoToken));
        assert_eq!(StoredToken::parse("token_type=bearer"), Err(StoredError::NoToken));
    }

    #[test]
    fn zero_access_token_expiration_falls_back_to_jwt_exp() {
        let at = make_jwt(&json!({"exp": 1764109999}));
        let s = json!({"access_token": at, "accessTokenExpiration": 0}).to_string();
        assert_eq!(StoredToken::parse(&s).unwrap().expiry(), Some(1764109999));
    }

    #[test]
    fn missing_expiration_and_opaque_token_give_unknown_expiry() {
        let t = StoredToken::parse(r#"{"access_token":"opaque","accessTokenExpiration":0}"#).unwrap();
        assert_eq!(t.expiry(), None);
    }

    #[test]
    fn refresh_token_only_counts_as_expired_access() {
        let t = StoredToken::parse(r#"{"refresh_token":"rt"}"#).unwrap();
        assert_eq!(t.expiry(), Some(0));
    }

    #[test]
    fn debug_of_stored_token_shows_field_names_not_values() {
        let t = StoredToken::parse(KEYCLOAK_OIDC).unwrap();
        let d = format!("{t:?}");
        assert!(d.contains("access_token"));
        assert!(!d.contains("rt-value") && !d.contains("eyJ.at.sig"));
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in ".*") {
            let _ = StoredToken::parse(&s).map(|t| t.expiry());
        }

        #[test]
        fn parse_never_panics_on_json_like_strings(s in "\\{(\"[a-zA-Z_]{0,20}\":(\"[^\"]{0,20}\"|[0-9.eE+-]{0,12}|null|true),?){0,6}\\}?") {
            let _ = StoredToken::parse(&s).map(|t| t.expiry());
        }
    }
}
