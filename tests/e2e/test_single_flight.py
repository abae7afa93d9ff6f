"""Refresh that never loses a token: concurrent callers share one upstream refresh (issue:
single-flight). Runs against the mock in strict mode: a refresh token is one-time and reusing
a spent one revokes the whole family, as Keycloak with "revoke refresh token" does."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from support.keycloak import broker_token_v1

from .conftest import KC_BASE, MockEntra
from .test_broker_token import claims, login, sleep_until

CALLERS = 50


def storm(realm, user, calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call, KC_BASE, realm, "entra", user) for call in calls]
        return [f.result() for f in futures]


def test_fifty_concurrent_calls_for_an_expired_token_cause_one_refresh_over_three_cycles(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=10, refresh_mode="strict")  # a storm must end within the lifetime
    user = login(realm)
    token = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
    for cycle in range(3):
        sleep_until(claims(token)["exp"] + 1)
        before = mock_entra.refresh_count()
        answers = storm(realm, user, [broker_token_v1] * CALLERS)
        statuses = [a.status_code for a in answers]
        assert statuses == [200] * CALLERS, f"cycle {cycle}: {[a.text[:200] for a in answers if a.status_code != 200][:3]}"
        tokens = {a.json()["access_token"] for a in answers}
        assert len(tokens) == 1, f"cycle {cycle}: {len(tokens)} different tokens"
        assert mock_entra.refresh_count() == before + 1, f"cycle {cycle}: the IdP saw {mock_entra.refresh_count() - before} refreshes"
        new = tokens.pop()
        assert new != token and claims(new)["exp"] > time.time()
        token = new
    assert mock_entra.stats().get("families_revoked", 0) == 0


def test_different_users_refresh_independently(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", minValidityToken=1, loginHint="true")  # pass login_hint to the IdP
    mock_entra.config(access_token_lifetime_s=10, refresh_mode="strict")  # a storm must end within the lifetime
    alice = login(realm, hint="alice@contoso.onmicrosoft.com")
    bob = login(realm, hint="bob@contoso.onmicrosoft.com")
    ta = broker_token_v1(KC_BASE, realm, "entra", alice).json()["access_token"]
    tb = broker_token_v1(KC_BASE, realm, "entra", bob).json()["access_token"]
    assert claims(ta)["oid"] != claims(tb)["oid"]
    sleep_until(max(claims(ta)["exp"], claims(tb)["exp"]) + 1)
    before = mock_entra.refresh_count()
    with ThreadPoolExecutor(max_workers=20) as pool:
        fa = [pool.submit(broker_token_v1, KC_BASE, realm, "entra", alice) for _ in range(10)]
        fb = [pool.submit(broker_token_v1, KC_BASE, realm, "entra", bob) for _ in range(10)]
        ra, rb = [f.result() for f in fa], [f.result() for f in fb]
    assert all(r.status_code == 200 for r in ra + rb)
    assert len({r.json()["access_token"] for r in ra}) == 1 and len({r.json()["access_token"] for r in rb}) == 1
    assert claims(ra[0].json()["access_token"])["oid"] == claims(ta)["oid"]
    assert claims(rb[0].json()["access_token"])["oid"] == claims(tb)["oid"]
    assert mock_entra.refresh_count() == before + 2
