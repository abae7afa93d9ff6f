#!/usr/bin/env bash
# `make run-cluster`: the mock Entra ID on 127.0.0.1:8099, PostgreSQL and two Keycloak nodes with
# the extension (keycloak-dist/cluster.sh), the demo realm, then a walkthrough that calls both
# nodes. Ctrl-C stops everything.
set -euo pipefail
read -r -a ports <<<"${CLUSTER_HTTP_PORTS:-18481 18482}"
n1="http://127.0.0.1:${ports[0]}" n2="http://127.0.0.1:${ports[1]}"
# shellcheck source=demo-start.sh
. "$(dirname "$0")/demo-start.sh"

demo_start "$root/keycloak-dist/cluster.sh" mock-entra-cluster.log "$n1"

cat <<TXT

  A two-node Keycloak cluster with the fresh-token extension is running (PostgreSQL on
  127.0.0.1:${CLUSTER_PG_PORT:-25432}, JGroups discovery through the database, loopback only).

  Node 1        : $n1   (the hostname of both nodes: logins and the admin console go here)
  Node 2        : $n2
  Admin console : $n1/admin   (admin / admin), realm "demo", IdP "entra"
  Mock Entra ID : http://127.0.0.1:$MOCK_PORT  (tokens live $LIFETIME s; the IdP refreshes within 60 s of expiry)

  Walkthrough (another terminal, from $root):

    TOKEN=\$(python3 tests/support/demo_login.py --keycloak $n1)
    curl -s -H "Authorization: Bearer \$TOKEN" $n1/realms/demo/broker/entra/token | python3 -m json.tool
    sleep $((LIFETIME - 50))
    # the same expired token asked on both nodes at once: one upstream refresh, one new token
    for n in $n1 $n2 $n1 $n2; do curl -s -H "Authorization: Bearer \$TOKEN" \$n/realms/demo/broker/entra/token & done; wait
    curl -s http://127.0.0.1:$MOCK_PORT/_mock/stats | python3 -m json.tool   # by_grant.refresh_token: 1

    keycloak-dist/cluster.sh status | kill-node 2 | start-node 2 | psql -c 'select count(*) from federated_identity'

  Logs: $("$root/keycloak-dist/cluster.sh" log 1), $("$root/keycloak-dist/cluster.sh" log 2)
  Ctrl-C stops both nodes, PostgreSQL and the mock.
TXT
wait "$mock_pid"
