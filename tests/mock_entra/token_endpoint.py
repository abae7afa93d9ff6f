#!/usr/bin/env python3
"""Mock Microsoft Entra ID (Azure AD v2.0 endpoints) for tests. Test infrastructure only:
it never ships.

Run:    python3 tests/mock_entra/server.py --port 8099 [--host 127.0.0.1] [--config clients.json]
Import: from mock_entra.server import start_server; s = start_server(port=0); s.base_url; s.stop()

Endpoints (base URL plays the authority host, like https://login.microsoftonline.com):
  GET  /{tenant}/v2.0/.well-known/openid-configuration
  GET  /{tenant}/discovery/v2.0/keys
  GET  /{tenant}/oauth2/v2.0/authorize         (signs the configured user in, no form)
  POST /{tenant}/oauth2/v2.0/token             (authorization_code, refresh_token,
                                                client_credentials, jwt-bearer OBO)
  GET  /{tenant}/oauth2/v2.0/logout
  GET  /oidc/userinfo                          (Graph's OIDC userinfo, bearer token)
  /_mock/...                                   control API for tests (see README.md)

Only the standard library plus `cryptography`.
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import json
import os
import re
import secrets
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

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


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


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


class OAuthError(Exception):
    """An Entra-shaped OAuth error answer."""

    def __init__(self, status: int, error: str, code: int, message: str, suberror: str | None = None,
                 claims: str | None = None, headers: dict | None = None):
        super().__init__(f"{error} AADSTS{code}")
        self.status, self.error, self.code, self.message = status, error, code, message
        self.suberror, self.claims, self.headers = suberror, claims, headers or {}


# ---------------------------------------------------------------------------------------------
# Signing key
# ---------------------------------------------------------------------------------------------

class SigningKey:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
                     .sign(self.key, hashes.SHA256()))
        der = self.cert.public_bytes(serialization.Encoding.DER)
        self.x5t = b64url(hashlib.sha1(der).digest())
        self.kid = self.x5t          # Entra's kid equals x5t for its signing keys
        self.x5c = base64.b64encode(der).decode("ascii")

    def jwk(self, issuer: str) -> dict:
        pub = self.key.public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.x5t, "n": b64url(n), "e": b64url(e),
                "x5c": [self.x5c], "issuer": issuer}

    def sign(self, claims: dict, extra_header: dict | None = None) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5t": self.x5t, "kid": self.kid}
        if extra_header:
            header.update(extra_header)
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def verify(self, jwt: str) -> dict | None:
        """Claims of a JWT this mock signed, or None."""
        try:
            h, p, s = jwt.split(".")
            header = json.loads(b64url_decode(h))
            if header.get("kid") != self.kid or header.get("alg") != "RS256":
                return None
            self.key.public_key().verify(b64url_decode(s), f"{h}.{p}".encode("ascii"), padding.PKCS1v15(),
                                         hashes.SHA256())
            return json.loads(b64url_decode(p))
        except (ValueError, InvalidSignature, json.JSONDecodeError):
            return None


class KeySet:
    """The tenant's signing keys: the first signs, all are published (rotation via /_mock/rotate_keys)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = [SigningKey()]

    def sign(self, claims: dict) -> str:
        with self.lock:
            current = self.keys[0]
        return current.sign(claims)

    def verify(self, jwt: str) -> dict | None:
        with self.lock:
            keys = list(self.keys)
        for k in keys:
            c = k.verify(jwt)
            if c is not None:
                return c
        return None

    def jwks(self, issuer: str) -> dict:
        with self.lock:
            return {"keys": [k.jwk(issuer) for k in self.keys]}

    def rotate(self, keep_old: bool = True) -> dict:
        new = SigningKey()
        with self.lock:
            self.keys = [new] + (self.keys[:1] if keep_old else [])
            return {"signing_kid": new.kid, "published_kids": [k.kid for k in self.keys]}


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------

class MockState:
    def __init__(self, clients: dict | None = None, users: dict | None = None, tenant_id: str = HOME_TENANT_ID,
                 domains: list | None = None):
        self.lock = threading.RLock()
        self.key = KeySet()
        self.home_tid = tenant_id
        self.domains = [d.lower() for d in (domains or HOME_TENANT_DOMAINS)]
        self.clients = copy.deepcopy(clients if clients is not None else DEFAULT_CLIENTS)
        self.users = {k.lower(): dict(v, upn=k) for k, v in copy.deepcopy(users or DEFAULT_USERS).items()}
        self.default_user = DEFAULT_USER if DEFAULT_USER in self.users else next(iter(self.users))
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.families: dict[str, dict] = {}
        self.revoked_before: dict[str, float] = {}      # user -> tokens issued before this are revoked
        self.issued = {"access_tokens": [], "id_tokens": [], "refresh_tokens": [], "authorization_codes": []}
        self.fault_remaining = 0
        self.hold_gate = threading.Event()
        self._reset_counters()

    def _reset_counters(self):
        self.stats = {
            "token_requests": 0,
            "by_grant": {},
            "by_outcome": {},
            "by_grant_outcome": {},
            "by_status": {},
            "authorize_requests": 0,
            "faults_served": 0,
            "families_revoked": 0,
            "reuse_detected": 0,
            "users_revoked": 0,
            "refresh_in_flight": 0,
            "max_concurrent_refreshes": 0,
            "held_now": 0,
            "held_total": 0,
        }
        self.recent_refreshes: list[dict] = []

    # -- config --------------------------------------------------------------------------------

    def set_config(self, settings: dict) -> dict:
        with self.lock:
            unknown = [k for k in settings if k not in DEFAULT_CONFIG and k != "clients" and k != "users"]
            if unknown:
                raise ValueError(f"unknown settings: {unknown}")
            eio = settings.get("expires_in_override")
            if "expires_in_override" in settings and not (eio is None or eio == "absent" or (
                    isinstance(eio, (int, float)) and not isinstance(eio, bool))):
                raise ValueError("expires_in_override must be null, \"absent\" or a number")
            if "refresh_mode" in settings and settings["refresh_mode"] not in ("entra", "strict"):
                raise ValueError("refresh_mode must be entra or strict")
            if "fault" in settings and settings["fault"] not in FAULTS:
                raise ValueError(f"unknown fault {settings['fault']!r}; known: {sorted(FAULTS)}")
            for k in ("access_token_lifetime_s", "id_token_lifetime_s", "refresh_token_lifetime_s", "code_lifetime_s",
                      "backdate_s", "ext_expires_extra_s", "fault_count", "retry_after_s", "refresh_delay_ms",
                      "recent_limit"):
                if k in settings and not isinstance(settings[k], int):
                    raise ValueError(f"{k} must be an integer")
            if "fault_grants" in settings and (not isinstance(settings["fault_grants"], list) or
                                               not all(isinstance(g, str) for g in settings["fault_grants"])):
                raise ValueError("fault_grants must be a list of grant type strings")
            for k in ("expires_in_as_string", "retry_after_on_503", "prompt_none_login_required", "issue_refresh_tokens"):
                if k in settings and not isinstance(settings[k], bool):
                    raise ValueError(f"{k} must be a boolean")
            if "fault" in settings and "fault_count" not in settings:
                settings = dict(settings, fault_count=-1)     # a fault without a count lasts until changed
            for k in ("slow_seconds", "hold_max_seconds"):
                if k in settings and not isinstance(settings[k], (int, float)):
                    raise ValueError(f"{k} must be a number")
            for k in ("clients", "users"):
                if k in settings:
                    getattr(self, "upsert_" + k)(settings[k])
            for k, v in settings.items():
                if k in DEFAULT_CONFIG:
                    self.config[k] = v
            if "fault" in settings or "fault_count" in settings:
                self.fault_remaining = self.config["fault_count"] if self.config["fault"] != "none" else 0
            return self.public_config()

    def upsert_clients(self, clients: dict):
        for cid, c in clients.items():
            base = copy.deepcopy(DEFAULT_CLIENTS[DEFAULT_CLIENT_ID])
            base.update({"name": cid, "secret": None})
            base.update(c)
            self.clients[cid] = base

    def upsert_users(self, users: dict):
        for upn, u in users.items():
            u = dict(u)
            u.setdefault("oid", str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + upn.lower())))
            u.setdefault("name", upn.split("@")[0].title())
            u.setdefault("email", upn)
            self.users[upn.lower()] = dict(u, upn=upn)

    def public_config(self) -> dict:
        with self.lock:
            cfg = dict(self.config)
            cfg["fault_remaining"] = self.fault_remaining
            cfg["tenant_id"] = self.home_tid
            cfg["tenant_domains"] = list(self.domains)
            cfg["clients"] = sorted(self.clients)
            cfg["users"] = sorted(u["upn"] for u in self.users.values())
            return cfg

    def take_fault(self, grant: str) -> str | None:
        with self.lock:
            fault = self.config["fault"]
            if fault == "none" or grant not in self.config["fault_grants"] or self.fault_remaining == 0:
                return None
            if self.fault_remaining > 0:
                self.fault_remaining -= 1
                if self.fault_remaining == 0:
                    self.config["fault"] = "none"
            self.stats["faults_served"] += 1
            return fault

    # -- stats ---------------------------------------------------------------------------------

    def count_request(self, grant: str):
        with self.lock:
            self.stats["token_requests"] += 1
            self.stats["by_grant"][grant] = self.stats["by_grant"].get(grant, 0) + 1

    def count_outcome(self, grant: str, outcome: str, status: int):
        with self.lock:
            self.stats["by_outcome"][outcome] = self.stats["by_outcome"].get(outcome, 0) + 1
            per = self.stats["by_grant_outcome"].setdefault(grant, {})
            per[outcome] = per.get(outcome, 0) + 1
            self.stats["by_status"][str(status)] = self.stats["by_status"].get(str(status), 0) + 1

    def record_refresh(self, entry: dict):
        with self.lock:
            self.recent_refreshes.append(entry)
            del self.recent_refreshes[:-max(1, self.config["recent_limit"])]

    def snapshot_stats(self) -> dict:
        with self.lock:
            out = copy.deepcopy(self.stats)
            out["recent_refreshes"] = copy.deepcopy(self.recent_refreshes)
            out["config"] = self.public_config()
            out["live_refresh_families"] = sum(1 for f in self.families.values() if not f["revoked"])
            return out

    def reset(self, opts: dict) -> dict:
        with self.lock:
            self._reset_counters()
            self.config["fault"] = "none"
            self.fault_remaining = 0
            if opts.get("config"):
                self.config = copy.deepcopy(DEFAULT_CONFIG)
            if opts.get("tokens"):
                self.codes.clear()
                self.refresh_tokens.clear()
                self.families.clear()
                self.revoked_before.clear()
                for v in self.issued.values():
                    v.clear()
            return {"reset": True, "config": bool(opts.get("config")), "tokens": bool(opts.get("tokens"))}

    def release_held(self) -> int:
        """Lets every request held by the `hold` fault continue; later holds wait for the next release."""
        with self.lock:
            gate, self.hold_gate = self.hold_gate, threading.Event()
            held = self.stats["held_now"]
        gate.set()
        return held

    def remember(self, kind: str, value: str):
        with self.lock:
            self.issued[kind].append(value)

    # -- tenants / users / clients -------------------------------------------------------------

    def resolve_tenant(self, segment: str) -> tuple[str | None, bool]:
        """(tid, multi_tenant_alias) for a tenant path segment; tid None when unknown."""
        s = segment.lower()
        if s in ("common", "organizations", "consumers"):
            return self.home_tid, True
        if s == self.home_tid or s in self.domains:
            return self.home_tid, False
        if GUID_RE.match(s):
            return s, False
        return None, False

    def user(self, login: str | None) -> dict | None:
        return self.users.get((login or self.default_user).lower())

    def user_by_oid(self, oid: str) -> dict | None:
        return next((u for u in self.users.values() if u["oid"] == oid), None)

    def user_revoked_since(self, upn: str, issued_at: float) -> bool:
        t = self.revoked_before.get(upn.lower())
        return t is not None and issued_at <= t

    def revoke_user(self, upn: str) -> int:
        with self.lock:
            self.revoked_before[upn.lower()] = time.time()
            self.stats["users_revoked"] += 1
            n = 0
            for fam in self.families.values():
                if fam["user"].lower() == upn.lower() and not fam["revoked"]:
                    fam["revoked"] = "user_revoked"
                    n += 1
            return n


