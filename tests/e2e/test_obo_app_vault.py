"""On-behalf-of, app-only tokens and vault secrets (issue: Entra power features).

The middle tier is the mock's API app (client ...a1). The user's token for its API
(api://...a1/.default) is the OBO assertion, never a Graph token; the downstream Graph token
is checked by the mock Graph."""
from __future__ import annotations

import requests


from .conftest import APP_CLIENT, KC_BASE, VAULT, MockEntra
from .test_broker_token import claims, login

MIDDLE_TIER = "00000000-0000-0000-0000-0000000000a1"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def _get(realm, path, token, **params):
    return requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/{path}", params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_obo_returns_a_graph_token_for_the_user_via_the_middle_tier(admin, realm, mock_entra: MockEntra, graph):
    admin.update_idp_config(realm, "entra", oboClientId=MIDDLE_TIER, oboClientSecret="mock-secret-a1",
                            oboScopes=GRAPH_DEFAULT)
    user = login(realm)
    stats = mock_entra.stats()["by_grant"]
    r = _get(realm, "obo", user.access_token, scope=GRAPH_DEFAULT)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert "refresh_token" not in r.json()
    assert claims(token)["aud"] in ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
    me = requests.get(f"{graph.base_url}/v1.0/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200, me.text
    after = mock_entra.stats()["by_grant"]
    obo_grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert after.get(obo_grant, 0) == stats.get(obo_grant, 0) + 1
    # Cached until near expiry: no second exchange.
    again = _get(realm, "obo", user.access_token, scope=GRAPH_DEFAULT)
    assert again.json()["access_token"] == token
    assert mock_entra.stats()["by_grant"].get(obo_grant, 0) == after.get(obo_grant, 0)


def test_obo_scope_not_allowed_is_forbidden(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", oboClientId=MIDDLE_TIER, oboClientSecret="mock-secret-a1",
                            oboScopes=GRAPH_DEFAULT)
    user = login(realm)
    r = _get(realm, "obo", user.access_token, scope="https://graph.microsoft.com/Mail.Send")
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text


def service_client(admin, realm, client_id, secret, role=None) -> None:
    """A confidential client with a service account, holding the realm role `role` if given."""
    admin.request("POST", f"/{realm}/clients", json={
        "clientId": client_id, "secret": secret, "publicClient": False, "serviceAccountsEnabled": True,
        "standardFlowEnabled": False})
    if role:
        admin.request("POST", f"/{realm}/roles", json={"name": role}, expect=(201, 409))
        cid = admin.request("GET", f"/{realm}/clients", params={"clientId": client_id}).json()[0]["id"]
        sa = admin.request("GET", f"/{realm}/clients/{cid}/service-account-user").json()["id"]
        rep = admin.request("GET", f"/{realm}/roles/{role}").json()
        admin.request("POST", f"/{realm}/users/{sa}/role-mappings/realm", json=[rep])


def _service_account_token(admin, realm, client_id, secret, role=None) -> str:
    service_client(admin, realm, client_id, secret, role)
    r = requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def test_app_only_token_lists_users_at_graph_and_is_cached(admin, realm, mock_entra: MockEntra, graph):
    admin.update_idp_config(realm, "entra", appTokenScopes=GRAPH_DEFAULT)
    caller = _service_account_token(admin, realm, "reporting", "reporting-secret", role="fresh-token-app-token")
    before = mock_entra.stats()["by_grant"].get("client_credentials", 0)
    r = _get(realm, "app-token", caller, scope=GRAPH_DEFAULT)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    users = requests.get(f"{graph.base_url}/v1.0/users", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert users.status_code == 200, users.text
    assert len(users.json()["value"]) >= 2
    # The node's app-token cache is keyed by token endpoint, client, scope, credential, realm and
    # IdP: the first call of this realm fetches, unless a retry of this test already filled it.
    after_first = mock_entra.stats()["by_grant"].get("client_credentials", 0)
    assert after_first in (before, before + 1)
    assert token in mock_entra.issued()["access_tokens"]
    assert _get(realm, "app-token", caller, scope=GRAPH_DEFAULT).json()["access_token"] == token
    assert mock_entra.stats()["by_grant"].get("client_credentials", 0) == after_first, "served from the cache"


def test_app_only_token_needs_the_dedicated_role(admin, realm):
    admin.update_idp_config(realm, "entra", appTokenScopes=GRAPH_DEFAULT)
    caller = _service_account_token(admin, realm, "no-role-app", "no-role-secret")
    r = _get(realm, "app-token", caller, scope=GRAPH_DEFAULT)
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text


def test_app_only_token_of_a_client_not_in_the_idp_allow_list_is_forbidden(admin, realm, mock_entra: MockEntra):
    """The IdP's 'Clients allowed to read tokens' applies to app-only tokens too (issue 11 item 4)."""
    admin.update_idp_config(realm, "entra", appTokenScopes=GRAPH_DEFAULT, tokenReaderClients=APP_CLIENT)
    caller = _service_account_token(admin, realm, "unlisted-app", "unlisted-secret", role="fresh-token-app-token")
    before = mock_entra.stats()["by_grant"].get("client_credentials", 0)
    r = _get(realm, "app-token", caller, scope=GRAPH_DEFAULT)
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    assert "access_token" not in r.json()
    assert mock_entra.stats()["by_grant"].get("client_credentials", 0) == before
    # The same caller is served once the IdP lists it.
    admin.update_idp_config(realm, "entra", tokenReaderClients=f"{APP_CLIENT} unlisted-app")
    assert _get(realm, "app-token", caller, scope=GRAPH_DEFAULT).status_code == 200


def test_obo_of_a_client_not_in_the_idp_allow_list_is_forbidden(admin, realm, mock_entra: MockEntra):
    """The IdP's 'Clients allowed to read tokens' applies to on-behalf-of (issue 11 item 4)."""
    admin.update_idp_config(realm, "entra", oboClientId=MIDDLE_TIER, oboClientSecret="mock-secret-a1",
                            oboScopes=GRAPH_DEFAULT, tokenReaderClients="some-other-app")
    user = login(realm)
    obo_grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    before = mock_entra.stats()["by_grant"].get(obo_grant, 0)
    r = _get(realm, "obo", user.access_token, scope=GRAPH_DEFAULT)
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    assert mock_entra.stats()["by_grant"].get(obo_grant, 0) == before


def test_client_secret_from_keycloaks_vault_is_used_for_login_and_refresh(admin, realm, mock_entra: MockEntra):
    (VAULT / f"{realm}_entrasecret").write_text("mock-secret-c1")
    admin.update_idp_config(realm, "entra", clientSecret="${vault.entrasecret}", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=3)
    user = login(realm)
    from support.keycloak import broker_token_v1
    from .test_broker_token import sleep_until
    first = broker_token_v1(KC_BASE, realm, "entra", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] != first["access_token"]
