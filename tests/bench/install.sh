#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`: wrk (Debian), matplotlib (PyPI).
# JMH comes from Maven Central through tests/bench/jmh/pom.xml when the bench runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash install-deps.sh
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "missing 'wrk': install it (sudo apt-get install wrk)" >&2; exit 1
  fi
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  python3 -m pip install --quiet -r bench/requirements.txt
fi
for tool in mvn java jcmd curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing '$tool' (Java 17+ JDK and Maven are required)" >&2; exit 1; }
done
