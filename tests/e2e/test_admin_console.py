"""Visible in the admin console (issue 7): provider info, misconfiguration caught on save, the
per-user token status / clear admin API, and the admin console itself in a real browser
(Debian's Chromium driven by playwright-core, tests/browser/console.mjs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from support.keycloak import broker_token_v1, browser_login

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, ROOT, TENANT, ensure_features, entra_idp_config, kc_restart

CHROMIUM = "/usr/bin/chromium"
BROWSER_DIR = ROOT / "tests" / "browser"
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _claims(jwt: str) -> dict:
    import base64
    p = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def _user_id(admin, realm: str, username: str) -> str:
    users = admin.request("GET", f"/{realm}/users", params={"username": username, "exact": "true"}).json()
    assert len(users) == 1, users
    return users[0]["id"]


def _status(admin, realm: str, user_id: str) -> dict:
    return admin.request("GET", f"/{realm}/fresh-token/users/{user_id}").json()


def _login(realm: str):
    return browser_login(KC_BASE, realm, "entra", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)


def _realm_user_token(admin, realm: str, username: str, roles: list[str]) -> str:
    """A user of `realm` with only the given realm-management roles, signed in with admin-cli."""
    admin.request("POST", f"/{realm}/users", json={
        "username": username, "enabled": True, "email": f"{username}@example.org", "firstName": "A", "lastName": "B",
        "emailVerified": True, "credentials": [{"type": "password", "value": "pw-" + username, "temporary": False}]})
    uid = _user_id(admin, realm, username)
    if roles:
        rm = admin.request("GET", f"/{realm}/clients", params={"clientId": "realm-management"}).json()[0]["id"]
        reps = [admin.request("GET", f"/{realm}/clients/{rm}/roles/{r}").json() for r in roles]
        admin.request("POST", f"/{realm}/users/{uid}/role-mappings/clients/{rm}", json=reps)
    r = requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli", "username": username, "password": "pw-" + username},
        timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


# --- Provider info -------------------------------------------------------------------------

def test_server_info_shows_version_native_library_state_and_path(admin):
    info = admin.server_info()
    providers = info["providers"]["identity_provider"]["providers"]
    for pid in ("entra-oidc", "fresh-oidc"):
        op = providers[pid]["operationalInfo"]
        assert op["providerVersion"] == "0.1.0", op
        assert op["nativeCoreVersion"] == "0.1.0", op
        assert op["nativeLibraryState"] == "LOADED", op
        assert op["nativeLibraryPath"].endswith("/providers/libfresh_token_core.so"), op
        assert Path(op["nativeLibraryPath"]).is_file()


# --- Misconfiguration caught on save ---------------------------------------------------------

def test_entra_idp_without_offline_access_is_refused_on_create_with_a_clear_400(admin, realm, mock_entra):
    r = admin.create_idp(realm, "entra-nooffline", "entra-oidc",
                         entra_idp_config(mock_entra, addOfflineAccess="false", defaultScope="openid profile User.Read"))
    assert r.status_code == 400, r.text
    assert "offline_access" in r.json()["errorMessage"]
    assert admin.request("GET", f"/{realm}/identity-provider/instances/entra-nooffline", expect=(404,)).status_code == 404


def test_entra_idp_update_removing_offline_access_is_refused_and_the_idp_is_unchanged(admin, realm):
    rep = admin.get_idp(realm, "entra")
    rep["config"]["addOfflineAccess"] = "false"
    r = admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=rep, expect=None)
    assert r.status_code == 400, r.text
    assert "offline_access" in r.json()["errorMessage"]
    assert admin.get_idp(realm, "entra")["config"]["addOfflineAccess"] == "true"
    # offline_access in the scopes themselves is as good as the switch.
    rep["config"]["defaultScope"] = "openid profile offline_access"
    r = admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=rep, expect=None)
    assert r.status_code == 204, r.text


def test_authority_host_without_https_is_refused_on_update(admin, realm):
    rep = admin.get_idp(realm, "entra")
    rep["config"]["entraAuthorityHost"] = "http://login.example.com"
    r = admin.request("PUT", f"/{realm}/identity-provider/instances/entra", json=rep, expect=None)
    assert r.status_code == 400, r.text
    assert "https" in r.json()["errorMessage"]


# --- Per-user token status and clear --------------------------------------------------------

def _signed_in_with_a_short_lived_token(admin, realm: str, mock_entra):
    """alice signs in through the mock (4 s access tokens, the IdP refreshes 1 s before expiry)
    and the app asks for her token once. Returns (her session, her user id, that access token)."""
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=4)
    user = _login(realm)
    uid = _user_id(admin, realm, "alice@contoso.onmicrosoft.com")
    first = broker_token_v1(KC_BASE, realm, "entra", user)
    assert first.status_code == 200, first.text
    return user, uid, first.json()["access_token"]


def _refreshed_after_expiry(realm: str, mock_entra, user, at1: str):
    """Waits until at1 has expired; the next app call refreshes (to a 3600 s token). Returns
    (the time just before that call, its answer)."""
    time.sleep(max(0.0, _claims(at1)["exp"] + 1 - time.time()))
    before = int(time.time())
    mock_entra.config(access_token_lifetime_s=3600)
    second = broker_token_v1(KC_BASE, realm, "entra", user)
    assert second.status_code == 200, second.text
    return before, second


def test_admin_sees_token_status_refresh_time_and_can_clear_the_token_without_seeing_it(admin, realm, mock_entra):
    user, uid, at1 = _signed_in_with_a_short_lived_token(admin, realm, mock_entra)

    st = _status(admin, realm, uid)
    assert st["userId"] == uid
    [idp] = st["identityProviders"]
    assert idp["alias"] == "entra" and idp["providerId"] == "entra-oidc"
    assert idp["tokenStored"] is True and idp["refreshTokenStored"] is True
    assert idp["accessTokenExpiresAt"] == _claims(at1)["exp"]
    assert idp["lastRefreshedAt"] is None  # not refreshed since the login

    # Let it expire; the next app call refreshes, and the status shows when.
    before, second = _refreshed_after_expiry(realm, mock_entra, user, at1)
    at2 = second.json()["access_token"]
    st = _status(admin, realm, uid)
    [idp] = st["identityProviders"]
    assert before - 1 <= idp["lastRefreshedAt"] <= int(time.time()) + 1
    assert idp["accessTokenExpiresAt"] == _claims(at2)["exp"]
    assert idp["accessTokenValid"] is True and 3500 < idp["accessTokenExpiresIn"] <= 3600
    text = json.dumps(st)
    assert at1 not in text and at2 not in text
    for issued in mock_entra.issued().get("refresh_tokens", []):
        assert (issued if isinstance(issued, str) else json.dumps(issued)) not in text

    # Clear: the link stays, the token is gone, the app gets the documented error.
    r = admin.request("DELETE", f"/{realm}/fresh-token/users/{uid}/idps/entra/token", expect=(204,))
    assert r.status_code == 204
    [idp] = _status(admin, realm, uid)["identityProviders"]
    assert idp["tokenStored"] is False and idp["userIdAtIdp"]
    links = admin.request("GET", f"/{realm}/users/{uid}/federated-identity").json()
    assert [link["identityProvider"] for link in links] == ["entra"]
    r = broker_token_v1(KC_BASE, realm, "entra", user)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "reauth_required"
    # Signing in again stores a new token.
    _login(realm)
    [idp] = _status(admin, realm, uid)["identityProviders"]
    assert idp["tokenStored"] is True


def test_clear_of_an_unlinked_idp_or_unknown_user_is_404(admin, realm):
    r = admin.request("DELETE", f"/{realm}/fresh-token/users/{uuid.uuid4()}/idps/entra/token", expect=None)
    assert r.status_code == 404, r.text
    admin.request("POST", f"/{realm}/users", json={"username": "nolink", "enabled": True})
    uid = _user_id(admin, realm, "nolink")
    r = admin.request("DELETE", f"/{realm}/fresh-token/users/{uid}/idps/entra/token", expect=None)
    assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
    assert _status(admin, realm, uid)["identityProviders"] == []


def test_token_status_needs_view_users_and_clear_needs_manage_users(admin, realm):
    _login(realm)
    uid = _user_id(admin, realm, "alice@contoso.onmicrosoft.com")
    base = f"{KC_BASE}/admin/realms/{realm}/fresh-token/users/{uid}"
    nobody = {"Authorization": "Bearer " + _realm_user_token(admin, realm, "plain-user", [])}
    assert requests.get(base, headers=nobody, timeout=30).status_code == 403
    assert requests.delete(base + "/idps/entra/token", headers=nobody, timeout=30).status_code == 403
    viewer = {"Authorization": "Bearer " + _realm_user_token(admin, realm, "viewer", ["view-users"])}
    r = requests.get(base, headers=viewer, timeout=30)
    assert r.status_code == 200 and r.json()["identityProviders"][0]["tokenStored"] is True, r.text
    assert requests.delete(base + "/idps/entra/token", headers=viewer, timeout=30).status_code == 403
    assert _status(admin, realm, uid)["identityProviders"][0]["tokenStored"] is True
    manager = {"Authorization": "Bearer " + _realm_user_token(admin, realm, "manager", ["view-users", "manage-users"])}
    assert requests.delete(base + "/idps/entra/token", headers=manager, timeout=30).status_code == 204
    assert _status(admin, realm, uid)["identityProviders"][0]["tokenStored"] is False


# --- The admin console in a real browser ----------------------------------------------------

def test_admin_console_in_chromium_create_edit_reload_help_texts_errors_and_provider_info(admin, mock_entra):
    """Runs tests/browser/console.mjs: creates an entra-oidc IdP through the admin console,
    reopens, edits, saves, reloads (no error alert, every one of our settings has help text),
    sees the 400 for a removed offline_access and a plain-http authority host, creates a
    fresh-oidc IdP too, and takes the screenshots in docs/screenshots/."""
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: run `make deps` (tests/install-deps.sh)"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), "run `make deps` (npm ci in tests/browser)"
    realm = "console-" + uuid.uuid4().hex[:6]
    admin.create_realm(realm)
    info = admin.server_info()["providers"]["identity_provider"]["providers"]
    # The settings the browser must find with help text: exactly what our factory declares.
    expected = {pid: [{"name": p["name"], "label": p["label"]} for p in _config_props(admin, pid)]
                for pid in ("entra-oidc", "fresh-oidc")}
    assert all(expected.values()) and info["entra-oidc"]["operationalInfo"]["nativeLibraryState"] == "LOADED"
    out = ROOT / "tests" / ".work" / "browser"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, KC_BASE=KC_BASE, REALM=realm, MOCK_AUTHORITY=mock_entra.base_url, TENANT=TENANT,
               EXPECTED_PROPS=json.dumps(expected), SCREENSHOTS=str(SCREENSHOTS), OUT=str(out))
    p = subprocess.run(["node", str(BROWSER_DIR / "console.mjs")], env=env, capture_output=True, text=True, timeout=900)
    print(p.stdout[-6000:])
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    result = json.loads((out / "result.json").read_text())
    assert result["errorsAfterSave"] == [] and result["errorsAfterReload"] == [], result
    assert result["missingHelp"] == {"entra-oidc": [], "fresh-oidc": []}, result["missingHelp"]
    assert "offline_access" in result["offlineAccessError"], result
    assert "https" in result["httpAuthorityError"], result
    assert result["providerInfo"]["nativeLibraryState"] == "LOADED", result
    # What the browser saved is what the server has: edited values kept, endpoints re-derived.
    idp = admin.get_idp(realm, "entra")
    assert idp["config"]["minValidityToken"] == "120"
    assert idp["config"]["entraTenant"] == TENANT
    assert idp["config"]["tokenUrl"] == f"{mock_entra.base_url}/{TENANT}/oauth2/v2.0/token"
    assert idp["config"]["addOfflineAccess"] == "true"
    assert admin.get_idp(realm, "generic")["providerId"] == "fresh-oidc"
    for name in ("idp-create.png", "idp-details.png", "idp-error-offline-access.png", "provider-info.png"):
        f = SCREENSHOTS / name
        assert f.is_file() and 2_000 < f.stat().st_size < 400_000, (name, f.stat().st_size if f.exists() else None)


# --- The user's fresh-token tab (declarative UI) ----------------------------------------------

TAB_PROVIDER = "org.keycloak.services.ui.extend.UiTabProvider"


@pytest.fixture(scope="module")
def declarative_ui():
    """Keycloak's declarative UI (experimental feature declarative-ui) renders UiTabProvider tabs;
    the shared Keycloak goes back to the default features afterwards."""
    ensure_features("declarative-ui")
    try:
        yield
    finally:
        kc_restart()  # default features (ensure_features("") would pass an empty KC_FEATURES, which Keycloak refuses)


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _signed_in_and_refreshed(admin, realm: str, mock_entra):
    """alice signs in through the mock; the app's token is refreshed once. Returns
    (user id, the access tokens and refresh tokens the app/mock saw)."""
    user, uid, at1 = _signed_in_with_a_short_lived_token(admin, realm, mock_entra)
    _, second = _refreshed_after_expiry(realm, mock_entra, user, at1)
    secrets = [at1, second.json()["access_token"]]
    secrets += [t if isinstance(t, str) else json.dumps(t) for t in mock_entra.issued().get("refresh_tokens", [])]
    return uid, secrets


def test_user_page_fresh_token_tab_in_chromium_shows_status_and_clears_without_showing_tokens(
        declarative_ui, admin, realm, mock_entra):
    """Runs tests/browser/user_token_tab.mjs on the user page of alice (signed in via the mock,
    token refreshed once): the fresh-token tab shows, after Save, token stored, access token
    valid until, last refreshed (the same values as the admin REST API), no token value in the
    page; 'Clear stored token on save' empties the stored token."""
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: run `make deps` (tests/install-deps.sh)"
    tabs = admin.server_info()["componentTypes"].get(TAB_PROVIDER, [])
    [tab] = [t for t in tabs if t["id"] == "fresh-token"]
    assert tab["metadata"]["path"] == "/:realm/users/:id/:tab" and tab["metadata"]["params"] == {"tab": "fresh-token"}
    uid, secrets = _signed_in_and_refreshed(admin, realm, mock_entra)
    [idp] = _status(admin, realm, uid)["identityProviders"]
    assert idp["tokenStored"] and idp["accessTokenValid"] and idp["lastRefreshedAt"], idp

    out = ROOT / "tests" / ".work" / "browser-user-tab"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, KC_BASE=KC_BASE, REALM=realm, USER_ID=uid, SCREENSHOTS=str(SCREENSHOTS), OUT=str(out))
    p = subprocess.run(["node", str(BROWSER_DIR / "user_token_tab.mjs")], env=env, capture_output=True, text=True,
                       timeout=900)
    print(p.stdout[-6000:])
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    result = json.loads((out / "result.json").read_text())
    assert result["errors"] == [], result

    st = result["status"]
    assert st["id"] == uid, st
    assert st["freshTokenUser"] == f"alice@contoso.onmicrosoft.com ({uid})", st
    assert st["freshTokenStored"] == "entra: yes (refresh token: yes)", st
    assert st["freshTokenAccessTokenValidUntil"] == f"entra: {_iso(idp['accessTokenExpiresAt'])} (valid)", st
    assert st["freshTokenLastRefreshed"] == f"entra: {_iso(idp['lastRefreshedAt'])}", st
    assert st["clear"] is False
    for name in ("tab-status.html", "tab-cleared.html"):
        html = (out / name).read_text()
        assert uid in html  # the dump holds the field values (React keeps them out of the DOM attributes)
        for secret in secrets:
            assert secret not in html, f"a token value is in {name}"

    cleared = result["afterClear"]
    assert cleared["id"] == uid and cleared["freshTokenStored"] == "entra: no", cleared
    assert cleared["freshTokenAccessTokenValidUntil"] == "entra: no token stored", cleared
    assert cleared["clear"] is False, cleared
    [after] = _status(admin, realm, uid)["identityProviders"]
    assert after["tokenStored"] is False and after["userIdAtIdp"], after
    for name in ("user-fresh-token-tab.png", "user-fresh-token-tab-cleared.png"):
        f = SCREENSHOTS / name
        assert f.is_file() and 2_000 < f.stat().st_size < 400_000, (name, f.stat().st_size if f.exists() else None)


def test_user_tab_save_needs_view_users_and_clear_needs_manage_users(declarative_ui, admin, realm, mock_entra):
    """The component API only asks for manage-realm; our tab's Save asks for the admin's user
    permissions on top: view-users to compute the status, manage-users to clear."""
    _login(realm)
    uid = _user_id(admin, realm, "alice@contoso.onmicrosoft.com")
    url = f"{KC_BASE}/admin/realms/{realm}/components"
    realm_id = admin.request("GET", f"/{realm}").json()["id"]

    def save(token: str, clear: bool) -> requests.Response:
        body = {"providerId": "fresh-token", "providerType": TAB_PROVIDER, "parentId": realm_id, "name": "fresh-token",
                "config": {"realm": [realm], "id": [uid], "tab": ["fresh-token"], "freshTokenClear": [str(clear).lower()]}}
        return requests.post(url, json=body, headers={"Authorization": "Bearer " + token}, timeout=60)

    realm_admin = _realm_user_token(admin, realm, "realm-admin-only", ["manage-realm", "view-realm"])
    r = save(realm_admin, False)
    assert r.status_code == 400 and "view-users" in r.json()["errorMessage"], r.text
    viewer = _realm_user_token(admin, realm, "realm-admin-viewer", ["manage-realm", "view-realm", "view-users"])
    r = save(viewer, True)
    assert r.status_code == 400 and "manage-users" in r.json()["errorMessage"], r.text
    assert _status(admin, realm, uid)["identityProviders"][0]["tokenStored"] is True
    r = save(viewer, False)
    assert r.status_code == 201, r.text
    comp = admin.request("GET", r.headers["Location"].split("/admin/realms")[1]).json()
    assert comp["config"]["freshTokenStored"] == ["entra: yes (refresh token: yes)"], comp
    assert comp["config"]["id"] == [uid] and "realm" not in comp["config"] and "tab" not in comp["config"], comp
    manager = _realm_user_token(admin, realm, "realm-admin-manager",
                                ["manage-realm", "view-realm", "view-users", "manage-users"])
    r = save(manager, True)
    assert r.status_code == 201, r.text
    assert _status(admin, realm, uid)["identityProviders"][0]["tokenStored"] is False


def _config_props(admin, provider_id: str) -> list[dict]:
    r = admin.http.get(f"{admin.base}/admin/realms/master/identity-provider/providers/{provider_id}",
                       headers=admin._auth(), timeout=30)
    if r.status_code == 200 and r.json().get("configProperties"):
        return r.json()["configProperties"]
    info = admin.server_info()
    for ns in ("org.keycloak.broker.provider.IdentityProvider", "org.keycloak.broker.social.SocialIdentityProvider"):
        for c in info.get("componentTypes", {}).get(ns, []):
            if c["id"] == provider_id:
                return c["properties"]
    pytest.fail(f"no config properties for {provider_id} in server info")
