"""Small Keycloak clients for the tests and the demo: admin REST API, a browser-less login
through a brokered IdP (cookie jar, redirects, first-broker-login forms), and the broker
token endpoints (V1 GET, V2 POST)."""
from __future__ import annotations

import html
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass

import requests


class KeycloakAdmin:
    def __init__(self, base_url: str, username: str = "admin", password: str = "admin"):
        self.base = base_url.rstrip("/")
        self._user, self._password = username, password
        self._token = None
        self._token_exp = 0.0
        self.http = requests.Session()

    def _auth(self) -> dict:
        if self._token is None or time.time() > self._token_exp - 10:
            r = self.http.post(f"{self.base}/realms/master/protocol/openid-connect/token", data={
                "grant_type": "password", "client_id": "admin-cli",
                "username": self._user, "password": self._password}, timeout=30)
            r.raise_for_status()
            body = r.json()
            self._token = body["access_token"]
            self._token_exp = time.time() + body.get("expires_in", 60)
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, expect=(200, 201, 204), **kw) -> requests.Response:
        r = self.http.request(method, f"{self.base}/admin/realms{path}", headers=self._auth(), timeout=60, **kw)
        if expect and r.status_code not in expect:
            raise AssertionError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r

    def create_realm(self, realm: str, **extra) -> None:
        rep = {"realm": realm, "enabled": True, "accessTokenLifespan": 3600, "sslRequired": "none"}
        rep.update(extra)
        self.http.post(f"{self.base}/admin/realms", json=rep, headers=self._auth(), timeout=60).raise_for_status()

    def delete_realm(self, realm: str) -> None:
        self.request("DELETE", f"/{realm}", expect=(204, 404))

    def create_client(self, realm: str, client_id: str, secret: str, redirect_uri: str, attributes: dict | None = None) -> None:
        self.request("POST", f"/{realm}/clients", json={
            "clientId": client_id, "enabled": True, "publicClient": False, "secret": secret,
            "redirectUris": [redirect_uri], "standardFlowEnabled": True, "directAccessGrantsEnabled": False,
            "attributes": attributes or {}})

    def create_idp(self, realm: str, alias: str, provider_id: str, config: dict, **top) -> requests.Response:
        rep = {"alias": alias, "providerId": provider_id, "enabled": True, "config": config,
               "addReadTokenRoleOnCreate": True, "trustEmail": True}
        rep.update(top)
        return self.request("POST", f"/{realm}/identity-provider/instances", json=rep, expect=None)

    def get_idp(self, realm: str, alias: str) -> dict:
        return self.request("GET", f"/{realm}/identity-provider/instances/{alias}").json()

    def update_idp_config(self, realm: str, alias: str, **config) -> dict:
        rep = self.get_idp(realm, alias)
        rep["config"].update({k: str(v) for k, v in config.items()})
        self.request("PUT", f"/{realm}/identity-provider/instances/{alias}", json=rep)
        return self.get_idp(realm, alias)

    def server_info(self) -> dict:
        r = self.http.get(f"{self.base}/admin/serverinfo", headers=self._auth(), timeout=60)
        r.raise_for_status()
        return r.json()


@dataclass
class Login:
    access_token: str
    refresh_token: str | None
    client_id: str
    client_secret: str
    browser: requests.Session | None = None


class _FormParser:
    FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form\b", re.S | re.I)  # 26.4.7 writes "</form" without ">"
    INPUT = re.compile(r"<input([^>]*)>", re.I)
    BUTTON = re.compile(r"<button([^>]*)>", re.I)
    ATTR = re.compile(r"(\w[\w-]*)=\"([^\"]*)\"")

    @classmethod
    def first_form(cls, page: str):
        m = cls.FORM.search(page)
        if not m:
            return None
        fields = {}
        for raw in cls.INPUT.findall(m.group(2)):
            attrs = dict(cls.ATTR.findall(raw))
            if "name" in attrs:
                fields[attrs["name"]] = html.unescape(attrs.get("value", ""))
        # A browser clicking the form's first submit button sends that button's name: Keycloak
        # 26.4's link-idp confirmation page (kc_action=idp_link) acts only on "continue".
        for raw in cls.BUTTON.findall(m.group(2)):
            attrs = dict(cls.ATTR.findall(raw))
            if attrs.get("type", "submit").lower() == "submit":
                if "name" in attrs:
                    fields.setdefault(attrs["name"], html.unescape(attrs.get("value", "")))
                break
        return html.unescape(m.group(1)), fields


def browser_login(kc_base: str, realm: str, idp_alias: str, client_id: str, client_secret: str,
                  login_hint: str | None = None, redirect_uri: str = "http://127.0.0.1:1/callback",
                  credentials: tuple[str, str] | None = None, verify: bool | str = True) -> Login:
    """Log a user in at Keycloak through the IdP, as a browser would, and exchange the code.
    `credentials` fill a username/password form on the way (an IdP that is itself Keycloak);
    `verify` is the CA bundle the "browser" trusts for https IdPs."""
    params = {"kc_idp_hint": idp_alias}
    if login_hint:
        params["login_hint"] = login_hint
    browser = requests.Session()
    if verify is not True:
        browser.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides `verify`
    browser.verify = verify
    return _authorize(browser, kc_base, realm, client_id, client_secret, redirect_uri, params, credentials)


