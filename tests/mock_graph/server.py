#!/usr/bin/env python3
"""Mock Microsoft Graph (a tiny slice of it) for tests. Test infrastructure only: it never ships.

Run:    python3 tests/mock_graph/server.py --port 8098 --entra http://127.0.0.1:8099 [--entra-ca ca.pem]
Import: from mock_graph.server import start_graph; g = start_graph("http://127.0.0.1:8099"); g.base_url; g.stop()

Endpoints (base URL plays https://graph.microsoft.com):
  GET  /v1.0/me          signed-in user (delegated token: scp User.Read or higher)
  GET  /v1.0/users       the directory's users (app-only: roles User.Read.All or higher;
                         delegated: scp User.ReadBasic.All or higher)
  GET  /_graph/stats     requests per path and outcome;  POST /_graph/reset;  GET /_graph/health
  GET|POST /_graph/config  {"clock_skew_s": 30}

Bearer tokens are validated like a resource server does: RS256 signature against the mock Entra
ID's JWKS ({entra}/{tid}/discovery/v2.0/keys, cached per tenant, refetched on an unknown kid),
lifetime (exp/nbf with clock_skew_s), audience (https://graph.microsoft.com or
00000003-0000-0000-c000-000000000000), issuer ({entra}/{tid}/v2.0). Users come from the mock
Entra ID's control API ({entra}/_mock/users). Only the standard library plus `cryptography`.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

if __package__ in (None, ""):  # run as a script (python3 tests/mock_graph/server.py): make mock_common importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mock_common.jwts import b64url_decode, rsa_public_key, verify_rs256  # noqa: E402
from mock_common.serving import (MockHandler, RunningServer, log_line, make_httpd,  # noqa: E402
                                 refuse_non_loopback, serve_until_interrupted)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_URI = "https://graph.microsoft.com"
GRAPH_AUDIENCES = (GRAPH_URI, GRAPH_APP_ID)
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Permissions as Microsoft documents them (Get user, List users; v1.0), least privileged first.
# /me needs a signed-in user: application permissions are not supported there.
ME_DELEGATED = ("User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All",
                "Directory.Read.All", "Directory.ReadWrite.All", "Directory.AccessAsUser.All")
USERS_DELEGATED = ("User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
                   "Directory.ReadWrite.All", "Directory.AccessAsUser.All")
USERS_APPLICATION = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")

# What Graph answers (messages as Graph sends them).
MSG_EMPTY = "Access token is empty."
MSG_NOT_JWT = ("IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE "
               "Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): "
               "'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext."
               "EncodedAuthenticationTag'.")
MSG_EXPIRED = "Access token has expired or is not yet valid."
MSG_AUDIENCE = "Access token validation failure. Invalid audience."
MSG_ISSUER = "Access token validation failure. Invalid issuer."
MSG_VALIDATION = "Access token validation failure."
MSG_FORBIDDEN = "Insufficient privileges to complete the operation."
MSG_ME_APP_ONLY = "/me request is only valid with delegated authentication flow."

DEFAULT_CLOCK_SKEW_S = 30


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, outcome: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.outcome = status, code, message, outcome


def _unauthorized(message: str, outcome: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message, outcome)


# ---------------------------------------------------------------------------------------------
# State: Entra connection, key cache, counters
# ---------------------------------------------------------------------------------------------

class GraphState:
    def __init__(self, entra_base_url: str, entra_ca: str | None = None, clock_skew_s: int = DEFAULT_CLOCK_SKEW_S):
        self.entra = entra_base_url.rstrip("/")
        self.ssl_context = ssl.create_default_context(cafile=entra_ca) if entra_ca else ssl.create_default_context()
        self.lock = threading.Lock()
        self.keys: dict[str, dict[str, rsa.RSAPublicKey]] = {}    # tid -> kid -> key
        self.config = {"clock_skew_s": int(clock_skew_s)}
        self._reset_counters()

    def _reset_counters(self):
        self.stats = {"requests": 0, "by_path": {}, "by_outcome": {}, "by_status": {}, "jwks_fetches": 0,
                      "jwks_fetch_errors": 0, "users_fetches": 0}

    def count(self, path: str, outcome: str, status: int):
        with self.lock:
            s = self.stats
            s["requests"] += 1
            per = s["by_path"].setdefault(path, {})
            per[outcome] = per.get(outcome, 0) + 1
            s["by_outcome"][outcome] = s["by_outcome"].get(outcome, 0) + 1
            s["by_status"][str(status)] = s["by_status"].get(str(status), 0) + 1

    def snapshot(self) -> dict:
        with self.lock:
            out = copy.deepcopy(self.stats)
            out["entra"] = self.entra
            out["config"] = dict(self.config)
            out["cached_kids"] = {tid: sorted(k) for tid, k in self.keys.items()}
            return out

    def reset(self, opts: dict) -> dict:
        with self.lock:
            self._reset_counters()
            if opts.get("jwks"):
                self.keys.clear()
            if opts.get("config"):
                self.config = {"clock_skew_s": DEFAULT_CLOCK_SKEW_S}
        return {"reset": True, "jwks": bool(opts.get("jwks")), "config": bool(opts.get("config"))}

    def set_config(self, settings: dict) -> dict:
        unknown = [k for k in settings if k not in self.config]
        if unknown:
            raise ValueError(f"unknown settings: {unknown}")
        if "clock_skew_s" in settings and (not isinstance(settings["clock_skew_s"], int) or
                                           isinstance(settings["clock_skew_s"], bool) or settings["clock_skew_s"] < 0):
            raise ValueError("clock_skew_s must be a non-negative integer")
        with self.lock:
            self.config.update(settings)
            return dict(self.config)

    # -- talking to the mock Entra ID ---------------------------------------------------------------

    def _get_json(self, url: str) -> dict:
        with urllib.request.urlopen(url, timeout=5, context=self.ssl_context) as r:   # noqa: S310 - test mock
            return json.loads(r.read().decode("utf-8"))

    def _fetch_jwks(self, tid: str) -> dict[str, rsa.RSAPublicKey]:
        url = f"{self.entra}/{tid}/discovery/v2.0/keys"
        with self.lock:
            self.stats["jwks_fetches"] += 1
        try:
            doc = self._get_json(url)
        except (OSError, ValueError) as e:
            with self.lock:
                self.stats["jwks_fetch_errors"] += 1
            log(f"jwks fetch failed url={url} error={type(e).__name__}: {e}")
            raise _unauthorized(MSG_VALIDATION, "jwks_unavailable") from e
        keys = {}
        for k in doc.get("keys", []):
            if k.get("kty") == "RSA" and k.get("kid") and k.get("use", "sig") == "sig":
                keys[k["kid"]] = rsa_public_key(k)
        return keys

    def signing_key(self, tid: str, kid: str) -> rsa.RSAPublicKey | None:
        with self.lock:
            key = self.keys.get(tid, {}).get(kid)
        if key is not None:
            return key
        keys = self._fetch_jwks(tid)          # first use of the tenant, or an unknown kid (rotation)
        with self.lock:
            self.keys[tid] = keys
        return keys.get(kid)

    def users(self) -> list[dict]:
        with self.lock:
            self.stats["users_fetches"] += 1
        try:
            return self._get_json(f"{self.entra}/_mock/users")["users"]
        except (OSError, ValueError, KeyError) as e:
            log(f"users fetch failed: {type(e).__name__}: {e}")
            raise GraphError(503, "serviceNotAvailable", "The service is temporarily unavailable.",
                             "directory_unavailable") from e

    # -- token validation ----------------------------------------------------------------------------

    def validate(self, authorization: str | None) -> dict:
        """Claims of a valid Graph access token, or a GraphError (401)."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            raise _unauthorized(MSG_EMPTY, "token_missing")
        token = authorization[7:].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise _unauthorized(MSG_NOT_JWT, "token_malformed")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise _unauthorized(MSG_VALIDATION, "token_malformed")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _unauthorized(MSG_VALIDATION, "token_malformed")
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise _unauthorized(MSG_VALIDATION, "bad_signature")
        tid = claims.get("tid")
        if not isinstance(tid, str) or not GUID_RE.match(tid):
            raise _unauthorized(MSG_VALIDATION, "invalid_tenant")
        key = self.signing_key(tid.lower(), header["kid"])
        if key is None:
            raise _unauthorized(MSG_VALIDATION, "unknown_kid")
        try:
            verify_rs256(key, signature, f"{parts[0]}.{parts[1]}")
        except (InvalidSignature, UnicodeEncodeError):
            raise _unauthorized(MSG_VALIDATION, "bad_signature")
        # The order of Microsoft.IdentityModel: signature, lifetime, audience, issuer.
        now, skew = time.time(), self.config["clock_skew_s"]
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)):
            raise _unauthorized(MSG_VALIDATION, "no_expiry")
        if now > exp + skew:
            raise _unauthorized(MSG_EXPIRED, "expired")
        if isinstance(nbf, (int, float)) and now + skew < nbf:
            raise _unauthorized(MSG_EXPIRED, "not_yet_valid")
        if claims.get("aud") not in GRAPH_AUDIENCES:
            raise _unauthorized(MSG_AUDIENCE, "invalid_audience")
        if claims.get("iss") != f"{self.entra}/{tid}/v2.0":
            raise _unauthorized(MSG_ISSUER, "invalid_issuer")
        return claims


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

