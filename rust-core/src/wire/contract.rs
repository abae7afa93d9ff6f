//! What crosses the Java <-> Rust boundary: request and answer types of
//! `docs/CONTRACT.md`, and the version string.
//!
//! Field names here are the contract; the Java side reads and writes exactly these.

use serde::Deserialize;

use super::secret::{SecretValue, TokenValue};

/// Version of the JSON contract; Java's `NativeCore.CONTRACT_VERSION` must match.
pub const CONTRACT_VERSION: u32 = 2;

/// The crate version, reported by `version()` and compared by Java with its own.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"version":"0.1.0","contract":2}`.
pub fn version_json() -> String {
    serde_json::json!({ "version": CORE_VERSION, "contract": CONTRACT_VERSION }).to_string()
}

/// One request from Java. Unknown fields are ignored (forward compatibility); a missing or
/// `null` `Option` field is `None` (serde's rule for `Option`).
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Contract version the caller speaks; must be [`CONTRACT_VERSION`].
    pub v: u32,
    pub op: Op,
    /// Keycloak's clock, epoch seconds.
    pub now: i64,
    /// `FEDERATED_IDENTITY.TOKEN` exactly as stored (absent for `app_token`: empty).
    #[serde(default)]
    pub stored: TokenValue,
    #[serde(default)]
    pub policy: Policy,
    /// Needed for `retrieve` when a refresh is due; may be omitted for `check`.
    pub idp: Option<IdpConfig>,
    /// A token for one resource, minted from the stored refresh token and kept under
    /// `fresh_token_resources` in the stored token (contract 1 addition).
    pub resource: Option<ResourceRequest>,
    /// On-behalf-of / token exchange for a downstream API (contract 1 addition).
    pub obo: Option<OboRequest>,
    /// `app_token` only: the scope of the app-only token (contract 1 addition).
    pub scope: Option<String>,
    /// The row `stored` belongs to (IdP alias, user id at the IdP): the associated data of
    /// encryption at rest (contract 1 addition, `pure/seal.rs`).
    pub binding: Option<Binding>,
    /// `keyring` op only: where the storage keys are (contract 1 addition).
    pub keyring: Option<KeyringRequest>,
    /// `seal` op only: the row's current value, whose refresh token a login answer without
    /// one keeps (contract 1 addition).
    pub previous: Option<TokenValue>,
    /// `trust` op only: the PEM bundle (Keycloak's truststore), handed over in memory
    /// (contract 1 addition).
    pub ca_pem: Option<String>,
}

/// `"resource": {"scope": …, "refresh_scope": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResourceRequest {
    /// The requested scope string; also the key of the cached entry.
    pub scope: String,
    /// Sent as `scope` on the refresh request; absent or empty: `scope`.
    pub refresh_scope: Option<String>,
}

/// `"obo": {…}`: the middle tier exchanging the user's token for a downstream one.
#[derive(Debug, Clone, Deserialize)]
pub struct OboRequest {
    /// The middle-tier client that performs the exchange.
    pub client_id: String,
    pub client_secret: Option<SecretValue>,
    pub client_auth: Option<String>,
    /// Key and certificate for `client_auth: private_key_jwt`.
    pub assertion: Option<AssertionConfig>,
    /// The user's token is requested for this scope first (its audience must be the
    /// middle tier), e.g. `api://<middle-tier>/.default`.
    pub assertion_scope: String,
    /// The downstream scope, e.g. `https://graph.microsoft.com/.default`.
    pub scope: String,
    /// `entra_obo` (default) or `token_exchange`.
    pub mode: Option<String>,
}

impl OboRequest {
    pub fn secret(&self) -> Option<&SecretValue> {
        self.client_secret.as_ref().filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Decide only; no network.
    Check,
    /// Decide, and refresh when needed.
    Retrieve,
    /// An app-only token (client_credentials), cached in process memory.
    #[serde(rename = "app_token")]
    AppToken,
    /// Status of the stored token for admins (`flows::inspect`); no network, no token values.
    Inspect,
    /// Loads the storage keys (encryption at rest), once at start-up.
    Keyring,
    /// The stored value in its storage form now (sealed while encrypting).
    Seal,
    /// The stored value plain (rollback).
    Unseal,
    /// Hands a PEM bundle of extra trusted roots (`ca_pem`) to the core, in memory.
    Trust,
}

/// What the app may see and when to refresh. Every field may be absent or null; the
/// accessors apply the documented defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Refresh when the access token has at most this many seconds left (default 60).
    pub min_validity_s: Option<i64>,
    /// Default false.
    pub include_refresh_token: Option<bool>,
    /// Default true.
    pub include_id_token: Option<bool>,
    /// Lifetime assumed when the IdP gives neither `expires_in` nor a JWT `exp` (default 300).
    pub default_lifetime_s: Option<i64>,
}

