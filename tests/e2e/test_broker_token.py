"""The broker token endpoint hands out an Entra token that is valid now (issue: foundation).

Given a realm brokering to the mock Entra ID through an `entra-oidc` IdP, and a user who
signed in through it, then GET/POST /realms/{realm}/broker/entra/token behaves as the README
documents."""
from __future__ import annotations

import base64
import json
import time

from support.keycloak import broker_token_v1, browser_login

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, TENANT, MockEntra


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def login(realm: str, alias: str = "entra", hint: str | None = None):
    return browser_login(KC_BASE, realm, alias, APP_CLIENT, APP_SECRET, login_hint=hint, redirect_uri=REDIRECT_URI)


def login_with_3s_tokens(admin, realm: str, mock_entra, **mock_settings):
    """The IdP refreshes 1 s before expiry, the mock issues 3 s access tokens (and mock_settings),
    alice signs in. Returns her session."""
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=3, **mock_settings)
    return login(realm)


def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


def test_idp_created_through_admin_api_gets_derived_endpoints_and_our_defaults(admin, realm, mock_entra):
    idp = admin.get_idp(realm, "entra")
    base = f"{mock_entra.base_url}/{TENANT}"
    assert idp["config"]["tokenUrl"] == f"{base}/oauth2/v2.0/token"
    assert idp["config"]["authorizationUrl"] == f"{base}/oauth2/v2.0/authorize"
    assert idp["config"]["jwksUrl"] == f"{base}/discovery/v2.0/keys"
    assert idp["config"]["issuer"] == f"{mock_entra.base_url}/{TENANT}/v2.0"
    assert idp["config"]["minValidityToken"] == "60"
    assert idp["config"]["addOfflineAccess"] == "true"
    assert idp["storeToken"] is True


def test_authority_host_must_be_https_outside_loopback(admin, realm):
    r = admin.create_idp(realm, "entra-bad", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": "http://login.example.com",
        "clientId": "x", "clientSecret": "y"})
    assert r.status_code == 400, r.text
    assert "https" in r.text


def test_first_call_returns_login_token_without_refresh_and_without_refresh_token_field(realm, mock_entra: MockEntra):
    user = login(realm)
    refreshes_before = mock_entra.refresh_count()
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "refresh_token" not in body
    assert claims(body["access_token"])["iss"] == f"{mock_entra.base_url}/{TENANT}/v2.0"
    assert 3500 < body["expires_in"] <= 3600
    assert mock_entra.refresh_count() == refreshes_before
    # Served again without calling the IdP: the same token.
    again = broker_token_v1(KC_BASE, realm, "entra", user).json()
    assert again["access_token"] == body["access_token"]
    assert mock_entra.refresh_count() == refreshes_before


def test_token_inside_min_validity_window_is_refreshed_early(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=100)
    mock_entra.config(access_token_lifetime_s=130)
    user = login(realm)
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    assert first["expires_in"] > 100, first.get("expires_in")
    exp = claims(first["access_token"])["exp"]
    before = mock_entra.refresh_count()
    sleep_until(exp - 97)  # now inside the 100 s window (seconds are whole on Keycloak's clock), still valid ~97 s
    second = broker_token_v1(KC_BASE, realm, "entra", user).json()
    assert second["access_token"] != first["access_token"]
    assert claims(first["access_token"])["exp"] > time.time(), "the old token was still valid: an early refresh"
    assert mock_entra.refresh_count() == before + 1


def test_expired_token_is_refreshed_once_and_rotated_refresh_token_is_stored(admin, realm, mock_entra: MockEntra):
    user = login_with_3s_tokens(admin, realm, mock_entra)
    stale = broker_token_v1(KC_BASE, realm, "entra", user).json()
    sleep_until(claims(stale["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    before = mock_entra.refresh_count()

    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 200, r.text
    fresh = r.json()
    now = time.time()
    exp = claims(fresh["access_token"])["exp"]
    assert fresh["access_token"] != stale["access_token"]
    assert exp > now + 3000
    assert abs(fresh["expires_in"] - (exp - now)) <= 2, "expires_in is the remaining lifetime"
    assert mock_entra.refresh_count() == before + 1

    # The stored refresh token is the rotated one: the newest refresh token the mock issued.
    admin.update_idp_config(realm, "entra", includeRefreshToken="true")
    with_rt = broker_token_v1(KC_BASE, realm, "entra", user).json()
    assert with_rt["refresh_token"] == mock_entra.issued()["refresh_tokens"][-1]
    assert mock_entra.refresh_count() == before + 1


def test_strict_one_time_refresh_tokens_survive_two_refresh_cycles(admin, realm, mock_entra: MockEntra):
    user = login_with_3s_tokens(admin, realm, mock_entra, refresh_mode="strict")
    token = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
    for _ in range(2):
        sleep_until(claims(token)["exp"] + 1)
        r = broker_token_v1(KC_BASE, realm, "entra", user)
        assert r.status_code == 200, r.text  # a reused (unrotated) refresh token would be invalid_grant
        assert r.json()["access_token"] != token
        token = r.json()["access_token"]


def test_user_without_offline_access_gets_reauth_required_after_expiry(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    # The IdP issues no refresh token (entra-oidc refuses a login scope without offline_access on save).
    mock_entra.config(access_token_lifetime_s=3, issue_refresh_tokens=False)
    user = login(realm)
    first = broker_token_v1(KC_BASE, realm, "entra", user)
    assert first.status_code == 200
    sleep_until(claims(first.json()["access_token"])["exp"] + 1)
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "reauth_required"
    assert "access_token" not in r.text


def test_idp_answering_invalid_grant_gives_reauth_required(admin, realm, mock_entra: MockEntra):
    user = login_with_3s_tokens(admin, realm, mock_entra)
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    mock_entra.config(fault="invalid_grant", fault_count=1)
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "reauth_required"
    assert body["upstream"]["error"] == "invalid_grant"
    assert body["upstream"]["error_codes"], body


def test_operational_info_reports_native_library_loaded(admin):
    info = admin.server_info()
    providers = info["providers"]["identity_provider"]["providers"]
    op = providers["entra-oidc"]["operationalInfo"]
    assert op["nativeLibraryState"] == "LOADED", op
    assert op["nativeLibraryPath"].endswith("libfresh_token_core.so")
    assert op["nativeCoreVersion"] == op["providerVersion"]
