"""Errors the app can act on, and hostile IdP answers (issue: single-flight / errors).

One user whose Entra access token has expired; the mock's fault switch makes each refresh
fail in one way. Each class gets the documented code, the stored refresh token stays intact
(a clean refresh afterwards succeeds with the mock in strict one-time mode), and Keycloak
stays healthy."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from support.keycloak import broker_token_v1, link_idp

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, KC_MGMT_PORT, REDIRECT_URI, entra_idp_config)
from .test_broker_token import claims, login, login_with_3s_tokens, sleep_until

FAULTS = [
    # (mock fault, HTTP status, our code)
    ("http500_html", 503, "retry_later"),
    ("http503", 503, "retry_later"),
    ("http429", 503, "retry_later"),
    ("temporarily_unavailable", 503, "retry_later"),
    ("slow", 503, "retry_later"),
    ("invalid_json_200", 502, "upstream_error"),
    ("truncated_json_200", 502, "upstream_error"),
    ("huge_body_200", 502, "upstream_error"),
    ("missing_access_token_200", 502, "upstream_error"),
    ("html_200", 502, "upstream_error"),
    ("redirect_302", 502, "idp_misconfigured"),
    ("invalid_client", 502, "idp_misconfigured"),
    ("consent_required", 400, "consent_required"),
    ("conditional_access_block", 403, "admin_action_required"),
    ("interaction_required", 400, "reauth_required"),
]


@pytest.fixture(scope="module")
def expired(admin, mock_entra):
    """A realm and a user whose stored Entra access token has expired."""
    name = "e2e-err-" + uuid.uuid4().hex[:6]
    admin.create_realm(name, eventsEnabled=True)
    admin.create_client(name, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    assert admin.create_idp(name, "entra", "entra-oidc", entra_idp_config(
        mock_entra, minValidityToken=1, httpTimeoutMs=1500, refreshMaxAttempts=1)).status_code == 201
    mock_entra.config(access_token_lifetime_s=3, refresh_mode="strict", fault="none")
    user = login(name)
    first = broker_token_v1(KC_BASE, name, "entra", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    yield name, user, first["access_token"]
    mock_entra.config(fault="none", refresh_mode="entra", access_token_lifetime_s=3600)


def _healthy() -> bool:
    return requests.get(f"http://127.0.0.1:{KC_MGMT_PORT}/health/ready", timeout=10).status_code == 200


@pytest.mark.parametrize("fault,status,code", FAULTS, ids=[f[0] for f in FAULTS])
def test_refresh_failure_class_gives_documented_error_and_keeps_the_refresh_token(expired, mock_entra, fault, status, code):
    realm, user, stale = expired
    mock_entra.config(fault=fault, fault_count=-1, slow_seconds=4, retry_after_s=7)
    try:
        r = broker_token_v1(KC_BASE, realm, "entra", user)
    finally:
        mock_entra.config(fault="none")
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code, body
    assert body["error_description"]
    assert stale not in r.text
    if code == "retry_later":
        assert int(r.headers["Retry-After"]) >= 1
    if fault == "http429":
        assert r.headers["Retry-After"] == "7"
    if code == "reauth_required":
        assert "kc_action=idp_link%3Aentra" in body["account-link-url"] or "kc_action=idp_link:entra" in body["account-link-url"]
    assert _healthy()
    # The stored refresh token is intact: a clean refresh (one-time tokens) succeeds.
    # Not for the last case: after interaction_required the IdP has nothing wrong with the token either.
    ok = broker_token_v1(KC_BASE, realm, "entra", user)
    assert ok.status_code == 200, ok.text
    fresh = ok.json()["access_token"]
    assert fresh != stale
    # Expire the new token again for the next case.
    sleep_until(claims(fresh)["exp"] + 1)


def test_transient_failure_is_retried_within_the_deadline(admin, realm, mock_entra):
    admin.update_idp_config(realm, "entra", minValidityToken=1, refreshMaxAttempts=3)
    mock_entra.config(access_token_lifetime_s=3)
    user = login(realm)
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600, fault="http503", fault_count=1)
    before = mock_entra.refresh_count()
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 200, r.text
    assert mock_entra.refresh_count() == before + 2


def test_valid_token_is_served_when_an_early_refresh_fails_transiently(admin, realm, mock_entra):
    admin.update_idp_config(realm, "entra", minValidityToken=100, refreshMaxAttempts=1)
    mock_entra.config(access_token_lifetime_s=130)
    user = login(realm)
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    assert first["expires_in"] > 100, first.get("expires_in")
    sleep_until(claims(first["access_token"])["exp"] - 97)  # inside the window, still valid ~97 s
    mock_entra.config(fault="http503", fault_count=-1)
    try:
        r = broker_token_v1(KC_BASE, realm, "entra", user)
    finally:
        mock_entra.config(fault="none")
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] == first["access_token"]
    assert 0 < r.json()["expires_in"] <= 100


def test_client_not_in_the_idp_allow_list_is_forbidden(admin, realm, mock_entra):
    admin.update_idp_config(realm, "entra", tokenReaderClients="some-other-app")
    user = login(realm)
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


def test_user_linked_to_two_idps_cannot_read_the_one_not_meant_for_the_client(admin, realm, mock_entra):
    """Keycloak issue 53059: the read-token role is realm-wide; our allow-list is per IdP."""
    admin.update_idp_config(realm, "entra", tokenReaderClients=APP_CLIENT)
    assert admin.create_idp(realm, "entra2", "entra-oidc", entra_idp_config(
        mock_entra, tokenReaderClients="reporting-app")).status_code == 201
    user = login(realm, alias="entra")
    user = link_idp(KC_BASE, realm, user, "entra2", redirect_uri=REDIRECT_URI)
    uid = admin.request("GET", f"/{realm}/users").json()[0]["id"]
    links = {l["identityProvider"] for l in admin.request("GET", f"/{realm}/users/{uid}/federated-identity").json()}
    assert links == {"entra", "entra2"}
    assert broker_token_v1(KC_BASE, realm, "entra", user).status_code == 200
    r = broker_token_v1(KC_BASE, realm, "entra2", user)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


@pytest.mark.parametrize("expires_in", ["absent", 0, -5, 10**10], ids=["absent", "zero", "negative", "huge"])
def test_odd_expires_in_never_makes_us_serve_past_the_tokens_real_expiry(admin, realm, mock_entra, expires_in):
    """The IdP's expires_in is absent, zero, negative or huge: the token's own `exp` bounds what
    we promise; a token is never served past it."""
    user = login_with_3s_tokens(admin, realm, mock_entra)
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=600, expires_in_override=expires_in)
    try:
        r = broker_token_v1(KC_BASE, realm, "entra", user)
    finally:
        mock_entra.config(expires_in_override=None)
    assert r.status_code == 200, r.text
    body = r.json()
    real_left = claims(body["access_token"])["exp"] - time.time()
    assert body["access_token"] != first["access_token"]
    assert 0 < body["expires_in"] <= real_left + 2, (body["expires_in"], real_left)
