//! What a refresh_token grant request looks like on the wire (RFC 6749 6, 2.3.1).

use base64::Engine as _;

use super::assertion::Signer;
use crate::pure::form;
use crate::wire::{AssertionConfig, IdpConfig, SecretValue};

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 2.3.1).
    Basic,
    /// A JWT signed with the client's private key (RFC 7523 2.2), certificate thumbprint
    /// in the header.
    PrivateKeyJwt,
}

impl ClientAuth {
    /// `client_secret_post` (also the default for absent/empty), `client_secret_basic`,
    /// `private_key_jwt`.
    /// Any other method is `Err` with the method name (not a secret).
    pub fn parse(method: Option<&str>) -> Result<ClientAuth, String> {
        match method.map(str::trim).unwrap_or("") {
            "" | "client_secret_post" => Ok(ClientAuth::Post),
            "client_secret_basic" => Ok(ClientAuth::Basic),
            "private_key_jwt" => Ok(ClientAuth::PrivateKeyJwt),
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

/// `client_assertion_type` for a JWT assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who authenticates at the token endpoint, and how (checked: ready to build requests).
#[derive(Debug)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    /// `None` for a public client (empty secrets count as none).
    pub secret: Option<&'a SecretValue>,
    pub auth: ClientAuth,
    /// The parsed key and certificate, for `private_key_jwt`.
    pub signer: Option<Signer>,
}

/// Why credentials cannot be used; found before any network call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    /// For the app: names the problem, never a secret.
    pub description: String,
    /// For `diag`.
    pub diag: String,
}

impl<'a> Credentials<'a> {
    /// Checks the method and, for `private_key_jwt`, parses key and certificate.
    pub fn prepare(
        client_id: &'a str,
        secret: Option<&'a SecretValue>,
        client_auth: Option<&str>,
        assertion: Option<&AssertionConfig>,
    ) -> Result<Self, CredentialsError> {
        let auth = ClientAuth::parse(client_auth).map_err(|method| CredentialsError {
            description: "The client authentication method is not supported (use client_secret_post, client_secret_basic or private_key_jwt).".into(),
            diag: format!("client authentication method '{method}' is not supported"),
        })?;
        let signer = match auth {
            ClientAuth::PrivateKeyJwt => {
                let cfg = assertion.ok_or_else(|| CredentialsError {
                    description: "private_key_jwt needs an `assertion` with key_pem and cert_pem.".into(),
                    diag: "private_key_jwt without assertion settings".into(),
                })?;
                let signer = Signer::new(cfg).map_err(|why| CredentialsError {
                    description: format!("The client certificate credentials cannot be used: {why}."),
                    diag: format!("private_key_jwt: {why}"),
                })?;
                Some(signer)
            }
            _ => None,
        };
        Ok(Credentials { client_id, secret, auth, signer })
    }