def link_idp(kc_base: str, realm: str, login: Login, idp_alias: str,
             redirect_uri: str = "http://127.0.0.1:1/callback") -> Login:
    """Links a second IdP to the signed-in user with Keycloak's application-initiated action
    kc_action=idp_link:<alias> (Keycloak 26.3+), in the same browser session."""
    return _authorize(login.browser, kc_base, realm, login.client_id, login.client_secret, redirect_uri,
                      {"kc_action": f"idp_link:{idp_alias}"})


def _authorize(s: requests.Session, kc_base, realm, client_id, client_secret, redirect_uri, extra: dict,
               credentials: tuple[str, str] | None = None) -> Login:
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": "openid", "state": secrets.token_urlsafe(8)}
    params.update(extra)
    url = f"{kc_base}/realms/{realm}/protocol/openid-connect/auth?" + urllib.parse.urlencode(params)
    method, data = "GET", None
    for _ in range(20):
        r = s.request(method, url, data=data, allow_redirects=False, timeout=30)
        # Keycloak marks its session cookies Secure (SameSite=None); browsers still send them to
        # http://localhost, Python's cookie jar does not. Behave like the browser on loopback.
        for cookie in s.cookies:
            cookie.secure = False
        if r.status_code in (301, 302, 303, 307):
            url = urllib.parse.urljoin(url, r.headers["Location"])
            method, data = "GET", None
            if url.startswith(redirect_uri):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
                if "code" not in q:
                    raise AssertionError(f"login ended without a code: {q}")
                login = _exchange(kc_base, realm, client_id, client_secret, q["code"][0], redirect_uri)
                login.browser = s
                return login
            continue
        if r.status_code == 200 and "<form" in r.text:
            form = _FormParser.first_form(r.text)
            if form is None:
                break
            action, fields = form
            for k, v in (("firstName", "Test"), ("lastName", "User"), ("email", "user@example.org")):
                if k in fields and not fields[k]:
                    fields[k] = v
            if credentials and "password" in fields:
                fields["username"], fields["password"] = credentials
            url, method, data = urllib.parse.urljoin(url, action), "POST", fields
            continue
        raise AssertionError(f"login stopped at {r.status_code} {url}: {r.text[:800]}")
    raise AssertionError("login did not finish within 20 steps")


def _exchange(kc_base, realm, client_id, client_secret, code, redirect_uri) -> Login:
    r = requests.post(f"{kc_base}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": client_id, "client_secret": client_secret}, timeout=30)
    r.raise_for_status()
    body = r.json()
    return Login(body["access_token"], body.get("refresh_token"), client_id, client_secret)


def broker_token_v1(kc_base: str, realm: str, alias: str, login: Login) -> requests.Response:
    return requests.get(f"{kc_base}/realms/{realm}/broker/{alias}/token",
                        headers={"Authorization": f"Bearer {login.access_token}"}, timeout=60)


def broker_token_v2(kc_base: str, realm: str, alias: str, login: Login) -> requests.Response:
    return requests.post(f"{kc_base}/realms/{realm}/broker/{alias}/token",
                         data={"token": login.access_token}, auth=(login.client_id, login.client_secret), timeout=60)


# --- Keycloak as the upstream IdP (a realm of the same server brokered by another realm) ---------

def create_upstream_realm(admin: KeycloakAdmin, up: str, down: str, front: str, lifespan: int) -> None:
    """Realm `up` as the IdP: 'Revoke refresh token' with max reuse 0, access tokens of `lifespan`
    seconds, refresh/login events; the client `downstream-kc` for realm `down`'s broker at
    `front`; the user carol (password carol-pw)."""
    admin.create_realm(up, revokeRefreshToken=True, refreshTokenMaxReuse=0, accessTokenLifespan=lifespan,
                       eventsEnabled=True, enabledEventTypes=["REFRESH_TOKEN", "REFRESH_TOKEN_ERROR", "LOGIN", "CODE_TO_TOKEN"])
    admin.create_client(up, "downstream-kc", "broker-secret", f"{front}/realms/{down}/broker/kcidp/endpoint")
    admin.request("POST", f"/{up}/users", json={
        "username": "carol", "enabled": True, "email": "carol@example.org", "emailVerified": True,
        "firstName": "Carol", "lastName": "Upstream",
        "credentials": [{"type": "password", "value": "carol-pw", "temporary": False}]})


def create_kcidp(admin: KeycloakAdmin, down: str, up: str, front: str) -> None:
    """In realm `down`, the IdP `kcidp` of our fresh-oidc type for realm `up` at `front`."""
    base = f"{front}/realms/{up}/protocol/openid-connect"
    r = admin.create_idp(down, "kcidp", "fresh-oidc", {
        "authorizationUrl": f"{base}/auth", "tokenUrl": f"{base}/token", "jwksUrl": f"{base}/certs",
        "issuer": f"{front}/realms/{up}", "validateSignature": "true", "useJwksUrl": "true",
        "clientId": "downstream-kc", "clientSecret": "broker-secret", "clientAuthMethod": "client_secret_post",
        "defaultScope": "openid profile email", "minValidityToken": "1", "syncMode": "IMPORT"})
    assert r.status_code == 201, r.text