def log(text: str):
    log_line("mock-graph", text)


ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


def graph_user(u: dict) -> dict:
    return {"businessPhones": [], "displayName": u.get("name"), "givenName": u.get("given_name"), "jobTitle": None,
            "mail": u.get("email") or u.get("upn"), "mobilePhone": None, "officeLocation": None,
            "preferredLanguage": None, "surname": u.get("family_name"), "userPrincipalName": u.get("upn"),
            "id": u.get("oid")}


class Handler(MockHandler):
    """self.st is the GraphState."""
    server_version = "MockGraph/1.0"

    def _send(self, status: int, body: dict, content_type: str = "application/json", headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _route(self, method: str):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_graph/"):
            return self._control(method, path, body)
        request_id = str(uuid.uuid4())
        client_request_id = self.headers.get("client-request-id") or request_id
        ids = {"request-id": request_id, "client-request-id": client_request_id}
        started = time.time()
        headers = dict(ids)
        content_type = "application/json"
        try:
            status, payload = self._graph(method, path)
            outcome, content_type = "ok", ODATA_JSON
        except GraphError as e:
            status, outcome = e.status, e.outcome
            if e.status == 401:
                headers["WWW-Authenticate"] = (f'Bearer realm="", authorization_uri="{self.st.entra}/common/oauth2/'
                                               f'authorize", client_id="{GRAPH_APP_ID}"')
            payload = {"error": {"code": e.code, "message": e.message, "innerError": {
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id,
                "client-request-id": client_request_id}}}
        except Exception as e:  # noqa: BLE001 - a mock must answer, and say what broke
            status, outcome = 500, "internal_error"
            log(f"internal error on {method} {path}: {type(e).__name__}: {e}")
            payload = {"error": {"code": "generalException", "message": f"mock internal error: {e}"}}
        # Counted and logged before answering, so a test reading the stats right after sees it.
        self.st.count(path, outcome, status)
        log(f"{method} {path} outcome={outcome} status={status} ms={int((time.time() - started) * 1000)}")
        self._send(status, payload, content_type, headers)

    def do_PATCH(self):
        self._route("PATCH")

    def do_DELETE(self):
        self._route("DELETE")

    # -- Graph -----------------------------------------------------------------------------------

    def _graph(self, method: str, path: str) -> tuple[int, dict]:
        claims = self.st.validate(self.headers.get("Authorization"))
        delegated = "scp" in claims
        scp = set(str(claims.get("scp", "")).split())
        roles = set(claims.get("roles") or [])
        segs = [s for s in path.split("/") if s]
        if not segs or segs[0] != "v1.0":
            raise GraphError(400, "BadRequest", "Invalid version.", "bad_request")
        if segs[1:] == ["me"]:
            if method != "GET":
                raise GraphError(405, "Request_BadRequest",
                                 "Specified HTTP method is not allowed for the request target.", "method_not_allowed")
            if not delegated:
                raise GraphError(400, "BadRequest", MSG_ME_APP_ONLY, "app_only_me")
            if not scp & set(ME_DELEGATED):
                raise GraphError(403, "Authorization_RequestDenied", MSG_FORBIDDEN, "insufficient_privileges")
            oid = claims.get("oid", "")
            user = next((u for u in self.st.users() if u.get("oid") == oid), None)
            if user is None:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{oid}' does not exist or one of its queried reference-property objects "
                                 f"are not present.", "user_not_found")
            return 200, {"@odata.context": f"{self.base}/v1.0/$metadata#users/$entity", **graph_user(user)}
        if segs[1:] == ["users"]:
            if method != "GET":
                raise GraphError(405, "Request_BadRequest",
                                 "Specified HTTP method is not allowed for the request target.", "method_not_allowed")
            allowed = scp & set(USERS_DELEGATED) if delegated else roles & set(USERS_APPLICATION)
            if not allowed:
                raise GraphError(403, "Authorization_RequestDenied", MSG_FORBIDDEN, "insufficient_privileges")
            users = sorted(self.st.users(), key=lambda u: u.get("upn", ""))
            return 200, {"@odata.context": f"{self.base}/v1.0/$metadata#users", "value": [graph_user(u) for u in users]}
        seg = segs[1] if len(segs) > 1 else ""
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{seg}'.", "unknown_segment")

    # -- control ---------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes):
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return self._send(400, {"error": "body must be JSON"})
        if not isinstance(payload, dict):
            return self._send(400, {"error": "body must be a JSON object"})
        if path == "/_graph/stats" and method == "GET":
            return self._send(200, self.st.snapshot())
        if path == "/_graph/reset" and method == "POST":
            return self._send(200, self.st.reset(payload))
        if path == "/_graph/config":
            if method == "GET":
                return self._send(200, dict(self.st.config))
            try:
                return self._send(200, self.st.set_config(payload))
            except ValueError as e:
                return self._send(400, {"error": str(e)})
        if path == "/_graph/health":
            return self._send(200, {"status": "UP"})
        return self._send(404, {"error": "unknown control endpoint", "path": path})


