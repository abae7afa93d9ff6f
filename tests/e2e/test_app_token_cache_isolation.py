"""The node's app-only token cache never hands one IdP's token to another (issue 11 item 1).

Two realms configure the same tenant and client ID with private_key_jwt; each signs with its
own realm key. Only realm A's certificate is registered at the mock, which verifies the
assertion's signature. Realm B must make its own grant (and be refused), never get A's token."""
from __future__ import annotations

import uuid

import requests

from .conftest import KC_BASE, TENANT, MockEntra
from .test_certificate_auth import _realm_certificate_pem
from .test_obo_app_vault import GRAPH_DEFAULT, _service_account_token


def _cert_idp(admin, realm, mock_entra, client_id):
    r = admin.create_idp(realm, "entra-cert", "entra-oidc", {
        "entraTenant": TENANT, "entraAuthorityHost": mock_entra.base_url, "clientId": client_id,
        "clientAuthMethod": "private_key_jwt", "appTokenScopes": GRAPH_DEFAULT, "syncMode": "IMPORT"})
    assert r.status_code == 201, r.text


def test_app_token_of_another_realm_with_same_client_id_but_other_key_is_never_served(admin, realm, mock_entra: MockEntra):
    client_id = str(uuid.uuid4())
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"],
                                           "certificates": [_realm_certificate_pem(admin, realm)]}})
    other = "e2e-" + uuid.uuid4().hex[:8]
    admin.create_realm(other)
    _cert_idp(admin, realm, mock_entra, client_id)
    _cert_idp(admin, other, mock_entra, client_id)

    def app_token(r, caller):
        return requests.get(f"{KC_BASE}/realms/{r}/fresh-token/entra-cert/app-token", params={"scope": GRAPH_DEFAULT},
                            headers={"Authorization": f"Bearer {caller}"}, timeout=60)

    a = app_token(realm, _service_account_token(admin, realm, "reporting", "reporting-secret", role="fresh-token-app-token"))
    assert a.status_code == 200, a.text
    token_a = a.json()["access_token"]
    grants = mock_entra.stats()["by_grant"].get("client_credentials", 0)
    b = app_token(other, _service_account_token(admin, other, "reporting", "reporting-secret", role="fresh-token-app-token"))
    assert mock_entra.stats()["by_grant"].get("client_credentials", 0) == grants + 1, f"realm B made no grant of its own: {b.status_code}"
    assert b.status_code != 200 or b.json().get("access_token") != token_a, "realm B was served realm A's cached token"
    assert b.status_code != 200, b.text  # B's key is not registered: the mock refuses its assertion
