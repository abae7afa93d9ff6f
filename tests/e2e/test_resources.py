"""Tokens per resource from one refresh token (issue: Entra power features). An app asks the
broker endpoint for `?scope=<one resource>`; the core mints it from the stored refresh token,
keeps it per (user, IdP, resource) and refreshes it on its own schedule. Checked against the
mock Microsoft Graph, which validates signature, audience, expiry and scopes."""
from __future__ import annotations

import requests

from support.keycloak import broker_token_v1

from .conftest import KC_BASE, MockEntra
from .test_broker_token import claims, login, sleep_until

GRAPH = "https://graph.microsoft.com/User.Read"
API = "api://00000000-0000-0000-0000-0000000000a1/.default"


def _token(realm, user, scope=None):
    url = f"{KC_BASE}/realms/{realm}/broker/entra/token"
    return requests.get(url, params={"scope": scope} if scope else None,
                        headers={"Authorization": f"Bearer {user.access_token}"}, timeout=60)


def test_graph_token_from_the_broker_endpoint_reads_me_at_mock_graph(admin, realm, mock_entra: MockEntra, graph):
    admin.update_idp_config(realm, "entra", resourceScopes=f"{GRAPH}##{API}")
    user = login(realm)
    r = _token(realm, user, GRAPH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "refresh_token" not in body and "id_token" not in body
    assert claims(body["access_token"])["aud"] in ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
    me = requests.get(f"{graph.base_url}/v1.0/me", headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == claims(body["access_token"])["oid"]


def test_api_token_and_graph_token_come_from_one_refresh_token_and_are_cached_per_resource(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", resourceScopes=f"{GRAPH}##{API}")
    user = login(realm)
    before = mock_entra.refresh_count()
    graph1 = _token(realm, user, GRAPH).json()["access_token"]
    api1 = _token(realm, user, API).json()["access_token"]
    assert claims(api1)["aud"] in ("00000000-0000-0000-0000-0000000000a1", "api://00000000-0000-0000-0000-0000000000a1")
    assert mock_entra.refresh_count() == before + 2
    # Cached: asked again, no upstream call, same tokens.
    assert _token(realm, user, GRAPH).json()["access_token"] == graph1
    assert _token(realm, user, API).json()["access_token"] == api1
    assert mock_entra.refresh_count() == before + 2
    recent = mock_entra.stats().get("recent_refreshes", [])[-2:]
    assert all("offline_access" in (r.get("scope") or "") for r in recent), recent


def test_resource_token_is_refreshed_on_its_own_schedule(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", resourceScopes=GRAPH, minValidityToken=1)
    user = login(realm)  # the IdP's own token lives an hour
    own = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
    mock_entra.config(access_token_lifetime_s=3)
    graph1 = _token(realm, user, GRAPH).json()["access_token"]
    sleep_until(claims(graph1)["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    before = mock_entra.refresh_count()
    graph2 = _token(realm, user, GRAPH)
    assert graph2.status_code == 200, graph2.text
    assert graph2.json()["access_token"] != graph1
    assert mock_entra.refresh_count() == before + 1
    assert broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"] == own
    assert mock_entra.refresh_count() == before + 1


def test_scope_not_in_the_allow_list_is_forbidden(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", resourceScopes=GRAPH)
    user = login(realm)
    before = mock_entra.refresh_count()
    r = _token(realm, user, "https://graph.microsoft.com/Mail.Read")
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"
    assert mock_entra.refresh_count() == before
