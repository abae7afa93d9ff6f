"""An IdP brown-out cannot starve Keycloak's database pool (issue 11 item 12).

Each upstream refresh holds a pooled database connection and the row lock (SELECT ... FOR
UPDATE) for the whole IdP exchange. A per-node limit of concurrent upstream refreshes
(`--spi-realm-restapi-extension--fresh-token--max-concurrent-refreshes`) is taken BEFORE the connection
and the row lock; callers beyond it get a prompt `retry_later` with `Retry-After`, so the pool
keeps connections for everything else. Here: a pool of N connections, 3N users due at once, an
IdP that answers every refresh after 5 s; a local user's login keeps working meanwhile, and
afterwards no token was lost or spent twice (the mock's strict one-time refresh tokens)."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support.keycloak import broker_token_v1

from .conftest import KC_BASE, KC_MGMT_PORT, MockEntra, _current_features, _kc_extra_args, kc_restart
from .test_broker_token import login

POOL = 4            # --db-pool-max-size
LIMIT = 1           # max-concurrent-refreshes, per node: a refresh in flight holds 2 connections (the request's and the row lock's)
USERS = 3 * POOL
UPSTREAM_DELAY_MS = 5000
LOGIN_BUDGET_S = 3.0
LOGIN_TOKEN_S = 15  # access token lifetime at login: all have expired when the storm starts


@pytest.fixture(scope="module")
def small_pool(keycloak):
    """Keycloak restarted with a small database pool and a small refresh limit; restored after."""
    # Keycloak reads KC_* variables as options: an empty KC_FEATURES is an error, so pass it only when set.
    features = {"KC_FEATURES": _current_features["value"]} if _current_features["value"] else {}
    extra = (f"{_kc_extra_args['value']} --db-pool-max-size={POOL} --db-pool-initial-size=1 --db-pool-min-size=1 "
             f"--spi-realm-restapi-extension--fresh-token--max-concurrent-refreshes={LIMIT}")
    kc_restart(KC_EXTRA_ARGS=extra, **features)
    try:
        yield keycloak
    finally:
        kc_restart(**features)


def _local_user(admin, realm, username):
    admin.request("POST", f"/{realm}/users", json={
        "username": username, "enabled": True, "email": f"{username}@example.org", "firstName": "Local",
        "lastName": "User", "emailVerified": True,
        "credentials": [{"type": "password", "value": "pw-" + username, "temporary": False}]})


def _direct_grant(realm, username) -> tuple[requests.Response, float]:
    t0 = time.monotonic()
    r = requests.post(f"{KC_BASE}/realms/{realm}/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli", "username": username, "password": "pw-" + username},
        timeout=60)
    return r, time.monotonic() - t0


def _storm(realm, users, local_user=None):
    """Every user's token call at once; optionally a local login 1 s in. Answers, login (answer, s), storm s."""
    with ThreadPoolExecutor(max_workers=len(users) + 1) as pool:
        t0 = time.monotonic()
        storm = [pool.submit(broker_token_v1, KC_BASE, realm, "entra", u) for u in users]
        time.sleep(1.0)  # the refreshes are at the IdP now
        login = pool.submit(_direct_grant, realm, local_user).result() if local_user else None
        answers = [f.result() for f in storm]
        return answers, login, time.monotonic() - t0


def test_refreshes_beyond_the_node_limit_get_retry_later_and_logins_keep_working_with_a_slow_idp(
        small_pool, admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", loginHint="true", minValidityToken=1)
    upns = [f"pool{i:02d}@contoso.onmicrosoft.com" for i in range(USERS)]
    mock_entra.config(users={u: {"name": f"Pool User {i}"} for i, u in enumerate(upns)}, refresh_mode="strict",
                      access_token_lifetime_s=LOGIN_TOKEN_S)
    users = [login(realm, hint=u) for u in upns]
    expired_at = time.time() + LOGIN_TOKEN_S + 1
    _local_user(admin, realm, "local-during-storm")
    mock_entra.config(access_token_lifetime_s=3600)
    time.sleep(max(0.0, expired_at - time.time()))  # every stored access token has expired now
    mock_entra.reset()  # counters only
    mock_entra.config(refresh_delay_ms=UPSTREAM_DELAY_MS)
    try:
        answers, (login_answer, login_s), storm_s = _storm(realm, users, "local-during-storm")
    finally:
        mock_entra.config(refresh_delay_ms=0)
    assert login_answer.status_code == 200, login_answer.text[:300]
    assert login_s < LOGIN_BUDGET_S, f"a local login took {login_s:.1f} s while {USERS} refreshes hung at the IdP"
    ok = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code != 200]
    assert all(a.status_code == 503 and a.json()["error"] == "retry_later" for a in limited), \
        [a.text[:200] for a in limited if a.status_code != 503][:3]
    assert all(a.headers.get("Retry-After", "").isdigit() for a in limited)
    assert 1 <= len(ok) <= LIMIT and len(limited) == USERS - len(ok), [a.status_code for a in answers]
    assert mock_entra.stats()["max_concurrent_refreshes"] <= LIMIT
    assert storm_s < UPSTREAM_DELAY_MS / 1000 + 10
    metrics = requests.get(f"http://127.0.0.1:{KC_MGMT_PORT}/metrics", timeout=30).text
    assert re.search(r"^fresh_token_refreshes_in_flight_limit(\{[^}]*\})? " + f"{LIMIT}\\.0$", metrics, re.M), "limit gauge missing"
    assert re.search(r"^fresh_token_refreshes_in_flight(\{[^}]*\})? 0\.0$", metrics, re.M), "in-flight gauge missing or not back to 0"
    # Nothing lost: every user's stored refresh token still works, none was spent twice.
    for u in users:
        r = broker_token_v1(KC_BASE, realm, "entra", u)
        assert r.status_code == 200, r.text[:300]
    assert mock_entra.stats().get("families_revoked", 0) == 0
    assert mock_entra.stats().get("reuse_detected", 0) == 0
    # Beyond the limit, a token that is due but still valid is served (as after a transient
    # IdP failure) rather than refused: tokens live an hour now, the minimum validity is two.
    admin.update_idp_config(realm, "entra", minValidityToken=7200)
    before = mock_entra.refresh_count()
    mock_entra.config(refresh_delay_ms=UPSTREAM_DELAY_MS)
    try:
        answers, _, _ = _storm(realm, users)
    finally:
        mock_entra.config(refresh_delay_ms=0)
    assert [a.status_code for a in answers] == [200] * USERS, [a.text[:200] for a in answers if a.status_code != 200][:3]
    assert 1 <= mock_entra.refresh_count() - before <= LIMIT
    assert mock_entra.stats().get("families_revoked", 0) == 0
