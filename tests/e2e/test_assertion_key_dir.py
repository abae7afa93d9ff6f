"""Key and certificate files for certificate client authentication are read only from the
directory the server operator names (SPI option
--spi-admin-realm-restapi-extension--fresh-token-storage--assertion-key-dir; the harness sets it
to the test PKI folder): anything else is refused when the IdP is saved and again when the file is
used (issue 11 item 2)."""
from __future__ import annotations

import os
import shutil
import uuid

from support.keycloak import broker_token_v1, browser_login

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, TENANT, WORK, MockEntra
from .test_broker_token import claims, sleep_until
from .test_certificate_auth import _realm_certificate_pem


def _cert_idp(mock_entra, client_id, key, cert):
    return {"entraTenant": TENANT, "entraAuthorityHost": mock_entra.base_url, "clientId": client_id,
            "clientAuthMethod": "private_key_jwt", "jwtX509HeadersEnabled": "true",
            "clientAssertionSigningAlg": "RS256", "clientAssertionAlg": "RS256",
            "clientAssertionKeyFile": str(key), "clientAssertionCertFile": str(cert),
            "minValidityToken": "1", "syncMode": "IMPORT"}


def _outside_copy(pki):
    """The same key pair outside the key directory: only the path decides."""
    out = WORK / "outside-keys"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pki.key, out / "key.pem")
    shutil.copyfile(pki.cert, out / "cert.pem")
    return out / "key.pem", out / "cert.pem"


def test_key_file_outside_the_key_directory_is_refused_when_the_idp_is_saved(admin, realm, mock_entra: MockEntra,
                                                                              outbound):
    pki, _ = outbound
    key, cert = _outside_copy(pki)
    for k, c in ((key, cert), (pki.key, cert), (os.path.join(os.path.dirname(pki.key), "..", "outside-keys", "key.pem"),
                                               pki.cert)):
        r = admin.create_idp(realm, "entra-out-" + uuid.uuid4().hex[:6], "entra-oidc",
                             _cert_idp(mock_entra, str(uuid.uuid4()), k, c))
        assert r.status_code == 400, r.text
        assert "key directory" in r.json().get("errorMessage", r.text), r.text
    # Inside the directory is accepted; so is an update moving the file out refused.
    alias = "entra-in-" + uuid.uuid4().hex[:6]
    assert admin.create_idp(realm, alias, "entra-oidc",
                            _cert_idp(mock_entra, str(uuid.uuid4()), pki.key, pki.cert)).status_code == 201
    rep = admin.get_idp(realm, alias)
    rep["config"]["clientAssertionKeyFile"] = str(key)
    r = admin.request("PUT", f"/{realm}/identity-provider/instances/{alias}", json=rep, expect=(400,))
    assert "key directory" in r.text
    assert admin.get_idp(realm, alias)["config"]["clientAssertionKeyFile"] == str(pki.key)


def test_key_file_symlink_pointing_out_of_the_key_directory_is_refused_when_used(admin, realm, mock_entra: MockEntra,
                                                                                outbound):
    pki, _ = outbound
    out_key, out_cert = _outside_copy(pki)
    tag = uuid.uuid4().hex[:6]
    link_key = os.path.join(os.path.dirname(pki.key), f"link-{tag}-key.pem")
    link_cert = os.path.join(os.path.dirname(pki.key), f"link-{tag}-cert.pem")
    os.symlink(pki.key, link_key)
    os.symlink(pki.cert, link_cert)
    client_id = str(uuid.uuid4())
    with open(pki.cert) as f:
        file_cert = f.read()
    mock_entra.config(clients={client_id: {"redirect_uris": ["http://127.0.0.1:*"],
                                           "certificates": [_realm_certificate_pem(admin, realm), file_cert]}})
    r = admin.create_idp(realm, "entra-link", "entra-oidc", _cert_idp(mock_entra, client_id, link_key, link_cert))
    assert r.status_code == 201, r.text
    mock_entra.config(access_token_lifetime_s=3)
    user = browser_login(KC_BASE, realm, "entra-link", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI)
    first = broker_token_v1(KC_BASE, realm, "entra-link", user).json()
    sleep_until(claims(first["access_token"])["exp"] + 1)
    mock_entra.config(access_token_lifetime_s=3600)
    # Someone with write access to the directory points the links outside after the save.
    for link, target in ((link_key, out_key), (link_cert, out_cert)):
        os.remove(link)
        os.symlink(target, link)
    before = mock_entra.refresh_count()
    r = broker_token_v1(KC_BASE, realm, "entra-link", user)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "idp_misconfigured", r.text
    assert "key directory" in r.json().get("error_description", ""), r.text
    assert mock_entra.refresh_count() == before  # refused before any network call
