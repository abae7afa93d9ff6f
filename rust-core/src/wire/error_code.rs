//! The closed set of error codes of `docs/CONTRACT.md`, each with its fixed HTTP status and
//! our own description.

use serde::Serialize;

/// The closed set of error codes (Java adds `forbidden` and `native_unavailable` itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ReauthRequired,
    ConsentRequired,
    AdminActionRequired,
    RetryLater,
    IdpMisconfigured,
    UpstreamError,
    Forbidden,
    NativeUnavailable,
    InternalError,
    /// The stored token is encrypted and cannot be opened (no, unknown or wrong key), or the
    /// storage keys could not be loaded. Nothing is written.
    StorageKeyError,
    /// The stored token is encrypted for another row (realm, Keycloak user, IdP alias or
    /// user at the IdP) than the one it was read from: a database writer moved or copied it.
    /// It is not used; nothing is written.
    StorageBindingMismatch,
    /// Storage encryption is on and the row holds a plain value, which is refused unless the
    /// operator allows plain rows (`allow-plaintext`, a migration window). Nothing is written.
    StoragePlaintextRow,
}

impl ErrorCode {
    /// The HTTP status the app sees for this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ReauthRequired | ErrorCode::ConsentRequired => 400,
            ErrorCode::AdminActionRequired | ErrorCode::Forbidden => 403,
            ErrorCode::RetryLater | ErrorCode::NativeUnavailable => 503,
            ErrorCode::IdpMisconfigured | ErrorCode::UpstreamError => 502,
            ErrorCode::InternalError
            | ErrorCode::StorageKeyError
            | ErrorCode::StorageBindingMismatch
            | ErrorCode::StoragePlaintextRow => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ReauthRequired => "reauth_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::AdminActionRequired => "admin_action_required",
            ErrorCode::RetryLater => "retry_later",
            ErrorCode::IdpMisconfigured => "idp_misconfigured",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NativeUnavailable => "native_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::StorageKeyError => "storage_key_error",
            ErrorCode::StorageBindingMismatch => "storage_binding_mismatch",
            ErrorCode::StoragePlaintextRow => "storage_plaintext_row",
        }
    }

    /// Our own description for the app, for failures the IdP reported.
    pub fn upstream_description(self) -> &'static str {
        match self {
            ErrorCode::ReauthRequired => {
                "The refresh token was rejected by the identity provider; the user must sign in again."
            }
            ErrorCode::ConsentRequired => {
                "The identity provider requires the user's consent; the user must sign in again and consent."
            }
            ErrorCode::AdminActionRequired => {
                "The identity provider refused the token for a reason only an administrator can resolve (admin consent, Conditional Access, disabled account)."
            }
            ErrorCode::RetryLater => "The identity provider is unavailable at the moment; try again later.",
            ErrorCode::IdpMisconfigured => {
                "The identity provider cannot be used as configured (client credentials, scope, token URL or TLS); an administrator must fix the identity provider settings."
            }
            ErrorCode::UpstreamError => "The identity provider gave an answer that could not be used.",
            ErrorCode::Forbidden => "Not allowed.",
            ErrorCode::NativeUnavailable => "The native core is not available.",
            ErrorCode::InternalError => "Internal error in the fresh-token core.",
            ErrorCode::StorageKeyError => "The stored token cannot be decrypted with this node's storage keys.",
            ErrorCode::StorageBindingMismatch => "The stored token belongs to another row and is not used.",
            ErrorCode::StoragePlaintextRow => "The stored token is not encrypted while storage encryption is on.",
        }
    }
}
