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

Modules (this one: the HTTP plumbing, dispatch by path, the server's start and the command line):
  common          fixed identities, default clients/users/settings, the fault names, OAuthError, Reply
  keys            the RSA signing key set (sign, verify, JWKS, rotation)
Shared with the mock Graph (tests/mock_common): jwts (JWT/JWKS helpers), serving (the loopback server).
  state           MockState: settings, counters, issued tokens, tenants, users, clients
  tokens          scope parsing and token minting (access, ID, refresh tokens)
  signin          discovery, authorize, userinfo            (Handler mixin)
  token_endpoint  the token endpoint and its grants         (Handler mixin)
  client_auth     client secret / certificate assertion     (Handler mixin)
  control         fault answers and the /_mock control API  (Handler mixin)
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import os
import socket
import sys
import urllib.parse
import uuid

if __package__ in (None, ""):  # run as a script (python3 tests/mock_entra/server.py): make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mock_entra.client_auth import ClientAuth  # noqa: E402
from mock_entra.common import (  # noqa: E402,F401 - the identities are re-exported for the tests
    API_CLIENT_ID, API_CLIENT_SECRET, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_CLIENTS, DEFAULT_USER,
    DEFAULT_USERS, GRAPH_APP_ID, GRAPH_URI, HOME_TENANT_ID, OAuthError, Reply, entra_timestamp, json_reply)
from mock_entra.control import FaultsAndControl  # noqa: E402
from mock_entra.signin import SignInEndpoints  # noqa: E402
from mock_entra.state import MockState  # noqa: E402
from mock_entra.token_endpoint import TokenEndpoint  # noqa: E402
from mock_common.serving import (MockHandler, RunningServer, log_line, make_httpd,  # noqa: E402
                                 refuse_non_loopback, serve_until_interrupted)

# The public names tests import from here (mock_entra.server) stay importable from here: the
# identities above, start_server, Handler, main.


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class Handler(SignInEndpoints, TokenEndpoint, ClientAuth, FaultsAndControl, MockHandler):
    """The mock's HTTP handler: plumbing, error answers and dispatch here; the endpoints come from
    the mixins (signin, token_endpoint, client_auth, control). self.st is the MockState."""

    server_version = "MockEntra/1.0"

    def log_line(self, text: str):
        log_line("mock-entra", text)

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


# ---------------------------------------------------------------------------------------------
# Server lifecycle
# ---------------------------------------------------------------------------------------------

class MockEntraServer(RunningServer):
    """A running mock: .base_url, .state (the MockState), .stop()."""

    state: MockState


def load_config_file(path: str | None) -> dict:
    if not path:
        return {}
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _make_httpd(host: str, port: int, config: dict | None, tls_cert: str | None = None,
                tls_key: str | None = None):
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
    return make_httpd(host, port, Handler, state, tls_cert, tls_key)


def start_server(host: str = "127.0.0.1", port: int = 0, config: dict | None = None,
                 config_file: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> MockEntraServer:
    """Start the mock on a background thread (port 0 = a free port). With `tls_cert` + `tls_key`
    (PEM files, e.g. from mock_entra.pki.ensure_pki) it serves HTTPS and base_url is https://."""
    cfg = dict(load_config_file(config_file))
    cfg.update(config or {})
    return MockEntraServer(_make_httpd(host, port, cfg, tls_cert, tls_key), "mock-entra")


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
    if refuse_non_loopback(args.host):
        return 2
    httpd = _make_httpd(args.host, args.port, load_config_file(args.config), args.tls_cert, args.tls_key)
    print(f"mock-entra ready on {httpd.base_url} tenant={httpd.state.home_tid} "  # type: ignore[attr-defined]
          f"client={DEFAULT_CLIENT_ID}", flush=True)
    return serve_until_interrupted(httpd)


if __name__ == "__main__":
    sys.exit(main())
