"""Tests of the mock Microsoft Graph, against the mock Entra ID (both in-process, loopback, free ports)."""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path

import pytest
import requests

from mock_common.jwts import b64url, b64url_decode, claims
from mock_entra.server import (API_CLIENT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERS,
                               HOME_TENANT_ID, start_server)
from mock_graph.server import start_graph

TENANT = HOME_TENANT_ID
REDIRECT = "http://127.0.0.1:18080/realms/demo/broker/entra/endpoint"
ALICE = DEFAULT_USERS["alice@contoso.onmicrosoft.com"]
BOB = DEFAULT_USERS["bob@contoso.onmicrosoft.com"]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def entra():
    with start_server(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture(scope="module")
def graph(entra):
    with start_graph(entra.base_url) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(entra, graph):
    requests.post(f"{entra.base_url}/_mock/reset", json={"config": True}, timeout=5).raise_for_status()
    requests.post(f"{graph.base_url}/_graph/reset", json={"config": True}, timeout=5).raise_for_status()
    yield


def entra_config(entra, **settings):
    r = requests.post(f"{entra.base_url}/_mock/config", json=settings, timeout=5)
    assert r.status_code == 200, r.text


def token(entra, data: dict) -> dict:
    r = requests.post(f"{entra.base_url}/{TENANT}/oauth2/v2.0/token", data=data, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def login(entra, scope="openid profile email offline_access User.Read", login_hint=None) -> dict:
    verifier = secrets.token_urlsafe(48)
    params = {"client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "scope": scope,
              "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
    if login_hint:
        params["login_hint"] = login_hint
    r = requests.get(f"{entra.base_url}/{TENANT}/oauth2/v2.0/authorize", params=params, allow_redirects=False,
                     timeout=5)
    assert r.status_code == 302, r.text
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    return token(entra, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                         "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                         "code_verifier": verifier})


def delegated(entra, scope="https://graph.microsoft.com/User.Read", login_hint=None) -> str:
    """A delegated access token obtained the way the extension does: refresh for one resource."""
    rt = login(entra, login_hint=login_hint)["refresh_token"]
    return token(entra, {"grant_type": "refresh_token", "refresh_token": rt, "scope": scope,
                         "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})["access_token"]


def app_only(entra, client_id=DEFAULT_CLIENT_ID, secret=DEFAULT_CLIENT_SECRET) -> str:
    return token(entra, {"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
                         "client_id": client_id, "client_secret": secret})["access_token"]


def get(graph, path, tok=None, **headers):
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    return requests.get(f"{graph.base_url}{path}", headers=headers, timeout=5)


def assert_graph_error(r, status, code, message):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "innerError"}, body
    assert body["error"]["code"] == code and body["error"]["message"] == message, body
    inner = body["error"]["innerError"]
    datetime.strptime(inner["date"], "%Y-%m-%dT%H:%M:%S")
    assert GUID.match(inner["request-id"]) and inner["request-id"] == r.headers["request-id"]
    assert inner["client-request-id"] == r.headers["client-request-id"]
    if status == 401:
        www = r.headers["WWW-Authenticate"]
        assert www.startswith('Bearer realm="", authorization_uri="') and \
            'client_id="00000003-0000-0000-c000-000000000000"' in www
    else:
        assert "WWW-Authenticate" not in r.headers
    return body


def graph_stats(graph) -> dict:
    return requests.get(f"{graph.base_url}/_graph/stats", timeout=5).json()


# ---------------------------------------------------------------------------------------------
# what the mock Entra ID puts into Graph tokens
# ---------------------------------------------------------------------------------------------

def test_graph_tokens_from_the_mock_entra_carry_scp_or_roles(entra):
    d = claims(delegated(entra))
    assert d["aud"] == "https://graph.microsoft.com" and "User.Read" in d["scp"].split() and "roles" not in d
    assert d["iss"] == f"{entra.base_url}/{TENANT}/v2.0" and d["oid"] == ALICE["oid"]
    a = claims(app_only(entra))
    assert a["aud"] == "https://graph.microsoft.com" and a["roles"] == ["User.Read.All"] and "scp" not in a
    assert a["idtyp"] == "app"


# ---------------------------------------------------------------------------------------------
# /me and /users
# ---------------------------------------------------------------------------------------------

def test_delegated_graph_token_reads_me(entra, graph):
    crid = "5b3d3b3e-1111-4222-8333-444455556666"
    r = get(graph, "/v1.0/me", delegated(entra), **{"client-request-id": crid})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["client-request-id"] == crid and GUID.match(r.headers["request-id"])
    me = r.json()
    assert me["@odata.context"] == f"{graph.base_url}/v1.0/$metadata#users/$entity"
    assert me["id"] == ALICE["oid"] and me["displayName"] == "Alice Example"
    assert me["userPrincipalName"] == "alice@contoso.onmicrosoft.com" and me["mail"] == ALICE["email"]
    assert me["givenName"] == "Alice" and me["surname"] == "Example" and me["businessPhones"] == []
    # bob's token reads bob; the bare-scope audience (the Graph app id) is accepted too
    r = get(graph, "/v1.0/me", delegated(entra, scope="User.Read", login_hint="bob@contoso.onmicrosoft.com"))
    assert r.status_code == 200 and r.json()["id"] == BOB["oid"]


def test_expired_token_is_invalid_authentication_token(entra, graph):
    entra_config(entra, access_token_lifetime_s=-120)        # exp 2 minutes ago, beyond the 30 s skew
    tok = delegated(entra)
    body = assert_graph_error(get(graph, "/v1.0/me", tok), 401, "InvalidAuthenticationToken",
                              "Access token has expired or is not yet valid.")
    assert body["error"]["innerError"]["client-request-id"] == body["error"]["innerError"]["request-id"]
    # within the skew it is accepted
    requests.post(f"{graph.base_url}/_graph/config", json={"clock_skew_s": 300}, timeout=5).raise_for_status()
    assert get(graph, "/v1.0/me", tok).status_code == 200


def test_token_for_another_audience_is_invalid_audience(entra, graph):
    tok = delegated(entra, scope=f"api://{API_CLIENT_ID}/access_as_user")
    assert claims(tok)["aud"] == API_CLIENT_ID
    assert_graph_error(get(graph, "/v1.0/me", tok), 401, "InvalidAuthenticationToken",
                       "Access token validation failure. Invalid audience.")


def test_app_only_token_lists_users_and_cannot_use_me(entra, graph):
    tok = app_only(entra)
    r = get(graph, "/v1.0/users", tok)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"] == f"{graph.base_url}/v1.0/$metadata#users"
    assert {u["id"] for u in body["value"]} >= {ALICE["oid"], BOB["oid"]}
    assert {u["userPrincipalName"] for u in body["value"]} >= {"alice@contoso.onmicrosoft.com",
                                                               "bob@contoso.onmicrosoft.com"}
    assert_graph_error(get(graph, "/v1.0/me", tok), 400, "BadRequest",
                       "/me request is only valid with delegated authentication flow.")


def test_users_added_to_the_mock_entra_show_up(entra, graph):
    entra_config(entra, users={"carol@contoso.onmicrosoft.com": {"name": "Carol Example"}})
    upns = {u["userPrincipalName"] for u in get(graph, "/v1.0/users", app_only(entra)).json()["value"]}
    assert "carol@contoso.onmicrosoft.com" in upns


def test_delegated_token_without_the_right_scope_on_users_is_forbidden(entra, graph):
    assert_graph_error(get(graph, "/v1.0/users", delegated(entra)), 403, "Authorization_RequestDenied",
                       "Insufficient privileges to complete the operation.")
    # User.ReadBasic.All (documented least privilege for delegated List users) is enough, and covers /me
    tok = delegated(entra, scope="https://graph.microsoft.com/User.ReadBasic.All")
    assert get(graph, "/v1.0/users", tok).status_code == 200
    assert get(graph, "/v1.0/me", tok).status_code == 200


def test_app_only_token_without_roles_is_forbidden(entra, graph):
    cid = "00000000-0000-0000-0000-0000000000d1"
    entra_config(entra, clients={cid: {"secret": "s-d1", "graph_app_roles": []}})
    tok = app_only(entra, cid, "s-d1")
    assert "roles" not in claims(tok)
    assert_graph_error(get(graph, "/v1.0/users", tok), 403, "Authorization_RequestDenied",
                       "Insufficient privileges to complete the operation.")
    entra_config(entra, clients={cid: {"secret": "s-d1", "graph_app_roles": ["Directory.Read.All"]}})
    assert get(graph, "/v1.0/users", app_only(entra, cid, "s-d1")).status_code == 200


# ---------------------------------------------------------------------------------------------
# token validation details
# ---------------------------------------------------------------------------------------------

def test_missing_malformed_and_tampered_tokens(entra, graph):
    assert_graph_error(get(graph, "/v1.0/me"), 401, "InvalidAuthenticationToken", "Access token is empty.")
    r = get(graph, "/v1.0/me", "not-a-jwt")
    assert r.status_code == 401 and r.json()["error"]["message"].startswith("IDX14100: JWT is not well formed")
    h, p, s = delegated(entra).split(".")
    forged = dict(json.loads(b64url_decode(p)), oid=BOB["oid"])
    assert_graph_error(get(graph, "/v1.0/me", f"{h}.{b64url(json.dumps(forged).encode())}.{s}"), 401,
                       "InvalidAuthenticationToken", "Access token validation failure.")
    hdr = dict(json.loads(b64url_decode(h)), alg="none")
    assert_graph_error(get(graph, "/v1.0/me", f"{b64url(json.dumps(hdr).encode())}.{p}."), 401,
                       "InvalidAuthenticationToken", "Access token validation failure.")
    out = graph_stats(graph)["by_path"]["/v1.0/me"]
    assert out == {"token_missing": 1, "token_malformed": 1, "bad_signature": 2}


def test_issuer_must_be_the_configured_entra(entra):
    # Same keys, but Graph knows the authority under another name: tokens' iss does not match.
    other = start_graph(entra.base_url.replace("127.0.0.1", "localhost"))
    try:
        assert_graph_error(get(other, "/v1.0/me", delegated(entra)), 401, "InvalidAuthenticationToken",
                           "Access token validation failure. Invalid issuer.")
    finally:
        other.stop()


def test_jwks_is_cached_and_refetched_on_an_unknown_kid(entra, graph):
    requests.post(f"{graph.base_url}/_graph/reset", json={"jwks": True}, timeout=5).raise_for_status()
    old = delegated(entra)
    assert get(graph, "/v1.0/me", old).status_code == 200
    assert get(graph, "/v1.0/me", old).status_code == 200
    assert graph_stats(graph)["jwks_fetches"] == 1
    requests.post(f"{entra.base_url}/_mock/rotate_keys", json={"keep_old": False}, timeout=5).raise_for_status()
    new = delegated(entra)
    assert get(graph, "/v1.0/me", new).status_code == 200          # unknown kid: refetch, then valid
    s = graph_stats(graph)
    assert s["jwks_fetches"] == 2 and s["cached_kids"][TENANT] == [json.loads(b64url_decode(new.split(".")[0]))["kid"]]
    # a token signed by a key no longer published
    assert_graph_error(get(graph, "/v1.0/me", old), 401, "InvalidAuthenticationToken",
                       "Access token validation failure.")
    assert graph_stats(graph)["by_path"]["/v1.0/me"]["unknown_kid"] == 1


def test_unknown_segment_and_stats(entra, graph):
    tok = delegated(entra)
    assert_graph_error(get(graph, "/v1.0/groupz", tok), 400, "BadRequest", "Resource not found for the segment "
                                                                           "'groupz'.")
    get(graph, "/v1.0/me", tok)
    get(graph, "/v1.0/users", tok)
    s = graph_stats(graph)
    assert s["requests"] == 3
    assert s["by_path"] == {"/v1.0/groupz": {"unknown_segment": 1}, "/v1.0/me": {"ok": 1},
                            "/v1.0/users": {"insufficient_privileges": 1}}
    assert s["by_status"] == {"400": 1, "200": 1, "403": 1}
    assert s["entra"] == entra.base_url
    assert requests.post(f"{graph.base_url}/_graph/config", json={"bogus": 1}, timeout=5).status_code == 400


# ---------------------------------------------------------------------------------------------
# HTTPS and the command line
# ---------------------------------------------------------------------------------------------

def test_over_https_with_the_private_ca(tmp_path):
    from mock_entra.pki import ensure_pki
    pki = ensure_pki(tmp_path)
    e = start_server(port=0, tls_cert=pki.cert, tls_key=pki.key)
    g = start_graph(e.base_url, entra_ca=pki.ca, tls_cert=pki.cert, tls_key=pki.key)
    try:
        assert g.base_url.startswith("https://")
        tok = requests.post(f"{e.base_url}/{TENANT}/oauth2/v2.0/token", verify=pki.ca, timeout=5, data={
            "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
            "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}).json()["access_token"]
        r = requests.get(f"{g.base_url}/v1.0/users", headers={"Authorization": f"Bearer {tok}"}, verify=pki.ca,
                         timeout=5)
        assert r.status_code == 200, r.text
    finally:
        g.stop()
        e.stop()
    # A Graph that does not trust the CA cannot fetch the keys: the token cannot be validated.
    e = start_server(port=0, tls_cert=pki.cert, tls_key=pki.key)
    g = start_graph(e.base_url)
    try:
        tok = requests.post(f"{e.base_url}/{TENANT}/oauth2/v2.0/token", verify=pki.ca, timeout=5, data={
            "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
            "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}).json()["access_token"]
        assert_graph_error(get(g, "/v1.0/users", tok), 401, "InvalidAuthenticationToken",
                           "Access token validation failure.")
        s = graph_stats(g)
        assert s["jwks_fetch_errors"] == 1 and s["by_outcome"] == {"jwks_unavailable": 1}
    finally:
        g.stop()
        e.stop()


def test_command_line(entra):
    script = Path(__file__).resolve().parent / "server.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--entra", entra.base_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mock-graph ready on http://127.0.0.1:"), line
        base = line.split(" ready on ")[1].split()[0]
        tok = delegated(entra)
        r = requests.get(f"{base}/v1.0/me", headers={"Authorization": f"Bearer {tok}"}, timeout=5)
        assert r.status_code == 200 and r.json()["id"] == ALICE["oid"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert "GET /v1.0/me outcome=ok status=200" in err and tok not in err      # one line per request, no token
