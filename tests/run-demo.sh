#!/usr/bin/env bash
# `make run`: the mock Entra ID on 127.0.0.1:8099, Keycloak with the extension on localhost:8080,
# the demo realm, then a walkthrough. Ctrl-C stops everything.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export KC_PORT=${KC_PORT:-8080} KC_MGMT_PORT=${KC_MGMT_PORT:-9000}
MOCK_PORT=${MOCK_PORT:-8099}
LIFETIME=${DEMO_TOKEN_LIFETIME_S:-90}

cleanup() {
  "$root/keycloak-dist/keycloak.sh" stop || true
  [ -n "${mock_pid:-}" ] && kill "$mock_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p "$root/keycloak-dist/run"
python3 "$here/mock_entra/server.py" --host 127.0.0.1 --port "$MOCK_PORT" >"$root/keycloak-dist/run/mock-entra.log" 2>&1 &
mock_pid=$!
for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$MOCK_PORT/_mock/stats" && break; sleep 0.2; done
curl -fs -X POST -H 'Content-Type: application/json' \
  -d "{\"access_token_lifetime_s\": $LIFETIME}" "http://127.0.0.1:$MOCK_PORT/_mock/config" >/dev/null

"$root/keycloak-dist/keycloak.sh" start
(cd "$here" && python3 -m support.demo --keycloak "http://localhost:$KC_PORT" --mock "http://127.0.0.1:$MOCK_PORT")

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
