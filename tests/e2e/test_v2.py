"""The V2 endpoint (POST /realms/{realm}/broker/{alias}/token, Keycloak 26.6+, feature
identity-brokering-api:v2). V1 and V2 are two versions of one Keycloak feature and cannot be
enabled on the same server, so this module restarts the shared Keycloak with V2 on (see conftest.PHASE2_FEATURES)."""
from __future__ import annotations

import time

import pytest

from support.keycloak import broker_token_v2
from support.ordering import RUNS_LAST_PHASE2

from .conftest import KC_BASE, PHASE2_FEATURES, MockEntra, ensure_features
from .test_broker_token import claims, login, login_with_3s_tokens, sleep_until
from .test_single_flight import CALLERS, storm

pytestmark = pytest.mark.runs_last(order=RUNS_LAST_PHASE2)  # restarts Keycloak with PHASE2_FEATURES (V1 off): support/ordering.py


@pytest.fixture(scope="module", autouse=True)
def v2_keycloak(keycloak):
    ensure_features(PHASE2_FEATURES)


def test_v2_endpoint_refreshes_expired_token(admin, realm, mock_entra: MockEntra):
    user = login_with_3s_tokens(admin, realm, mock_entra)
    stale = broker_token_v2(KC_BASE, realm, "entra", user)
    assert stale.status_code == 200, stale.text
    stale = stale.json()
    assert "refresh_token" not in stale and "id_token" not in stale
    sleep_until(claims(stale["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    before = mock_entra.refresh_count()
    r = broker_token_v2(KC_BASE, realm, "entra", user)
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["access_token"] != stale["access_token"]
    assert claims(fresh["access_token"])["exp"] > time.time() + 3000
    assert "refresh_token" not in fresh
    assert mock_entra.refresh_count() == before + 1


def test_fifty_concurrent_v2_calls_for_an_expired_token_cause_one_refresh(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=10, refresh_mode="strict")  # a storm must end within the lifetime
    user = login(realm)
    token = broker_token_v2(KC_BASE, realm, "entra", user).json()["access_token"]
    sleep_until(claims(token)["exp"] + 1)
    before = mock_entra.refresh_count()
    answers = storm(realm, user, [broker_token_v2] * CALLERS)
    assert [a.status_code for a in answers] == [200] * CALLERS, [a.text[:200] for a in answers if a.status_code != 200][:3]
    assert len({a.json()["access_token"] for a in answers}) == 1
    assert mock_entra.refresh_count() == before + 1


def test_v2_error_is_returned_as_our_json_not_a_bare_invalid_request(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    # The IdP issues no refresh token (entra-oidc refuses a login scope without offline_access on save).
    mock_entra.config(access_token_lifetime_s=3, issue_refresh_tokens=False)
    user = login(realm)
    first = broker_token_v2(KC_BASE, realm, "entra", user)
    assert first.status_code == 200, first.text
    sleep_until(claims(first.json()["access_token"])["exp"] + 1)
    r = broker_token_v2(KC_BASE, realm, "entra", user)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "reauth_required"
