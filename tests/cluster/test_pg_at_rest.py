"""Encryption at rest on PostgreSQL (issue 5, "Encrypted at rest"): after sign-in, refresh,
per-resource and on-behalf-of calls on both nodes, a full `pg_dump` of Keycloak's database holds
none of the access or refresh tokens the mock issued, while both nodes keep serving them.

The cluster runs with a storage key file (conftest: KEY_FILE), so every row our IdP types
write is an `ftk2.` value. The dev-mode H2 variant is tests/e2e/test_encryption_at_rest.py."""
from __future__ import annotations

import time

from support.at_rest import leaked_tokens

from .conftest import KEY_FILE, claims, login, make_realm, sleep_until, token_call

STORED = ("access_tokens", "refresh_tokens")
LIFETIME = 8


def _rows(cluster, realm: str) -> list[str]:
    out = cluster.psql("SELECT fi.token FROM federated_identity fi JOIN realm r ON r.id = fi.realm_id "
                       f"WHERE r.name = '{realm}' AND fi.identity_provider = 'entra'")
    return [line for line in out.splitlines() if line.strip()]


def test_pg_dump_holds_no_token_the_mock_issued_after_login_refresh_resource_and_obo(cluster, admins, mock_factory):
    assert KEY_FILE is not None, "the cluster tests run with a storage key (unset CLUSTER_NO_KEYS)"
    cluster.ensure_up()  # fault tests before this one stop and restart nodes
    mock = mock_factory(access_token_lifetime_s=LIFETIME)
    realm = make_realm(admins[0], mock)
    user = login(realm)
    served = []

    def round_of_calls(nodes):
        for n in nodes:
            for kind in ("own", "graph", "obo"):
                r = token_call(cluster, n, realm, user, kind)
                assert r.status_code == 200, f"node {n} {kind}: {r.status_code} {r.text[:300]}"
                served.append(r.json()["access_token"])

    round_of_calls((1, 2))
    refreshes_before = mock.refreshes()
    sleep_until(max(claims(t)["exp"] for t in served) + 1)
    round_of_calls((2, 1))  # everything expired: own, resource and API (obo assertion) tokens are refreshed
    assert mock.refreshes() - refreshes_before == 3, "one refresh per expired token"
    assert all(claims(t)["exp"] > time.time() for t in served[-6:])

    rows = _rows(cluster, realm)
    assert len(rows) == 1 and rows[0].startswith("ftk2.k1."), "the stored row is an encrypted value"

    issued = mock.issued()
    stored_kinds = {k: issued[k] for k in STORED}
    assert all(stored_kinds.values()), "the mock issued access and refresh tokens"
    assert set(served) <= set(issued["access_tokens"]), "the apps got tokens the IdP issued"
    dump = cluster.pg_dump().encode("utf-8")
    assert b"federated_identity" in dump and rows[0].encode() in dump, "the dump holds the table and the row"
    leaks = leaked_tokens(dump, stored_kinds)
    print(f"\npg_dump at rest: {len(dump)} bytes scanned, {sum(map(len, stored_kinds.values()))} issued tokens, "
          f"{len(leaks)} found")
    assert leaks == [], f"token values in the database dump: {leaks}"
