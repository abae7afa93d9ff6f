"""The single-flight failure answer is shared only with waiters that asked the same thing
(issue 11 item 9). A failed refresh's outcome is kept for a few seconds so that the callers
that waited for it do not spend the same refresh token again; it belongs to what was asked
(the IdP's own token, a token for one resource, an on-behalf-of scope), not to the user: a
caller waiting for the IdP's own token must never be handed a concurrent per-resource call's
error."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from support.keycloak import broker_token_v1

from .conftest import KC_BASE, MockEntra
from .test_broker_token import claims, login, sleep_until

# A scope of the mock's demo API that does not exist there: the mock (like Entra) answers
# invalid_scope (AADSTS70011) to a refresh asking for it; the core maps it to idp_misconfigured.
BAD_SCOPE = "api://00000000-0000-0000-0000-0000000000a1/no.such.scope"
UPSTREAM_DELAY_MS = 2500


def _resource(realm, user, scope):
    return requests.get(f"{KC_BASE}/realms/{realm}/broker/entra/token", params={"scope": scope},
                        headers={"Authorization": f"Bearer {user.access_token}"}, timeout=60)


def _bad_scope_refreshes(mock: MockEntra) -> int:
    return sum(1 for r in mock.stats().get("recent_refreshes", []) if "no.such.scope" in (r.get("scope") or ""))


def test_own_token_waiter_gets_its_own_refresh_not_a_concurrent_resource_calls_failure(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", resourceScopes=BAD_SCOPE, minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=4)
    user = login(realm)
    own_before = broker_token_v1(KC_BASE, realm, "entra", user).json()["access_token"]
    mock_entra.config(access_token_lifetime_s=3600)
    sleep_until(claims(own_before)["exp"] + 1)  # the IdP's own token is due now
    bad_before = _bad_scope_refreshes(mock_entra)
    mock_entra.config(refresh_delay_ms=UPSTREAM_DELAY_MS)  # every refresh holds the lock this long
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            bad = pool.submit(_resource, realm, user, BAD_SCOPE)        # takes the lock, fails after the delay
            time.sleep(0.8)
            bad_again = pool.submit(_resource, realm, user, BAD_SCOPE)  # waits: same question
            own = pool.submit(broker_token_v1, KC_BASE, realm, "entra", user)  # waits: another question
            bad, bad_again, own = bad.result(), bad_again.result(), own.result()
    finally:
        mock_entra.config(refresh_delay_ms=0)
    assert bad.status_code == 502 and bad.json()["error"] == "idp_misconfigured", bad.text
    # The IdP's own token: refreshed for this caller, not the resource call's cached failure.
    assert own.status_code == 200, f"own-token waiter got the resource call's failure: {own.text[:300]}"
    fresh = own.json()["access_token"]
    assert fresh != own_before and claims(fresh)["exp"] > time.time()
    # The same resource call while the first was in flight: served the shared failure, the
    # bad scope was asked upstream only once.
    assert bad_again.status_code == 502 and bad_again.json()["error"] == "idp_misconfigured", bad_again.text
    assert _bad_scope_refreshes(mock_entra) == bad_before + 1
