# Sourced by run-demo.sh (`make run`) and run-cluster-demo.sh (`make run-cluster`): the start-up
# both demos share. demo_start <Keycloak script> <mock log file name> <Keycloak URL for the demo realm>
# starts the mock Entra ID on 127.0.0.1:$MOCK_PORT (tokens live $LIFETIME s), then Keycloak
# (`<script> start`: keycloak-dist/keycloak.sh or cluster.sh), then creates the demo realm.
# On exit, Ctrl-C or TERM both are stopped again. The caller prints its walkthrough and ends
# with `wait "$mock_pid"`.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
MOCK_PORT=${MOCK_PORT:-8099}
LIFETIME=${DEMO_TOKEN_LIFETIME_S:-90}

demo_start() {
  demo_kc_script=$1
  local mock_log=$2 kc_url=$3
  trap demo_cleanup EXIT INT TERM
  mkdir -p "$root/keycloak-dist/run"
  python3 "$here/mock_entra/server.py" --host 127.0.0.1 --port "$MOCK_PORT" >"$root/keycloak-dist/run/$mock_log" 2>&1 &
  mock_pid=$!
  for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$MOCK_PORT/_mock/stats" && break; sleep 0.2; done
  curl -fs -X POST -H 'Content-Type: application/json' \
    -d "{\"access_token_lifetime_s\": $LIFETIME}" "http://127.0.0.1:$MOCK_PORT/_mock/config" >/dev/null

  "$demo_kc_script" start
  (cd "$here" && python3 -m support.demo --keycloak "$kc_url" --mock "http://127.0.0.1:$MOCK_PORT")
}

demo_cleanup() {
  "$demo_kc_script" stop || true
  [ -n "${mock_pid:-}" ] && kill "$mock_pid" 2>/dev/null || true
}
