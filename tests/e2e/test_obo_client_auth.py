"""The backend form of obo and app-token (issue 11 item 4): `POST /realms/{r}/fresh-token/{alias}/obo`
and `.../app-token`, where the calling client authenticates itself with its own credentials
(HTTP Basic or form, Keycloak's client authentication) and, for obo, passes the user's Keycloak
token as `subject_token`. The client must be on the IdP's 'Clients allowed to read tokens' and the
user's token must have been issued to it (azp) or for it (aud)."""
from __future__ import annotations

import requests

from support.keycloak import browser_login

from .conftest import APP_CLIENT, KC_BASE, REDIRECT_URI, MockEntra
from .test_broker_token import claims, login
from .test_obo_app_vault import GRAPH_DEFAULT, MIDDLE_TIER, service_client

BACKEND, BACKEND_SECRET = "orders-backend", "orders-backend-secret"
OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _post(realm, path, data, auth=None):
    return requests.post(f"{KC_BASE}/realms/{realm}/fresh-token/entra/{path}", data=data, auth=auth, timeout=60)


def _obo_idp(admin, realm, readers=f"{BACKEND} {APP_CLIENT}"):
    admin.update_idp_config(realm, "entra", oboClientId=MIDDLE_TIER, oboClientSecret="mock-secret-a1",
                            oboScopes=GRAPH_DEFAULT, tokenReaderClients=readers)


def _backend_login(admin, realm, client_id=BACKEND, secret=BACKEND_SECRET):
    admin.create_client(realm, client_id, secret, REDIRECT_URI)
    return browser_login(KC_BASE, realm, "entra", client_id, secret, redirect_uri=REDIRECT_URI)


def _obo_grants(mock_entra) -> int:
    return mock_entra.stats()["by_grant"].get(OBO_GRANT, 0)


def test_obo_for_an_authenticated_allowed_client_with_its_users_token_returns_a_graph_token(admin, realm, mock_entra: MockEntra, graph):
    _obo_idp(admin, realm)
    user = _backend_login(admin, realm)
    assert claims(user.access_token)["azp"] == BACKEND
    # HTTP Basic client authentication
    r = _post(realm, "obo", {"subject_token": user.access_token, "scope": GRAPH_DEFAULT}, auth=(BACKEND, BACKEND_SECRET))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = requests.get(f"{graph.base_url}/v1.0/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200, me.text
    # client_id + client_secret in the form
    r = _post(realm, "obo", {"subject_token": user.access_token, "scope": GRAPH_DEFAULT,
                             "client_id": BACKEND, "client_secret": BACKEND_SECRET})
    assert r.status_code == 200, r.text


def test_obo_with_a_wrong_client_secret_is_401_and_never_reaches_the_idp(admin, realm, mock_entra: MockEntra):
    _obo_idp(admin, realm)
    user = _backend_login(admin, realm)
    before = _obo_grants(mock_entra)
    r = _post(realm, "obo", {"subject_token": user.access_token, "scope": GRAPH_DEFAULT}, auth=(BACKEND, "wrong"))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client", r.text
    assert "access_token" not in r.json()
    assert _obo_grants(mock_entra) == before


def test_obo_for_an_authenticated_client_not_in_the_allow_list_is_403(admin, realm, mock_entra: MockEntra):
    _obo_idp(admin, realm, readers=APP_CLIENT)
    user = _backend_login(admin, realm)
    before = _obo_grants(mock_entra)
    r = _post(realm, "obo", {"subject_token": user.access_token, "scope": GRAPH_DEFAULT}, auth=(BACKEND, BACKEND_SECRET))
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    assert BACKEND in r.json()["error_description"]
    assert _obo_grants(mock_entra) == before


def test_obo_with_a_users_token_issued_to_another_client_is_refused(admin, realm, mock_entra: MockEntra):
    _obo_idp(admin, realm)
    admin.create_client(realm, BACKEND, BACKEND_SECRET, REDIRECT_URI)
    user = login(realm)  # signed in to demo-app: azp demo-app, not for the backend
    assert claims(user.access_token)["azp"] == APP_CLIENT
    before = _obo_grants(mock_entra)
    r = _post(realm, "obo", {"subject_token": user.access_token, "scope": GRAPH_DEFAULT}, auth=(BACKEND, BACKEND_SECRET))
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    assert "subject_token" in r.json()["error_description"]
    assert _obo_grants(mock_entra) == before


def test_obo_without_a_subject_token_or_with_an_invalid_one_is_refused(admin, realm, mock_entra: MockEntra):
    _obo_idp(admin, realm)
    admin.create_client(realm, BACKEND, BACKEND_SECRET, REDIRECT_URI)
    r = _post(realm, "obo", {"scope": GRAPH_DEFAULT}, auth=(BACKEND, BACKEND_SECRET))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    r = _post(realm, "obo", {"scope": GRAPH_DEFAULT, "subject_token": "not-a-token"}, auth=(BACKEND, BACKEND_SECRET))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text


def test_app_token_for_an_authenticated_client_follows_allow_list_role_and_secret(admin, realm, mock_entra: MockEntra, graph):
    admin.update_idp_config(realm, "entra", appTokenScopes=GRAPH_DEFAULT, tokenReaderClients="reporting-2")
    service_client(admin, realm, "reporting-2", "reporting-2-secret", role="fresh-token-app-token")
    service_client(admin, realm, "unlisted-2", "unlisted-2-secret", role="fresh-token-app-token")
    service_client(admin, realm, "no-role-2", "no-role-2-secret")
    admin.update_idp_config(realm, "entra", tokenReaderClients="reporting-2 no-role-2")
    before = mock_entra.stats()["by_grant"].get("client_credentials", 0)
    assert _post(realm, "app-token", {"scope": GRAPH_DEFAULT}, auth=("reporting-2", "wrong")).status_code == 401
    r = _post(realm, "app-token", {"scope": GRAPH_DEFAULT}, auth=("unlisted-2", "unlisted-2-secret"))
    assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    r = _post(realm, "app-token", {"scope": GRAPH_DEFAULT}, auth=("no-role-2", "no-role-2-secret"))
    assert r.status_code == 403 and "fresh-token-app-token" in r.json()["error_description"], r.text
    assert mock_entra.stats()["by_grant"].get("client_credentials", 0) == before
    r = _post(realm, "app-token", {"scope": GRAPH_DEFAULT, "client_id": "reporting-2", "client_secret": "reporting-2-secret"})
    assert r.status_code == 200, r.text
    users = requests.get(f"{graph.base_url}/v1.0/users", headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=10)
    assert users.status_code == 200, users.text


def test_public_client_cannot_use_the_backend_form(admin, realm, mock_entra: MockEntra):
    _obo_idp(admin, realm, readers="spa-public")
    admin.request("POST", f"/{realm}/clients", json={
        "clientId": "spa-public", "publicClient": True, "redirectUris": [REDIRECT_URI], "standardFlowEnabled": True})
    r = _post(realm, "obo", {"scope": GRAPH_DEFAULT, "subject_token": "x", "client_id": "spa-public"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
