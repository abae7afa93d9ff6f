"""Two-node cluster (issue 5, "Cluster"): cross-node single-flight of the upstream refresh and
the faults of a real deployment (node killed while holding the refresh lock, node killed after
the IdP answered but before the commit, database briefly unreachable, node restarted mid-run).

Both nodes share one PostgreSQL database and form an Infinispan cluster over loopback
(jdbc-ping). Node 1 serves the V1 broker API, node 2 the V2 API (CLUSTER_MIXED_API=1). The
refresh lock is Keycloak's single-use store (`actionTokens`, a clustered cache): these tests
are what shows it is cluster-wide."""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import (API, GRAPH, Cluster, MockEntra, claims, login, make_realm, sleep_until, token_call)

CYCLES = 20
LIFETIME = 8            # upstream token lifetime in the cycle test (s); a storm ends well within it
CALLERS_PER_NODE = 10
KINDS = ("own", "graph", "obo")
# One refresh-token spend per token that expired: the IdP's own token, the Graph resource token
# and the middle tier's API token (the on-behalf-of assertion).
SCOPES_PER_CYCLE = 3


def storm(cluster: Cluster, realm: str, user, plan: list[tuple[int, str]]) -> list:
    """All calls of `plan` ((node, kind) pairs) at once; exceptions are returned, not raised."""
    barrier = threading.Barrier(len(plan))

    def one(node_kind):
        node, kind = node_kind
        barrier.wait()
        try:
            return token_call(cluster, node, realm, user, kind)
        except requests.RequestException as e:
            return e

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        return list(pool.map(one, plan))


def mixed_plan(nodes=(1, 2)) -> list[tuple[int, str]]:
    plan = [(n, KINDS[i % len(KINDS)]) for n in nodes for i in range(CALLERS_PER_NODE)]
    random.shuffle(plan)
    return plan


def failed(answers) -> list[str]:
    return [repr(a) if isinstance(a, Exception) else f"{a.status_code} {a.text[:200]}"
            for a in answers if isinstance(a, Exception) or a.status_code != 200]


def latest_exp(answers) -> int:
    return max(claims(a.json()["access_token"])["exp"] for a in answers if not isinstance(a, Exception))


@pytest.fixture
def strict_realm(admins, mock_factory):
    mock = mock_factory(refresh_mode="strict", access_token_lifetime_s=LIFETIME)
    return make_realm(admins[0], mock), mock


def test_cycles_of_concurrent_calls_on_both_nodes_spend_each_refresh_token_once(cluster, strict_realm):
    """20 expiry cycles; each: 20 concurrent callers split over both nodes (V1 on node 1, V2 on
    node 2), mixing the IdP's own token, a per-resource token and on-behalf-of. The mock is a
    strict one-time-refresh-token IdP that revokes the family on reuse."""
    realm, mock = strict_realm
    user = login(realm)
    warm = storm(cluster, realm, user, mixed_plan())
    assert failed(warm) == []
    refreshes = failures = 0
    for cycle in range(CYCLES):
        sleep_until(latest_exp(warm) + 1)
        before = mock.stats()
        plan = mixed_plan()
        answers = storm(cluster, realm, user, plan)
        after = mock.stats()
        bad = failed(answers)
        failures += len(bad)
        spent = after["by_grant"].get("refresh_token", 0) - before["by_grant"].get("refresh_token", 0)
        refreshes += spent
        assert bad == [], f"cycle {cycle}: {bad[:3]}"
        assert spent == SCOPES_PER_CYCLE, f"cycle {cycle}: {spent} refresh-token spends for {SCOPES_PER_CYCLE} expired tokens"
        scopes = [r["scope"] for r in after["recent_refreshes"][-spent:]]
        assert len(set(scopes)) == SCOPES_PER_CYCLE, f"cycle {cycle}: a token was refreshed twice: {scopes}"
        per_kind = {}
        for a, (_, kind) in zip(answers, plan):
            per_kind.setdefault(kind, set()).add(a.json()["access_token"])
        assert all(len(v) == 1 for v in per_kind.values()), f"cycle {cycle}: callers got different tokens for one kind"
        assert all(claims(a.json()["access_token"])["exp"] > time.time() for a in answers)
        warm = answers
    s = mock.stats()
    print(f"\ncluster cycles: {CYCLES} cycles x {2 * CALLERS_PER_NODE} callers on 2 nodes: "
          f"upstream refreshes {refreshes} (expected {CYCLES * SCOPES_PER_CYCLE}), failed calls {failures}, "
          f"reused refresh tokens {s['reuse_detected']}, families revoked {s['families_revoked']}")
    assert (refreshes, failures, s["reuse_detected"], s["families_revoked"]) == (CYCLES * SCOPES_PER_CYCLE, 0, 0, 0)

