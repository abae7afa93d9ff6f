#!/usr/bin/env bash
# `make run`: the mock Entra ID on 127.0.0.1:8099, Keycloak with the extension on localhost:8080,
# the demo realm, then a walkthrough. Ctrl-C stops everything.
set -euo pipefail
export KC_PORT=${KC_PORT:-8080} KC_MGMT_PORT=${KC_MGMT_PORT:-9000}
# shellcheck source=demo-start.sh
. "$(dirname "$0")/demo-start.sh"

demo_start "$root/keycloak-dist/keycloak.sh" mock-entra.log "http://localhost:$KC_PORT"

cat <<TXT

  Keycloak with the fresh-token extension is running.

  Admin console : http://localhost:$KC_PORT/admin   (admin / admin)
                  realm "demo" > Identity providers > "entra" (type entra-oidc)
  Mock Entra ID : http://127.0.0.1:$MOCK_PORT  (signs in alice@contoso.onmicrosoft.com without a form;
                  Entra access tokens live $LIFETIME s here; the IdP refreshes within 60 s of expiry)

  Walkthrough (another terminal, from $root):

    # 1. sign the demo user in through Keycloak -> mock Entra ID, keep the Keycloak access token
    TOKEN=\$(python3 tests/support/demo_login.py --keycloak http://localhost:$KC_PORT)

    # 2. the user's Entra token, as the app gets it (no refresh_token in the answer)
    curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:$KC_PORT/realms/demo/broker/entra/token | python3 -m json.tool

    # 3. wait until it is within 60 s of expiry, ask again: a new access token, refreshed once
    sleep $((LIFETIME - 50)); curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:$KC_PORT/realms/demo/broker/entra/token | python3 -m json.tool

    # 4. what the mock Entra ID saw (one refresh_token grant)
    curl -s http://127.0.0.1:$MOCK_PORT/_mock/stats | python3 -m json.tool

  Logs: $("$root/keycloak-dist/keycloak.sh" log), keycloak-dist/run/mock-entra.log
  Ctrl-C stops Keycloak and the mock.
TXT
wait "$mock_pid"
