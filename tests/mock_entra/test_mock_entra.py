"""Tests of the mock Entra ID itself (in-process, loopback, free port)."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mock_common.jwts import b64url, b64url_decode, claims, verify_with_jwks
from mock_entra.server import (API_CLIENT_ID, API_CLIENT_SECRET, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
                               GRAPH_APP_ID, HOME_TENANT_ID, start_server)

TENANT = HOME_TENANT_ID
REDIRECT = "http://127.0.0.1:18080/realms/demo/broker/entra/endpoint"
SCOPE = "openid profile email offline_access User.Read"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mock():
    with start_server(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(mock):
    requests.post(f"{mock.base_url}/_mock/reset", json={"config": True}, timeout=5).raise_for_status()
    yield


def config(mock, **settings) -> dict:
    r = requests.post(f"{mock.base_url}/_mock/config", json=settings, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def stats(mock) -> dict:
    return requests.get(f"{mock.base_url}/_mock/stats", timeout=5).json()


def token_url(mock, tenant=TENANT) -> str:
    return f"{mock.base_url}/{tenant}/oauth2/v2.0/token"


def authorize(mock, scope=SCOPE, pkce=True, login_hint=None, nonce="n-0S6_WzA2Mj", client_id=DEFAULT_CLIENT_ID):
    verifier = secrets.token_urlsafe(48)
    params = {"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code", "scope": scope,
              "state": "xyz", "nonce": nonce}
    if pkce:
        params["code_challenge"] = b64url(hashlib.sha256(verifier.encode()).digest())
        params["code_challenge_method"] = "S256"
    if login_hint:
        params["login_hint"] = login_hint
    r = requests.get(f"{mock.base_url}/{TENANT}/oauth2/v2.0/authorize", params=params, allow_redirects=False,
                     timeout=5)
    assert r.status_code == 302, r.text
    loc = r.headers["Location"]
    assert loc.startswith(REDIRECT + "?")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert q["state"] == ["xyz"] and "session_state" in q
    return q["code"][0], verifier


def redeem(mock, code, verifier, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET, "code_verifier": verifier}
    data.update(extra)
    return requests.post(token_url(mock), data={k: v for k, v in data.items() if v is not None}, timeout=5)


def login(mock, scope=SCOPE, **kw) -> dict:
    code, verifier = authorize(mock, scope=scope, **kw)
    r = redeem(mock, code, verifier)
    assert r.status_code == 200, r.text
    return r.json()


def refresh(mock, rt, scope=None, secret=DEFAULT_CLIENT_SECRET, basic=False, client_id=DEFAULT_CLIENT_ID):
    data = {"grant_type": "refresh_token", "refresh_token": rt}
    if scope is not None:
        data["scope"] = scope
    auth = None
    if basic:
        auth = (client_id, secret)
    else:
        data.update({"client_id": client_id, "client_secret": secret})
    return requests.post(token_url(mock), data=data, auth=auth, timeout=10)


def assert_entra_error(r, status, error, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in body["error_description"] and "\r\nCorrelation ID: " in body["error_description"]
    assert body["trace_id"] in body["error_description"] and body["correlation_id"] in body["error_description"]
    datetime.strptime(body["timestamp"], "%Y-%m-%d %H:%M:%SZ")
    assert body["error_uri"].endswith(f"/error?code={code}")
    return body


# ---------------------------------------------------------------------------------------------
# discovery and keys
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("segment", [TENANT, "contoso.onmicrosoft.com"])
def test_discovery_issuer_and_endpoints(mock, segment):
    d = requests.get(f"{mock.base_url}/{segment}/v2.0/.well-known/openid-configuration", timeout=5).json()
    assert d["issuer"] == f"{mock.base_url}/{TENANT}/v2.0"
    assert d["authorization_endpoint"] == f"{mock.base_url}/{segment}/oauth2/v2.0/authorize"
    assert d["token_endpoint"] == f"{mock.base_url}/{segment}/oauth2/v2.0/token"
    assert d["jwks_uri"] == f"{mock.base_url}/{segment}/discovery/v2.0/keys"
    assert d["end_session_endpoint"] == f"{mock.base_url}/{segment}/oauth2/v2.0/logout"
    assert d["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "code" in d["response_types_supported"]


def test_discovery_common_has_templated_issuer_and_unknown_tenant_fails(mock):
    d = requests.get(f"{mock.base_url}/common/v2.0/.well-known/openid-configuration", timeout=5).json()
    assert d["issuer"] == f"{mock.base_url}/{{tenantid}}/v2.0"
    r = requests.get(f"{mock.base_url}/nosuchtenant.example/v2.0/.well-known/openid-configuration", timeout=5)
    assert_entra_error(r, 400, "invalid_tenant", 90002)


def test_jwks_shape(mock):
    keys = requests.get(f"{mock.base_url}/{TENANT}/discovery/v2.0/keys", timeout=5).json()["keys"]
    k = keys[0]
    assert {"kty", "use", "kid", "x5t", "n", "e", "x5c"} <= set(k)
    assert k["kty"] == "RSA" and k["use"] == "sig" and k["e"] == "AQAB"
    der = base64.b64decode(k["x5c"][0])
    assert b64url(hashlib.sha1(der).digest()) == k["x5t"]


# ---------------------------------------------------------------------------------------------
# authorization code flow
# ---------------------------------------------------------------------------------------------

def test_auth_code_with_pkce_gives_tokens_that_verify_against_jwks(mock):
    jwks = requests.get(f"{mock.base_url}/{TENANT}/discovery/v2.0/keys", timeout=5).json()
    body = login(mock)
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "openid profile email User.Read"
    assert "offline_access" not in body["scope"]
    assert isinstance(body["expires_in"], int) and isinstance(body["ext_expires_in"], int)
    assert body["refresh_token"] and body["refresh_token"].count(".") < 2   # opaque, not a JWT
    at = verify_with_jwks(body["access_token"], jwks)
    idt = verify_with_jwks(body["id_token"], jwks)
    iss = f"{mock.base_url}/{TENANT}/v2.0"
    assert at["iss"] == iss and idt["iss"] == iss
    assert at["aud"] == GRAPH_APP_ID and at["scp"].split() == ["openid", "profile", "email", "User.Read"]
    assert at["azp"] == DEFAULT_CLIENT_ID and at["ver"] == "2.0" and at["tid"] == TENANT
    assert at["oid"] == idt["oid"] and at["sub"] == idt["sub"]
    assert idt["aud"] == DEFAULT_CLIENT_ID and idt["nonce"] == "n-0S6_WzA2Mj" and idt["ver"] == "2.0"
    assert idt["preferred_username"] == "alice@contoso.onmicrosoft.com" and idt["name"] == "Alice Example"
    assert idt["email"] == "alice@contoso.onmicrosoft.com"
    now = time.time()
    assert at["nbf"] <= now < at["exp"] and at["iat"] <= now
    assert abs(at["exp"] - now - body["expires_in"]) <= 2


def test_pkce_mismatch_missing_verifier_and_code_reuse(mock):
    code, verifier = authorize(mock)
    assert_entra_error(redeem(mock, code, "wrong-" + verifier), 400, "invalid_grant", 501481)
    code, verifier = authorize(mock)
    assert_entra_error(redeem(mock, code, None), 400, "invalid_grant", 50148)
    code, verifier = authorize(mock)
    assert redeem(mock, code, verifier).status_code == 200
    assert_entra_error(redeem(mock, code, verifier), 400, "invalid_grant", 54005)
    code, verifier = authorize(mock)
    assert_entra_error(redeem(mock, code, verifier, redirect_uri="http://127.0.0.1:1/other"), 400, "invalid_grant",
                       500112)


def test_no_refresh_token_without_offline_access(mock):
    body = login(mock, scope="openid profile email User.Read")
    assert "refresh_token" not in body
    assert body["access_token"] and body["id_token"]


def test_login_hint_picks_the_user_and_unknown_client_is_rejected(mock):
    a = claims(login(mock)["id_token"])
    b = claims(login(mock, login_hint="bob@contoso.onmicrosoft.com")["id_token"])
    assert a["oid"] != b["oid"] and b["preferred_username"] == "bob@contoso.onmicrosoft.com"
    r = requests.get(f"{mock.base_url}/{TENANT}/oauth2/v2.0/authorize", allow_redirects=False, timeout=5,
                     params={"client_id": "99999999-0000-0000-0000-000000000000", "redirect_uri": REDIRECT,
                             "response_type": "code", "scope": "openid"})
    assert r.status_code == 400 and "AADSTS700016" in r.text
    r = requests.get(f"{mock.base_url}/{TENANT}/oauth2/v2.0/authorize", allow_redirects=False, timeout=5,
                     params={"client_id": DEFAULT_CLIENT_ID, "redirect_uri": "https://evil.example/cb",
                             "response_type": "code", "scope": "openid"})
    assert r.status_code == 400 and "AADSTS50011" in r.text


# ---------------------------------------------------------------------------------------------
# client authentication and grant errors
# ---------------------------------------------------------------------------------------------

def test_client_auth_errors_are_entra_shaped(mock):
    rt = login(mock)["refresh_token"]
    assert_entra_error(refresh(mock, rt, secret="wrong"), 401, "invalid_client", 7000215)
    assert_entra_error(refresh(mock, rt, secret="wrong", basic=True), 401, "invalid_client", 7000215)
    assert_entra_error(refresh(mock, rt, client_id="99999999-0000-0000-0000-000000000000"), 400,
                       "unauthorized_client", 700016)
    assert refresh(mock, rt, basic=True).status_code == 200
    r = requests.post(token_url(mock), data={"grant_type": "password", "client_id": DEFAULT_CLIENT_ID,
                                             "client_secret": DEFAULT_CLIENT_SECRET}, timeout=5)
    assert_entra_error(r, 400, "unsupported_grant_type", 70003)
    r = requests.post(token_url(mock), data={"grant_type": "refresh_token", "refresh_token": "garbage",
                                             "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET},
                      timeout=5)
    assert_entra_error(r, 400, "invalid_grant", 9002313)


def test_correlation_id_echoes_client_request_id(mock):
    r = requests.post(token_url(mock), headers={"client-request-id": "12345678-aaaa-bbbb-cccc-1234567890ab"},
                      data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": DEFAULT_CLIENT_ID,
                            "client_secret": DEFAULT_CLIENT_SECRET}, timeout=5)
    assert r.json()["correlation_id"] == "12345678-aaaa-bbbb-cccc-1234567890ab"


# ---------------------------------------------------------------------------------------------
# refresh
# ---------------------------------------------------------------------------------------------

def test_refresh_rotates_and_old_tokens_stay_valid_in_entra_mode(mock):
    first = login(mock)
    r1 = refresh(mock, first["refresh_token"], scope="https://graph.microsoft.com/User.Read offline_access")
    assert r1.status_code == 200, r1.text
    b1 = r1.json()
    assert b1["refresh_token"] != first["refresh_token"]
    assert b1["access_token"] != first["access_token"]
    assert b1["scope"] == "https://graph.microsoft.com/User.Read"
    assert claims(b1["access_token"])["aud"] == "https://graph.microsoft.com"
    r2 = refresh(mock, first["refresh_token"])            # old one: still valid, like Entra
    assert r2.status_code == 200
    assert r2.json()["refresh_token"] not in (first["refresh_token"], b1["refresh_token"])
    recent = stats(mock)["recent_refreshes"]
    assert len(recent) == 2 and recent[0]["family"] == recent[1]["family"]
    assert recent[0]["scope"] == "https://graph.microsoft.com/User.Read offline_access" and recent[1]["scope"] is None
    dump = json.dumps(stats(mock))
    assert first["refresh_token"] not in dump and b1["refresh_token"] not in dump


def test_refresh_for_other_resources_and_one_resource_per_request(mock):
    rt = login(mock)["refresh_token"]
    api = refresh(mock, rt, scope=f"api://{API_CLIENT_ID}/.default offline_access").json()
    assert claims(api["access_token"])["aud"] == API_CLIENT_ID
    assert claims(api["access_token"])["scp"] == "access_as_user"
    assert api["scope"] == f"api://{API_CLIENT_ID}/access_as_user"
    g = refresh(mock, rt, scope="https://graph.microsoft.com/.default").json()
    assert claims(g["access_token"])["aud"] == "https://graph.microsoft.com"
    assert "User.Read" in claims(g["access_token"])["scp"].split()
    r = refresh(mock, rt, scope=f"https://graph.microsoft.com/User.Read api://{API_CLIENT_ID}/.default")
    assert_entra_error(r, 400, "invalid_scope", 28000)
    r = refresh(mock, rt, scope="api://99999999-9999-9999-9999-999999999999/.default")
    assert_entra_error(r, 400, "invalid_resource", 500011)


def test_strict_mode_reuse_revokes_the_family(mock):
    config(mock, refresh_mode="strict")
    rt1 = login(mock)["refresh_token"]
    r = refresh(mock, rt1)
    assert r.status_code == 200
    rt2 = r.json()["refresh_token"]
    assert_entra_error(refresh(mock, rt1), 400, "invalid_grant", 70000)        # reuse of a spent token
    assert_entra_error(refresh(mock, rt2), 400, "invalid_grant", 70000)        # family revoked
    s = stats(mock)
    assert s["families_revoked"] == 1 and s["reuse_detected"] == 1
    # Another login (new family) is unaffected.
    rt3 = login(mock)["refresh_token"]
    assert refresh(mock, rt3).status_code == 200


def test_revoke_user(mock):
    alice = login(mock)["refresh_token"]
    bob = login(mock, login_hint="bob@contoso.onmicrosoft.com")["refresh_token"]
    r = requests.post(f"{mock.base_url}/_mock/revoke", json={"user": "alice@contoso.onmicrosoft.com"}, timeout=5)
    assert r.status_code == 200 and r.json()["revoked_families"] >= 1
    assert_entra_error(refresh(mock, alice), 400, "invalid_grant", 50173)
    assert refresh(mock, bob).status_code == 200
    time.sleep(0.01)
    assert refresh(mock, login(mock)["refresh_token"]).status_code == 200     # signing in again works


def test_lifetime_and_expires_in_as_string(mock):
    config(mock, access_token_lifetime_s=30, expires_in_as_string=True)
    body = login(mock)
    assert body["expires_in"] == "30" and body["ext_expires_in"] == "30"
    c = claims(body["access_token"])
    assert 28 <= c["exp"] - time.time() <= 31


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------

def test_http429_fault_with_retry_after_applies_to_refresh_only_and_counts_down(mock):
    rt = login(mock)["refresh_token"]
    config(mock, fault="http429", fault_count=2, retry_after_s=7)
    assert login(mock)["access_token"]                       # logins keep working
    for _ in range(2):
        r = refresh(mock, rt)
        assert r.status_code == 429 and r.headers["Retry-After"] == "7"
        assert r.json()["error"] == "temporarily_unavailable"
    assert refresh(mock, rt).status_code == 200              # fault used up
    s = stats(mock)
    assert s["by_grant"] == {"authorization_code": 2, "refresh_token": 3}
    assert s["by_grant_outcome"]["refresh_token"] == {"fault:http429": 2, "ok": 1}
    assert s["faults_served"] == 2 and s["config"]["fault"] == "none"


@pytest.mark.parametrize("fault,status,check", [
    ("http500_html", 500, lambda r: r.headers["Content-Type"].startswith("text/html")),
    ("http503", 503, lambda r: True),
    ("temporarily_unavailable", 503, lambda r: r.json()["error"] == "temporarily_unavailable"),
    ("invalid_json_200", 200, lambda r: pytest.raises(ValueError, r.json)),
    ("truncated_json_200", 200, lambda r: pytest.raises(ValueError, r.json)),
    ("huge_body_200", 200, lambda r: len(r.content) > 2 * 1024 * 1024),
    ("missing_access_token_200", 200, lambda r: "access_token" not in r.json()),
    ("html_200", 200, lambda r: r.text.lstrip().startswith("<!DOCTYPE html>")),
    ("redirect_302", 302, lambda r: "Location" in r.headers),
    ("invalid_grant", 400, lambda r: r.json()["error_codes"] == [70008]),
    ("interaction_required", 400, lambda r: r.json()["error_codes"] == [50076] and r.json()["claims"]),
    ("consent_required", 400, lambda r: r.json()["error_codes"] == [65001]
     and r.json()["suberror"] == "consent_required"),
    ("invalid_client", 401, lambda r: r.json()["error_codes"] == [7000215]),
    ("conditional_access_block", 400, lambda r: r.json()["error_codes"] == [53003]),
])
def test_each_fault_shape(mock, fault, status, check):
    rt = login(mock)["refresh_token"]
    config(mock, fault=fault, fault_count=1)
    r = requests.post(token_url(mock), allow_redirects=False, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": rt, "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET})
    assert r.status_code == status, r.text[:300]
    assert check(r) is not False
    assert refresh(mock, rt).status_code == 200


def test_slow_fault_and_refresh_delay(mock):
    rt = login(mock)["refresh_token"]
    config(mock, fault="slow", fault_count=1, slow_seconds=0.5)
    t0 = time.time()
    assert refresh(mock, rt).status_code == 200
    assert time.time() - t0 >= 0.5
    config(mock, refresh_delay_ms=300)
    t0 = time.time()
    assert refresh(mock, rt).status_code == 200
    assert time.time() - t0 >= 0.3


def test_concurrent_refreshes_are_counted(mock):
    rt = login(mock)["refresh_token"]
    config(mock, refresh_delay_ms=300)
    threads = [threading.Thread(target=refresh, args=(mock, rt)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = stats(mock)
    assert s["by_grant"]["refresh_token"] == 5 and s["max_concurrent_refreshes"] >= 2


# ---------------------------------------------------------------------------------------------
# other grants, control API, logging
# ---------------------------------------------------------------------------------------------

def test_client_credentials_and_obo(mock):
    r = requests.post(token_url(mock), timeout=5, data={
        "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
        "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
    assert r.status_code == 200 and "refresh_token" not in r.json()
    c = claims(r.json()["access_token"])
    assert c["roles"] == ["User.Read.All"] and c["idtyp"] == "app" and "scp" not in c
    r = requests.post(token_url(mock), timeout=5, data={
        "grant_type": "client_credentials", "scope": "User.Read",
        "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
    assert_entra_error(r, 400, "invalid_scope", 1002012)

    body = login(mock)
    obo = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "requested_token_use": "on_behalf_of",
           "scope": "https://graph.microsoft.com/User.Read", "client_id": API_CLIENT_ID,
           "client_secret": API_CLIENT_SECRET}
    # A Graph token is no OBO assertion: AADSTS50013.
    assert_entra_error(requests.post(token_url(mock), data=dict(obo, assertion=body["access_token"]), timeout=5),
                       400, "invalid_grant", 50013)
    # A token for the API's own audience is.
    api = refresh(mock, body["refresh_token"], scope=f"api://{API_CLIENT_ID}/access_as_user").json()["access_token"]
    r = requests.post(token_url(mock), data=dict(obo, assertion=api), timeout=5)
    assert r.status_code == 200, r.text
    c = claims(r.json()["access_token"])
    assert c["aud"] == "https://graph.microsoft.com" and c["azp"] == API_CLIENT_ID
    assert c["oid"] == claims(body["access_token"])["oid"]


def _cert_and_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-client")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=2)).sign(key, hashes.SHA256()))
    return cert, key


def _assertion(key, cert, aud, client_id, alg="PS256"):
    der = cert.public_bytes(serialization.Encoding.DER)
    header = {"alg": alg, "typ": "JWT"}
    if alg == "PS256":
        header["x5t#S256"] = b64url(hashlib.sha256(der).digest())
    else:
        header["x5t"] = b64url(hashlib.sha1(der).digest())
    now = int(time.time())
    body = {"aud": aud, "iss": client_id, "sub": client_id, "jti": secrets.token_hex(8), "nbf": now, "iat": now,
            "exp": now + 300}
    si = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(body).encode())
    pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                                 salt_length=padding.PSS.DIGEST_LENGTH)
    return si + "." + b64url(key.sign(si.encode(), pad, hashes.SHA256()))


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_certificate_client_assertion(mock, alg):
    cert, key = _cert_and_key()
    cid = "00000000-0000-0000-0000-0000000000ce"
    config(mock, clients={cid: {"certificates": [cert.public_bytes(serialization.Encoding.PEM).decode()]}})
    data = {"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default", "client_id": cid,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    ok = requests.post(token_url(mock), timeout=5,
                       data=dict(data, client_assertion=_assertion(key, cert, token_url(mock), cid, alg)))
    assert ok.status_code == 200, ok.text
    assert claims(ok.json()["access_token"])["azpacr"] == "2"
    other_cert, other_key = _cert_and_key()
    bad = requests.post(token_url(mock), timeout=5,
                        data=dict(data, client_assertion=_assertion(other_key, other_cert, token_url(mock), cid, alg)))
    assert_entra_error(bad, 401, "invalid_client", 700027)


def test_issued_lists_every_token_and_logs_carry_none(mock, capfd):
    capfd.readouterr()
    body = login(mock)
    new = refresh(mock, body["refresh_token"]).json()
    issued = requests.get(f"{mock.base_url}/_mock/issued", timeout=5).json()
    for v in (body["access_token"], new["access_token"]):
        assert v in issued["access_tokens"]
    assert body["id_token"] in issued["id_tokens"]
    assert issued["refresh_tokens"][-2:] == [body["refresh_token"], new["refresh_token"]]
    time.sleep(0.05)
    err = capfd.readouterr().err
    assert "grant=authorization_code" in err and "grant=refresh_token" in err
    for secret in (body["access_token"], body["refresh_token"], new["refresh_token"], body["id_token"],
                   DEFAULT_CLIENT_SECRET, issued["authorization_codes"][-1]):
        assert secret not in err


def test_reset_and_config_validation(mock):
    login(mock)
    assert stats(mock)["by_grant"]["authorization_code"] == 1
    requests.post(f"{mock.base_url}/_mock/reset", timeout=5).raise_for_status()
    assert stats(mock)["by_grant"] == {}
    r = requests.post(f"{mock.base_url}/_mock/config", json={"fault": "nope"}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{mock.base_url}/_mock/config", json={"refresh_mode": "lax"}, timeout=5)
    assert r.status_code == 400


def test_key_rotation_publishes_new_key_and_keeps_old_one(mock):
    old = login(mock)["id_token"]
    out = requests.post(f"{mock.base_url}/_mock/rotate_keys", json={"keep_old": True}, timeout=5).json()
    assert len(out["published_kids"]) == 2
    new = login(mock)["id_token"]
    jwks = requests.get(f"{mock.base_url}/{TENANT}/discovery/v2.0/keys", timeout=5).json()
    verify_with_jwks(old, jwks)
    verify_with_jwks(new, jwks)
    assert json.loads(b64url_decode(new.split(".")[0]))["kid"] == out["signing_kid"]


def test_slow_answer_the_client_gave_up_on_does_not_spend_a_strict_refresh_token(mock):
    config(mock, refresh_mode="strict")
    rt = login(mock)["refresh_token"]
    config(mock, fault="slow", fault_count=1, slow_seconds=1.0)
    with pytest.raises(requests.exceptions.Timeout):
        requests.post(token_url(mock), timeout=0.3, data={
            "grant_type": "refresh_token", "refresh_token": rt, "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET})
    time.sleep(1.2)
    assert stats(mock)["by_grant_outcome"]["refresh_token"] == {"fault:slow:client_gone": 1}
    assert refresh(mock, rt).status_code == 200


@pytest.mark.parametrize("fault", ["connection_reset", "truncated_body_200"])
def test_transport_level_faults(mock, fault):
    rt = login(mock)["refresh_token"]
    config(mock, fault=fault, fault_count=1)
    with pytest.raises(requests.exceptions.RequestException):
        r = refresh(mock, rt)
        r.json()
    assert refresh(mock, rt).status_code == 200


def test_fault_without_count_lasts_until_changed(mock):
    rt = login(mock)["refresh_token"]
    config(mock, fault="http503", fault_count=1)
    assert refresh(mock, rt).status_code == 503
    config(mock, fault="http503")                 # no count: until changed
    for _ in range(3):
        assert refresh(mock, rt).status_code == 503
    config(mock, fault="none")
    assert refresh(mock, rt).status_code == 200


# ---------------------------------------------------------------------------------------------
# TLS (private test CA)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from mock_entra.pki import ensure_pki
    return ensure_pki(tmp_path_factory.mktemp("pki"))


def test_pki_is_idempotent_and_has_the_right_names(pki):
    from mock_entra.pki import ensure_pki
    import ipaddress
    before = {p: open(p, "rb").read() for p in (pki.ca, pki.cert, pki.key)}
    again = ensure_pki(pki.directory)
    assert again.generated is False
    assert {p: open(p, "rb").read() for p in (again.ca, again.cert, again.key)} == before
    ca = x509.load_pem_x509_certificate(before[pki.ca])
    cert = x509.load_pem_x509_certificate(before[pki.cert])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert timedelta(days=29) < cert.not_valid_after_utc - datetime.now(timezone.utc) <= timedelta(days=30)


def test_pki_regenerates_a_broken_server_certificate(tmp_path):
    from mock_entra.pki import ensure_pki
    first = ensure_pki(tmp_path)
    ca_before = open(first.ca, "rb").read()
    open(first.cert, "w").write("garbage")
    second = ensure_pki(tmp_path)
    assert second.generated is True and open(second.ca, "rb").read() == ca_before   # same CA, new leaf
    x509.load_pem_x509_certificate(open(second.cert, "rb").read())


def test_https_is_trusted_with_the_test_ca_only(pki):
    server = start_server(host="127.0.0.1", port=0, tls_cert=pki.cert, tls_key=pki.key)
    try:
        assert server.base_url.startswith("https://127.0.0.1:")
        r = requests.get(f"{server.base_url}/_mock/health", verify=pki.ca, timeout=5)
        assert r.status_code == 200 and r.json() == {"status": "UP"}
        localhost = server.base_url.replace("127.0.0.1", "localhost")
        assert requests.get(f"{localhost}/_mock/health", verify=pki.ca, timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.base_url}/_mock/health", timeout=5)          # system trust store only
        # the mock keeps serving after a rejected handshake, and its URLs say https
        disc = requests.get(f"{server.base_url}/{TENANT}/v2.0/.well-known/openid-configuration", verify=pki.ca,
                            timeout=5).json()
        assert disc["issuer"] == f"{server.base_url}/{TENANT}/v2.0" and disc["token_endpoint"].startswith("https://")
        r = requests.post(f"{server.base_url}/{TENANT}/oauth2/v2.0/token", verify=pki.ca, timeout=5, data={
            "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
            "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
        assert r.status_code == 200, r.text
        assert claims(r.json()["access_token"])["iss"] == f"{server.base_url}/{TENANT}/v2.0"
        # transport faults still work over TLS
        requests.post(f"{server.base_url}/_mock/config", json={"fault": "connection_reset",
                                                                "fault_grants": ["client_credentials"]},
                      verify=pki.ca, timeout=5).raise_for_status()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{server.base_url}/{TENANT}/oauth2/v2.0/token", verify=pki.ca, timeout=5, data={
                "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
                "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
    finally:
        server.stop()


def test_https_command_line(pki):
    import subprocess
    import sys as _sys
    from pathlib import Path
    script = Path(__file__).resolve().parent / "server.py"
    proc = subprocess.Popen([_sys.executable, str(script), "--port", "0", "--tls-cert", pki.cert, "--tls-key",
                             pki.key], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert "mock-entra ready on https://127.0.0.1:" in line, line
        base = line.split(" ready on ")[1].split()[0]
        assert requests.get(f"{base}/_mock/health", verify=pki.ca, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# OBO assertion errors, throttled client credentials
# ---------------------------------------------------------------------------------------------

def _obo(mock, assertion, client_id=API_CLIENT_ID, secret=API_CLIENT_SECRET):
    return requests.post(token_url(mock), timeout=5, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "requested_token_use": "on_behalf_of",
        "scope": "https://graph.microsoft.com/User.Read", "client_id": client_id, "client_secret": secret,
        "assertion": assertion})


def test_obo_assertion_for_another_app_is_500131(mock):
    rt = login(mock)["refresh_token"]
    api_token = refresh(mock, rt, scope=f"api://{API_CLIENT_ID}/access_as_user").json()["access_token"]
    assert claims(api_token)["aud"] == API_CLIENT_ID
    # presented by the broker app (c1), not by the API it was issued for
    body = assert_entra_error(_obo(mock, api_token, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET), 400, "invalid_grant",
                              500131)
    assert ("Assertion audience does not match the Client app presenting the assertion. The audience in the "
            f"assertion was '{API_CLIENT_ID}' and the expected audience is '{DEFAULT_CLIENT_ID}'"
            in body["error_description"])
    # the app it was issued for may use it
    assert _obo(mock, api_token).status_code == 200


def test_obo_assertion_meant_for_graph_fails_signature_validation_50013(mock):
    rt = login(mock)["refresh_token"]
    graph_token = refresh(mock, rt, scope="https://graph.microsoft.com/User.Read").json()["access_token"]
    body = assert_entra_error(_obo(mock, graph_token), 400, "invalid_grant", 50013)
    assert body["error_description"].startswith("AADSTS50013: Assertion failed signature validation. [Reason - ")
    x5t = json.loads(b64url_decode(graph_token.split(".")[0]))["x5t"]
    assert f"Thumbprint of key used by client: '{b64url_decode(x5t).hex().upper()}'" in body["error_description"]
    # not a token of this authority at all
    assert_entra_error(_obo(mock, graph_token[:-8] + "AAAAAAAA"), 400, "invalid_grant", 50013)


def test_obo_expired_assertion_is_500133(mock):
    rt = login(mock)["refresh_token"]
    config(mock, access_token_lifetime_s=-60)
    api_token = refresh(mock, rt, scope=f"api://{API_CLIENT_ID}/access_as_user").json()["access_token"]
    assert_entra_error(_obo(mock, api_token), 400, "invalid_grant", 500133)


def test_http429_fault_for_client_credentials(mock):
    config(mock, fault="http429", fault_count=2, fault_grants=["client_credentials"], retry_after_s=11)
    cc = {"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default",
          "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    rt = login(mock)["refresh_token"]
    assert refresh(mock, rt).status_code == 200                   # refresh is not in fault_grants now
    for _ in range(2):
        r = requests.post(token_url(mock), data=cc, timeout=5)
        assert_entra_error(r, 429, "temporarily_unavailable", 90055)
        assert r.headers["Retry-After"] == "11"
    assert requests.post(token_url(mock), data=cc, timeout=5).status_code == 200     # count used up
    s = stats(mock)
    assert s["by_grant_outcome"]["client_credentials"] == {"fault:http429": 2, "ok": 1}
    assert s["by_grant_outcome"]["refresh_token"] == {"ok": 1} and s["faults_served"] == 2


def _wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _refresh_while_held(mock, rt: str, why: str):
    """refresh(mock, rt) on a thread while a hold fault is on: asserts it is held (held_now 1,
    still unanswered after 0.3 s; `why` says why it must be), then releases it. Returns (the
    release's response, the refresh's response)."""
    out = {}
    t = threading.Thread(target=lambda: out.update(r=refresh(mock, rt)))
    t.start()
    assert _wait_for(lambda: stats(mock)["held_now"] == 1)
    time.sleep(0.3)
    assert t.is_alive(), why
    released = requests.post(f"{mock.base_url}/_mock/release", timeout=5)
    t.join(5)
    return released, out["r"]


def _refresh_hanging_up_after_half_a_second(mock, rt: str) -> None:
    with pytest.raises(requests.exceptions.Timeout):
        requests.post(token_url(mock), timeout=0.5, data={
            "grant_type": "refresh_token", "refresh_token": rt, "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET})


def test_hold_fault_keeps_the_request_unprocessed_until_released(mock):
    config(mock, refresh_mode="strict")
    rt = login(mock)["refresh_token"]
    config(mock, fault="hold", fault_count=1)
    released, r = _refresh_while_held(mock, rt, "a held request must not be answered before the release")
    assert released.json() == {"released": 1}
    assert r.status_code == 200 and r.json()["refresh_token"] != rt
    s = stats(mock)
    assert (s["held_now"], s["held_total"]) == (0, 1)
    assert refresh(mock, rt).status_code == 400, "released normally, so the strict one-time token was spent"


def test_hold_fault_does_not_spend_the_refresh_token_of_a_client_that_hung_up(mock):
    config(mock, refresh_mode="strict")
    rt = login(mock)["refresh_token"]
    config(mock, fault="hold", fault_count=1)
    _refresh_hanging_up_after_half_a_second(mock, rt)
    assert stats(mock)["held_now"] == 1
    requests.post(f"{mock.base_url}/_mock/release", timeout=5).raise_for_status()
    assert _wait_for(lambda: stats(mock)["held_now"] == 0)
    assert _wait_for(lambda: stats(mock)["by_grant_outcome"].get("refresh_token") == {"fault:hold:client_gone": 1})
    assert refresh(mock, rt).status_code == 200, "the token of the request whose client went away is unspent"
    assert stats(mock)["reuse_detected"] == 0


def test_hold_answer_fault_spends_the_refresh_token_and_withholds_the_answer(mock):
    config(mock, refresh_mode="strict")
    rt = login(mock)["refresh_token"]
    config(mock, fault="hold_answer", fault_count=1)
    _refresh_hanging_up_after_half_a_second(mock, rt)
    assert _wait_for(lambda: stats(mock)["held_now"] == 1)
    assert requests.post(f"{mock.base_url}/_mock/release", timeout=5).json() == {"released": 1}
    assert _wait_for(lambda: stats(mock)["held_now"] == 0)
    assert _wait_for(lambda: stats(mock)["by_grant_outcome"].get("refresh_token") == {"ok": 1})
    assert refresh(mock, rt).status_code == 400, "processed before the hold: the one-time token is spent"
    assert stats(mock)["reuse_detected"] == 1


def test_hold_answer_fault_answers_a_waiting_client_after_the_release(mock):
    rt = login(mock)["refresh_token"]
    config(mock, fault="hold_answer", fault_count=1)
    released, r = _refresh_while_held(mock, rt, "the answer must be held until the release")
    released.raise_for_status()
    assert r.status_code == 200 and r.json()["access_token"]
