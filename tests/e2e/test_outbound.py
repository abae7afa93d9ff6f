"""The core's calls to the IdP trust what Keycloak trusts and take Keycloak's outgoing proxy.

Keycloak runs with --truststore-paths=<private test CA> and a proxy mapping that sends the
host 'localhost' through a test proxy (see conftest.outbound)."""
from __future__ import annotations

import pytest

from mock_entra.server import start_server
from support.keycloak import broker_token_v1, browser_login

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, REDIRECT_URI, TENANT,
                       _current_features, kc_restart)
from .test_broker_token import claims, login, sleep_until


TLS_CA = [True]


@pytest.fixture(scope="module")
def tls_mock(outbound):
    pki, _ = outbound
    TLS_CA[0] = pki.ca
    with start_server(host="127.0.0.1", port=0, tls_cert=pki.cert, tls_key=pki.key) as server:
        yield server


def _session():
    import requests
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE from the environment would override `verify`
    s.verify = TLS_CA[0]
    return s


def _config(server, **kw):
    _session().post(f"{server.base_url}/_mock/config", json=kw, timeout=10).raise_for_status()


def _refreshes(server) -> int:
    return int(_session().get(f"{server.base_url}/_mock/stats", timeout=10).json()["by_grant"].get("refresh_token", 0))


def _sign_in_and_refresh_over_tls(admin, realm, tls_mock, outbound, alias):
    """An Entra IdP at the TLS mock: sign in, wait for expiry, read again. Returns the first and
    the second answer (both asserted 200) and how many refreshes the mock saw in between."""
    assert admin.create_idp(realm, alias, "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": tls_mock.base_url, "clientId": MOCK_CLIENT_ID,
        "clientSecret": MOCK_CLIENT_SECRET, "minValidityToken": "1", "syncMode": "IMPORT"}).status_code == 201
    _config(tls_mock, access_token_lifetime_s=3)
    user = browser_login(KC_BASE, realm, alias, APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI,
                         verify=outbound[0].ca)
    first = broker_token_v1(KC_BASE, realm, alias, user)
    assert first.status_code == 200, first.text
    sleep_until(claims(first.json()["access_token"])["exp"] + 1)
    before = _refreshes(tls_mock)
    r = broker_token_v1(KC_BASE, realm, alias, user)
    assert r.status_code == 200, r.text
    return first, r, _refreshes(tls_mock) - before


def test_refresh_against_an_idp_with_a_certificate_from_keycloaks_truststore(admin, realm, tls_mock, outbound):
    assert tls_mock.base_url.startswith("https://")
    first, r, refreshes = _sign_in_and_refresh_over_tls(admin, realm, tls_mock, outbound, "entra-tls")
    assert r.json()["access_token"] != first.json()["access_token"]
    assert refreshes == 1


def test_refresh_goes_through_keycloaks_outgoing_proxy(admin, realm, mock_entra, outbound):
    _, proxy = outbound
    port = mock_entra.base_url.rsplit(":", 1)[1]
    # Host 'localhost' is mapped to the proxy; a domain tenant: the issuer is not pinned.
    assert admin.create_idp(realm, "entra-proxied", "entra-oidc", {
        "entraTenant": "contoso.onmicrosoft.com", "entraAuthorityHost": f"http://localhost:{port}",
        "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET, "minValidityToken": "1",
        "syncMode": "IMPORT"}).status_code == 201
    mock_entra.config(access_token_lifetime_s=3)
    user = login(realm, alias="entra-proxied")
    first = broker_token_v1(KC_BASE, realm, "entra-proxied", user)
    assert first.status_code == 200, first.text
    sleep_until(claims(first.json()["access_token"])["exp"] + 1)
    before = proxy.count("POST", "/oauth2/v2.0/token")
    r = broker_token_v1(KC_BASE, realm, "entra-proxied", user)
    assert r.status_code == 200, r.text
    assert proxy.count("POST", "/oauth2/v2.0/token") == before + 1


def test_tls_failure_is_idp_misconfigured_and_keeps_the_refresh_token(admin, realm, tls_mock, outbound, tmp_path):
    """An IdP whose certificate Keycloak does not trust (another CA): idp_misconfigured, no
    retry storm, and the stored refresh token still works once the IdP is trusted again."""
    from mock_entra.pki import ensure_pki
    untrusted = ensure_pki(tmp_path / "other-ca")
    bad = start_server(host="127.0.0.1", port=0, tls_cert=untrusted.cert, tls_key=untrusted.key)
    try:
        assert admin.create_idp(realm, "entra-tls2", "entra-oidc", {
            "entraTenant": TENANT, "entraAuthorityHost": tls_mock.base_url, "clientId": MOCK_CLIENT_ID,
            "clientSecret": MOCK_CLIENT_SECRET, "minValidityToken": "1", "syncMode": "IMPORT"}).status_code == 201
        _config(tls_mock, access_token_lifetime_s=3)
        user = browser_login(KC_BASE, realm, "entra-tls2", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI,
                             verify=outbound[0].ca)
        first = broker_token_v1(KC_BASE, realm, "entra-tls2", user).json()
        sleep_until(claims(first["access_token"])["exp"] + 1)
        _config(tls_mock, access_token_lifetime_s=3600)
        # The token endpoint now answers with a certificate of an unknown CA.
        admin.update_idp_config(realm, "entra-tls2", entraAuthorityHost=bad.base_url)
        r = broker_token_v1(KC_BASE, realm, "entra-tls2", user)
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "idp_misconfigured"
        assert first["access_token"] not in r.text
        admin.update_idp_config(realm, "entra-tls2", entraAuthorityHost=tls_mock.base_url)
        ok = broker_token_v1(KC_BASE, realm, "entra-tls2", user)
        assert ok.status_code == 200, ok.text
        assert ok.json()["access_token"] != first["access_token"]
    finally:
        bad.stop()


def _ca_files_holding(ca_path: str) -> list:
    """Files named like the old truststore export in the shared temp folder that hold our test CA."""
    import base64
    import glob
    import os
    from cryptography import x509
    der = x509.load_pem_x509_certificate(open(ca_path, "rb").read()).public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    b64 = base64.b64encode(der).decode()
    found = []
    for f in glob.glob(os.path.join("/tmp", "fresh-token-ca*.pem")):
        try:
            text = "".join(open(f, encoding="ascii", errors="replace").read().split())
        except OSError:
            continue
        if b64 in text.replace("-----BEGINCERTIFICATE-----", "").replace("-----ENDCERTIFICATE-----", ""):
            found.append(f)
    return found


def test_truststore_reaches_the_core_in_memory_and_no_file_is_written_to_the_shared_temp_folder(
        admin, realm, tls_mock, outbound):
    """Keycloak's truststore goes to the core in the request (`idp.ca_pem`): nothing under
    java.io.tmpdir (/tmp) that another local user could plant or read, and TLS to the test CA works."""
    import os
    for stale in _ca_files_holding(outbound[0].ca):  # ours, from a run of an older build
        os.remove(stale)
    # A fresh Keycloak process: a build that exports the truststore does it once per process, at its first IdP call.
    features = _current_features["value"]
    kc_restart(**({"KC_FEATURES": features} if features else {}))
    _first, _r, refreshes = _sign_in_and_refresh_over_tls(admin, realm, tls_mock, outbound, "entra-tls-mem")
    assert refreshes == 1, "the refresh went over TLS to the test CA's server"
    assert _ca_files_holding(outbound[0].ca) == [], "a truststore export was written to the shared temp folder"
