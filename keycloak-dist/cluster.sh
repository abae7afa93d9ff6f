#!/usr/bin/env bash
# A two-node Keycloak cluster on this machine, for the cluster tests and `make run-cluster`:
# one PostgreSQL server (Debian's package, data in a project-local directory, loopback only)
# and two Keycloak nodes in production mode (`start`), each from its own copy of the pinned
# distribution with our JAR + .so, discovering each other with Keycloak's default jdbc-ping
# stack (JGroups bound to 127.0.0.1). The hostname is fixed to one URL (node 1's), so tokens
# issued through either node carry the same issuer and validate on both.
#
#   keycloak-dist/cluster.sh start          # PostgreSQL + both nodes, waits until ready
#   keycloak-dist/cluster.sh stop           # both nodes + PostgreSQL
#   keycloak-dist/cluster.sh status
#   keycloak-dist/cluster.sh kill-node N    # kill -9 node N (1 or 2)
#   keycloak-dist/cluster.sh start-node N   # start node N (waits until ready)
#   keycloak-dist/cluster.sh stop-node N    # graceful stop of node N
#   keycloak-dist/cluster.sh pg-stop | pg-start
#   keycloak-dist/cluster.sh psql [psql args]   # psql on the Keycloak database
#   keycloak-dist/cluster.sh pg-dump        # full pg_dump of the Keycloak database to stdout
#   keycloak-dist/cluster.sh log N          # path of node N's log
#
# Environment: KC_VERSION (26.7.3); CLUSTER_HTTP_PORTS ("18481 18482"), CLUSTER_MGMT_PORTS
# ("19481 19482"), CLUSTER_JGROUPS_PORTS ("7900 7920"), CLUSTER_PG_PORT (25432);
# CLUSTER_FEATURES_1 / CLUSTER_FEATURES_2 (per-node --features, e.g. identity-brokering-api:v2);
# CLUSTER_HOSTNAME (http://127.0.0.1:<node 1 port>); KC_EXTRA_ARGS (appended to start);
# KC_LOG_LEVEL (INFO,dev.freshtoken:debug); CLUSTER_FRESH_DB=1 drops the database on start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=${KC_VERSION:-26.7.3}
read -r -a http_ports <<<"${CLUSTER_HTTP_PORTS:-18481 18482}"
read -r -a mgmt_ports <<<"${CLUSTER_MGMT_PORTS:-19481 19482}"
read -r -a jg_ports <<<"${CLUSTER_JGROUPS_PORTS:-7900 7920}"
pg_port=${CLUSTER_PG_PORT:-25432}
hostname_url=${CLUSTER_HOSTNAME:-http://127.0.0.1:${http_ports[0]}}
run="$here/run/cluster-$version"
pgdata="$run/pg/data"
pgsock="$run/pg/sock"
db=keycloak dbuser=keycloak dbpass=keycloak

log() { echo "[cluster.sh] $*" >&2; }

# ---- PostgreSQL -------------------------------------------------------------------------------

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] && command -v pg_ctl >/dev/null 2>&1; then d=$(dirname "$(command -v pg_ctl)"); fi
  if [ -z "$d" ]; then
    if [ "$(id -u)" = 0 ]; then
      log "PostgreSQL not found: installing Debian's package"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
      d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    else
      log "PostgreSQL not found: install it (sudo apt-get install postgresql)"; exit 1
    fi
  fi
  echo "$d"
}

# PostgreSQL refuses to run as root: as root, run its tools as the 'postgres' user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() { [ -f "$pgdata/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; }

