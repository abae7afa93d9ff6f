"""Without the native library Keycloak still starts, reports the problem, and every token
call answers the documented `native_unavailable` error. Runs last (runs_last marker, support/ordering.py): it restarts Keycloak."""
from __future__ import annotations

import uuid

import pytest

from support.keycloak import KeycloakAdmin, broker_token_v1, browser_login
from support.ordering import RUNS_LAST_RESTART_NO_DATA

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, entra_idp_config, kc, kc_log_path)

pytestmark = pytest.mark.runs_last(order=RUNS_LAST_RESTART_NO_DATA)  # restarts Keycloak without the .so and without its data: support/ordering.py


def test_without_native_library_keycloak_starts_and_token_calls_answer_native_unavailable(keycloak, mock_entra):
    kc("stop")
    kc("start", KC_NO_NATIVE="1")
    try:
        admin = KeycloakAdmin(KC_BASE)
        op = admin.server_info()["providers"]["identity_provider"]["providers"]["entra-oidc"]["operationalInfo"]
        assert op["nativeLibraryState"] == "FAILED"
        assert "not found" in op["nativeLibraryProblem"]
        assert "native core NOT available" in kc_log_path().read_text()

        realm = "e2e-nonative-" + uuid.uuid4().hex[:6]
        admin.create_realm(realm)
        admin.create_client(realm, APP_CLIENT, APP_SECRET, REDIRECT_URI)
        assert admin.create_idp(realm, "entra", "entra-oidc", entra_idp_config(mock_entra)).status_code == 201
        user = browser_login(KC_BASE, realm, "entra", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)
        r = broker_token_v1(KC_BASE, realm, "entra", user)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "native_unavailable"
    finally:
        kc("stop")
        kc("start")  # leave the shared Keycloak as the session fixture expects (it stops it)
