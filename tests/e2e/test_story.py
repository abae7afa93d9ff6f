"""The whole story of an app behind Keycloak brokered to Entra ID, against the mock Entra ID and
the mock Microsoft Graph (issue: Entra power features)."""
from __future__ import annotations

import requests

from mock_graph.server import start_graph
from support.keycloak import broker_token_v1

from .conftest import KC_BASE, MockEntra
from .test_broker_token import claims, login, sleep_until
from .test_obo_app_vault import GRAPH_DEFAULT, MIDDLE_TIER, _service_account_token

API = f"api://{MIDDLE_TIER}/.default"
GRAPH_READ = "https://graph.microsoft.com/User.Read"


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_sign_in_read_me_refresh_obo_app_only_and_errors(admin, realm, mock_entra: MockEntra):
    graph = start_graph(mock_entra.base_url)
    requests.post(f"{graph.base_url}/_graph/config", json={"clock_skew_s": 0}, timeout=10).raise_for_status()
    try:
        admin.update_idp_config(realm, "entra", defaultScope="openid profile email User.Read", minValidityToken=1,
                                resourceScopes=f"{API}##{GRAPH_READ} {API}",
                                oboClientId=MIDDLE_TIER, oboClientSecret="mock-secret-a1", oboScopes=GRAPH_DEFAULT,
                                appTokenScopes=GRAPH_DEFAULT)
        mock_entra.config(access_token_lifetime_s=4)
        user = login(realm)
        # 1. The broker token is a Graph token: /me works.
        t1 = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
        assert requests.get(f"{graph.base_url}/v1.0/me", headers=_bearer(t1), timeout=10).status_code == 200
        # 2. After it expires Graph refuses it, and the broker endpoint hands out a fresh one.
        sleep_until(claims(t1)["exp"] + 1)
        expired = requests.get(f"{graph.base_url}/v1.0/me", headers=_bearer(t1), timeout=10)
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "InvalidAuthenticationToken"
        mock_entra.config(access_token_lifetime_s=3600)
        t2 = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
        assert requests.get(f"{graph.base_url}/v1.0/me", headers=_bearer(t2), timeout=10).status_code == 200
        # 3. A token for the app's own API, then on-behalf-of for Graph.
        api = requests.get(f"{KC_BASE}/realms/{realm}/broker/entra/token", params={"scope": API},
                           headers=_bearer(user.access_token), timeout=30)
        assert api.status_code == 200, api.text
        assert MIDDLE_TIER in claims(api.json()["access_token"])["aud"]
        obo = requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/obo", params={"scope": GRAPH_DEFAULT},
                           headers=_bearer(user.access_token), timeout=30)
        assert obo.status_code == 200, obo.text
        me = requests.get(f"{graph.base_url}/v1.0/me", headers=_bearer(obo.json()["access_token"]), timeout=10)
        assert me.status_code == 200 and me.json()["id"] == claims(t2)["oid"]
        # 4. An admin app gets an app-only token and lists /users; a user token without the role is refused.
        admin_app = _service_account_token(admin, realm, "admin-app", "admin-app-secret", role="fresh-token-app-token")
        app = requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/app-token", params={"scope": GRAPH_DEFAULT},
                           headers=_bearer(admin_app), timeout=30)
        assert app.status_code == 200, app.text
        assert requests.get(f"{graph.base_url}/v1.0/users", headers=_bearer(app.json()["access_token"]), timeout=10).status_code == 200
        refused = requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/app-token", params={"scope": GRAPH_DEFAULT},
                               headers=_bearer(user.access_token), timeout=30)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        # 5. Two resources in one request: Entra's AADSTS error is passed on (idp_misconfigured, codes kept).
        two = requests.get(f"{KC_BASE}/realms/{realm}/broker/entra/token", params={"scope": f"{GRAPH_READ} {API}"},
                           headers=_bearer(user.access_token), timeout=30)
        assert two.status_code == 502, two.text
        body = two.json()
        assert body["error"] == "idp_misconfigured"
        assert body["upstream"]["error"] == "invalid_scope"
        assert set(body["upstream"]["error_codes"]) & {700022, 70011, 28000, 28002}, body
    finally:
        graph.stop()


def test_cors_preflight_and_allowed_origin_on_our_endpoints(admin, realm):
    cid = admin.request("GET", f"/{realm}/clients", params={"clientId": "demo-app"}).json()[0]["id"]
    rep = admin.request("GET", f"/{realm}/clients/{cid}").json()
    rep["webOrigins"] = ["https://app.example"]
    admin.request("PUT", f"/{realm}/clients/{cid}", json=rep)
    user = login(realm)
    pre = requests.options(f"{KC_BASE}/realms/{realm}/fresh-token/entra/obo",
                           headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                                    "Access-Control-Request-Headers": "authorization"}, timeout=10)
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    ok = requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/obo", params={"scope": "x"},
                      headers={**_bearer(user.access_token), "Origin": "https://app.example"}, timeout=10)
    assert ok.headers.get("Access-Control-Allow-Origin") == "https://app.example"
    other = requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/obo", params={"scope": "x"},
                         headers={**_bearer(user.access_token), "Origin": "https://evil.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers
