#!/usr/bin/env bash
# Keycloak for this project: fetch the pinned distribution, install our provider JAR and the
# native core, start (loopback only), wait until ready, stop.
#
#   keycloak-dist/keycloak.sh start     # installs target/dist/* into providers/, starts, waits
#   keycloak-dist/keycloak.sh stop
#   keycloak-dist/keycloak.sh status
#
# Environment: KC_VERSION (default 26.7.3), KC_PORT (8080), KC_MGMT_PORT (9000),
# KC_FEATURES (Keycloak's defaults; e.g. identity-brokering-api:v2 for the V2 endpoint: V1 and V2
# are versions of one feature and cannot be enabled together), KC_KEEP_DATA=1 keeps the H2 database between starts,
# KC_NO_NATIVE=1 installs the JAR without the .so (to test the documented failure),
# KC_LOG_LEVEL (INFO,dev.freshtoken:debug), KC_EXTRA_ARGS (appended to start-dev),
# KC_FRESH_TOKEN_KEY_FILE / KC_FRESH_TOKEN_KEY_MODE (encrypt|decrypt-only): storage keys for
# encryption at rest (--spi-admin-realm-restapi-extension--fresh-token-storage--key-file/--mode).
# KC_FRESH_TOKEN_ASSERTION_KEY_DIR: the directory certificate assertion key files may be read from
# (--spi-admin-realm-restapi-extension--fresh-token-storage--assertion-key-dir; unset: key files off).
# KC_FRESH_TOKEN_ALLOW_PLAINTEXT=true: plain rows are used while encrypting (--...--allow-plaintext).
# KC_JAVA_HOME (a JDK to run Keycloak with, e.g. /usr/lib/jvm/temurin-25-jdk-amd64; default:
# kc.sh's own choice, JAVA_HOME or the java on PATH). Each KC_VERSION is unpacked and run
# separately (keycloak-dist/keycloak-<version>/, run/<version>-<port>/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=${KC_VERSION:-26.7.3}
port=${KC_PORT:-8080}
mgmt=${KC_MGMT_PORT:-9000}
run="$here/run/$version-$port"
kc="$here/keycloak-$version"

log() { echo "[keycloak.sh] $*" >&2; }

install_providers() {
  local dist="$root/target/dist"
  if ! ls "$dist"/keycloak-fresh-token-*.jar >/dev/null 2>&1; then
    log "no provider JAR in target/dist: run 'make package' first"; exit 1
  fi
  rm -f "$kc"/providers/keycloak-fresh-token-*.jar "$kc"/providers/libfresh_token_core.*
  cp "$dist"/keycloak-fresh-token-*.jar "$kc/providers/"
  if [ "${KC_NO_NATIVE:-0}" != "1" ]; then
    cp "$dist"/libfresh_token_core.* "$kc/providers/"
  fi
}

pid_alive() { [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null; }

start() {
  "$here/fetch.sh" >/dev/null
  if pid_alive; then log "already running (pid $(cat "$run/pid"))"; return 0; fi
  mkdir -p "$run"
  if [ -n "${KC_JAVA_HOME:-}" ] && [ ! -x "$KC_JAVA_HOME/bin/java" ]; then
    log "KC_JAVA_HOME=$KC_JAVA_HOME has no bin/java"; exit 1
  fi
  install_providers
  if [ "${KC_KEEP_DATA:-0}" != "1" ]; then rm -rf "$kc/data"; fi
  echo "----- keycloak.sh start $(date -u +%FT%TZ) version=$version java=${KC_JAVA_HOME:-default} features=${KC_FEATURES:-default} storage-keys=${KC_FRESH_TOKEN_KEY_FILE:+yes} native=$([ "${KC_NO_NATIVE:-0}" = 1 ] && echo no || echo yes)" >>"$run/keycloak.log"
  log "starting Keycloak $version${KC_JAVA_HOME:+ (JDK $KC_JAVA_HOME)} on http://127.0.0.1:$port (log: $run/keycloak.log)"
  (
    export KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin
    if [ -n "${KC_JAVA_HOME:-}" ]; then export JAVA_HOME="$KC_JAVA_HOME"; unset JAVA; fi
    # shellcheck disable=SC2086
    exec setsid "$kc/bin/kc.sh" start-dev \
      --http-host=127.0.0.1 --http-port="$port" \
      --http-management-port="$mgmt" --health-enabled=true --metrics-enabled=true \
      ${KC_FEATURES:+--features="$KC_FEATURES"} \
      --log-level="${KC_LOG_LEVEL:-INFO,dev.freshtoken:debug}" \
      ${KC_FRESH_TOKEN_KEY_FILE:+--spi-admin-realm-restapi-extension--fresh-token-storage--key-file="$KC_FRESH_TOKEN_KEY_FILE"} \
      ${KC_FRESH_TOKEN_KEY_MODE:+--spi-admin-realm-restapi-extension--fresh-token-storage--mode="$KC_FRESH_TOKEN_KEY_MODE"} \
      ${KC_FRESH_TOKEN_ASSERTION_KEY_DIR:+--spi-admin-realm-restapi-extension--fresh-token-storage--assertion-key-dir="$KC_FRESH_TOKEN_ASSERTION_KEY_DIR"} \
      ${KC_FRESH_TOKEN_ALLOW_PLAINTEXT:+--spi-admin-realm-restapi-extension--fresh-token-storage--allow-plaintext="$KC_FRESH_TOKEN_ALLOW_PLAINTEXT"} \
      ${KC_EXTRA_ARGS:-} >>"$run/keycloak.log" 2>&1 < /dev/null
  ) &
  echo $! >"$run/pid"
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${KC_START_TIMEOUT:-240}))
  until curl -fs -o /dev/null "http://127.0.0.1:$port/realms/master"; do
    if ! pid_alive; then log "Keycloak exited; last log lines:"; tail -n 40 "$run/keycloak.log" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then log "not ready in time"; tail -n 40 "$run/keycloak.log" >&2; stop; exit 1; fi
    sleep 2
  done
  log "ready: http://127.0.0.1:$port/admin (admin/admin)"
}

stop() {
  if pid_alive; then
    local pid; pid=$(cat "$run/pid")
    log "stopping Keycloak (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$run/pid"
}

case "${1:-}" in
  start) start ;;
  clean-log) mkdir -p "$run"; : >"$run/keycloak.log" ;;
  stop) stop ;;
  status) if pid_alive; then echo "running (pid $(cat "$run/pid"))"; else echo "stopped"; fi ;;
  wait) wait_ready ;;
  log) echo "$run/keycloak.log" ;;
  *) echo "usage: $0 start|stop|status|wait|log|clean-log" >&2; exit 2 ;;
esac