# ---------------------------------------------------------------------------------------------
# Server lifecycle
# ---------------------------------------------------------------------------------------------

class MockGraphServer(RunningServer):
    """A running mock Graph: .base_url, .state (the GraphState), .stop()."""

    state: GraphState


def _make_httpd(entra_base_url: str, host: str, port: int, entra_ca: str | None, tls_cert: str | None,
                tls_key: str | None, clock_skew_s: int):
    return make_httpd(host, port, Handler, GraphState(entra_base_url, entra_ca, clock_skew_s), tls_cert, tls_key)


def start_graph(entra_base_url: str, host: str = "127.0.0.1", port: int = 0, *, entra_ca: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None,
                clock_skew_s: int = DEFAULT_CLOCK_SKEW_S) -> MockGraphServer:
    """Start the mock Graph on a background thread (port 0 = a free port).

    entra_base_url: the mock Entra ID's base_url exactly (it is also the issuer prefix).
    entra_ca: CA file to trust when the mock Entra ID serves HTTPS. tls_cert/tls_key: serve HTTPS.
    """
    return MockGraphServer(_make_httpd(entra_base_url, host, port, entra_ca, tls_cert, tls_key, clock_skew_s),
                           "mock-graph")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Mock Microsoft Graph (/v1.0/me, /v1.0/users) for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8098)
    ap.add_argument("--entra", default="http://127.0.0.1:8099", help="the mock Entra ID's base URL (issuer prefix)")
    ap.add_argument("--entra-ca", help="CA file to trust for an HTTPS mock Entra ID")
    ap.add_argument("--tls-cert", help="PEM server certificate: serve HTTPS (with --tls-key)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument("--clock-skew", type=int, default=DEFAULT_CLOCK_SKEW_S, help="seconds allowed on exp/nbf")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if refuse_non_loopback(args.host):
        return 2
    httpd = _make_httpd(args.entra, args.host, args.port, args.entra_ca, args.tls_cert, args.tls_key, args.clock_skew)
    print(f"mock-graph ready on {httpd.base_url} entra={args.entra}", flush=True)  # type: ignore[attr-defined]
    return serve_until_interrupted(httpd)


if __name__ == "__main__":
    sys.exit(main())
