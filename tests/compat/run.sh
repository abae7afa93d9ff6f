#!/usr/bin/env bash
# The compatibility stage of `make test` (make test-compat): the SAME target/dist JAR and .so on
#   1. every supported Keycloak without starting it: LinkCheck (binary linkage) and the glibc
#      check, each also shown to fail on a known-bad input (tests/compat/test_artifact.py);
#   2. Keycloak 26.4.x and 26.5.x on the default JDK (17): login, V1 broker token refresh,
#      single flight, errors, on-behalf-of/app-only (V2 exists only from 26.6: such tests skip);
#   3. Keycloak 26.7.x on Java 25 (COMPAT_JAVA25_HOME), asserting the server really ran on 25;
#   4. the Maven JNI boundary tests (-Xcheck:jni) under Java 25, in a copy of java-spi so the
#      regular build output is not touched.
# Environment: COMPAT_KC_VERSIONS ("26.4.7 26.5.6"), COMPAT_JAVA25_VERSION (26.7.3),
# COMPAT_JAVA25_HOME (/usr/lib/jvm/temurin-25-jdk-amd64), E2E_KC_PORT/E2E_KC_MGMT_PORT, PY.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/tests"
py=${PY:-python3}
versions=${COMPAT_KC_VERSIONS:-26.4.7 26.5.6}
j25_version=${COMPAT_JAVA25_VERSION:-26.7.3}
j25_home=${COMPAT_JAVA25_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
# The V1-relevant end-to-end subset: what must hold on every supported Keycloak. Left out here
# (they run in the full suite on the default version): tests of logic that lives in the Rust core
# and does not touch Keycloak differently (timing windows; error classes beyond one per code).
# test_obo_app_vault covers /realms/{r}/fresh-token/... (on-behalf-of, app-only), whose caller
# authentication reads AuthResult differently on 26.4 (see Compat.java).
subset=(e2e/test_runtime.py e2e/test_broker_token.py e2e/test_single_flight.py e2e/test_errors.py e2e/test_obo_app_vault.py)
core_only="test_token_inside_min_validity_window_is_refreshed_early or test_valid_token_is_served_when_an_early_refresh_fails_transiently"
for f in http500_html http503 temporarily_unavailable slow truncated_json_200 huge_body_200 missing_access_token_200 html_200; do
  core_only+=" or [$f]"
done
select=(-k "not ($core_only)")
timings=()
started=$SECONDS

step() { # name, command...
  local name=$1 t0=$SECONDS; shift
  echo "=== compat: $name"
  "$@"
  timings+=("$(printf '%-44s %4d s' "$name" $((SECONDS - t0)))")
}

if [ ! -x "$j25_home/bin/java" ]; then
  echo "compat: no JDK 25 at $j25_home (set COMPAT_JAVA25_HOME)" >&2; exit 1
fi

step "artifact checks (LinkCheck, glibc)" \
  env COMPAT_KC_VERSIONS="$versions $j25_version" "$py" -m pytest -q compat
for v in $versions; do
  step "Keycloak $v, Java 17: e2e V1 subset" env E2E_KC_VERSION="$v" "$py" -m pytest -q --durations=5 "${select[@]}" "${subset[@]}"
done
step "Keycloak $j25_version, Java 25: e2e V1 subset" \
  env E2E_KC_VERSION="$j25_version" E2E_KC_JAVA_HOME="$j25_home" E2E_EXPECT_JAVA_MAJOR=25 "$py" -m pytest -q --durations=5 "${select[@]}" "${subset[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/java-spi/pom.xml" "$root/java-spi/src" "$tmp/"
mvn_java25() {
  # Java 25 as Keycloak runs it (kc.sh grants native access): no restricted-method warning.
  JAVA_HOME="$j25_home" mvn -B -f "$tmp/pom.xml" test -Dnative.dir="$root/target/test-panic/release" \
    -Djni.extraArgLine=--enable-native-access=ALL-UNNAMED >"$tmp/mvn.log" 2>&1 || { cat "$tmp/mvn.log"; return 1; }
  grep -E "Tests run:.*Fail" "$tmp/mvn.log" | grep -v " in " || true
  grep -q "Java version: 25" <(JAVA_HOME="$j25_home" mvn -v) || { echo "mvn did not use Java 25" >&2; return 1; }
  if grep -qi "restricted method" "$tmp/mvn.log"; then echo "JNI restricted-method warning under Java 25" >&2; return 1; fi
}
step "Maven JNI boundary tests, Java 25" mvn_java25

echo "=== compat: timings"
printf '  %s\n' "${timings[@]}"
echo "  total                                        $((SECONDS - started)) s"
