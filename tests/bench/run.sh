#!/usr/bin/env bash
# `make bench`: installs what it needs, runs the side-by-side benchmark (one Keycloak with the
# extension, one without), the JMH microbenchmark, and writes docs/bench/ (README.md, PNGs,
# results.json). Bounded: about 20 minutes on 2 cores. Not part of `make test`.
#
# Environment: BENCH_ARGS (extra arguments for bench.py, e.g. "--rounds 4 --skip-noext"),
# JMH_ARGS (extra JMH arguments), BENCH_OUT (default docs/bench).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BENCH_OUT:-$root/docs/bench}
cd "$root"
bash "$here/install.sh"
[ -f target/dist/libfresh_token_core.so ] && [ -f target/dist/keycloak-fresh-token-0.1.0.jar ] \
  || { echo "run 'make package' first" >&2; exit 1; }
mkdir -p "$out" target/bench
cmd="make bench${BENCH_ARGS:+ BENCH_ARGS=\"$BENCH_ARGS\"}"
# shellcheck disable=SC2086
python3 "$here/bench.py" --out "$out/results.json" --command "$cmd" ${BENCH_ARGS:-}
bash "$here/jmh.sh" target/bench/jmh >/dev/null
cp target/bench/jmh/jmh.json "$out/jmh.json"
[ -f target/bench/jmh/perf-jni.txt ] && cp target/bench/jmh/perf-jni.txt "$out/perf-jni.txt"
python3 "$here/report.py" "$out"
echo "make bench: report in $out/README.md"
