"""The database refuses the write after the IdP answered a refresh (issue 11 item 8a).

Keycloak runs here on its dev-mode H2 database opened in auto-server mode, so the test can
change the schema while Keycloak runs: a CHECK constraint added with NOCHECK (the existing row
is kept) makes the database refuse every UPDATE of one user's federated-identity row, a real
refusal at commit time. The mock Entra ID runs in strict one-time mode: a rotated refresh
token sent again is "reuse" (counted, and the family revoked). The caller must get the new
token, later calls must never send the spent refresh token again, and once the database takes
writes again the row must end with the newest refresh token.

The module restarts Keycloak twice (with the auto-server URL, then back to the default) and
leaves a fresh Keycloak behind, as the session fixture expects."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from support.at_rest import h2_auto_server_url, h2_live_token, h2_sql
from support.keycloak import KeycloakAdmin, broker_token_v1

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, ROOT, MockEntra, entra_idp_config, kc
from .test_broker_token import claims, login, sleep_until

KC_HOME = ROOT / "keycloak-dist" / f"keycloak-{os.environ.get('KC_VERSION', '26.7.3')}"
DB_USER, DB_PASSWORD = "commitfail", "commitfail-db-pw"
CONSTRAINT = "FT_TEST_REFUSE_UPDATE"


@pytest.fixture(scope="module")
def live_db(keycloak):
    kc("stop")
    kc("start", KC_KEEP_DATA="0", KC_DB_URL=h2_auto_server_url(KC_HOME), KC_DB_USERNAME=DB_USER,
       KC_DB_PASSWORD=DB_PASSWORD)
    try:
        yield KeycloakAdmin(KC_BASE)
    finally:
        kc("stop")
        kc("start")


def _refuse_updates_of(kc_user_id: str) -> None:
    h2_sql(KC_HOME, DB_USER, DB_PASSWORD,
           f"ALTER TABLE FEDERATED_IDENTITY ADD CONSTRAINT {CONSTRAINT} CHECK (USER_ID <> '{kc_user_id}') NOCHECK")


def _accept_updates() -> None:
    h2_sql(KC_HOME, DB_USER, DB_PASSWORD, f"ALTER TABLE FEDERATED_IDENTITY DROP CONSTRAINT IF EXISTS {CONSTRAINT}")


def test_refused_write_after_refresh_keeps_new_tokens_and_never_resends_the_spent_refresh_token(live_db, mock_entra: MockEntra):
    admin = live_db
    realm = "e2e-commit-" + uuid.uuid4().hex[:6]
    admin.create_realm(realm, eventsEnabled=True)
    admin.create_client(realm, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    assert admin.create_idp(realm, "entra", "entra-oidc", entra_idp_config(
        mock_entra, minValidityToken=1, refreshMaxAttempts=1)).status_code == 201
    mock_entra.config(access_token_lifetime_s=8, refresh_mode="strict", fault="none")
    user = login(realm)
    users = admin.request("GET", f"/{realm}/users").json()
    assert len(users) == 1, users
    kc_user_id = users[0]["id"]
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
    reuse_before = mock_entra.stats()["reuse_detected"]
    try:
        _refuse_updates_of(kc_user_id)
        sleep_until(claims(first)["exp"] + 1)

        # 1. Refresh succeeds upstream, the write is refused: the caller still gets the new token.
        refreshes = mock_entra.refresh_count()
        r1 = broker_token_v1(KC_BASE, realm, "entra", user)
        assert r1.status_code == 200, r1.text
        at1 = r1.json()["access_token"]
        assert at1 != first
        assert mock_entra.refresh_count() == refreshes + 1
        stored = json.loads(h2_live_token(KC_HOME, DB_USER, DB_PASSWORD, kc_user_id, "entra"))
        assert stored["access_token"] == first, "the database should still refuse the write"

        # 2. While the fault persists, the next caller is served the kept token set (no refresh).
        r2 = broker_token_v1(KC_BASE, realm, "entra", user)
        assert r2.status_code == 200, r2.text
        assert r2.json()["access_token"] == at1
        assert mock_entra.stats()["reuse_detected"] == reuse_before

        # 3. Due again, fault still there: the refresh uses the kept (newest) refresh token.
        sleep_until(claims(at1)["exp"] + 1)
        r3 = broker_token_v1(KC_BASE, realm, "entra", user)
        assert r3.status_code == 200, r3.text
        at2 = r3.json()["access_token"]
        assert at2 not in (first, at1)
        assert mock_entra.stats()["reuse_detected"] == reuse_before, "a spent refresh token was sent again"
    finally:
        _accept_updates()

    # 4. Writes work again: the next call stores the kept set; the row ends with the newest refresh token.
    r4 = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r4.status_code == 200, r4.text
    assert r4.json()["access_token"] == at2
    stored = json.loads(h2_live_token(KC_HOME, DB_USER, DB_PASSWORD, kc_user_id, "entra"))
    assert stored["refresh_token"] == mock_entra.issued()["refresh_tokens"][-1]
    assert stored["access_token"] == at2

    # 5. And the refresh after that starts from the stored row without any reuse.
    sleep_until(claims(at2)["exp"] + 1)
    r5 = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r5.status_code == 200, r5.text
    assert mock_entra.stats()["reuse_detected"] == reuse_before
