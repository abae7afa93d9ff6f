"""Stock token exchange of a stored IdP token (legacy `requested_issuer=<alias>`) would
refresh it without our lock and drop it on a 5xx. For our IdP types it is refused with a
clear error instead. Needs Keycloak's legacy token exchange with fine-grained permissions."""
from __future__ import annotations

import pytest
import requests

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, PHASE2_FEATURES, MockEntra, ensure_features
from .test_broker_token import login


@pytest.fixture(scope="module", autouse=True)
def exchange_keycloak(keycloak):
    ensure_features(PHASE2_FEATURES)


def _allow_client_to_exchange_for_idp(admin, realm: str, alias: str, client_id: str) -> None:
    perms = admin.request("PUT", f"/{realm}/identity-provider/instances/{alias}/management/permissions",
                          json={"enabled": True}).json()
    perm_id = perms["scopePermissions"]["token-exchange"]
    rm = admin.request("GET", f"/{realm}/clients", params={"clientId": "realm-management"}).json()[0]["id"]
    app = admin.request("GET", f"/{realm}/clients", params={"clientId": client_id}).json()[0]["id"]
    admin.request("POST", f"/{realm}/clients/{rm}/authz/resource-server/policy/client",
                  json={"name": f"allow-{client_id}", "clients": [app]})
    policy = admin.request("GET", f"/{realm}/clients/{rm}/authz/resource-server/policy",
                           params={"name": f"allow-{client_id}"}).json()[0]["id"]
    perm = admin.request("GET", f"/{realm}/clients/{rm}/authz/resource-server/permission/scope/{perm_id}").json()
    perm["policies"] = [policy]
    admin.request("PUT", f"/{realm}/clients/{rm}/authz/resource-server/permission/scope/{perm_id}", json=perm)


def test_stock_token_exchange_of_our_idps_stored_token_is_refused_without_spending_it(admin, realm, mock_entra: MockEntra):
    _allow_client_to_exchange_for_idp(admin, realm, "entra", APP_CLIENT)
    user = login(realm)
    before = mock_entra.refresh_count()
    r = requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": user.access_token, "requested_issuer": "entra",
        "client_id": APP_CLIENT, "client_secret": APP_SECRET}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "unsupported_token_type", r.text
    assert "broker/entra/token" in r.json()["error_description"]
    assert mock_entra.refresh_count() == before
