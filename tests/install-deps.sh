#!/usr/bin/env bash
# Installs what `make run` and `make test` need beyond the machine's toolchains.
set -euo pipefail
cd "$(dirname "$0")"
need_pip=0
python3 - <<'PY' 2>/dev/null || need_pip=1
import requests, cryptography, pytest  # noqa: F401
PY
if [ "$need_pip" = 1 ]; then
  python3 -m pip install --quiet -r requirements.txt
fi
for tool in curl unzip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    else
      echo "missing '$tool': install it (e.g. sudo apt-get install $tool)" >&2; exit 1
    fi
  fi
done
# `make test-rust` runs clippy over the core.
if ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add clippy
  else
    echo "missing cargo clippy: install it (rustup component add clippy)" >&2; exit 1
  fi
fi
# The admin-console browser test: Debian's Chromium (never a downloaded browser) driven by
# playwright-core from npm, pinned in tests/browser/package-lock.json.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "missing /usr/bin/chromium: install it (sudo apt-get install chromium)" >&2; exit 1
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "missing node/npm: install them (sudo apt-get install nodejs npm)" >&2; exit 1
  fi
fi
if [ ! -f browser/node_modules/playwright-core/package.json ] \
    || ! grep -q "\"version\": \"$(node -p 'require("./browser/package.json").dependencies["playwright-core"]')\"" \
         browser/node_modules/playwright-core/package.json; then
  (cd browser && npm ci --no-audit --no-fund --loglevel=error)
fi