    /// The broker client of `idp`.
    pub fn of_idp(idp: &'a IdpConfig) -> Result<Self, CredentialsError> {
        Credentials::prepare(&idp.client_id, idp.secret(), idp.client_auth.as_deref(), idp.assertion.as_ref())
    }
}

/// A token request: the grant's own pairs, then client authentication, then `scope`
/// when non-empty. `token_url` is the audience of a client assertion (a fresh one, new
/// `jti`, on every call).
///
/// Without a client secret (public client) `client_id` goes in the body whatever the
/// method. With `client_secret_basic` neither id nor secret is in the body. With
/// `private_key_jwt`: `client_id`, `client_assertion_type`, `client_assertion`.
pub fn token_request(
    creds: &Credentials<'_>,
    token_url: &str,
    grant: &[(&str, &str)],
    scope: Option<&str>,
) -> Result<TokenRequest, String> {
    let mut pairs: Vec<(&str, &str)> = grant.to_vec();
    let mut authorization = None;
    let jwt;
    match (creds.auth, &creds.signer, creds.secret) {
        (ClientAuth::PrivateKeyJwt, Some(signer), _) => {
            jwt = signer.sign(creds.client_id, token_url)?;
            pairs.push(("client_id", creds.client_id));
            pairs.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
            pairs.push(("client_assertion", &jwt));
        }
        (ClientAuth::PrivateKeyJwt, None, _) => return Err("private_key_jwt without a prepared key".into()),
        (ClientAuth::Basic, _, Some(secret)) => {
            let raw = format!("{}:{}", form::encode(creds.client_id), form::encode(secret.expose()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
            authorization = Some(SecretValue::new(format!("Basic {b64}")));
        }
        (ClientAuth::Post, _, Some(secret)) => {
            pairs.push(("client_id", creds.client_id));
            pairs.push(("client_secret", secret.expose()));
        }
        (_, _, None) => pairs.push(("client_id", creds.client_id)),
    }
    if let Some(scope) = scope.map(str::trim).filter(|s| !s.is_empty()) {
        pairs.push(("scope", scope));
    }
    Ok(TokenRequest { body: SecretValue::new(form::encode_pairs(pairs)), authorization })
}

/// `grant_type=refresh_token&refresh_token=…` + client authentication + `scope`.
pub fn refresh_request(
    creds: &Credentials<'_>,
    token_url: &str,
    refresh_token: &str,
    scope: Option<&str>,
) -> Result<TokenRequest, String> {
    let grant = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    token_request(creds, token_url, &grant, scope)
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

    fn rr(idp: &IdpConfig, auth: ClientAuth, rt: &str) -> TokenRequest {
        let creds = Credentials { client_id: &idp.client_id, secret: idp.secret(), auth, signer: None };
        refresh_request(&creds, &idp.token_url, rt, idp.scope()).unwrap()
    }

    fn pairs(r: &TokenRequest) -> Vec<(String, String)> {
        form::decode_pairs(r.body.expose()).unwrap()
    }

    #[test]
    fn post_puts_grant_refresh_token_id_secret_and_scope_in_body() {
        let r = rr(&idp(Some("s&cr=t"), Some("openid offline_access")), ClientAuth::Post, "rt/+=");
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
        let r = rr(&idp(Some("s:c+r t"), None), ClientAuth::Basic, "rt");
        let expected = base64::engine::general_purpose::STANDARD.encode("my+app:s%3Ac%2Br+t");
        assert_eq!(r.authorization.as_ref().unwrap().expose(), format!("Basic {expected}"));
        let keys: Vec<String> = pairs(&r).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["grant_type", "refresh_token"]);
    }

    #[test]
    fn public_client_sends_client_id_and_no_secret() {
        for auth in [ClientAuth::Post, ClientAuth::Basic] {
            let r = rr(&idp(Some(""), None), auth, "rt");
            assert!(r.authorization.is_none());
            let keys: Vec<String> = pairs(&r).into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["grant_type", "refresh_token", "client_id"]);
        }
    }

    #[test]
    fn blank_scope_is_not_sent() {
        let r = rr(&idp(None, Some("  ")), ClientAuth::Post, "rt");
        assert!(!pairs(&r).iter().any(|(k, _)| k == "scope"));
    }

    #[test]
    fn client_auth_parse_accepts_post_basic_and_default_only() {
        assert_eq!(ClientAuth::parse(None), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("")), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("client_secret_post")), Ok(ClientAuth::Post));
        assert_eq!(ClientAuth::parse(Some("client_secret_basic")), Ok(ClientAuth::Basic));
        assert_eq!(ClientAuth::parse(Some("private_key_jwt")), Ok(ClientAuth::PrivateKeyJwt));
        assert_eq!(ClientAuth::parse(Some("tls_client_auth")), Err("tls_client_auth".to_string()));
    }

    #[test]
    fn debug_of_token_request_never_contains_refresh_token_or_secret() {
        let r = rr(&idp(Some("SECRET-SAMPLE-1"), None), ClientAuth::Basic, "RT-SAMPLE-2");
        let r2 = rr(&idp(Some("SECRET-SAMPLE-1"), None), ClientAuth::Post, "RT-SAMPLE-2");
        let d = format!("{r:?} {r2:?}");
        assert!(!d.contains("SECRET-SAMPLE-1") && !d.contains("RT-SAMPLE-2"));
    }
}
