"""Certificate client authentication (private_key_jwt) as Entra documents it (issue: Entra
power features). The app registration holds the realm key's certificate: Keycloak's own login
exchange signs RS256 + x5t with it (stock option "Add X.509 headers"), our refresh and
app-only requests sign PS256 + x5t#S256 with the same key. The mock verifies both."""
from __future__ import annotations

import base64
import textwrap
import uuid

import requests

from support.keycloak import broker_token_v1, browser_login

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, TENANT, MockEntra
from .test_broker_token import claims, sleep_until


def _realm_certificate_pem(admin, realm) -> str:
    keys = admin.request("GET", f"/{realm}/keys").json()["keys"]
    rsa = next(k for k in keys if k.get("algorithm") == "RS256" and k.get("certificate") and k.get("status", "ACTIVE") == "ACTIVE")
    body = "\n".join(textwrap.wrap(rsa["certificate"], 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def test_login_and_refresh_with_a_certificate_instead_of_a_secret(admin, realm, mock_entra: MockEntra):
    client_id = str(uuid.uuid4())
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"],
                                           "certificates": [_realm_certificate_pem(admin, realm)]}})
    r = admin.create_idp(realm, "entra-cert", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": mock_entra.base_url, "clientId": client_id,
        "clientAuthMethod": "private_key_jwt", "jwtX509HeadersEnabled": "true", "clientAssertionSigningAlg": "RS256",
        "minValidityToken": "1", "syncMode": "IMPORT"})
    assert r.status_code == 201, r.text
    mock_entra.config(access_token_lifetime_s=3)
    user = browser_login(KC_BASE, realm, "entra-cert", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)
    first = broker_token_v1(KC_BASE, realm, "entra-cert", user)
    assert first.status_code == 200, first.text
    sleep_until(claims(first.json()["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    before = mock_entra.refresh_count()
    r = broker_token_v1(KC_BASE, realm, "entra-cert", user)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] != first.json()["access_token"]
    assert mock_entra.refresh_count() == before + 1
    recent = mock_entra.stats().get("recent_refreshes", [])
    if recent and "client_auth" in recent[-1]:
        assert recent[-1]["client_auth"] in ("private_key_jwt", "client_assertion"), recent[-1]


def test_unregistered_certificate_gives_idp_misconfigured_and_keeps_the_token(admin, realm, mock_entra: MockEntra):
    client_id = str(uuid.uuid4())
    cert = _realm_certificate_pem(admin, realm)
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"], "certificates": [cert]}})
    assert admin.create_idp(realm, "entra-cert2", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": mock_entra.base_url, "clientId": client_id,
        "clientAuthMethod": "private_key_jwt", "jwtX509HeadersEnabled": "true", "clientAssertionSigningAlg": "RS256",
        "minValidityToken": "1", "syncMode": "IMPORT"}).status_code == 201
    mock_entra.config(access_token_lifetime_s=3)
    user = browser_login(KC_BASE, realm, "entra-cert2", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)
    first = broker_token_v1(KC_BASE, realm, "entra-cert2", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    # The app registration's certificate is replaced by another one: our assertion no longer verifies.
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"], "certificates": []}})
    r = broker_token_v1(KC_BASE, realm, "entra-cert2", user)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "idp_misconfigured"
    assert 700027 in r.json()["upstream"]["error_codes"]
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"], "certificates": [cert]}},
                      access_token_lifetime_s=3600)
    ok = broker_token_v1(KC_BASE, realm, "entra-cert2", user)
    assert ok.status_code == 200, ok.text


def test_pem_files_and_rs256_option_for_our_requests(admin, realm, mock_entra: MockEntra, outbound):
    """Key and certificate from PEM files on the Keycloak host, RS256 + x5t: the app registration
    holds both certificates (the realm's, for Keycloak's own login exchange, and the file's)."""
    pki, _ = outbound  # any RSA key + certificate pair will do: the test CA's server pair
    client_id = str(uuid.uuid4())
    with open(pki.cert) as f:
        file_cert = f.read()
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"],
                                           "certificates": [_realm_certificate_pem(admin, realm), file_cert]}})
    assert admin.create_idp(realm, "entra-pem", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": mock_entra.base_url, "clientId": client_id,
        "clientAuthMethod": "private_key_jwt", "jwtX509HeadersEnabled": "true", "clientAssertionSigningAlg": "RS256",
        "clientAssertionAlg": "RS256", "clientAssertionKeyFile": pki.key, "clientAssertionCertFile": pki.cert,
        "minValidityToken": "1", "syncMode": "IMPORT"}).status_code == 201
    mock_entra.config(access_token_lifetime_s=3)
    user = browser_login(KC_BASE, realm, "entra-pem", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)
    first = broker_token_v1(KC_BASE, realm, "entra-pem", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    # Only the file's certificate left: the refresh must be signed with the file's key.
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"], "certificates": [file_cert]}})
    r = broker_token_v1(KC_BASE, realm, "entra-pem", user)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] != first["access_token"]