impl Policy {
    pub fn min_validity_s(&self) -> i64 {
        self.min_validity_s.unwrap_or(defaults::MIN_VALIDITY_S).max(0)
    }
    pub fn include_refresh_token(&self) -> bool {
        self.include_refresh_token.unwrap_or(false)
    }
    pub fn include_id_token(&self) -> bool {
        self.include_id_token.unwrap_or(true)
    }
    pub fn default_lifetime_s(&self) -> i64 {
        match self.default_lifetime_s {
            Some(s) if s > 0 => s,
            _ => defaults::DEFAULT_LIFETIME_S,
        }
    }
}

/// How to reach the IdP's token endpoint. Numbers may be absent, null or zero: the
/// accessors then apply the documented defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct IdpConfig {
    pub token_url: String,
    pub client_id: String,
    /// Empty or absent for public clients.
    pub client_secret: Option<SecretValue>,
    /// `client_secret_post` (default) or `client_secret_basic`; anything else is refused
    /// at refresh time as `idp_misconfigured`.
    pub client_auth: Option<String>,
    /// Sent as `scope` on the refresh request when non-empty.
    pub refresh_scope: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub max_attempts: Option<u32>,
    pub deadline_ms: Option<u64>,
    /// A PEM bundle of extra trusted root certificates (the text itself, handed over in
    /// memory: no file), added to the default roots (contract 1 addition; replaces the
    /// former `ca_file` path). Absent or `""`: default roots only.
    pub ca_pem: Option<String>,
    /// Or: the SHA-256 (hex) of a bundle handed over before with op `trust` (Java sends
    /// Keycloak's truststore once per process that way, not on every call).
    pub ca_sha256: Option<String>,
    /// Absent: proxy from the environment; `""`: no proxy; a URL: every request of this
    /// call through that proxy (contract 1 addition).
    pub proxy_url: Option<SecretValue>,
    /// Key and certificate for `client_auth: private_key_jwt` (contract 1 addition).
    pub assertion: Option<AssertionConfig>,
    /// Keycloak realm id of the IdP; part of the `app_token` cache key (contract 1 addition).
    pub realm_id: Option<String>,
    /// Keycloak internal id of the IdP; part of the `app_token` cache key (contract 1 addition).
    pub idp_id: Option<String>,
    /// What kind of IdP this is (contract 1 addition): `entra` (refresh tokens tolerate being
    /// sent again within their lifetime) or `oidc` (generic: strict one-time rotation
    /// assumed). Absent or anything else: `oidc`. Decides whether a refresh that may have
    /// been processed is retried with the same refresh token (CONTRACT.md, "Retries").
    pub kind: Option<String>,
}

impl IdpConfig {
    /// Whether the IdP accepts the same refresh token again after it may have redeemed it
    /// (Entra: yes, within its lifetime; generic OIDC: assumed strict one-time).
    pub fn tolerates_refresh_token_reuse(&self) -> bool {
        self.kind.as_deref() == Some("entra")
    }
}

fn positive<T: PartialOrd + Default + Copy>(v: Option<T>, default: T) -> T {
    match v {
        Some(x) if x > T::default() => x,
        _ => default,
    }
}

impl IdpConfig {
    pub fn connect_timeout_ms(&self) -> u64 {
        positive(self.connect_timeout_ms, defaults::CONNECT_TIMEOUT_MS)
    }
    pub fn timeout_ms(&self) -> u64 {
        positive(self.timeout_ms, defaults::TIMEOUT_MS)
    }
    pub fn max_body_bytes(&self) -> u64 {
        positive(self.max_body_bytes, defaults::MAX_BODY_BYTES)
    }
    pub fn max_attempts(&self) -> u32 {
        positive(self.max_attempts, defaults::MAX_ATTEMPTS)
    }
    pub fn deadline_ms(&self) -> u64 {
        positive(self.deadline_ms, defaults::DEADLINE_MS)
    }
    /// The client secret, when one is configured (empty counts as none).
    pub fn secret(&self) -> Option<&SecretValue> {
        self.client_secret.as_ref().filter(|s| !s.is_empty())
    }
    /// The refresh scope, when non-empty after trimming.
    pub fn scope(&self) -> Option<&str> {
        self.refresh_scope.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// The documented defaults.
pub mod defaults {
    pub const MIN_VALIDITY_S: i64 = 60;
    pub const DEFAULT_LIFETIME_S: i64 = 300;
    pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
    pub const TIMEOUT_MS: u64 = 10_000;
    pub const MAX_BODY_BYTES: u64 = 1_048_576;
    pub const MAX_ATTEMPTS: u32 = 3;
    pub const DEADLINE_MS: u64 = 20_000;
}

/// The row a value belongs to: the realm id, the Keycloak user id, the IdP alias and the
/// user's id at the IdP (contract 1: `realm` and `user` are additions; absent counts as "").
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Binding {
    pub alias: String,
    pub subject: String,
    #[serde(default)]
    pub realm: String,
    #[serde(default)]
    pub user: String,
}

/// `"keyring": {"key_file": "/path", "mode": "encrypt"}` of the `keyring` op.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyringRequest {
    pub key_file: Option<String>,
    pub mode: Option<String>,
    /// While encrypting, plain values found in rows are used (and sealed on their next write)
    /// instead of refused (`storage_plaintext_row`): a migration window. Default false.
    pub allow_plaintext: Option<bool>,
}

/// Default and maximum assertion lifetime in seconds.
pub const DEFAULT_LIFETIME_S: i64 = 300;
pub const MAX_LIFETIME_S: i64 = 600;

/// `"assertion": {"key_pem", "cert_pem", "alg", "lifetime_s"}` of the contract.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AssertionConfig {
    /// PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) RSA private key, PEM.
    pub key_pem: SecretValue,
    /// The X.509 certificate registered with the IdP, PEM (the first certificate counts).
    pub cert_pem: String,
    /// `PS256` (default) or `RS256`.
    pub alg: Option<String>,
    /// Default 300; absent, null or <= 0: default; above 600: 600.
    pub lifetime_s: Option<i64>,
}

