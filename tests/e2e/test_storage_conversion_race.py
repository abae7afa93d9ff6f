"""Bulk storage conversion racing refreshes (issue 11 item 7): POST /admin/realms/{r}/fresh-token-storage/encrypt
rewrites rows while users' tokens are being refreshed. The conversion must read and write each row through the
same locked row path as a refresh, never through Keycloak's cached federated-identity model: the V1 token endpoint
holds that cached object for its whole request and writes it back at the end when its token changed, so a
conversion that mutated it (seal(T0)) would be written over the refresh's newer token set (T1) and the next
refresh would spend T0 again.

The mock runs in strict mode (a refresh token is one-time; reuse revokes the family), so the only refresh token of
a family that still works is the newest one: after the race, one more refresh per user that succeeds without any
reuse proves every row holds the newest refresh token the mock issued."""
from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support.keycloak import KeycloakAdmin, broker_token_v1

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI, WORK, MockEntra, _kc_extra_args, entra_idp_config, kc
from .test_broker_token import claims, login

USERS = 40
CALLS_PER_USER = 2


@pytest.fixture(scope="module")
def keys(keycloak, mock_entra):
    d = WORK / "storage-keys"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "race.keys"
    path.write_text(f"k1 {base64.b64encode(os.urandom(32)).decode()}\n")
    path.chmod(0o600)
    yield path
    mock_entra.config(refresh_mode="entra", access_token_lifetime_s=3600)
    kc("stop")
    kc("start")  # leave a fresh Keycloak without keys, as the session fixture expects


def _start(keys=None, keep=True) -> KeycloakAdmin:
    kc("stop")
    # The node's refresh limit (default 16) is lifted above USERS: this test races refreshes
    # with the conversion, every user at once; the limit has its own test (test_refresh_limit).
    kc("start", KC_KEEP_DATA="1" if keep else "0", KC_FRESH_TOKEN_KEY_FILE=str(keys or ""),
       KC_FRESH_TOKEN_ALLOW_PLAINTEXT="true" if keys else "",
       KC_EXTRA_ARGS=f"{_kc_extra_args['value']} --spi-realm-restapi-extension--fresh-token--max-concurrent-refreshes={USERS + 24}")
    return KeycloakAdmin(KC_BASE)


def _status(admin, realm) -> dict:
    return admin.request("GET", f"/{realm}/fresh-token-storage").json()["identityProviders"]["entra"]


def _families(mock: MockEntra) -> dict:
    fams = requests.get(f"{mock.base_url}/_mock/families", timeout=10).json()["families"]
    return {f["user"].lower(): f for f in fams}


def test_refreshes_racing_the_bulk_encrypt_leave_every_row_with_the_newest_refresh_token(keys, mock_entra: MockEntra):
    admin = _start(keep=False)
    realm = "e2e-convrace-" + uuid.uuid4().hex[:6]
    admin.create_realm(realm, accessTokenLifespan=3600)
    admin.create_client(realm, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    assert admin.create_idp(realm, "entra", "entra-oidc",
                            entra_idp_config(mock_entra, loginHint="true", minValidityToken=60)).status_code == 201
    upns = [f"race{i:02d}-{uuid.uuid4().hex[:4]}@contoso.onmicrosoft.com" for i in range(USERS)]
    # Login tokens live 30 s: with minValidityToken 60 every row is due from the start.
    mock_entra.config(users={u: {} for u in upns}, access_token_lifetime_s=30, refresh_mode="strict", fault="none",
                      refresh_delay_ms=0)
    logins = {u: login(realm, hint=u) for u in upns}

    # Plain rows (stored without keys), now read with keys and plain rows allowed: encrypt converts them.
    admin = _start(keys)
    assert _status(admin, realm)["plain"] == USERS
    mock_entra.config(access_token_lifetime_s=600)
    stats0 = mock_entra.stats()
    refreshes0 = mock_entra.refresh_count()

    done = threading.Event()
    passes = []

    def convert():
        while not done.is_set():
            passes.append(admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()["totals"])

    with ThreadPoolExecutor(max_workers=USERS * CALLS_PER_USER + 1) as pool:
        converter = pool.submit(convert)
        time.sleep(0.05)
        calls = [pool.submit(broker_token_v1, KC_BASE, realm, "entra", logins[u]) for u in upns
                 for _ in range(CALLS_PER_USER)]
        answers = [c.result() for c in calls]
        done.set()
        converter.result()
    final = admin.request("POST", f"/{realm}/fresh-token-storage/encrypt").json()
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text[:200] for a in answers if a.status_code != 200][:3]
    assert all(claims(a.json()["access_token"])["exp"] > time.time() + 60 for a in answers)
    assert any(p.get("encrypted") for p in passes), f"the conversion ran during the refreshes: {passes}"
    assert final["plainRemaining"] == 0 and set(final["totals"]) == {"unchanged"}, final
    assert mock_entra.refresh_count() - refreshes0 == USERS, "one refresh per user"
    assert mock_entra.stats()["reuse_detected"] == stats0["reuse_detected"], "no refresh token was spent twice"
    s = _status(admin, realm)
    assert s["plain"] == 0 and s["encrypted"] == {"k1": USERS}, s

    # Every row now must hold the newest refresh token of its family (the only one strict mode still accepts):
    # make every row due again and refresh each user once.
    admin.update_idp_config(realm, "entra", minValidityToken=900)
    refreshes1 = mock_entra.refresh_count()
    with ThreadPoolExecutor(max_workers=8) as pool:
        again = list(pool.map(lambda u: broker_token_v1(KC_BASE, realm, "entra", logins[u]), upns))
    failed = {u: a.text[:200] for u, a in zip(upns, again) if a.status_code != 200}
    assert not failed, f"{len(failed)} of {USERS} rows held a spent refresh token: {next(iter(failed.items()))}"
    assert mock_entra.refresh_count() - refreshes1 == USERS
    stats = mock_entra.stats()
    assert stats["reuse_detected"] == stats0["reuse_detected"] and stats["families_revoked"] == stats0["families_revoked"]
    fams = _families(mock_entra)
    # login, the refresh of the race, this refresh: three generations per family, none revoked
    assert {u: (fams[u.lower()]["generations"], fams[u.lower()]["revoked"]) for u in upns} == \
        {u: (3, False) for u in upns}
