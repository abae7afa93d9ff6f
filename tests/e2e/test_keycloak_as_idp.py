"""The real-world check of single-flight: a second Keycloak realm acts as the upstream OIDC
IdP (type fresh-oidc) with "Revoke refresh token" on and "Refresh token max reuse" 0, so a
refresh token spent twice is refused and its session revoked. Concurrent broker calls for
an expired token must spend it exactly once."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.keycloak import broker_token_v1, browser_login, create_kcidp, create_upstream_realm

from .conftest import APP_CLIENT, APP_SECRET, KC_BASE, REDIRECT_URI

CALLERS = 30
LIFESPAN = 6


@pytest.fixture(scope="module")
def upstream(admin):
    """Realm `up-*` as the IdP and realm `down-*` brokering to it with our fresh-oidc type."""
    up, down = "up-" + uuid.uuid4().hex[:6], "down-" + uuid.uuid4().hex[:6]
    create_upstream_realm(admin, up, down, KC_BASE, LIFESPAN)
    admin.create_realm(down, eventsEnabled=True)
    admin.create_client(down, APP_CLIENT, APP_SECRET, REDIRECT_URI)
    create_kcidp(admin, down, up, KC_BASE)
    yield up, down


def _refresh_events(admin, realm) -> tuple[int, int]:
    time.sleep(1)  # let Keycloak store the last request's events
    events = admin.request("GET", f"/{realm}/events", params={"max": 1000}).json()
    ok = sum(1 for e in events if e["type"] == "REFRESH_TOKEN")
    bad = sum(1 for e in events if e["type"] == "REFRESH_TOKEN_ERROR")
    return ok, bad


def test_concurrent_calls_spend_a_keycloak_refresh_token_exactly_once_per_cycle(admin, upstream):
    up, down = upstream
    user = browser_login(KC_BASE, down, "kcidp", APP_CLIENT, APP_SECRET, redirect_uri=REDIRECT_URI,
                         credentials=("carol", "carol-pw"))
    first = broker_token_v1(KC_BASE, down, "kcidp", user)
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]
    for cycle in range(3):
        time.sleep(LIFESPAN + 1)
        ok_before, bad_before = _refresh_events(admin, up)
        with ThreadPoolExecutor(max_workers=CALLERS) as pool:
            answers = list(pool.map(lambda _: broker_token_v1(KC_BASE, down, "kcidp", user), range(CALLERS)))
        assert [a.status_code for a in answers] == [200] * CALLERS, \
            f"cycle {cycle}: {[a.text[:200] for a in answers if a.status_code != 200][:3]}"
        tokens = {a.json()["access_token"] for a in answers}
        assert len(tokens) == 1 and token not in tokens
        token = tokens.pop()
        ok_after, bad_after = _refresh_events(admin, up)
        assert (ok_after - ok_before, bad_after - bad_before) == (1, 0), f"cycle {cycle}"
