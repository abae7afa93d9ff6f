"""Secret-typed settings of our IdP types (the on-behalf-of client secret) are masked wherever
Keycloak masks the IdP's own clientSecret: the admin REST representation, admin events with
representation, and partial export (issue 11 item 3). Saving the masked value back keeps the
stored secret; vault references are shown as they are."""
from __future__ import annotations

import json

import requests

from .conftest import KC_BASE, VAULT, MockEntra
from .test_broker_token import login

MIDDLE_TIER = "00000000-0000-0000-0000-0000000000a1"
OBO_SECRET = "mock-secret-a1"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
MASK = "**********"


def _obo(realm, token):
    return requests.get(f"{KC_BASE}/realms/{realm}/fresh-token/entra/obo", params={"scope": GRAPH_DEFAULT},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _set_obo(admin, realm, secret):
    return admin.update_idp_config(realm, "entra", oboClientId=MIDDLE_TIER, oboClientSecret=secret,
                                   oboScopes=GRAPH_DEFAULT)


def test_get_identity_provider_shows_obo_client_secret_masked(admin, realm, mock_entra: MockEntra):
    rep = _set_obo(admin, realm, OBO_SECRET)
    assert rep["config"].get("oboClientSecret") == MASK, rep["config"]
    assert OBO_SECRET not in json.dumps(rep)
    listed = admin.request("GET", f"/{realm}/identity-provider/instances").json()
    assert OBO_SECRET not in json.dumps(listed)


def test_admin_event_representation_has_no_obo_client_secret(admin, realm, mock_entra: MockEntra):
    _set_obo(admin, realm, OBO_SECRET)
    events = admin.request("GET", f"/{realm}/admin-events", params={"resourceTypes": "IDENTITY_PROVIDER",
                                                                     "max": 100}).json()
    updates = [e for e in events if e.get("operationType") == "UPDATE"]
    assert updates and all(e.get("representation") for e in updates), events
    for e in events:
        assert OBO_SECRET not in (e.get("representation") or ""), e
    assert any(json.loads(e["representation"])["config"].get("oboClientSecret") == MASK for e in updates)


def test_partial_export_has_no_obo_client_secret(admin, realm, mock_entra: MockEntra):
    _set_obo(admin, realm, OBO_SECRET)
    r = admin.request("POST", f"/{realm}/partial-export", params={"exportClients": "true",
                                                                  "exportGroupsAndRoles": "false"})
    assert r.status_code == 200
    assert OBO_SECRET not in r.text
    idp = next(i for i in r.json()["identityProviders"] if i["alias"] == "entra")
    assert idp["config"].get("oboClientSecret") == MASK


def test_saving_the_masked_obo_client_secret_keeps_the_stored_secret(admin, realm, mock_entra: MockEntra, graph):
    _set_obo(admin, realm, OBO_SECRET)
    rep = admin.get_idp(realm, "entra")
    assert rep["config"]["oboClientSecret"] == MASK
    rep["displayName"] = "Entra (saved from the console)"
    admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=rep)
    user = login(realm)
    r = _obo(realm, user.access_token)
    assert r.status_code == 200, r.text


def test_obo_client_secret_vault_reference_is_shown_as_the_reference(admin, realm, mock_entra: MockEntra, graph):
    (VAULT / f"{realm}_obosecret").write_text(OBO_SECRET)
    rep = _set_obo(admin, realm, "${vault.obosecret}")
    assert rep["config"]["oboClientSecret"] == "${vault.obosecret}"
    user = login(realm)
    r = _obo(realm, user.access_token)
    assert r.status_code == 200, r.text


def test_a_new_obo_client_secret_replaces_the_stored_one(admin, realm, mock_entra: MockEntra, graph):
    _set_obo(admin, realm, "wrong-secret")
    _set_obo(admin, realm, OBO_SECRET)
    user = login(realm)
    r = _obo(realm, user.access_token)
    assert r.status_code == 200, r.text
    # Emptying the field removes the secret: obo then fails as misconfigured, without a guess.
    rep = admin.get_idp(realm, "entra")
    rep["config"]["oboClientSecret"] = ""
    admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=rep)
    assert admin.get_idp(realm, "entra")["config"].get("oboClientSecret", "") == ""


def test_deleting_the_idp_deletes_its_stored_secret_and_a_new_idp_of_that_alias_inherits_nothing(
        admin, realm, mock_entra: MockEntra):
    from .conftest import entra_idp_config
    _set_obo(admin, realm, OBO_SECRET)
    holder = "dev.freshtoken.keycloak.IdpSecretSpi$Holder"
    stored = admin.request("GET", f"/{realm}/components", params={"type": holder}).json()
    assert [c["name"] for c in stored] == ["entra"] and OBO_SECRET not in json.dumps(stored), stored
    assert OBO_SECRET not in admin.request("GET", f"/{realm}/components").text
    admin.request("DELETE", f"/{realm}/identity-provider/instances/entra")
    assert admin.request("GET", f"/{realm}/components", params={"type": holder}).json() == []
    # A masked value with nothing behind it (e.g. a partial export imported) is not kept as a secret.
    r = admin.create_idp(realm, "entra", "entra-oidc", entra_idp_config(mock_entra, oboClientId=MIDDLE_TIER,
                                                                        oboClientSecret=MASK))
    assert r.status_code == 201, r.text
    assert admin.get_idp(realm, "entra")["config"].get("oboClientSecret", "") == ""


def test_moving_the_idp_to_a_stock_type_leaves_no_secret_store_behind_and_the_plan_writes_none(
        admin, realm, mock_entra: MockEntra):
    holder = "dev.freshtoken.keycloak.IdpSecretSpi$Holder"
    _set_obo(admin, realm, OBO_SECRET)
    # The plan (a dry run) writes nothing; the move to stock oidc deletes our component, so a
    # Keycloak without this JAR (uninstall) meets no component of an unknown type.
    plan = admin.request("GET", f"/{realm}/fresh-token-migration/entra", params={"to": "oidc"}).json()
    assert OBO_SECRET not in json.dumps(plan)
    assert len(admin.request("GET", f"/{realm}/components", params={"type": holder}).json()) == 1
    admin.request("POST", f"/{realm}/fresh-token-migration/entra", params={"to": "oidc"})
    assert admin.request("GET", f"/{realm}/components", params={"type": holder}).json() == []
    idp = admin.get_idp(realm, "entra")
    assert idp["providerId"] == "oidc" and OBO_SECRET not in json.dumps(idp)
    # A stock IdP with a plain obo secret left in its config: the plan to our type writes no component.
    idp["config"]["oboClientSecret"] = "left-over-plain"
    admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=idp)
    plan = admin.request("GET", f"/{realm}/fresh-token-migration/entra", params={"to": "entra-oidc"}).json()
    assert "left-over-plain" not in json.dumps(plan)
    assert admin.request("GET", f"/{realm}/components", params={"type": holder}).json() == []
