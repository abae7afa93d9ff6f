"""Retrying a refresh that may have reached the IdP (issue 11 item 8b).

The mock's `connection_reset` fault reads the whole request and then resets the connection:
from the client's side the refresh "may have been processed". A generic OIDC IdP (fresh-oidc)
is treated as strict one-time rotation: the refresh token is not sent a second time, the
caller gets retry_later and the stored refresh token stays. Entra tolerates a refresh token
sent again within its lifetime, so an entra-oidc IdP retries as before."""
from __future__ import annotations

import uuid

import pytest

from support.keycloak import broker_token_v1

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, REDIRECT_URI, TENANT, MockEntra, entra_idp_config
from .test_broker_token import claims, login, sleep_until


def _generic_config(mock: MockEntra) -> dict:
    base = f"{mock.base_url}/{TENANT}"
    return {"authorizationUrl": f"{base}/oauth2/v2.0/authorize", "tokenUrl": f"{base}/oauth2/v2.0/token",
            "jwksUrl": f"{base}/discovery/v2.0/keys", "issuer": f"{base}/v2.0", "useJwksUrl": "true",
            "validateSignature": "true", "disableUserInfo": "true", "clientAuthMethod": "client_secret_post",
            "loginHint": "true", "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET,
            "defaultScope": "openid profile email offline_access", "syncMode": "IMPORT",
            "minValidityToken": "1", "refreshMaxAttempts": "3"}


@pytest.fixture
def due(admin, mock_entra):
    """(provider type) -> realm, user and alias whose stored access token has expired."""
    def make(provider_id: str):
        realm = "e2e-retry-" + uuid.uuid4().hex[:6]
        admin.create_realm(realm, eventsEnabled=True)
        admin.create_client(realm, APP_CLIENT, APP_SECRET, REDIRECT_URI)
        cfg = (_generic_config(mock_entra) if provider_id == "fresh-oidc"
               else entra_idp_config(mock_entra, minValidityToken=1, refreshMaxAttempts=3))
        r = admin.create_idp(realm, "up", provider_id, cfg)
        assert r.status_code == 201, r.text
        mock_entra.config(access_token_lifetime_s=3, refresh_mode="strict", fault="none")
        user = login(realm, "up")
        first = broker_token_v1(KC_BASE, realm, "up", user)
        assert first.status_code == 200, first.text
        sleep_until(claims(first.json()["access_token"])["exp"] + 1)
        return realm, user
    yield make
    mock_entra.config(fault="none", refresh_mode="entra", access_token_lifetime_s=3600)


def _reset_refreshes(mock_entra: MockEntra, realm: str, user) -> tuple[int, object]:
    before = mock_entra.refresh_count()
    mock_entra.config(fault="connection_reset", fault_count=-1)
    try:
        r = broker_token_v1(KC_BASE, realm, "up", user)
    finally:
        mock_entra.config(fault="none")
    return mock_entra.refresh_count() - before, r


def test_generic_oidc_refresh_reset_after_send_is_sent_once_and_answers_retry_later(due, mock_entra):
    realm, user = due("fresh-oidc")
    sent, r = _reset_refreshes(mock_entra, realm, user)
    assert sent == 1, f"the refresh token was sent {sent} times"
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "retry_later"
    assert int(r.headers["Retry-After"]) >= 1
    # The stored refresh token stays (the mock reset before processing, so it is still unspent).
    ok = broker_token_v1(KC_BASE, realm, "up", user)
    assert ok.status_code == 200, ok.text


def test_entra_refresh_reset_after_send_is_retried_with_the_same_refresh_token(due, mock_entra):
    realm, user = due("entra-oidc")
    sent, r = _reset_refreshes(mock_entra, realm, user)
    assert sent == 3, f"the refresh token was sent {sent} times"
    assert r.status_code == 503 and r.json()["error"] == "retry_later", r.text
