"""Moving an existing IdP over (issue 5).

An IdP of Keycloak's own `oidc` or `microsoft` type is changed in place to one of ours (and
back) with POST /admin/realms/{realm}/fresh-token-migration/{alias}?to=...; users who linked
before the move keep their links and stored tokens, and get a refreshed token afterwards."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import requests

from support.keycloak import broker_token_v1, browser_login

from .conftest import (APP_CLIENT, APP_SECRET, KC_BASE, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, REDIRECT_URI, TENANT,
                       MockEntra)

ALICE = "alice@contoso.onmicrosoft.com"
ALICE_OID = "0a11ce00-0000-4000-8000-00000000a11c"
BOB = "bob@contoso.onmicrosoft.com"


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def login(realm: str, alias: str, hint: str):
    return browser_login(KC_BASE, realm, alias, APP_CLIENT, APP_SECRET, login_hint=hint, redirect_uri=REDIRECT_URI)


def migration(admin, realm: str, alias: str, method: str = "POST", expect=(200,), **params) -> requests.Response:
    return admin.request(method, f"/{realm}/fresh-token-migration/{alias}", params=params, expect=expect)


def stock_oidc_config(mock: MockEntra, scope: str = "openid profile email offline_access") -> dict:
    base = f"{mock.base_url}/{TENANT}"
    return {"authorizationUrl": f"{base}/oauth2/v2.0/authorize", "tokenUrl": f"{base}/oauth2/v2.0/token",
            "jwksUrl": f"{base}/discovery/v2.0/keys", "issuer": f"{base}/v2.0", "useJwksUrl": "true",
            "validateSignature": "true", "disableUserInfo": "true", "clientAuthMethod": "client_secret_post",
            "loginHint": "true", "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET, "defaultScope": scope,
            "syncMode": "IMPORT"}


@pytest.fixture
def stock_realm(admin, mock_entra):
    """A realm with the app client, unmanaged user attributes on (for the attribute mappers), no IdP yet."""
    name = "mig-" + uuid.uuid4().hex[:8]
    admin.create_realm(name, eventsEnabled=True, adminEventsEnabled=True, adminEventsDetailsEnabled=True)
    admin.create_client(name, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    profile = admin.request("GET", f"/{name}/users/profile").json()
    profile["unmanagedAttributePolicy"] = "ENABLED"
    admin.request("PUT", f"/{name}/users/profile", json=profile)
    mock_entra.config(access_token_lifetime_s=3600, refresh_mode="entra", fault="none")
    yield name


def add_mapper(admin, realm: str, alias: str, name: str, mapper: str, config: dict) -> str:
    r = admin.request("POST", f"/{realm}/identity-provider/instances/{alias}/mappers", json={
        "name": name, "identityProviderAlias": alias, "identityProviderMapper": mapper, "config": config})
    return r.headers["Location"].rsplit("/", 1)[1]


def mappers(admin, realm: str, alias: str) -> dict:
    return {m["id"]: m["identityProviderMapper"]
            for m in admin.request("GET", f"/{realm}/identity-provider/instances/{alias}/mappers").json()}


def mapper_types(admin, realm: str, alias: str) -> set:
    return set(admin.request("GET", f"/{realm}/identity-provider/instances/{alias}/mapper-types").json())


def user_by_username(admin, realm: str, username: str) -> dict:
    found = admin.request("GET", f"/{realm}/users", params={"username": username, "exact": "true"}).json()
    assert len(found) == 1, found
    return found[0]


def links(admin, realm: str, user_id: str) -> list:
    return admin.request("GET", f"/{realm}/users/{user_id}/federated-identity").json()


def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


@pytest.mark.parametrize("target", ["entra-oidc", "fresh-oidc"])
def test_stock_oidc_idp_moves_over_with_links_tokens_mappers_and_login_and_back(admin, stock_realm, mock_entra, target):
    realm, alias = stock_realm, "corp"
    r = admin.create_idp(realm, alias, "oidc", stock_oidc_config(mock_entra), storeToken=True,
                         displayName="Corporate sign-in")
    assert r.status_code == 201, r.text
    oid_mapper = add_mapper(admin, realm, alias, "oid", "oidc-user-attribute-idp-mapper",
                            {"claim": "oid", "user.attribute": "entraOid", "syncMode": "FORCE"})
    fixed_mapper = add_mapper(admin, realm, alias, "source", "hardcoded-attribute-idp-mapper",
                              {"attribute": "signedInVia", "attribute.value": "corp", "syncMode": "FORCE"})
    before_idp = admin.get_idp(realm, alias)

    # Users sign in through the stock IdP; their tokens (with refresh tokens) are stored by Keycloak's code.
    lifetime = 8
    mock_entra.config(access_token_lifetime_s=lifetime)
    alice = login(realm, alias, ALICE)
    bob = login(realm, alias, BOB)
    last_login = time.time()
    alice_user = user_by_username(admin, realm, ALICE)
    assert alice_user["attributes"]["entraOid"] == [ALICE_OID]

    # Dry run: the plan, nothing changed.
    plan = migration(admin, realm, alias, method="GET", to=target).json()
    assert (plan["from"], plan["to"], plan["applied"], plan["dryRun"]) == ("oidc", target, False, True)
    assert plan["links"] == {"total": 2, "withToken": 2, "withRefreshToken": 2, "notReadableByStock": 0}
    assert plan["storeToken"] == {"from": True, "to": True}
    assert {m["id"]: m["supported"] for m in plan["mappers"]} == {oid_mapper: True, fixed_mapper: True}
    assert plan["kept"]["redirectUri"] == f"{KC_BASE}/realms/{realm}/broker/{alias}/endpoint"
    added = plan["config"]["added"]
    assert added["freshTokenMigratedFrom"] == "oidc" and added["minValidityToken"] == "60"
    if target == "entra-oidc":
        assert added["entraTenant"] == TENANT and added["entraAuthorityHost"] == mock_entra.base_url
    assert added["addOfflineAccess"] == "true"
    assert MOCK_CLIENT_SECRET not in json.dumps(plan)
    assert admin.get_idp(realm, alias)["providerId"] == "oidc"
    # Without ?to= the target follows the URLs: the mock is not a Microsoft host, so fresh-oidc.
    assert migration(admin, realm, alias, method="GET").json()["to"] == "fresh-oidc"

    sleep_until(last_login + lifetime + 1)  # every stored access token has expired
    mock_entra.config(access_token_lifetime_s=3600)

    done = migration(admin, realm, alias, to=target).json()
    assert done["applied"] is True

    idp = admin.get_idp(realm, alias)
    assert idp["providerId"] == target
    for key in ("internalId", "alias", "displayName", "firstBrokerLoginFlowAlias", "enabled", "trustEmail"):
        assert idp.get(key) == before_idp.get(key), key
    assert idp["storeToken"] is True
    assert idp["config"]["clientId"] == MOCK_CLIENT_ID
    assert idp["config"]["tokenUrl"] == before_idp["config"]["tokenUrl"]
    assert mappers(admin, realm, alias) == {oid_mapper: "oidc-user-attribute-idp-mapper",
                                            fixed_mapper: "hardcoded-attribute-idp-mapper"}
    assert "oidc-user-attribute-idp-mapper" in mapper_types(admin, realm, alias)

    events = admin.request("GET", f"/{realm}/admin-events",
                           params={"operationTypes": "UPDATE", "resourceTypes": "IDENTITY_PROVIDER"}).json()
    ours = [e for e in events if e.get("resourcePath") == f"identity-provider/instances/{alias}"]
    assert len(ours) == 1, events
    assert json.loads(ours[0]["representation"])["to"] == target
    assert MOCK_CLIENT_SECRET not in ours[0]["representation"]

    # Users linked before the move: a fresh token from the row Keycloak's oidc type wrote, one refresh each.
    before = mock_entra.refresh_count()
    fresh = {}
    for name, user in (("alice", alice), ("bob", bob)):
        r = broker_token_v1(KC_BASE, realm, alias, user)
        assert r.status_code == 200, r.text
        fresh[name] = r.json()["access_token"]
        assert claims(fresh[name])["exp"] > time.time() + 3000
        assert "refresh_token" not in r.json()
    assert mock_entra.refresh_count() == before + 2
    again = broker_token_v1(KC_BASE, realm, alias, alice)
    assert again.json()["access_token"] == fresh["alice"]
    assert mock_entra.refresh_count() == before + 2

    # A new sign-in through the same alias (same redirect URI) still works, and the mappers apply.
    rep = admin.request("GET", f"/{realm}/users/{alice_user['id']}").json()
    rep["attributes"] = {}
    admin.request("PUT", f"/{realm}/users/{alice_user['id']}", json=rep)
    login(realm, alias, ALICE)
    again_user = user_by_username(admin, realm, ALICE)
    assert again_user["id"] == alice_user["id"]
    assert again_user["attributes"]["entraOid"] == [ALICE_OID]
    assert again_user["attributes"]["signedInVia"] == ["corp"]
    newcomer = f"carol.{uuid.uuid4().hex[:6]}@contoso.onmicrosoft.com"
    mock_entra.config(users={newcomer: {"name": "Carol Newcomer"}})
    carol = login(realm, alias, newcomer)
    assert broker_token_v1(KC_BASE, realm, alias, carol).status_code == 200
    assert user_by_username(admin, realm, newcomer)["attributes"]["signedInVia"] == ["corp"]

    # And back to Keycloak's oidc type (the documented rollback): offline_access stays in the scopes,
    # links and stored tokens stay, Keycloak's own code serves them.
    back = migration(admin, realm, alias, to="oidc").json()
    assert (back["from"], back["to"], back["applied"]) == (target, "oidc", True)
    idp = admin.get_idp(realm, alias)
    assert idp["providerId"] == "oidc" and idp["internalId"] == before_idp["internalId"]
    assert "offline_access" in idp["config"]["defaultScope"].split()
    assert "freshTokenInitialized" not in idp["config"]
    assert mappers(admin, realm, alias) == {oid_mapper: "oidc-user-attribute-idp-mapper",
                                            fixed_mapper: "hardcoded-attribute-idp-mapper"}
    stock = broker_token_v1(KC_BASE, realm, alias, bob)
    assert stock.status_code == 200, stock.text
    assert stock.json()["access_token"] == fresh["bob"]
    relogin = login(realm, alias, BOB)
    assert broker_token_v1(KC_BASE, realm, alias, relogin).status_code == 200
    assert [link["identityProvider"] for link in links(admin, realm, user_by_username(admin, realm, BOB)["id"])] == [alias]


def test_microsoft_idp_moves_to_entra_oidc_and_linked_users_are_found_by_object_id(admin, stock_realm, mock_entra):
    """Keycloak's `microsoft` type has fixed endpoints at login.microsoftonline.com, so no user signs in
    through it here: the link is made through the admin API as that type makes it (user ID = the
    Entra object ID from Graph /me). After the move the IdP is pointed at the mock."""
    realm, alias = stock_realm, "ms"
    r = admin.create_idp(realm, alias, "microsoft", {
        "clientId": MOCK_CLIENT_ID, "clientSecret": MOCK_CLIENT_SECRET, "tenantId": TENANT,
        "defaultScope": "User.Read offline_access", "syncMode": "IMPORT"}, storeToken=True, displayName="Microsoft")
    assert r.status_code == 201, r.text
    graph_mapper = add_mapper(admin, realm, alias, "job", "microsoft-user-attribute-mapper",
                              {"jsonField": "jobTitle", "userAttribute": "jobTitle", "syncMode": "IMPORT"})
    internal_id = admin.get_idp(realm, alias)["internalId"]
    admin.request("POST", f"/{realm}/users", json={"username": "alice", "enabled": True, "email": ALICE,
                                                   "firstName": "Alice", "lastName": "Example"})
    user_id = user_by_username(admin, realm, "alice")["id"]
    admin.request("POST", f"/{realm}/users/{user_id}/federated-identity/{alias}",
                  json={"identityProvider": alias, "userId": ALICE_OID, "userName": ALICE})
    # As Keycloak gives it to users an IdP creates (addReadTokenRoleOnCreate).
    broker = admin.request("GET", f"/{realm}/clients", params={"clientId": "broker"}).json()[0]["id"]
    read_token = admin.request("GET", f"/{realm}/clients/{broker}/roles/read-token").json()
    admin.request("POST", f"/{realm}/users/{user_id}/role-mappings/clients/{broker}", json=[read_token])

    plan = migration(admin, realm, alias, method="GET").json()
    assert (plan["from"], plan["to"]) == ("microsoft", "entra-oidc")
    cfg = plan["config"]
    assert cfg["added"]["entraTenant"] == TENANT
    assert cfg["added"]["entraAuthorityHost"] == "https://login.microsoftonline.com"
    assert "tenantId" in cfg["removed"]
    assert cfg["changed"]["defaultScope"]["to"] == "openid profile email User.Read offline_access"
    assert plan["links"] == {"total": 1, "withToken": 0, "withRefreshToken": 0, "notReadableByStock": 0}
    assert plan["mappers"] == [{"id": graph_mapper, "name": "job", "type": "microsoft-user-attribute-mapper",
                                "supported": False}]
    assert any("'job'" in w for w in plan["warnings"])

    assert migration(admin, realm, alias).json()["applied"] is True
    idp = admin.get_idp(realm, alias)
    assert idp["providerId"] == "entra-oidc" and idp["internalId"] == internal_id
    assert idp["config"]["authorizationUrl"] == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"
    assert idp["config"]["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert list(mappers(admin, realm, alias)) == [graph_mapper]

    # Test only: the same tenant, served by the mock.
    admin.update_idp_config(realm, alias, entraAuthorityHost=mock_entra.base_url)
    user = login(realm, alias, ALICE)
    assert user_by_username(admin, realm, "alice")["id"] == user_id
    assert len(admin.request("GET", f"/{realm}/users").json()) == 1, "no second user was created"
    link = links(admin, realm, user_id)
    assert len(link) == 1 and link[0]["identityProvider"] == alias
    assert link[0]["userId"] != ALICE_OID, "the link moved from the object ID to the ID token's sub"
    r = broker_token_v1(KC_BASE, realm, alias, user)
    assert r.status_code == 200, r.text


def test_migration_refuses_a_view_realm_admin_and_what_it_cannot_do(admin, realm, stock_realm, mock_entra):
    # A realm administrator who may only view the realm.
    target = stock_realm
    r = admin.create_idp(target, "corp", "oidc", stock_oidc_config(mock_entra), storeToken=True)
    assert r.status_code == 201, r.text
    admin.request("POST", f"/{target}/users", json={
        "username": "auditor", "enabled": True, "email": "auditor@example.org", "firstName": "A", "lastName": "B",
        "credentials": [{"type": "password", "value": "auditor-pw", "temporary": False}]})
    auditor = user_by_username(admin, target, "auditor")["id"]
    rm = admin.request("GET", f"/{target}/clients", params={"clientId": "realm-management"}).json()[0]["id"]
    view = admin.request("GET", f"/{target}/clients/{rm}/roles/view-realm").json()
    admin.request("POST", f"/{target}/users/{auditor}/role-mappings/clients/{rm}", json=[view])
    tok = requests.post(f"{KC_BASE}/realms/{target}/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli", "username": "auditor", "password": "auditor-pw"},
        timeout=30)
    tok.raise_for_status()
    headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
    url = f"{KC_BASE}/admin/realms/{target}/fresh-token-migration/corp"
    assert requests.get(url, headers=headers, params={"to": "entra-oidc"}, timeout=30).status_code == 403
    assert requests.post(url, headers=headers, params={"to": "entra-oidc"}, timeout=30).status_code == 403
    assert admin.get_idp(target, "corp")["providerId"] == "oidc"

    def refused(realm_name, alias, status, code, **params):
        r = migration(admin, realm_name, alias, expect=(status,), **params)
        assert r.json()["error"] == code, r.text

    refused(target, "nope", 404, "not_found", to="fresh-oidc")
    refused(target, "corp", 400, "unsupported_target", to="saml")
    refused(target, "corp", 409, "already_of_type", to="oidc")
    refused(realm, "entra", 409, "already_of_type", to="entra-oidc")       # the fixture's entra-oidc IdP
    refused(realm, "entra", 400, "target_required")
    # An OIDC IdP that is not Entra cannot become entra-oidc (no tenant to derive endpoints from).
    other = stock_oidc_config(mock_entra, scope="openid profile")
    other.update(authorizationUrl="http://127.0.0.1:1/realms/x/protocol/openid-connect/auth",
                 tokenUrl="http://127.0.0.1:1/realms/x/protocol/openid-connect/token",
                 issuer="http://127.0.0.1:1/realms/x")
    assert admin.create_idp(target, "kc", "oidc", other).status_code == 201
    refused(target, "kc", 400, "not_entra", to="entra-oidc")
    # Without offline_access in its scopes a generic IdP moves to fresh-oidc with a warning.
    plan = migration(admin, target, "kc", method="POST", dryRun="true").json()
    assert plan["to"] == "fresh-oidc" and plan["applied"] is False
    assert admin.get_idp(target, "kc")["providerId"] == "oidc"
    assert plan["config"]["added"]["addOfflineAccess"] == "false"
    assert any("offline_access" in w for w in plan["warnings"])


def realm_admin_headers(admin, realm: str, username: str, roles: list) -> dict:
    """A user of `realm` holding only the given realm-management roles, signed in through admin-cli."""
    admin.request("POST", f"/{realm}/users", json={
        "username": username, "enabled": True, "email": f"{username}@example.org", "firstName": "A", "lastName": "B",
        "credentials": [{"type": "password", "value": username + "-pw", "temporary": False}]})
    uid = user_by_username(admin, realm, username)["id"]
    rm = admin.request("GET", f"/{realm}/clients", params={"clientId": "realm-management"}).json()[0]["id"]
    reps = [admin.request("GET", f"/{realm}/clients/{rm}/roles/{role}").json() for role in roles]
    admin.request("POST", f"/{realm}/users/{uid}/role-mappings/clients/{rm}", json=reps)
    tok = requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli", "username": username, "password": username + "-pw"},
        timeout=30)
    tok.raise_for_status()
    return {"Authorization": f"Bearer {tok.json()['access_token']}"}


def test_migration_needs_identity_provider_permissions_not_manage_realm(admin, stock_realm, mock_entra):
    realm = stock_realm
    r = admin.create_idp(realm, "corp", "oidc", stock_oidc_config(mock_entra), storeToken=True)
    assert r.status_code == 201, r.text
    url = f"{KC_BASE}/admin/realms/{realm}/fresh-token-migration/corp"

    # manage-realm alone (Keycloak keeps identity-provider management as its own permission): neither plan nor move.
    realm_admin = realm_admin_headers(admin, realm, "realmadmin", ["manage-realm", "view-realm"])
    assert requests.get(f"{KC_BASE}/admin/realms/{realm}", headers=realm_admin, timeout=30).status_code == 200
    got = requests.get(url, headers=realm_admin, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 403, got.text
    got = requests.post(url, headers=realm_admin, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 403, got.text
    got = requests.post(url, headers=realm_admin, params={"to": "entra-oidc", "dryRun": "true"}, timeout=30)
    assert got.status_code == 403, got.text
    assert admin.get_idp(realm, "corp")["providerId"] == "oidc"

    # view-identity-providers: the plan (as the console's IdP pages may be read), not the move.
    viewer = realm_admin_headers(admin, realm, "idpviewer", ["view-identity-providers"])
    got = requests.get(url, headers=viewer, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["applied"] is False
    got = requests.post(url, headers=viewer, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 403, got.text
    assert admin.get_idp(realm, "corp")["providerId"] == "oidc"

    # manage-identity-providers (with view): plan and move.
    idp_admin = realm_admin_headers(admin, realm, "idpadmin", ["manage-identity-providers", "view-identity-providers"])
    got = requests.get(url, headers=idp_admin, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 200, got.text
    got = requests.post(url, headers=idp_admin, params={"to": "entra-oidc"}, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["applied"] is True
    assert admin.get_idp(realm, "corp")["providerId"] == "entra-oidc"
