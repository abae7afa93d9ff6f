"""Multi-tenant apps (issue: Entra power features): tenant `organizations`, the issuer follows
each token's `tid`, and an admin allow-list of tenant IDs decides who may sign in."""
from __future__ import annotations

import pytest

from support.keycloak import broker_token_v1, browser_login

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, REDIRECT_URI, TENANT, MockEntra
from .test_broker_token import claims

FABRIKAM = "22222222-2222-2222-2222-222222222222"
REFUSED = "33333333-3333-3333-3333-333333333333"


@pytest.fixture
def multi_tenant_idp(admin, realm, mock_entra: MockEntra):
    mock_entra.config(users={
        "dave@fabrikam.com": {"name": "Dave Fabrikam", "given_name": "Dave", "family_name": "Fabrikam",
                              "oid": "0da7e000-0000-4000-8000-00000000da7e", "tid": FABRIKAM, "email": "dave@fabrikam.com"},
        "erin@refused.example": {"name": "Erin Refused", "given_name": "Erin", "family_name": "Refused",
                                 "oid": "0e1e0000-0000-4000-8000-000000000e1e", "tid": REFUSED, "email": "erin@refused.example"}})
    r = admin.create_idp(realm, "entra-mt", "entra-oidc", {
        "entraTenant": "organizations", "entraAuthorityHost": mock_entra.base_url,
        "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET, "loginHint": "true",
        "entraAllowedTenants": f"{TENANT}##{FABRIKAM}", "syncMode": "IMPORT"})
    assert r.status_code == 201, r.text
    assert "issuer" not in admin.get_idp(realm, "entra-mt")["config"]
    return realm


def _login(realm, hint):
    return browser_login(KC_BASE, realm, "entra-mt", APP_CLIENT, APP_SECRET, login_hint=hint, redirect_uri=REDIRECT_URI)


def test_users_of_two_allowed_tenants_sign_in_and_get_their_tenants_tokens(multi_tenant_idp, mock_entra):
    realm = multi_tenant_idp
    alice = _login(realm, "alice@contoso.onmicrosoft.com")
    dave = _login(realm, "dave@fabrikam.com")
    ta = broker_token_v1(KC_BASE, realm, "entra-mt", alice).json()["access_token"]
    td = broker_token_v1(KC_BASE, realm, "entra-mt", dave).json()["access_token"]
    assert claims(ta)["tid"] == TENANT and claims(ta)["iss"] == f"{mock_entra.base_url}/{TENANT}/v2.0"
    assert claims(td)["tid"] == FABRIKAM and claims(td)["iss"] == f"{mock_entra.base_url}/{FABRIKAM}/v2.0"


def test_user_of_a_tenant_not_on_the_allow_list_cannot_sign_in(admin, multi_tenant_idp):
    realm = multi_tenant_idp
    with pytest.raises(AssertionError):
        _login(realm, "erin@refused.example")
    users = admin.request("GET", f"/{realm}/users", params={"search": "erin"}).json()
    assert users == []
