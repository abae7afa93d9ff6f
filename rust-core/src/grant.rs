//! What a refresh_token grant request looks like on the wire (RFC 6749 6, 2.3.1).

use base64::Engine as _;

use crate::contract::IdpConfig;
use crate::form;
use crate::secret::SecretValue;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 2.3.1).
    Basic,
}

impl ClientAuth {
    /// `client_secret_post` (also the default for absent/empty), `client_secret_basic`.
    /// Any other method is `Err` with the method name (not a secret).
    pub fn parse(method: Option<&str>) -> Result<ClientAuth, String> {
        match method.map(str::trim).unwrap_or("") {
            "" | "client_secret_post" => Ok(ClientAuth::Post),
            "client_secret_basic" => Ok(ClientAuth::Basic),
            other => Err(other.chars().take(64).collect()),
        }
    }
}

/// A token-endpoint request ready to send; both parts may hold secrets and print redacted.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `application/x-www-form-urlencoded` body.
    pub body: SecretValue,
    /// `Authorization` header value, for `client_secret_basic`.
    pub authorization: Option<SecretValue>,
}

/// Who authenticates at the token endpoint, and how.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    /// `None` for a public client (empty secrets count as none).
    pub secret: Option<&'a SecretValue>,
    pub auth: ClientAuth,
}

impl<'a> Credentials<'a> {
    /// The broker client of `idp`.
    pub fn of_idp(idp: &'a IdpConfig, auth: ClientAuth) -> Self {
        Credentials { client_id: &idp.client_id, secret: idp.secret(), auth }
    }
}

/// A token request: the grant's own pairs, then client authentication, then `scope`
/// when non-empty.
///
/// Without a client secret (public client) `client_id` goes in the body whatever the
/// method. With `client_secret_basic` neither id nor secret is in the body.
pub fn token_request(creds: &Credentials<'_>, grant: &[(&str, &str)], scope: Option<&str>) -> TokenRequest {
    let mut pairs: Vec<(&str, &str)> = grant.to_vec();
    let mut authorization = None;
    match (creds.secret, creds.auth) {
        (Some(secret), ClientAuth::Basic) => {
            let raw = format!("{}:{}", form::encode(creds.client_id), form::encode(secret.expose()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
            authorization = Some(SecretValue::new(format!("Basic {b64}")));
        }
        (Some(secret), ClientAuth::Post) => {
            pairs.push(("client_id", creds.client_id));
            pairs.push(("client_secret", secret.expose()));
        }
        (None, _) => pairs.push(("client_id", creds.client_id)),
    }
    if let Some(scope) = scope.map(str::trim).filter(|s| !s.is_empty()) {
        pairs.push(("scope", scope));
    }
    TokenRequest { body: SecretValue::new(form::encode_pairs(pairs)), authorization }
}

/// `grant_type=refresh_token&refresh_token=…&client_id=…[&client_secret=…][&scope=…]`
/// with the broker client of `idp` and `idp.refresh_scope`.
pub fn refresh_request(idp: &IdpConfig, auth: ClientAuth, refresh_token: &str) -> TokenRequest {
    refresh_request_with_scope(idp, auth, refresh_token, idp.scope())
}

/// A refresh_token grant with the given scope (a resource's `refresh_scope`).
pub fn refresh_request_with_scope(
    idp: &IdpConfig,
    auth: ClientAuth,
    refresh_token: &str,
    scope: Option<&str>,
) -> TokenRequest {
    let grant = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    token_request(&Credentials::of_idp(idp, auth), &grant, scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp(secret: Option<&str>, scope: Option<&str>) -> IdpConfig {
        serde_json::from_value(serde_json::json!({
            "token_url": "https://idp.example/token",
            "client_id": "my app",
            "client_secret": secret,
            "refresh_scope": scope,
        }))
        .unwrap()
    }

    fn pairs(r: &TokenRequest) -> Vec<(String, String)> {
        form::decode_pairs(r.body.expose()).unwrap()
    }

    #[test]
    fn post_puts_grant_refresh_token_id_secret_and_scope_in_body() {
        let r = refresh_request(&idp(Some("s&cr=t"), Some("openid offline_access")), ClientAuth::Post, "rt/+=");
        assert_eq!(
            pairs(&r),
            vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), "rt/+=".into()),
                ("client_id".into(), "my app".into()),
                ("client_secret".into(), "s&cr=t".into()),
                ("scope".into(), "openid offline_access".into()),
            ]
        );
        assert!(r.authorization.is_none());
    }

    #[test]
    fn basic_sends_form_urlencoded_id_and_secret_in_header_and_neither_in_body() {
        let r = refresh_request(&idp(Some("s:c+r t"), None), ClientAuth::Basic, "rt");
        let expected = base64::engine::general_purpose::STANDARD.encode("my+app:s%3Ac%2Br+t");
        assert_eq!(r.authorization.as_ref().unwrap().expose(), format!("Basic {expected}"));
        let keys: Vec<String> = pairs(&r).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["grant_type", "refresh_token"]);
    }

    #[test]
    fn public_client_sends_client_id_and_no_secret() {
        for auth in [ClientAuth::Post, ClientAuth::Basic] {
            let r = refresh_request(&idp(Some(""), None), auth, "rt");
            assert!(r.authorization.is_none());
            let keys: Vec<String> = pairs(&r).into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["grant_type", "refresh_token", "client_id"]);
        }
    }

    #[test]
    fn blank_scope_is_not_sent() {
        let r = refresh_request(&idp(None, Some("  ")), ClientAuth::Post, "rt");
        assert!(!pairs(&r).iter().any(|(k, _)| k == "scope"));
    }

    #[test]
    fn client_auth_parse_accepts_post_basic_and_default_only() {
        assert_eq!(ClientAuth::parse(None), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("")), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("client_secret_post")), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("client_secret_basic")), Ok(ClientAuth::Basic));
        assert_eq!(ClientAuth::parse(Some("private_key_jwt")), Err("private_key_jwt".to_string()));
    }

    #[test]
    fn debug_of_token_request_never_contains_refresh_token_or_secret() {
        let r = refresh_request(&idp(Some("SECRET-SAMPLE-1"), None), ClientAuth::Basic, "RT-SAMPLE-2");
        let r2 = refresh_request(&idp(Some("SECRET-SAMPLE-1"), None), ClientAuth::Post, "RT-SAMPLE-2");
        let d = format!("{r:?} {r2:?}");
        assert!(!d.contains("SECRET-SAMPLE-1") && !d.contains("RT-SAMPLE-2"));
    }
}