pg_init() {
  local bin; bin=$(pg_bin)
  if [ -f "$pgdata/PG_VERSION" ]; then return 0; fi
  log "initdb into $pgdata"
  mkdir -p "$run/pg" "$pgsock"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown -R postgres: "$run/pg"
    chmod 755 "$run" "$here/run" 2>/dev/null || true
  fi
  as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$run/pg/initdb.log" 2>&1 || { cat "$run/pg/initdb.log" >&2; exit 1; }
  cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pgsock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

pg_start() {
  pg_init
  if pg_running; then return 0; fi
  local bin; bin=$(pg_bin)
  mkdir -p "$pgsock"; [ "$(id -u)" = 0 ] && chown postgres: "$pgsock"
  log "starting PostgreSQL on 127.0.0.1:$pg_port"
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$run/pg/postgres.log" -w -t 60 start >/dev/null
  # Database and role (idempotent).
  if ! as_pg "$bin/psql" -h "$pgsock" -p "$pg_port" -U postgres -tAc "select 1 from pg_roles where rolname='$dbuser'" | grep -q 1; then
    as_pg "$bin/psql" -h "$pgsock" -p "$pg_port" -U postgres -qc "create role $dbuser login password '$dbpass'"
  fi
  if [ "${CLUSTER_FRESH_DB:-0}" = 1 ]; then
    as_pg "$bin/psql" -h "$pgsock" -p "$pg_port" -U postgres -qc "drop database if exists $db"
  fi
  if ! as_pg "$bin/psql" -h "$pgsock" -p "$pg_port" -U postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1; then
    as_pg "$bin/createdb" -h "$pgsock" -p "$pg_port" -U postgres -O "$dbuser" "$db"
  fi
}

pg_stop() {
  if pg_running; then
    log "stopping PostgreSQL"
    as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >/dev/null
  fi
}

psql_kc() {
  PGPASSWORD=$dbpass "$(pg_bin)/psql" -h 127.0.0.1 -p "$pg_port" -U "$dbuser" -d "$db" "$@"
}

pg_dump_kc() {
  PGPASSWORD=$dbpass "$(pg_bin)/pg_dump" -h 127.0.0.1 -p "$pg_port" -U "$dbuser" -d "$db" "$@"
}

# ---- Keycloak nodes ---------------------------------------------------------------------------

node_dir() { echo "$run/node$1"; }
node_pid() { echo "$(node_dir "$1")/pid"; }
node_log() { echo "$(node_dir "$1")/keycloak.log"; }
node_alive() { local p; p=$(node_pid "$1"); [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null; }
check_node() { case "${1:-}" in 1|2) ;; *) echo "node must be 1 or 2" >&2; exit 2 ;; esac; }

features_of() { if [ "$1" = 1 ]; then echo "${CLUSTER_FEATURES_1:-}"; else echo "${CLUSTER_FEATURES_2:-}"; fi; }

# Each node has its own copy of the distribution (own providers/, own build, own data/), so
# per-node build options (features) and a kill -9 of one node never touch the other's files.
prepare_node() {
  local n=$1 dir kc features stamp want
  dir=$(node_dir "$n"); kc="$dir/keycloak"
  features=$(features_of "$n")
  local dist="$root/target/dist"
  if ! ls "$dist"/keycloak-fresh-token-*.jar >/dev/null 2>&1; then
    log "no provider JAR in target/dist: run 'make package' first"; exit 1
  fi
  mkdir -p "$dir"
  if [ ! -x "$kc/bin/kc.sh" ]; then
    local src; src=$("$here/fetch.sh")
    log "node $n: copying the distribution"
    rm -rf "$kc.tmp"; cp -a "$src" "$kc.tmp"; rm -rf "$kc.tmp/data"; mv "$kc.tmp" "$kc"
  fi
  want="db=postgres features=$features $(cat "$dist"/keycloak-fresh-token-*.jar "$dist"/libfresh_token_core.* | sha256sum | cut -c1-16)"
  stamp="$dir/build.stamp"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -f "$kc"/providers/keycloak-fresh-token-*.jar "$kc"/providers/libfresh_token_core.*
    cp "$dist"/keycloak-fresh-token-*.jar "$dist"/libfresh_token_core.* "$kc/providers/"
    log "node $n: kc.sh build (db=postgres${features:+, features=$features})"
    # shellcheck disable=SC2086
    "$kc/bin/kc.sh" build --db=postgres --health-enabled=true --metrics-enabled=true \
      ${features:+--features="$features"} >"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; exit 1; }
    echo "$want" >"$stamp"
  fi
}

