"""Stock token exchange of a stored IdP token (legacy `requested_issuer=<alias>`) would
refresh it without our lock and drop it on a 5xx. For our IdP types it is refused with a
clear error instead. Needs Keycloak's legacy token exchange with fine-grained permissions."""
from __future__ import annotations

import urllib.parse

import pytest
import requests

from support.ordering import RUNS_LAST_PHASE2

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, PHASE2_FEATURES, TENANT,
                       MockEntra, ensure_features)
from .test_broker_token import claims, login

pytestmark = pytest.mark.runs_last(order=RUNS_LAST_PHASE2)  # restarts Keycloak with PHASE2_FEATURES (V1 off): support/ordering.py


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


# --- External-to-internal token exchange (subject_issuer=<alias>) and the tenant allow-list (issue 11 item 6)

FABRIKAM = "22222222-2222-2222-2222-222222222222"
REFUSED = "33333333-3333-3333-3333-333333333333"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"


@pytest.fixture
def multi_tenant_exchange(admin, realm, mock_entra: MockEntra):
    """A multi-tenant IdP (tenant `organizations`) that allows only the home tenant, and the app
    allowed to exchange tokens of that IdP."""
    mock_entra.config(users={
        "erin@refused.example": {"name": "Erin Refused", "given_name": "Erin", "family_name": "Refused",
                                 "oid": "0e1e0000-0000-4000-8000-000000000e1e", "tid": REFUSED,
                                 "email": "erin@refused.example"}})
    r = admin.create_idp(realm, "entra-mt", "entra-oidc", {
        "entraTenant": "organizations", "entraAuthorityHost": mock_entra.base_url,
        "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET,
        "entraAllowedTenants": TENANT, "syncMode": "IMPORT",
        # Entra tokens carry no `typ` claim; Keycloak's exchange checks it unless told not to.
        "disableTypeClaimCheck": "true"})
    assert r.status_code == 201, r.text
    _allow_client_to_exchange_for_idp(admin, realm, "entra-mt", APP_CLIENT)
    return realm


def _entra_id_token(mock_entra: MockEntra, login_hint: str) -> str:
    """An ID token of the mock Entra ID for our IdP's client, obtained as the app itself would
    (authorization code flow at the multi-tenant authority, no Keycloak involved)."""
    redirect = "http://127.0.0.1:1/exchange-cb"
    r = requests.get(f"{mock_entra.base_url}/organizations/oauth2/v2.0/authorize", params={
        "client_id": MOCK_CLIENT_ID, "response_type": "code", "redirect_uri": redirect,
        "scope": "openid profile email", "login_hint": login_hint, "state": "s"},
        allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    t = requests.post(f"{mock_entra.base_url}/organizations/oauth2/v2.0/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "client_id": MOCK_CLIENT_ID, "client_secret": MOCK_CLIENT_SECRET}, timeout=10)
    assert t.status_code == 200, t.text
    return t.json()["id_token"]


def _exchange_external(realm: str, alias: str, subject_token: str) -> requests.Response:
    return requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject_token, "subject_token_type": ID_TOKEN_TYPE, "subject_issuer": alias,
        "client_id": APP_CLIENT, "client_secret": APP_SECRET}, timeout=30)


def test_external_token_exchange_of_a_token_from_a_tenant_not_allowed_is_refused(admin, multi_tenant_exchange, mock_entra):
    realm = multi_tenant_exchange
    token = _entra_id_token(mock_entra, "erin@refused.example")
    assert claims(token)["tid"] == REFUSED
    r = _exchange_external(realm, "entra-mt", token)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_token", r.text
    assert "access_token" not in r.json()
    assert admin.request("GET", f"/{realm}/users", params={"search": "erin"}).json() == []


def test_external_token_exchange_of_a_token_from_an_allowed_tenant_signs_the_user_in(admin, multi_tenant_exchange, mock_entra):
    realm = multi_tenant_exchange
    token = _entra_id_token(mock_entra, "alice@contoso.onmicrosoft.com")
    assert claims(token)["tid"] == TENANT
    r = _exchange_external(realm, "entra-mt", token)
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["azp"] == APP_CLIENT