def redirect_uri_allowed(client: dict, uri: str) -> bool:
    try:
        u = urllib.parse.urlsplit(uri)
        port = u.port
    except ValueError:
        return False
    if u.fragment:
        return False
    for pattern in client.get("redirect_uris", []):
        if pattern.endswith(":*"):
            p = urllib.parse.urlsplit(pattern[:-2])
            if u.scheme == p.scheme and u.hostname == p.hostname and not u.username and not u.password:
                return True
        elif pattern == uri:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Scopes and resources
# ---------------------------------------------------------------------------------------------

class ScopeRequest:
    """A parsed `scope` parameter: OIDC scopes plus the scopes of exactly one resource."""

    def __init__(self, oidc: list[str], resource: str | None, aud: str | None, names: list[str], qualified: bool,
                 prefix: str):
        self.oidc, self.resource, self.aud, self.names = oidc, resource, aud, names
        self.qualified, self.prefix = qualified, prefix

    @property
    def is_graph(self) -> bool:
        return self.resource in (None, "graph")

    @property
    def offline(self) -> bool:
        return "offline_access" in self.oidc

    @property
    def openid(self) -> bool:
        return "openid" in self.oidc


def parse_scope(state: MockState, scope: str, tenant_segment: str, require_resource_default: bool = False) -> ScopeRequest:
    items = scope.split()
    oidc, other = [], []
    for s in items:
        (oidc if s.lower() in OIDC_SCOPES else other).append(s.lower() if s.lower() in OIDC_SCOPES else s)
    resources: dict[str, tuple[str, str, bool, str]] = {}   # key -> (aud, resource-kind, qualified, prefix)
    names: dict[str, list[str]] = {}
    for s in other:
        if "/" in s:
            prefix, name = s.rsplit("/", 1)
            p = prefix.rstrip("/")
            pl = p.lower()
            if pl in (GRAPH_URI, "https://graph.microsoft.com/v1.0", GRAPH_APP_ID):
                key, aud, kind = "graph", (GRAPH_URI if pl.startswith("https://") else GRAPH_APP_ID), "graph"
            else:
                appid = pl[len("api://"):] if pl.startswith("api://") else pl
                cid = next((c for c in state.clients if c.lower() == appid or
                            pl in [x.lower() for x in state.clients[c].get("identifier_uris", [])]), None)
                if cid is None:
                    raise OAuthError(400, "invalid_resource", 500011,
                                     f"The resource principal named {p} was not found in the tenant named "
                                     f"{tenant_segment}. This can happen if the application has not been installed "
                                     f"by the administrator of the tenant or consented to by any user in the tenant. "
                                     f"You might have sent your authentication request to the wrong tenant.")
                key, aud, kind = "app:" + cid, cid, "app"
            resources.setdefault(key, (aud, kind, True, p))
            names.setdefault(key, []).append(name)
        else:
            resources.setdefault("graph", (GRAPH_APP_ID, "graph", False, GRAPH_URI))
            names.setdefault("graph", []).append(s)
    if len(resources) > 1:
        raise OAuthError(400, "invalid_scope", 28000,
                         f"Provided value for the input parameter scope is not valid because it contains more than "
                         f"one resource. Scope {scope} is not valid.")
    if not resources:
        if require_resource_default:
            raise OAuthError(400, "invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                             f"scope value with /.default suffixed to the resource identifier (application ID URI).")
        return ScopeRequest(oidc, None, GRAPH_APP_ID, [], False, GRAPH_URI)
    key = next(iter(resources))
    aud, kind, qualified, prefix = resources[key]
    ns = names[key]
    if ".default" in ns and len(ns) > 1:
        raise OAuthError(400, "invalid_scope", 70011,
                         f"The provided request must include a 'scope' input parameter. The provided value for the "
                         f"input parameter 'scope' is not valid. The scope {scope} is not valid. static scope limit "
                         f"exceeded.")
    if require_resource_default and ns != [".default"]:
        raise OAuthError(400, "invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                         f"scope value with /.default suffixed to the resource identifier (application ID URI).")
    if kind == "app":
        cid = key[len("app:"):]
        allowed = state.clients[cid].get("api_scopes", [])
        for n in ns:
            if n != ".default" and n not in allowed:
                raise OAuthError(400, "invalid_scope", 70011,
                                 f"The provided value for the input parameter 'scope' is not valid. The scope "
                                 f"{prefix}/{n} is not valid. The scope doesn't exist on the resource.")
    return ScopeRequest(oidc, kind, aud, ns, qualified, prefix)


# ---------------------------------------------------------------------------------------------
# Token minting
# ---------------------------------------------------------------------------------------------

class Minter:
    def __init__(self, state: MockState, base_url: str):
        self.state, self.base = state, base_url

    def issuer(self, tid: str) -> str:
        return f"{self.base}/{tid}/v2.0"

    def _times(self, lifetime: int) -> tuple[int, int, int]:
        now = int(time.time())
        back = self.state.config["backdate_s"]
        return now - back, now - back, now + lifetime

    def access_token(self, *, tid: str, client_id: str, user: dict | None, sr: ScopeRequest,
                     client_cfg: dict, auth_method: str, consented_oidc: list[str]) -> tuple[str, str, int]:
        """(jwt, response scope string, lifetime)"""
        lifetime = int(self.state.config["access_token_lifetime_s"])
        iat, nbf, exp = self._times(lifetime)
        claims = {"aud": sr.aud, "iss": self.issuer(tid), "iat": iat, "nbf": nbf, "exp": exp}
        if user is None:
            roles = (client_cfg.get("graph_app_roles", []) if sr.is_graph else
                     self.state.clients.get(sr.aud, {}).get("app_roles", []))
            claims.update({"aio": b64url(secrets.token_bytes(24)), "azp": client_id,
                           "azpacr": "2" if auth_method == "certificate" else "1", "idtyp": "app",
                           "oid": sp_oid(client_id), "rh": "0.A" + b64url(secrets.token_bytes(24)) + ".",
                           "sub": sp_oid(client_id), "tid": tid, "uti": b64url(secrets.token_bytes(16)), "ver": "2.0"})
            if roles:
                claims["roles"] = list(roles)
            scope_str = f"{sr.prefix}/.default"
        else:
            if sr.is_graph:
                named = sr.names
                if named == [".default"] or not named:
                    named = [] if not named else list(client_cfg.get("graph_consented_scopes", []))
                scp_oidc = [s for s in ("openid", "profile", "email") if s in consented_oidc or s in sr.oidc]
                scp = scp_oidc + named
                shown = [s for s in ("openid", "profile", "email") if s in sr.oidc] + \
                        [f"{GRAPH_URI}/{n}" if sr.qualified else n for n in named]
            else:
                named = sr.names
                if named == [".default"]:
                    named = list(self.state.clients[sr.aud].get("api_scopes", []))
                scp = named
                shown = [f"{sr.prefix}/{n}" for n in named]
            claims.update({
                "aio": b64url(secrets.token_bytes(24)), "azp": client_id,
                "azpacr": "2" if auth_method == "certificate" else "1",
                "name": user["name"], "oid": user["oid"], "preferred_username": user["upn"],
                "rh": "0.A" + b64url(secrets.token_bytes(24)) + ".", "scp": " ".join(scp),
                "sub": pairwise_sub(user["oid"], client_id), "tid": tid,
                "uti": b64url(secrets.token_bytes(16)), "ver": "2.0",
            })
            scope_str = " ".join(shown)
        token = self.state.key.sign(claims)
        self.state.remember("access_tokens", token)
        return token, scope_str, lifetime

    def id_token(self, *, tid: str, client_id: str, user: dict, oidc: list[str], nonce: str | None) -> str:
        iat, nbf, exp = self._times(int(self.state.config["id_token_lifetime_s"]))
        claims = {"aud": client_id, "iss": self.issuer(tid), "iat": iat, "nbf": nbf, "exp": exp,
                  "aio": b64url(secrets.token_bytes(24))}
        if "email" in oidc:
            claims["email"] = user.get("email", user["upn"])
        if "profile" in oidc:
            claims["name"] = user["name"]
        if nonce:
            claims["nonce"] = nonce
        claims["oid"] = user["oid"]
        if "profile" in oidc:
            claims["preferred_username"] = user["upn"]
        claims.update({"rh": "0.A" + b64url(secrets.token_bytes(24)) + ".", "sid": user.get("sid_hint") or
                       str(uuid.uuid5(uuid.NAMESPACE_URL, "sid:" + user["oid"])),
                       "sub": pairwise_sub(user["oid"], client_id), "tid": tid,
                       "uti": b64url(secrets.token_bytes(16)), "ver": "2.0"})
        token = self.state.key.sign(claims)
        self.state.remember("id_tokens", token)
        return token

    def refresh_token(self, *, family: str, client_id: str, user: dict, tid: str, oidc: list[str],
                      generation: int, scope: str) -> str:
        value = "1.AR" + b64url(secrets.token_bytes(384))
        with self.state.lock:
            self.state.refresh_tokens[value] = {
                "family": family, "client_id": client_id, "user": user["upn"], "tid": tid, "oidc": list(oidc),
                "issued_at": time.time(), "last_used": time.time(), "spent": False, "generation": generation,
            }
            fam = self.state.families.setdefault(family, {"user": user["upn"], "client_id": client_id,
                                                          "revoked": False, "created": time.time(), "scope": scope,
                                                          "generations": 0})
            fam["generations"] = max(fam["generations"], generation)
        self.state.remember("refresh_tokens", value)
        return value


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class Reply:
    def __init__(self, status: int, body: bytes = b"", content_type: str | None = "application/json; charset=utf-8",
                 headers: dict | None = None, close: bool = False, declared_length: int | None = None,
                 reset: bool = False):
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}
        self.close, self.declared_length, self.reset = close, declared_length, reset


def json_reply(status: int, obj, headers: dict | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers=headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MockEntra/1.0"
    sys_version = ""

    # Set by start_server on the server object.
    @property
    def st(self) -> MockState:
        return self.server.mock_state  # type: ignore[attr-defined]

    @property
    def base(self) -> str:
        return self.server.base_url  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):   # default access log would include query strings: keep quiet
        pass

    def log_line(self, text: str):
        sys.stderr.write(f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z mock-entra {text}\n")
        sys.stderr.flush()

    # -- plumbing ------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, r: Reply):
        if r.reset:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            self.close_connection = True
            return
        self.send_response(r.status)
        if r.content_type:
            self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(r.declared_length if r.declared_length is not None else len(r.body)))
        for k, v in r.headers.items():
            self.send_header(k, v)
        if r.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(r.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _route(self, method: str):
        body = self._read_body() if method == "POST" else b""
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        try:
            reply = self._dispatch(method, path, query, body)
        except OAuthError as e:
            reply = self._error_reply(e)
        except Exception as e:  # noqa: BLE001 - a mock must answer, and say what broke
            self.log_line(f"internal error on {method} {path}: {type(e).__name__}: {e}")
            reply = json_reply(500, {"error": "server_error", "error_description": f"mock internal error: {e}"})
        if reply is not None:
            self._send(reply)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_HEAD(self):
        self._route("GET")

    # -- errors --------------------------------------------------------------------------------

    def _error_body(self, e: OAuthError) -> dict:
        trace, corr = str(uuid.uuid4()), self.headers.get("client-request-id") or str(uuid.uuid4())
        ts = entra_timestamp()
        body = {"error": e.error,
                "error_description": f"AADSTS{e.code}: {e.message}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
                                     f"\r\nTimestamp: {ts}",
                "error_codes": [e.code], "timestamp": ts, "trace_id": trace, "correlation_id": corr,
                "error_uri": f"{self.base}/error?code={e.code}"}
        if e.suberror:
            body["suberror"] = e.suberror
        if e.claims:
            body["claims"] = e.claims
        return body

    def _error_reply(self, e: OAuthError) -> Reply:
        body = self._error_body(e)
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": body["trace_id"],
                   "client-request-id": body["correlation_id"]}
        headers.update(e.headers)
        return json_reply(e.status, body, headers)

    def _html_error(self, status: int, code: int, message: str) -> Reply:
        page = (f"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
                f"<h1>Sorry, but we're having trouble signing you in.</h1>"
                f"<p>AADSTS{code}: {html.escape(message)}</p></body></html>")
        return Reply(status, page.encode(), "text/html; charset=utf-8")

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, method, path, query, body) -> Reply | None:
        if path.startswith("/_mock/"):
            return self._control(method, path, query, body)
        if path == "/oidc/userinfo":
            return self._userinfo()
        if path == "/error":
            code = (query.get("code") or [""])[0]
            return Reply(200, f"<html><body>AADSTS{html.escape(code)}</body></html>".encode(), "text/html")
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2:
            return json_reply(404, {"error": "not_found"})
        tenant, rest = parts[0], "/".join(parts[1:])
        tid, multi = self.st.resolve_tenant(tenant)
        if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
            if tid is None:
                return self._error_reply(self._tenant_not_found(tenant))
            return json_reply(200, self._discovery(tenant, tid, multi, v2=rest.startswith("v2.0")))
        if rest in ("discovery/v2.0/keys", "discovery/keys"):
            if tid is None:
                return self._error_reply(self._tenant_not_found(tenant))
            issuer = f"{self.base}/{'{tenantid}' if multi else tid}/v2.0"
            return json_reply(200, self.st.key.jwks(issuer))
        if rest == "oauth2/v2.0/authorize":
            return self._authorize(tenant, tid, query)
        if rest == "oauth2/v2.0/token":
            if method != "POST":
                raise OAuthError(400, "invalid_request", 900561,
                                 f"The endpoint only accepts POST requests. Received a {method} request.")
            if tid is None:
                raise self._tenant_not_found(tenant)
            self._token(tenant, tid, body)   # sends its own answer (after counting it)
            return None
        if rest == "oauth2/v2.0/logout":
            target = (query.get("post_logout_redirect_uri") or [""])[0]
            if target:
                return Reply(302, b"", None, {"Location": target})
            return Reply(200, b"<html><body>You signed out of your account.</body></html>", "text/html")
        return json_reply(404, {"error": "not_found", "path": path})

    def _tenant_not_found(self, tenant: str) -> OAuthError:
        return OAuthError(400, "invalid_tenant", 90002,
                          f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                          f"signing into the correct cloud. Check with your subscription administrator, this may "
                          f"happen if there are no active subscriptions for the tenant.")

    def _discovery(self, tenant: str, tid: str, multi: bool, v2: bool) -> dict:
        b, t = self.base, tenant
        issuer_tid = "{tenantid}" if multi else tid
        return {
            "token_endpoint": f"{b}/{t}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{b}/{t}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{b}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{b}/oidc/userinfo",
            "authorization_endpoint": f"{b}/{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{b}/{t}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{b}/{t}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                                 "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{b}/{t}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    # -- authorize -----------------------------------------------------------------------------

    def _authorize(self, tenant: str, tid: str | None, query: dict) -> Reply:
        q = {k: v[0] for k, v in query.items()}
        with self.st.lock:
            self.st.stats["authorize_requests"] += 1
        if tid is None:
            return self._html_error(400, 90002, self._tenant_not_found(tenant).message)
        client_id = q.get("client_id", "")
        if not client_id:
            return self._html_error(400, 900144, "The request body must contain the following parameter: 'client_id'.")
        client = self.st.clients.get(client_id)
        if client is None:
            return self._html_error(400, 700016,
                                    f"Application with identifier '{client_id}' was not found in the directory "
                                    f"'{tenant}'. This can happen if the application has not been installed by the "
                                    f"administrator of the tenant or consented to by any user in the tenant. You may "
                                    f"have sent your authentication request to the wrong tenant.")
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return self._html_error(400, 500113, "No reply address is registered for the application.")
        if not redirect_uri_allowed(client, redirect_uri):
            return self._html_error(400, 50011,
                                    f"The redirect URI '{redirect_uri}' specified in the request does not match the "
                                    f"redirect URIs configured for the application '{client_id}'. Make sure the "
                                    f"redirect URI sent in the request matches one added to your application in the "
                                    f"Azure portal.")
        state = q.get("state")
        mode = q.get("response_mode", "query")

        def back(params: dict) -> Reply:
            if state is not None:
                params["state"] = state
            if mode == "form_post":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                                 for k, v in params.items())
                page = (f'<html><head><title>Working...</title></head><body onload="document.forms[0].submit()">'
                        f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{inputs}'
                        f'<noscript><input type="submit" value="Continue"/></noscript></form></body></html>')
                return Reply(200, page.encode(), "text/html; charset=utf-8")
            sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
            return Reply(302, b"", None, {"Location": redirect_uri + sep + urllib.parse.urlencode(params),
                                          "Cache-Control": "no-store, no-cache"})

        def err(error: str, code: int, msg: str) -> Reply:
            trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
            return back({"error": error, "error_description":
                         f"AADSTS{code}: {msg}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: "
                         f"{entra_timestamp()}", "error_uri": f"{self.base}/error?code={code}"})

        if mode not in ("query", "fragment", "form_post"):
            return err("invalid_request", 900352, f"The provided value '{mode}' for 'response_mode' is not valid.")
        response_type = q.get("response_type", "")
        if not response_type:
            return err("invalid_request", 900144, "The request body must contain the following parameter: "
                                                  "'response_type'.")
        if response_type != "code":
            return err("unsupported_response_type", 700054,
                       f"response_type '{response_type}' is not enabled for the application.")
        scope = q.get("scope", "")
        if not scope.strip():
            return err("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        try:
            sr = parse_scope(self.st, scope, tenant)
        except OAuthError as e:
            return err(e.error, e.code, e.message)
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method") or ("plain" if challenge else None)
        if challenge is not None:
            if method not in ("plain", "S256"):
                return err("invalid_request", 50149, "Invalid Code_Challenge_method parameter.")
            if not 43 <= len(challenge) <= 128:
                return err("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        user = self.st.user(q.get("login_hint"))
        if user is None:
            return err("invalid_request", 50034,
                       f"The user account {q.get('login_hint')} does not exist in the {tenant} directory. To sign "
                       f"into this application, the account must be added to the directory.")
        if q.get("prompt") == "none" and self.st.config.get("prompt_none_login_required"):
            return err("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
        if tenant.lower() in ("common", "organizations") and user.get("tid"):
            tid = user["tid"]  # multi-tenant sign-in: the user's home tenant issues the tokens
        elif user.get("tid") and user["tid"] != tid:
            return err("invalid_request", 50020, f"User account '{user['upn']}' from identity provider "
                       f"'https://sts.windows.net/{user['tid']}/' does not exist in tenant '{tenant}'.")
        code = "1.AQ" + b64url(secrets.token_bytes(300))
        session_state = str(uuid.uuid5(uuid.NAMESPACE_URL, "session:" + user["oid"]))
        with self.st.lock:
            self.st.codes[code] = {
                "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope, "nonce": q.get("nonce"),
                "code_challenge": challenge, "code_challenge_method": method, "user": user["upn"], "tid": tid,
                "created": time.time(), "redeemed": False,
            }
        self.st.remember("authorization_codes", code)
        self.log_line(f"authorize client={client_id} user={user['upn']} scope={scope!r} pkce={method or 'none'} "
                      f"-> 302 code")
        return back({"code": code, "session_state": session_state})

    # -- token ---------------------------------------------------------------------------------

    def _token(self, tenant: str, tid: str, body: bytes) -> Reply | None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'grant_type'.")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        st = self.st
        st.count_request(grant or "(none)")
        started = time.time()
        client_id = form.get("client_id", "")
        outcome, status, extra = "internal_error", 500, ""
        family = None
        is_refresh = grant == GRANT_REFRESH
        if is_refresh:
            with st.lock:
                st.stats["refresh_in_flight"] += 1
                st.stats["max_concurrent_refreshes"] = max(st.stats["max_concurrent_refreshes"],
                                                          st.stats["refresh_in_flight"])
        reply: Reply | None = None
        try:
            try:
                if is_refresh and st.config["refresh_delay_ms"] > 0:
                    time.sleep(st.config["refresh_delay_ms"] / 1000.0)
                fault = st.take_fault(grant)
                if fault == "slow":
                    time.sleep(float(st.config["slow_seconds"]))
                    if self._client_gone():
                        outcome, status = "fault:slow:client_gone", 0
                        self.close_connection = True
                        return None
                    fault = None
                    extra = " fault=slow"
                elif fault == "hold":
                    # Accepted but not processed until released: a deterministic "request in
                    # flight" for crash tests. A client that hung up meanwhile gets nothing
                    # processed (its refresh token is not spent).
                    self._hold_until_released()
                    if self._client_gone():
                        outcome, status = "fault:hold:client_gone", 0
                        self.close_connection = True
                        return None
                    fault = None
                    extra = " fault=hold"
                hold_answer = fault == "hold_answer"
                if hold_answer:
                    fault = None
                if fault:
                    outcome = "fault:" + fault
                    reply = self._fault_reply(fault, client_id, tenant)
                    status = reply.status
                    if is_refresh:
                        family = self._family_of(form.get("refresh_token", ""))
                    return reply
                if is_refresh:
                    family = self._family_of(form.get("refresh_token", ""))
                client_id, auth_method, client_cfg = self._authenticate_client(tenant, form)
                if grant == GRANT_CODE:
                    reply = self._grant_code(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_REFRESH:
                    reply = self._grant_refresh(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_CLIENT_CREDENTIALS:
                    reply = self._grant_client_credentials(tenant, tid, form, client_id, client_cfg, auth_method)
                elif grant == GRANT_JWT_BEARER:
                    reply = self._grant_obo(tenant, tid, form, client_id, client_cfg, auth_method)
                elif not grant:
                    raise OAuthError(400, "invalid_request", 900144,
                                     "The request body must contain the following parameter: 'grant_type'.")
                else:
                    raise OAuthError(400, "unsupported_grant_type", 70003,
                                     f"The app requested an unsupported grant type '{grant}'.")
                outcome, status = "ok", reply.status
                if hold_answer:
                    # Processed (a refresh token is spent or rotated) but the answer is held
                    # until released: "the IdP answered, the client never got to commit". A
                    # client that hung up meanwhile gets nothing; the outcome stays what it was.
                    self._hold_until_released()
                    extra = " fault=hold_answer"
                    if self._client_gone():
                        extra += ":client_gone"
                        self.close_connection = True
                        reply = None
                return reply
            except OAuthError as e:
                outcome, status = f"{e.error}:{e.code}", e.status
                reply = self._error_reply(e)
                return reply
        finally:
            if is_refresh:
                with st.lock:
                    st.stats["refresh_in_flight"] -= 1
                st.record_refresh({"at": iso(started), "client_id": client_id or None, "family": family,
                                   "scope": form.get("scope"), "outcome": outcome, "status": status,
                                   "duration_ms": int((time.time() - started) * 1000)})
            st.count_outcome(grant or "(none)", outcome, status)
            self.log_line(f"token grant={grant or '-'} client={client_id or '-'} outcome={outcome} status={status}"
                          f"{' family=' + family if family else ''}{extra} "
                          f"ms={int((time.time() - started) * 1000)}")
            if reply is not None:
                self._send(reply)

    def _hold_until_released(self) -> None:
        st = self.st
        with st.lock:
            gate = st.hold_gate
            st.stats["held_now"] += 1
            st.stats["held_total"] += 1
        try:
            gate.wait(float(st.config["hold_max_seconds"]))
        finally:
            with st.lock:
                st.stats["held_now"] -= 1

    def _client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                # A client waiting for its answer sends nothing; what is readable is EOF or a
                # close_notify alert. (SSLSocket.recv takes no MSG_PEEK.)
                return True
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _family_of(self, rt: str) -> str | None:
        rec = self.st.refresh_tokens.get(rt)
        return rec["family"] if rec else None

    def _authenticate_client(self, tenant: str, form: dict) -> tuple[str, str, dict]:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        basic_id = None
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode("utf-8")
                bid, _, bsecret = raw.partition(":")
                basic_id, bsecret = urllib.parse.unquote_plus(bid), urllib.parse.unquote_plus(bsecret)
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", 7000216,
                                 "'client_assertion', 'client_secret' or 'request' is required for the "
                                 "'client_credentials' grant type.")
            if client_id and basic_id != client_id:
                raise OAuthError(401, "invalid_client", 700025,
                                 "Client ID in the request body does not match the client ID in the Authorization "
                                 "header.")
            client_id = basic_id
            if secret is not None and secret != bsecret:
                raise OAuthError(401, "invalid_client", 7000215,
                                 f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                                 f"client secret value, not the client secret ID, for a secret added to app "
                                 f"'{client_id}'.")
            secret = bsecret
        if not client_id:
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'client_id'.")
        client = self.st.clients.get(client_id)
        if client is None:
            raise OAuthError(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
                             f"This can happen if the application has not been installed by the administrator of the "
                             f"tenant or consented to by any user in the tenant. You may have sent your "
                             f"authentication request to the wrong tenant.")
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise OAuthError(400, "invalid_request", 50027,
                                 "Invalid client_assertion_type; expected "
                                 "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.")
            if secret is not None:
                raise OAuthError(401, "invalid_client", 7000218,
                                 "Only one client credential may be presented: client_secret or client_assertion.")
            self._verify_client_assertion(tenant, client_id, client, assertion)
            return client_id, "certificate", client
        if secret is None:
            raise OAuthError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' or "
                             "'client_secret'.")
        if client.get("secret") is None or not secrets.compare_digest(str(client["secret"]), secret):
            raise OAuthError(401, "invalid_client", 7000215,
                             f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                             f"client secret value, not the client secret ID, for a secret added to app "
                             f"'{client_id}'.")
        return client_id, "secret", client

    def _verify_client_assertion(self, tenant: str, client_id: str, client: dict, assertion: str):
        def bad(code: int, msg: str, status: int = 401, error: str = "invalid_client"):
            return OAuthError(status, error, code, msg)
        try:
            h, p, s = assertion.split(".")
            header = json.loads(b64url_decode(h))
            claims = json.loads(b64url_decode(p))
            sig = b64url_decode(s)
        except (ValueError, json.JSONDecodeError):
            raise bad(50027, "JWT token is invalid or malformed.", 400, "invalid_request")
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise bad(5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm.")
        thumb_s256, thumb_s1 = header.get("x5t#S256"), header.get("x5t")
        match = None
        for pem in client.get("certificates", []):
            cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
            der = cert.public_bytes(serialization.Encoding.DER)
            if (thumb_s256 and thumb_s256 == b64url(hashlib.sha256(der).digest())) or \
                    (thumb_s1 and thumb_s1 == b64url(hashlib.sha1(der).digest())):
                match = cert
                break
        if match is None:
            raise bad(700027, f"The certificate with identifier used to sign the client assertion is not registered "
                              f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
                              f"'{thumb_s256 or thumb_s1}', Please visit the Azure Portal, Graph Explorer or "
                              f"directly use MS Graph to see configured keys for app Id '{client_id}'.]")
        pad = (padding.PKCS1v15() if alg == "RS256" else
               padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH))
        try:
            match.public_key().verify(sig, f"{h}.{p}".encode("ascii"), pad, hashes.SHA256())
        except InvalidSignature:
            raise bad(700027, "Client assertion failed signature validation.")
        now = time.time()
        token_endpoints = {f"{self.base}/{tenant}/oauth2/v2.0/token"}
        tid, _ = self.st.resolve_tenant(tenant)
        token_endpoints.add(f"{self.base}/{tid}/oauth2/v2.0/token")
        if claims.get("aud") not in token_endpoints:
            raise bad(700212, f"No matching federated identity record found for presented assertion audience "
                              f"'{claims.get('aud')}'.")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise bad(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, (int, float)) or exp < now - 300 or nbf > now + 300:
            raise bad(700024, f"Client assertion is not within its valid time range. Current time: "
                              f"{iso(now)}, assertion valid from {iso(nbf or 0)}, expiry time of assertion "
                              f"{iso(exp if isinstance(exp, (int, float)) else 0)}.")
        if exp - (nbf or claims.get("iat") or now) > 600 + 300:
            raise bad(700024, "Client assertion lifetime is too long (more than 10 minutes).")

    # -- grants --------------------------------------------------------------------------------

    def _token_response(self, access: str, scope: str, lifetime: int, id_token: str | None = None,
                        refresh: str | None = None, client_info: dict | None = None) -> Reply:
        as_str = self.st.config["expires_in_as_string"]
        ext = lifetime + int(self.st.config["ext_expires_extra_s"])
        body = {"token_type": "Bearer", "scope": scope,
                "expires_in": str(lifetime) if as_str else lifetime,
                "ext_expires_in": str(ext) if as_str else ext,
                "access_token": access}
        override = self.st.config.get("expires_in_override")
        if override == "absent":
            del body["expires_in"], body["ext_expires_in"]
        elif isinstance(override, (int, float)) and not isinstance(override, bool):
            body["expires_in"] = override
        if refresh:
            body["refresh_token"] = refresh
        if id_token:
            body["id_token"] = id_token
        if client_info:
            body["client_info"] = b64url(json.dumps(client_info).encode())
        return json_reply(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                                      "x-ms-request-id": str(uuid.uuid4())})

    def _require(self, form: dict, name: str) -> str:
        v = form.get(name)
        if not v:
            raise OAuthError(400, "invalid_request", 900144,
                             f"The request body must contain the following parameter: '{name}'.")
        return v

    def _grant_code(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        code = self._require(form, "code")
        st = self.st
        with st.lock:
            rec = st.codes.get(code)
            if rec is None:
                raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            if rec["redeemed"]:
                raise OAuthError(400, "invalid_grant", 54005,
                                 "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
                                 "or use an existing refresh token.")
            if rec["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant", 700005,
                                 "Provided Authorization Code is intended to use against other tenant or application, "
                                 "thus rejected.")
            if time.time() - rec["created"] > st.config["code_lifetime_s"]:
                raise OAuthError(400, "invalid_grant", 70008,
                                 "The provided authorization code or refresh token has expired due to inactivity. "
                                 "Send a new interactive authorization request for this user and resource.")
            redirect_uri = form.get("redirect_uri")
            if not redirect_uri:
                raise OAuthError(400, "invalid_request", 900144,
                                 "The request body must contain the following parameter: 'redirect_uri'.")
            if redirect_uri != rec["redirect_uri"]:
                raise OAuthError(400, "invalid_grant", 500112,
                                 f"The reply address '{redirect_uri}' does not match the reply address "
                                 f"'{rec['redirect_uri']}' provided when requesting Authorization code.")
            if rec["code_challenge"] is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    raise OAuthError(400, "invalid_grant", 50148,
                                     "The code_verifier does not match the code_challenge supplied in the "
                                     "authorization request for PKCE.")
                expect = (b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                          if rec["code_challenge_method"] == "S256" else verifier)
                if not secrets.compare_digest(expect, rec["code_challenge"]):
                    raise OAuthError(400, "invalid_grant", 501481,
                                     "The Code_Verifier does not match the code_challenge supplied in the "
                                     "authorization request.")
            rec["redeemed"] = True
        user = st.user(rec["user"])
        sr = parse_scope(st, rec["scope"], tenant)
        access, scope_str, lifetime = Minter(st, self.base).access_token(
            tid=rec["tid"], client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=sr.oidc)
        id_token = Minter(st, self.base).id_token(tid=rec["tid"], client_id=client_id, user=user, oidc=sr.oidc,
                                                 nonce=rec["nonce"]) if sr.openid else None
        refresh = None
        if sr.offline and st.config["issue_refresh_tokens"]:
            refresh = Minter(st, self.base).refresh_token(family=str(uuid.uuid4()), client_id=client_id, user=user,
                                                          tid=rec["tid"], oidc=sr.oidc, generation=1,
                                                          scope=rec["scope"])
        info = {"uid": user["oid"], "utid": rec["tid"]} if form.get("client_info") == "1" else None
        return self._token_response(access, scope_str, lifetime, id_token, refresh, info)

    def _grant_refresh(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        rt = self._require(form, "refresh_token")
        st = self.st
        now = time.time()
        with st.lock:
            rec = st.refresh_tokens.get(rt)
            if rec is None:
                raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            fam = st.families[rec["family"]]
            if rec["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant", 700007, "The grant was issued for a different client id.")
            if fam["revoked"] == "user_revoked" or st.user_revoked_since(rec["user"], rec["issued_at"]):
                raise OAuthError(400, "invalid_grant", 50173,
                                 f"The provided grant has expired due to it being revoked, a fresh auth token is "
                                 f"needed. The user might have changed or reset their password. The grant was issued "
                                 f"on '{iso(rec['issued_at'])}' and the TokensValidFrom date (before which tokens are "
                                 f"not valid) for this user is '{iso(st.revoked_before.get(rec['user'].lower(), now))}'.")
            if fam["revoked"]:
                raise OAuthError(400, "invalid_grant", 70000,
                                 "The provided value for the input parameter 'refresh_token' or 'assertion' is not "
                                 "valid. The refresh token's family was revoked after reuse of a redeemed one-time "
                                 "refresh token (mock strict mode).")
            if now - rec["last_used"] > st.config["refresh_token_lifetime_s"]:
                raise OAuthError(400, "invalid_grant", 700082,
                                 f"The refresh token has expired due to inactivity. The token was issued on "
                                 f"{iso(rec['issued_at'])} and was inactive for "
                                 f"{int(st.config['refresh_token_lifetime_s'])} seconds.")
            if st.config["refresh_mode"] == "strict" and rec["spent"]:
                fam["revoked"] = "reuse_detected"
                st.stats["families_revoked"] += 1
                st.stats["reuse_detected"] += 1
                raise OAuthError(400, "invalid_grant", 70000,
                                 "The provided value for the input parameter 'refresh_token' or 'assertion' is not "
                                 "valid. The refresh token was already redeemed; it is one-time in this mode (mock "
                                 "strict mode) and its whole token family is now revoked.")
            scope = form.get("scope")
            has_scope = bool(scope and scope.strip())
            # Without `scope`, the scopes of the family's original request apply.
            sr = parse_scope(st, scope if has_scope else fam["scope"], tenant)
            user = st.user(rec["user"])
            rec["last_used"] = now
            if st.config["refresh_mode"] == "strict":
                rec["spent"] = True
        minter = Minter(st, self.base)
        access, scope_str, lifetime = minter.access_token(
            tid=rec["tid"], client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=rec["oidc"])
        oidc_now = [s for s in rec["oidc"] if s in sr.oidc] if has_scope else rec["oidc"]
        id_token = minter.id_token(tid=rec["tid"], client_id=client_id, user=user, oidc=oidc_now, nonce=None) \
            if "openid" in oidc_now else None
        new_rt = minter.refresh_token(family=rec["family"], client_id=client_id, user=user, tid=rec["tid"],
                                      oidc=rec["oidc"], generation=rec["generation"] + 1, scope=fam["scope"])
        info = {"uid": user["oid"], "utid": rec["tid"]} if form.get("client_info") == "1" else None
        return self._token_response(access, scope_str, lifetime, id_token, new_rt, info)

    def _grant_client_credentials(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        scope = self._require(form, "scope")
        sr = parse_scope(self.st, scope, tenant, require_resource_default=True)
        access, scope_str, lifetime = Minter(self.st, self.base).access_token(
            tid=tid, client_id=client_id, user=None, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=[])
        as_str = self.st.config["expires_in_as_string"]
        ext = lifetime + int(self.st.config["ext_expires_extra_s"])
        return json_reply(200, {"token_type": "Bearer", "expires_in": str(lifetime) if as_str else lifetime,
                                "ext_expires_in": str(ext) if as_str else ext, "access_token": access},
                          {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _grant_obo(self, tenant, tid, form, client_id, client_cfg, auth_method) -> Reply:
        if form.get("requested_token_use") != "on_behalf_of":
            raise OAuthError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'requested_token_use'.")
        assertion = self._require(form, "assertion")
        scope = self._require(form, "scope")
        claims = self.st.key.verify(assertion)
        if claims is None:
            raise OAuthError(400, "invalid_grant", 50013,
                             "Assertion failed signature validation. [Reason - The key was not found., Thumbprint "
                             "of key used by client: 'unknown', Please visit the Azure Portal, Graph Explorer or "
                             "directly use MS Graph to see configured keys for app Id '00000000-0000-0000-0000-"
                             "000000000000'. Review the documentation at https://docs.microsoft.com/en-us/graph/"
                             "deployments to determine the corresponding service endpoint and https://docs."
                             "microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build "
                             "a query request URL, such as 'https://graph.microsoft.com/beta/applications/"
                             "00000000-0000-0000-0000-000000000000'].")
        aud = claims.get("aud")
        if aud in (GRAPH_APP_ID, GRAPH_URI):
            # Real Graph tokens carry a `nonce` header, so Entra cannot verify them as an assertion:
            # it answers AADSTS50013 signature validation, never the audience error.
            header = json.loads(b64url_decode(assertion.split(".")[0]))
            thumb = b64url_decode(header.get("x5t", "")).hex().upper()
            raise OAuthError(400, "invalid_grant", 50013,
                             f"Assertion failed signature validation. [Reason - Key was found, but use of the key "
                             f"to verify the signature failed., Thumbprint of key used by client: '{thumb}', Found "
                             f"key 'Start={datetime.now(timezone.utc) - timedelta(days=1):%m/%d/%Y %H:%M:%S}, "
                             f"End={datetime.now(timezone.utc) + timedelta(days=365):%m/%d/%Y %H:%M:%S}'].")
        expected = {client_id, f"api://{client_id}"} | set(client_cfg.get("identifier_uris", []))
        if aud not in expected:
            raise OAuthError(400, "invalid_grant", 500131,
                             f"Assertion audience does not match the Client app presenting the assertion. The "
                             f"audience in the assertion was '{aud}' and the expected audience is '{client_id}' or "
                             f"one of the Application Uris of this application with App ID '{client_id}'"
                             f"({client_cfg.get('name', client_id)}). The downstream client must request a token "
                             f"for the expected audience (the application that made the OBO request) and this "
                             f"application should use that token as the assertion.")
        now = time.time()
        if claims.get("exp", 0) < now:
            raise OAuthError(400, "invalid_grant", 500133,
                             f"Assertion is not within its valid time range. Ensure that the access token is not "
                             f"expired before using it for user assertion, or request a new token. Current time: "
                             f"{iso(now)}, expiry time of assertion {iso(claims.get('exp', 0))}.")
        user = self.st.user_by_oid(claims.get("oid", ""))
        if user is None:
            raise OAuthError(400, "invalid_grant", 50034, "The user account does not exist in the directory.")
        if self.st.user_revoked_since(user["upn"], claims.get("iat", 0) + self.st.config["backdate_s"]):
            raise OAuthError(400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked, "
                                                          "a fresh auth token is needed.")
        sr = parse_scope(self.st, scope, tenant)
        minter = Minter(self.st, self.base)
        atid = claims.get("tid", tid)
        access, scope_str, lifetime = minter.access_token(
            tid=atid, client_id=client_id, user=user, sr=sr, client_cfg=client_cfg, auth_method=auth_method,
            consented_oidc=sr.oidc)
        refresh = None
        if sr.offline and self.st.config["issue_refresh_tokens"]:
            refresh = minter.refresh_token(family=str(uuid.uuid4()), client_id=client_id, user=user, tid=atid,
                                           oidc=sr.oidc, generation=1, scope=scope)
        id_token = minter.id_token(tid=atid, client_id=client_id, user=user, oidc=sr.oidc, nonce=None) \
            if sr.openid else None
        return self._token_response(access, scope_str, lifetime, id_token, refresh)

    # -- faults --------------------------------------------------------------------------------

    def _fault_reply(self, fault: str, client_id: str, tenant: str) -> Reply:
        cfg = self.st.config
        retry_after = str(int(cfg["retry_after_s"]))
        res = f"{GRAPH_APP_ID}"

        def oauth(status, error, code, msg, **kw) -> Reply:
            return self._error_reply(OAuthError(status, error, code, msg, **kw))

        if fault == "http500_html":
            page = (b"<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body>"
                    b"<h1>Server Error</h1><h2>500 - Internal server error.</h2><p>There is a problem with the "
                    b"resource you are looking for, and it cannot be displayed.</p></body></html>")
            return Reply(500, page, "text/html")
        if fault == "http503":
            headers = {"Retry-After": retry_after} if cfg["retry_after_on_503"] else {}
            return Reply(503, b"<html><body><h1>Service Unavailable</h1></body></html>", "text/html", headers)
        if fault == "http429":
            return oauth(429, "temporarily_unavailable", 90055,
                         "TenantThrottlingError - There are too many incoming requests. This exception is thrown for "
                         "blocked tenants.", headers={"Retry-After": retry_after})
        if fault == "temporarily_unavailable":
            e = OAuthError(503, "temporarily_unavailable", 90033,
                           "A transient error has occurred. Please try again.",
                           headers={"Retry-After": retry_after} if cfg["retry_after_on_503"] else {})
            return self._error_reply(e)
        if fault == "invalid_json_200":
            return Reply(200, b'{"token_type": "Bearer", "access_token": eyJ0eXAi, "expires_in": 3599,}')
        if fault == "truncated_json_200":
            return Reply(200, b'{"token_type":"Bearer","scope":"openid profile email User.Read","expires_in":3599,'
                              b'"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QiLCJub25jZSI6')
        if fault == "truncated_body_200":
            body = b'{"token_type":"Bearer","scope":"User.Read","expires_in":3599,"access_tok'
            return Reply(200, body, declared_length=len(body) + 2048, close=True)
        if fault == "huge_body_200":
            pad = "A" * (2 * 1024 * 1024 + 512 * 1024)
            body = json.dumps({"token_type": "Bearer", "scope": "User.Read", "expires_in": 3599,
                               "ext_expires_in": 3599, "access_token": "not-a-real-token." + pad}).encode()
            return Reply(200, body)
        if fault == "missing_access_token_200":
            return json_reply(200, {"token_type": "Bearer", "scope": "openid profile email User.Read",
                                    "expires_in": 3599, "ext_expires_in": 3599})
        if fault == "empty_200":
            return Reply(200, b"")
        if fault == "html_200":
            page = (b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
                    b"<form method=\"post\"><input type=\"email\" name=\"loginfmt\"/></form></body></html>")
            return Reply(200, page, "text/html; charset=utf-8")
        if fault == "redirect_302":
            return Reply(302, b"", None, {"Location": f"{self.base}/_mock/redirected"})
        if fault == "connection_reset":
            return Reply(0, reset=True)
        if fault == "invalid_grant":
            return oauth(400, "invalid_grant", 70008,
                         "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                         "interactive authorization request for this user and resource.")
        if fault == "user_revoked":
            return oauth(400, "invalid_grant", 50173,
                         "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
                         "user might have changed or reset their password.")
        if fault == "refresh_token_expired":
            return oauth(400, "invalid_grant", 700082,
                         "The refresh token has expired due to inactivity. The token was issued on "
                         "2025-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.")
        claims = json.dumps({"access_token": {"capolids": {"essential": True,
                                                            "values": [str(uuid.uuid5(uuid.NAMESPACE_URL, "ca"))]}}})
        if fault == "interaction_required":
            return oauth(400, "interaction_required", 50076,
                         f"Due to a configuration change made by your administrator, or because you moved to a new "
                         f"location, you must use multi-factor authentication to access '{res}'.",
                         suberror="basic_action", claims=claims)
        if fault == "mfa_required":
            return oauth(400, "invalid_grant", 50076,
                         f"Due to a configuration change made by your administrator, or because you moved to a new "
                         f"location, you must use multi-factor authentication to access '{res}'.",
                         suberror="basic_action", claims=claims)
        if fault == "consent_required":
            return oauth(400, "invalid_grant", 65001,
                         f"The user or administrator has not consented to use the application with ID '{client_id}' "
                         f"named '{self.st.clients.get(client_id, {}).get('name', client_id)}'. Send an interactive "
                         f"authorization request for this user and resource.", suberror="consent_required")
        if fault == "admin_consent_required":
            return oauth(400, "invalid_grant", 90094,
                         "The grant requires admin permission.", suberror="consent_required")
        if fault == "conditional_access_block":
            return oauth(400, "interaction_required", 53003,
                         "Access has been blocked by Conditional Access policies. The access policy does not allow "
                         "token issuance.", suberror="message_only")
        if fault == "invalid_client":
            return oauth(401, "invalid_client", 7000215,
                         f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                         f"secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        if fault == "unauthorized_client":
            return oauth(400, "unauthorized_client", 700016,
                         f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This "
                         f"can happen if the application has not been installed by the administrator of the tenant "
                         f"or consented to by any user in the tenant. You may have sent your authentication request "
                         f"to the wrong tenant.")
        if fault == "invalid_scope":
            return oauth(400, "invalid_scope", 70011,
                         "The provided value for the input parameter 'scope' is not valid. The scope "
                         "https://graph.microsoft.com/Nonexistent.Scope is not valid.")
        if fault == "tenant_not_found":
            return self._error_reply(self._tenant_not_found(tenant))
        raise AssertionError(f"fault {fault} not implemented")

    # -- userinfo ------------------------------------------------------------------------------

    def _userinfo(self) -> Reply:
        auth = self.headers.get("Authorization") or ""
        claims = self.st.key.verify(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if claims is None or claims.get("exp", 0) < time.time() or claims.get("aud") not in (GRAPH_APP_ID, GRAPH_URI):
            return Reply(401, json.dumps({"error": {"code": "InvalidAuthenticationToken",
                                                    "message": "Access token validation failure. Invalid audience."
                                                    if claims else "Access token is empty."}}).encode(),
                         headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        user = self.st.user_by_oid(claims.get("oid", ""))
        if user is None:
            return json_reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Unknown user."}})
        scp = claims.get("scp", "").split()
        out = {"sub": claims["sub"]}
        if "profile" in scp:
            out.update({"name": user["name"], "family_name": user.get("family_name", ""),
                        "given_name": user.get("given_name", ""),
                        "picture": "https://graph.microsoft.com/v1.0/me/photo/$value"})
        if "email" in scp:
            out["email"] = user.get("email", user["upn"])
        return json_reply(200, out)

    # -- control API ---------------------------------------------------------------------------

    def _control(self, method, path, query, body) -> Reply:
        st = self.st
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return json_reply(400, {"error": "body must be JSON"})
        if not isinstance(payload, dict):
            return json_reply(400, {"error": "body must be a JSON object"})
        if path == "/_mock/stats" and method == "GET":
            return json_reply(200, st.snapshot_stats())
        if path == "/_mock/reset" and method == "POST":
            return json_reply(200, st.reset(payload))
        if path == "/_mock/config":
            if method == "GET":
                return json_reply(200, st.public_config())
            try:
                return json_reply(200, st.set_config(payload))
            except ValueError as e:
                return json_reply(400, {"error": str(e)})
        if path == "/_mock/release" and method == "POST":
            n = st.release_held()
            self.log_line(f"control release held={n}")
            return json_reply(200, {"released": n})
        if path == "/_mock/revoke" and method == "POST":
            upn = payload.get("user")
            if not upn or st.user(upn) is None:
                return json_reply(400, {"error": f"unknown user {upn!r}"})
            n = st.revoke_user(upn)
            self.log_line(f"control revoke user={upn} families={n}")
            return json_reply(200, {"revoked_families": n, "user": upn})
        if path == "/_mock/users" and method == "GET":
            with st.lock:
                users = [{"upn": u["upn"], "oid": u["oid"], "name": u["name"], "given_name": u.get("given_name"),
                          "family_name": u.get("family_name"), "email": u.get("email", u["upn"])}
                         for u in st.users.values()]
            return json_reply(200, {"tenant_id": st.home_tid, "users": users})
        if path == "/_mock/issued" and method == "GET":
            with st.lock:
                return json_reply(200, copy.deepcopy(st.issued))
        if path == "/_mock/families" and method == "GET":
            with st.lock:
                fams = [{"family": fid, "user": f["user"], "client_id": f["client_id"], "revoked": f["revoked"],
                         "generations": f["generations"]} for fid, f in st.families.items()]
            return json_reply(200, {"families": fams})
        if path == "/_mock/rotate_keys" and method == "POST":
            out = st.key.rotate(keep_old=bool(payload.get("keep_old", True)))
            self.log_line(f"control rotate_keys signing_kid={out['signing_kid']} published={len(out['published_kids'])}")
            return json_reply(200, out)
        if path == "/_mock/redirected":
            return Reply(200, b"<html><body>redirected</body></html>", "text/html")
        if path == "/_mock/health":
            return json_reply(200, {"status": "UP"})
        return json_reply(404, {"error": "unknown control endpoint", "path": path})


# ---------------------------------------------------------------------------------------------
# Server lifecycle
# ---------------------------------------------------------------------------------------------

class MockHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256      # the default backlog of 5 drops connections under test storms
    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls_context is not None:
            # The TLS handshake happens lazily, on the handler thread's first read, so a slow or
            # rejecting client never blocks the accept loop.
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            return      # e.g. a client that does not trust the test CA aborts the handshake
        super().handle_error(request, client_address)


def tls_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


class MockEntraServer:
    """A running mock: .base_url, .state, .stop()."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread | None):
        self.httpd, self.thread = httpd, thread
        self.host, self.port = httpd.server_address[0], httpd.server_address[1]
        self.base_url = httpd.base_url  # type: ignore[attr-defined]
        self.state: MockState = httpd.mock_state  # type: ignore[attr-defined]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def load_config_file(path: str | None) -> dict:
    if not path:
        return {}
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _make_httpd(host: str, port: int, config: dict | None, tls_cert: str | None = None,
                tls_key: str | None = None) -> ThreadingHTTPServer:
    config = config or {}
    clients = copy.deepcopy(DEFAULT_CLIENTS)
    if "clients" in config:
        if config.get("replace_default_clients"):
            clients = {}
        for cid, c in config["clients"].items():
            base = copy.deepcopy(DEFAULT_CLIENTS[DEFAULT_CLIENT_ID])
            base.update({"name": cid, "secret": None})
            base.update(c)
            clients[cid] = base
    users = copy.deepcopy(DEFAULT_USERS)
    users.update(config.get("users", {}))
    state = MockState(clients=clients, users=users, tenant_id=config.get("tenant_id", HOME_TENANT_ID),
                      domains=config.get("tenant_domains"))
    if config.get("settings"):
        state.set_config(config["settings"])
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together")
    httpd = MockHTTPServer((host, port), Handler)
    if tls_cert:
        httpd.tls_context = tls_server_context(tls_cert, tls_key)
    h, p = httpd.server_address[0], httpd.server_address[1]
    shown = f"[{h}]" if ":" in h else h
    httpd.base_url = f"{'https' if tls_cert else 'http'}://{shown}:{p}"  # type: ignore[attr-defined]
    httpd.mock_state = state  # type: ignore[attr-defined]
    return httpd


def start_server(host: str = "127.0.0.1", port: int = 0, config: dict | None = None,
                 config_file: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> MockEntraServer:
    """Start the mock on a background thread (port 0 = a free port). With `tls_cert` + `tls_key`
    (PEM files, e.g. from mock_entra.pki.ensure_pki) it serves HTTPS and base_url is https://."""
    cfg = dict(load_config_file(config_file))
    cfg.update(config or {})
    httpd = _make_httpd(host, port, cfg, tls_cert, tls_key)
    t = threading.Thread(target=httpd.serve_forever, name="mock-entra", daemon=True)
    t.start()
    return MockEntraServer(httpd, t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Mock Microsoft Entra ID (v2.0 endpoints) for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--config", help="JSON file: clients, users, tenant_id, tenant_domains, settings")
    ap.add_argument("--tls-cert", help="PEM server certificate: serve HTTPS (with --tls-key)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("MOCK_ENTRA_ALLOW_NON_LOOPBACK"):
        print(f"refusing to bind {args.host}: loopback only (set MOCK_ENTRA_ALLOW_NON_LOOPBACK=1 to override)",
              file=sys.stderr)
        return 2
    httpd = _make_httpd(args.host, args.port, load_config_file(args.config), args.tls_cert, args.tls_key)
    print(f"mock-entra ready on {httpd.base_url} tenant={httpd.mock_state.home_tid} "  # type: ignore[attr-defined]
          f"client={DEFAULT_CLIENT_ID}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