start_node() {
  local n=$1 i=$(($1 - 1)) dir kc
  dir=$(node_dir "$n"); kc="$dir/keycloak"
  if node_alive "$n"; then log "node $n already running (pid $(cat "$(node_pid "$n")"))"; return 0; fi
  pg_start
  prepare_node "$n"
  echo "----- cluster.sh start-node $n $(date -u +%FT%TZ)" >>"$(node_log "$n")"
  log "node $n: starting on http://127.0.0.1:${http_ports[$i]} (log: $(node_log "$n"))"
  (
    export KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin
    export JAVA_OPTS_KC_HEAP="-Xms128m -Xmx768m"
    # shellcheck disable=SC2086
    exec setsid "$kc/bin/kc.sh" start --optimized \
      --db-url="jdbc:postgresql://127.0.0.1:$pg_port/$db" --db-username="$dbuser" --db-password="$dbpass" \
      --db-pool-max-size=40 \
      --http-enabled=true --http-host=127.0.0.1 --http-port="${http_ports[$i]}" \
      --http-management-port="${mgmt_ports[$i]}" \
      --hostname="$hostname_url" \
      --cache=ispn --cache-embedded-network-bind-address=127.0.0.1 \
      --cache-embedded-network-bind-port="${jg_ports[$i]}" \
      --log-level="${KC_LOG_LEVEL:-INFO,dev.freshtoken:debug}" \
      ${KC_EXTRA_ARGS:-} >>"$(node_log "$n")" 2>&1 </dev/null
  ) &
  echo $! >"$(node_pid "$n")"
}

wait_node() {
  local n=$1 i=$(($1 - 1))
  local deadline=$((SECONDS + ${KC_START_TIMEOUT:-300}))
  until curl -fs -o /dev/null "http://127.0.0.1:${mgmt_ports[$i]}/health/ready"; do
    if ! node_alive "$n"; then log "node $n exited; last log lines:"; tail -n 40 "$(node_log "$n")" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then log "node $n not ready in time"; tail -n 40 "$(node_log "$n")" >&2; exit 1; fi
    sleep 2
  done
  log "node $n ready: http://127.0.0.1:${http_ports[$i]}"
}

# Ends node $1: signal $2 to its process group, then up to $4 polls $5 s apart for it to exit
# ($3 says what, in the log); after a TERM whatever is left of the group is killed.
end_node() {
  local n=$1 sig=$2 what=$3 polls=$4 every=$5 p pid
  p=$(node_pid "$n")
  if node_alive "$n"; then
    pid=$(cat "$p")
    log "node $n: $what (pid $pid)"
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$polls"); do kill -0 "$pid" 2>/dev/null || break; sleep "$every"; done
    if [ "$sig" = TERM ]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  fi
  rm -f "$p"
}

stop_node() { end_node "$1" TERM stopping 90 0.5; }     # graceful
kill_node() { end_node "$1" KILL "kill -9" 40 0.25; }   # a node dying

status() {
  local n
  if pg_running; then echo "postgresql: running (127.0.0.1:$pg_port)"; else echo "postgresql: stopped"; fi
  for n in 1 2; do
    if node_alive "$n"; then
      echo "node $n: running (pid $(cat "$(node_pid "$n")"), http://127.0.0.1:${http_ports[$((n - 1))]})"
    else
      echo "node $n: stopped"
    fi
  done
}

cmd=${1:-}
shift || true
case "$cmd" in
  start)
    pg_start
    prepare_node 1; prepare_node 2
    # Node 1 first: it creates the schema and the admin user; node 2 then joins.
    start_node 1; wait_node 1
    start_node 2; wait_node 2
    ;;
  stop) stop_node 2; stop_node 1; pg_stop ;;
  status) status ;;
  start-node) check_node "${1:-}"; start_node "$1"; wait_node "$1" ;;
  stop-node) check_node "${1:-}"; stop_node "$1" ;;
  kill-node) check_node "${1:-}"; kill_node "$1" ;;
  pg-start) pg_start ;;
  pg-stop) pg_stop ;;
  psql) psql_kc "$@" ;;
  pg-dump) pg_dump_kc "$@" ;;
  log) check_node "${1:-}"; node_log "$1" ;;
  *) echo "usage: $0 start|stop|status|kill-node N|start-node N|stop-node N|pg-stop|pg-start|psql ...|pg-dump|log N" >&2; exit 2 ;;
esac