impl AssertionConfig {
    pub fn lifetime_s(&self) -> i64 {
        match self.lifetime_s {
            Some(s) if s > 0 => s.min(MAX_LIFETIME_S),
            _ => DEFAULT_LIFETIME_S,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn version_json_names_crate_version_and_contract_1() {
        let v: Value = serde_json::from_str(&version_json()).unwrap();
        assert_eq!(v["version"], CORE_VERSION);
        assert_eq!(v["contract"], 2);
    }

    #[test]
    fn debug_of_request_never_contains_stored_token_or_client_secret() {
        let json = r#"{"v":2,"op":"retrieve","now":1764100000,
            "stored":"{\"access_token\":\"AT-SAMPLE-abc123\",\"refresh_token\":\"RT-SAMPLE-def456\"}",
            "idp":{"token_url":"https://idp.example/token","client_id":"app","client_secret":"SECRET-SAMPLE-789"}}"#;
        let req: Request = serde_json::from_str(json).unwrap();
        let dbg = format!("{req:?} {req:#?}");
        for sample in ["AT-SAMPLE-abc123", "RT-SAMPLE-def456", "SECRET-SAMPLE-789"] {
            assert!(!dbg.contains(sample), "{sample} leaked into Debug output");
        }
    }

    #[test]
    fn missing_policy_and_idp_take_documented_defaults() {
        let req: Request = serde_json::from_str(r#"{"v":2,"op":"check","now":1,"stored":"x"}"#).unwrap();
        assert_eq!(req.policy.min_validity_s(), 60);
        assert!(!req.policy.include_refresh_token());
        assert!(req.policy.include_id_token());
        assert_eq!(req.policy.default_lifetime_s(), 300);
        assert!(req.idp.is_none());
    }

    #[test]
    fn missing_or_null_optional_fields_are_none() {
        let req: Request = serde_json::from_str(
            r#"{"v":2,"op":"retrieve","now":1,"idp":null,"resource":null,"obo":null,"scope":null,
                "binding":null,"keyring":null,"previous":null,"ca_pem":null}"#,
        )
        .unwrap();
        assert!(req.idp.is_none() && req.resource.is_none() && req.obo.is_none() && req.scope.is_none());
        assert!(req.binding.is_none() && req.keyring.is_none() && req.previous.is_none() && req.ca_pem.is_none());
        assert!(req.stored.is_empty());
        let obo: OboRequest =
            serde_json::from_str(r#"{"client_id":"c","assertion_scope":"a","scope":"s","mode":null}"#).unwrap();
        assert!(obo.client_secret.is_none() && obo.client_auth.is_none() && obo.assertion.is_none());
        assert!(obo.mode.is_none());
        let idp: IdpConfig = serde_json::from_str(r#"{"token_url":"u","client_id":"c"}"#).unwrap();
        assert!(idp.kind.is_none() && idp.proxy_url.is_none() && idp.assertion.is_none() && idp.ca_pem.is_none());
        assert!(serde_json::from_str::<IdpConfig>(r#"{"client_id":"c"}"#).is_err(), "token_url stays required");
    }

    #[test]
    fn missing_null_or_zero_idp_settings_take_documented_defaults() {
        let idp: IdpConfig = serde_json::from_str(
            r#"{"token_url":"u","client_id":"c","timeout_ms":null,"max_attempts":0,"client_secret":""}"#,
        )
        .unwrap();
        assert_eq!(idp.connect_timeout_ms(), 5_000);
        assert_eq!(idp.timeout_ms(), 10_000);
        assert_eq!(idp.max_body_bytes(), 1_048_576);
        assert_eq!(idp.max_attempts(), 3);
        assert_eq!(idp.deadline_ms(), 20_000);
        assert!(idp.secret().is_none());
    }
}
