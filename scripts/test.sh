#!/usr/bin/env bash
# One command: set up everything the tests need from this repo's own files, then lint, type-check
# and run the whole pytest suite (which starts its own redis-server on a free port).
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v oathtool >/dev/null || need+=(oathtool)          # an independent TOTP for the simulator's cross-check
command -v chromium >/dev/null || need+=(chromium)          # Debian's chromium for tests/browser (Playwright)
command -v node >/dev/null || need+=(nodejs npm)            # the better-auth client in tests/interop
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

echo "== ruff"; .venv/bin/ruff check banata_middleware tests benchmarks loadtests
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
