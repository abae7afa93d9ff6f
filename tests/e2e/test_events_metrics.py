"""Events and metrics of token retrievals (issue: events and metrics).

Every retrieval adds details to Keycloak's IDENTITY_PROVIDER_RETRIEVE_TOKEN(_ERROR) event (the
broker endpoint's own event; our obo/app-token endpoints record one of the same types), and
counts Micrometer meters that Keycloak serves on /metrics of its management port. Each test
uses a fresh realm, so the realm tag isolates its series; deltas are still taken."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from support.keycloak import broker_token_v1

from .conftest import KC_BASE, KC_MGMT_PORT, MockEntra
from .test_broker_token import claims, login, sleep_until
from .test_obo_app_vault import GRAPH_DEFAULT, MIDDLE_TIER, _get, _service_account_token

GRAPH = "https://graph.microsoft.com/User.Read"
TYPES = ["IDENTITY_PROVIDER_RETRIEVE_TOKEN", "IDENTITY_PROVIDER_RETRIEVE_TOKEN_ERROR"]


def _enable_retrieve_events(admin, realm):
    """These two types are not saved by default: the realm must list them (README, Operations)."""
    rep = admin.request("GET", f"/{realm}").json()
    rep["eventsEnabled"] = True
    rep["enabledEventTypes"] = sorted(set(rep.get("enabledEventTypes") or []) | set(TYPES) | {"LOGIN", "CODE_TO_TOKEN"})
    admin.request("PUT", f"/{realm}", json=rep)


def _events(admin, realm) -> list[dict]:
    """Retrieve-token events, oldest first."""
    evs = admin.request("GET", f"/{realm}/events", params=[("type", t) for t in TYPES] + [("max", "500")]).json()
    return sorted(evs, key=lambda e: e["time"])


def _token(realm, user, scope=None):
    return requests.get(f"{KC_BASE}/realms/{realm}/broker/entra/token", params={"scope": scope} if scope else None,
                        headers={"Authorization": f"Bearer {user.access_token}"}, timeout=90)


def _all_token_values(mock_entra: MockEntra, *extra: str) -> set[str]:
    issued = mock_entra.issued()
    values = {v for vs in issued.values() for v in vs if isinstance(v, str) and len(v) > 16}
    return values | {e for e in extra if e}


def _assert_no_tokens(events: list[dict], tokens: set[str]):
    blob = repr(events)
    for t in tokens:
        assert t not in blob, "a token value reached an event"
    for e in events:
        for k, v in (e.get("details") or {}).items():
            assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", v), f"JWT-looking value in detail {k}"


def test_retrievals_record_events_with_exact_details_and_never_a_token(admin, realm, mock_entra: MockEntra):
    _enable_retrieve_events(admin, realm)
    admin.update_idp_config(realm, "entra", resourceScopes=GRAPH, oboClientId=MIDDLE_TIER,
                            oboClientSecret="mock-secret-a1", oboScopes=GRAPH_DEFAULT, appTokenScopes=GRAPH_DEFAULT)
    user = login(realm)
    user_id = admin.request("GET", f"/{realm}/users").json()[0]["id"]

    assert broker_token_v1(KC_BASE, realm, "entra", user).status_code == 200          # 1: fresh path
    admin.update_idp_config(realm, "entra", minValidityToken=4000)                    # longer than the token lives
    assert broker_token_v1(KC_BASE, realm, "entra", user).status_code == 200          # 2: refreshed
    admin.update_idp_config(realm, "entra", minValidityToken=60)
    assert _token(realm, user, GRAPH).status_code == 200                              # 3: resource minted
    assert _token(realm, user, GRAPH).status_code == 200                              # 4: resource cached
    assert _get(realm, "obo", user.access_token, scope=GRAPH_DEFAULT).status_code == 200   # 5: obo exchange
    caller = _service_account_token(admin, realm, "reporting", "reporting-secret", role="fresh-token-app-token")
    app = _get(realm, "app-token", caller, scope=GRAPH_DEFAULT)                         # 6: app-only
    assert app.status_code == 200, app.text
    mock_entra.config(fault="invalid_grant")
    admin.update_idp_config(realm, "entra", minValidityToken=4000)
    failed = broker_token_v1(KC_BASE, realm, "entra", user)                            # 7: AADSTS70008
    mock_entra.config(fault="none")
    assert failed.status_code == 400 and failed.json()["error"] == "reauth_required", failed.text
    assert _get(realm, "obo", user.access_token, scope="https://graph.microsoft.com/Mail.Send").status_code == 403  # 8

    events = _events(admin, realm)
    assert len(events) == 8, [(e["type"], e.get("details")) for e in events]
    d = [e.get("details") or {} for e in events]
    for e in events[:7]:
        assert e["userId"] == user_id or e is events[5], e
    common = {"identity_provider": "entra"}

    def upstream_ms(det):
        ms = det.pop("fresh_token_upstream_ms")
        assert ms.isdigit() and int(ms) < 30000, ms
        return det

    assert events[0]["type"] == TYPES[0] and d[0] == common | {
        "fresh_token_endpoint": "broker_v1", "fresh_token_kind": "idp", "fresh_token_outcome": "cache_hit",
        "fresh_token_refreshed": "false"}
    assert events[1]["type"] == TYPES[0] and upstream_ms(dict(d[1])) == common | {
        "fresh_token_endpoint": "broker_v1", "fresh_token_kind": "idp", "fresh_token_outcome": "refreshed",
        "fresh_token_refreshed": "true"}
    assert events[2]["type"] == TYPES[0] and upstream_ms(dict(d[2])) == common | {
        "fresh_token_endpoint": "broker_v1", "fresh_token_kind": "resource", "fresh_token_resource": GRAPH,
        "fresh_token_outcome": "refreshed", "fresh_token_refreshed": "true"}
    assert events[3]["type"] == TYPES[0] and d[3] == common | {
        "fresh_token_endpoint": "broker_v1", "fresh_token_kind": "resource", "fresh_token_resource": GRAPH,
        "fresh_token_outcome": "cache_hit", "fresh_token_refreshed": "false"}
    assert events[4]["type"] == TYPES[0] and events[4]["clientId"] == "demo-app" and upstream_ms(dict(d[4])) == common | {
        "fresh_token_endpoint": "obo", "fresh_token_kind": "obo", "fresh_token_resource": GRAPH_DEFAULT,
        "fresh_token_outcome": "refreshed", "fresh_token_refreshed": "true"}
    # App-only tokens are cached per node across realms: another test may have fetched this one.
    app_det = dict(d[5])
    assert events[5]["type"] == TYPES[0] and events[5]["clientId"] == "reporting"
    if app_det["fresh_token_outcome"] == "refreshed":
        upstream_ms(app_det)
    assert app_det == common | {
        "fresh_token_endpoint": "app_token", "fresh_token_kind": "app", "fresh_token_resource": GRAPH_DEFAULT,
        "fresh_token_outcome": app_det["fresh_token_outcome"],
        "fresh_token_refreshed": str(app_det["fresh_token_outcome"] == "refreshed").lower()}
    assert app_det["fresh_token_outcome"] in ("refreshed", "cache_hit")
    assert events[6]["type"] == TYPES[1] and events[6]["error"] == "identity_provider_error"
    assert upstream_ms(dict(d[6])) == common | {
        "fresh_token_endpoint": "broker_v1", "fresh_token_kind": "idp", "fresh_token_outcome": "error",
        "fresh_token_refreshed": "false", "fresh_token_error": "reauth_required", "reason": "reauth_required",
        "fresh_token_upstream_status": "400", "fresh_token_upstream_error": "invalid_grant",
        "fresh_token_aadsts": "70008"}
    assert events[7]["type"] == TYPES[1] and d[7] == common | {
        "fresh_token_endpoint": "obo", "fresh_token_kind": "obo",
        "fresh_token_resource": "https://graph.microsoft.com/Mail.Send", "fresh_token_outcome": "error",
        "fresh_token_refreshed": "false", "fresh_token_error": "forbidden", "reason": "forbidden"}
    _assert_no_tokens(events, _all_token_values(mock_entra, user.access_token, caller, app.json()["access_token"]))


# ---- metrics ---------------------------------------------------------------------------------

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape() -> dict[tuple, float]:
    text = requests.get(f"http://127.0.0.1:{KC_MGMT_PORT}/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series(snapshot, name, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in snapshot.items() if n == name and want <= set(ls))


def test_metrics_count_a_known_sequence_exactly(admin, realm, mock_entra: MockEntra):
    admin.update_idp_config(realm, "entra", resourceScopes=GRAPH)
    before = scrape()
    assert series(before, "fresh_token_native_loaded") == 1.0, "gauge missing or library not loaded"
    user = login(realm)
    n_fresh, storm_size = 3, 6
    for _ in range(n_fresh):                                                           # fresh path: cache hits
        assert broker_token_v1(KC_BASE, realm, "entra", user).status_code == 200
    mock_entra.config(access_token_lifetime_s=8)
    admin.update_idp_config(realm, "entra", minValidityToken=4000)
    short = broker_token_v1(KC_BASE, realm, "entra", user)                             # refresh 1 (8 s token)
    assert short.status_code == 200, short.text
    admin.update_idp_config(realm, "entra", minValidityToken=1)
    mock_entra.config(access_token_lifetime_s=3600, refresh_delay_ms=5000)
    sleep_until(claims(short.json()["access_token"])["exp"] + 1)                       # expired
    with ThreadPoolExecutor(max_workers=storm_size) as pool:                           # refresh 2, 5 waits
        answers = list(pool.map(lambda _: broker_token_v1(KC_BASE, realm, "entra", user), range(storm_size)))
    mock_entra.config(refresh_delay_ms=0)
    assert [a.status_code for a in answers] == [200] * storm_size, [a.text[:200] for a in answers]
    assert len({a.json()["access_token"] for a in answers}) == 1
    assert _token(realm, user, GRAPH).status_code == 200                               # resource: refresh
    assert _token(realm, user, GRAPH).status_code == 200                               # resource: cache hit
    mock_entra.config(fault="invalid_grant")
    admin.update_idp_config(realm, "entra", minValidityToken=4000)
    failed = broker_token_v1(KC_BASE, realm, "entra", user)                            # failure
    mock_entra.config(fault="none")
    assert failed.status_code == 400, failed.text
    time.sleep(0.5)
    after = scrape()

    def delta(name, **labels):
        return series(after, name, realm=realm, idp="entra", **labels) - series(before, name, realm=realm, idp="entra", **labels)

    assert delta("fresh_token_cache_hits_total", kind="idp", resource="-") == n_fresh
    assert delta("fresh_token_cache_hits_total", kind="resource", resource=GRAPH) == 1
    assert delta("fresh_token_cache_hits_total") == n_fresh + 1
    assert delta("fresh_token_refreshes_total", kind="idp", outcome="success", code="none") == 2
    assert delta("fresh_token_refreshes_total", kind="resource", outcome="success", code="none") == 1
    assert delta("fresh_token_refreshes_total", kind="idp", outcome="failure", code="reauth_required") == 1
    assert delta("fresh_token_refreshes_total") == 4
    assert delta("fresh_token_single_flight_waits_total", kind="idp", outcome="served") == storm_size - 1
    assert delta("fresh_token_single_flight_waits_total") == storm_size - 1
    assert delta("fresh_token_errors_total", kind="idp", code="reauth_required") == 1
    assert delta("fresh_token_errors_total") == 1
    assert delta("fresh_token_upstream_duration_seconds_count", kind="idp", outcome="success") == 2
    assert delta("fresh_token_upstream_duration_seconds_count", kind="resource", outcome="success") == 1
    assert delta("fresh_token_upstream_duration_seconds_count", kind="idp", outcome="failure") == 1
    # The storm's refresh waited 5 s at the mock: it lands above the 2.5 s bucket, below 10 s.
    assert delta("fresh_token_upstream_duration_seconds_bucket", kind="idp", outcome="success", le="2.5") == 1
    assert delta("fresh_token_upstream_duration_seconds_bucket", kind="idp", outcome="success", le="10.0") == 2
    assert delta("fresh_token_upstream_duration_seconds_sum", kind="idp", outcome="success") >= 5.0
    # No user, client or token in any of our series' labels.
    ours = [ls for (n, ls) in after if n.startswith("fresh_token_")]
    assert ours and all({k for k, _ in ls} <= {"realm", "idp", "kind", "resource", "outcome", "code", "le"} for ls in ours), ours
