#!/usr/bin/env bash
# Goal 4: JMH microbenchmark of one JNI call of the fresh-path decision.
#   tests/bench/jmh.sh <out-dir>     (needs target/dist from `make package`)
# Writes <out-dir>/jmh.json (JMH's JSON result) and <out-dir>/jmh.txt (its console output).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?out dir}
mkdir -p "$out"
so="$root/target/dist/libfresh_token_core.so"
jar="$root/target/dist/keycloak-fresh-token-0.1.0.jar"
[ -f "$so" ] && [ -f "$jar" ] || { echo "jmh.sh: run 'make package' first" >&2; exit 1; }
(cd "$here/jmh" && mvn -q -B package -DskipTests)
# Short, bounded runs: 3 x 2 s warm-up, 5 x 2 s measurement, 1 fork (JMH_ARGS to override).
# shellcheck disable=SC2086
java -cp "$here/jmh/target/benchmarks.jar:$jar" org.openjdk.jmh.Main \
  -jvmArgsAppend "-Dfreshtoken.library.path=$so" \
  -rf json -rff "$out/jmh.json" ${JMH_ARGS:-} 'FreshPathBenchmark' 2>&1 | tee "$out/jmh.txt"

# Where the time of jniCheckFresh goes: a flat perf profile (self time by shared object and
# symbol) of a 6 s in-process run. The core's Rust symbols are named; JIT-compiled Java shows
# as [JIT]. Skipped when perf is missing or not permitted.
if command -v perf >/dev/null 2>&1 && perf record -o /dev/null -q -- true >/dev/null 2>&1; then
  perf record -q -F 1999 -o "$out/perf.data" -- \
    java -cp "$here/jmh/target/benchmarks.jar:$jar" -Dfreshtoken.library.path="$so" org.openjdk.jmh.Main \
      -f 0 -wi 1 -w 2 -i 1 -r 6 'FreshPathBenchmark.jniCheckFresh' >/dev/null 2>&1 || true
  { perf report -i "$out/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -12
    echo "---"
    perf report -i "$out/perf.data" --stdio --no-children --sort dso,sym 2>/dev/null | grep -E '^ +[0-9]' | head -30
  } > "$out/perf-jni.txt" || true
  rm -f "$out/perf.data"
fi
