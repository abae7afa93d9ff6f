"""Mock Entra ID: the fixed identities (tenant, default clients and users), the default settings
and the list of injectable faults, small encoders, the OAuth error type and the HTTP reply type."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import datetime, timezone

from mock_common.jwts import b64url, b64url_decode  # noqa: F401 - used across the mock's modules


# ---------------------------------------------------------------------------------------------
# Fixed identities
# ---------------------------------------------------------------------------------------------

HOME_TENANT_ID = "11111111-1111-1111-1111-111111111111"
HOME_TENANT_DOMAINS = ["contoso.onmicrosoft.com", "contoso.com"]
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_URI = "https://graph.microsoft.com"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
DEFAULT_CLIENT_SECRET = "mock-secret-c1"
API_CLIENT_ID = "00000000-0000-0000-0000-0000000000a1"
API_CLIENT_SECRET = "mock-secret-a1"

OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GRANT_CODE = "authorization_code"
GRANT_REFRESH = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

DEFAULT_USERS = {
    "alice@contoso.onmicrosoft.com": {
        "oid": "0a11ce00-0000-4000-8000-00000000a11c",
        "name": "Alice Example", "given_name": "Alice", "family_name": "Example",
        "email": "alice@contoso.onmicrosoft.com",
    },
    "bob@contoso.onmicrosoft.com": {
        "oid": "0b0b0000-0000-4000-8000-000000000b0b",
        "name": "Bob Example", "given_name": "Bob", "family_name": "Example",
        "email": "bob@contoso.onmicrosoft.com",
    },
}
DEFAULT_USER = "alice@contoso.onmicrosoft.com"

DEFAULT_CLIENTS = {
    DEFAULT_CLIENT_ID: {
        "name": "Keycloak broker (mock)",
        "secret": DEFAULT_CLIENT_SECRET,
        "redirect_uris": ["http://127.0.0.1:*", "http://localhost:*"],
        "api_scopes": ["access_as_user"],
        "graph_consented_scopes": ["User.Read"],
        "graph_app_roles": ["User.Read.All"],
        "certificates": [],
    },
    API_CLIENT_ID: {
        "name": "Demo API (mock)",
        "secret": API_CLIENT_SECRET,
        "redirect_uris": ["http://127.0.0.1:*", "http://localhost:*"],
        "api_scopes": ["access_as_user"],
        "graph_consented_scopes": ["User.Read"],
        "graph_app_roles": ["User.Read.All"],
        "certificates": [],
    },
}

DEFAULT_CONFIG = {
    "access_token_lifetime_s": 3600,
    "id_token_lifetime_s": 3600,
    "refresh_token_lifetime_s": 90 * 24 * 3600,   # sliding inactivity window
    "code_lifetime_s": 600,
    "backdate_s": 300,              # Entra backdates iat/nbf by 5 minutes
    "ext_expires_extra_s": 0,       # ext_expires_in = expires_in + this
    "refresh_mode": "entra",        # entra | strict
    "expires_in_as_string": False,
    # Hostile-answer switch for token responses: None (normal), "absent", or a number sent as
    # expires_in whatever the token's real lifetime (0, negative, huge). The JWT's exp stays real.
    "expires_in_override": None,
    "fault": "none",
    "fault_count": -1,
    "fault_grants": [GRANT_REFRESH],
    "slow_seconds": 10,
    # The `hold` fault: the request waits (unprocessed) until POST /_mock/release or this many
    # seconds, then is answered normally unless the client hung up meanwhile.
    "hold_max_seconds": 120,
    "retry_after_s": 5,
    "retry_after_on_503": False,
    "refresh_delay_ms": 0,
    "recent_limit": 50,
    "prompt_none_login_required": False,   # prompt=none answers login_required (no SSO session)
    "issue_refresh_tokens": True,   # False: no refresh token even with offline_access (a user without one)
}

FAULTS = {
    "none", "http500_html", "http503", "http429", "invalid_json_200", "truncated_json_200",
    "truncated_body_200", "huge_body_200", "missing_access_token_200", "empty_200", "html_200", "slow", "hold", "hold_answer",
    "redirect_302", "connection_reset", "temporarily_unavailable", "invalid_grant",
    "interaction_required", "mfa_required", "consent_required", "admin_consent_required",
    "invalid_client", "unauthorized_client", "conditional_access_block", "user_revoked",
    "refresh_token_expired", "invalid_scope", "tenant_not_found",
}


def entra_timestamp(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pairwise_sub(oid: str, client_id: str) -> str:
    """Entra's v2 `sub` is pairwise per (user, app): an opaque 43-character string."""
    return b64url(hashlib.sha256(f"{oid}|{client_id}".encode()).digest())[:43]


def sp_oid(client_id: str) -> str:
    """Stable object id of an app's service principal in the tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sp:" + client_id))


def app_not_found(client_id: str, tenant: str) -> str:
    """AADSTS700016's message (authorize, token endpoint, the unauthorized_client fault)."""
    return (f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if "
            f"the application has not been installed by the administrator of the tenant or consented to by any user "
            f"in the tenant. You may have sent your authentication request to the wrong tenant.")


class OAuthError(Exception):
    """An Entra-shaped OAuth error answer."""

    def __init__(self, status: int, error: str, code: int, message: str, suberror: str | None = None,
                 claims: str | None = None, headers: dict | None = None):
        super().__init__(f"{error} AADSTS{code}")
        self.status, self.error, self.code, self.message = status, error, code, message
        self.suberror, self.claims, self.headers = suberror, claims, headers or {}



class Reply:
    def __init__(self, status: int, body: bytes = b"", content_type: str | None = "application/json; charset=utf-8",
                 headers: dict | None = None, close: bool = False, declared_length: int | None = None,
                 reset: bool = False):
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}
        self.close, self.declared_length, self.reset = close, declared_length, reset


def json_reply(status: int, obj, headers: dict | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers=headers)
