#!/usr/bin/env bash
# One command: set up everything the tests need from this repo's own files, then lint, type-check
# and run the whole pytest suite (which starts its own redis-server on a free port).
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the suite needs, each with why; installed through apt (with sudo when not root)
# only when missing, and said before it happens.
need=()
why=()
want() {  # want COMMAND "why" PACKAGE...
  command -v "$1" >/dev/null || { need+=("${@:3}"); why+=("  ${*:3}: $2"); }
}
want redis-server "the Redis tests start their own redis-server on a free port" redis-server
want oathtool "an independent TOTP implementation for the simulator's cross-check" oathtool
want chromium "Debian's Chromium, driven by Playwright in tests/browser (never 'playwright install')" chromium
want node "runs the better-auth client in tests/interop" nodejs npm
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing with apt-get (missing from this machine):"
  printf '%s\n' "${why[@]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "== installing this package with its dev extra into .venv (pytest, ruff, mypy, the frameworks tested, playwright)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

echo "== ruff"; .venv/bin/ruff check banata_middleware tests benchmarks loadtests
echo "== mypy (strict, package)"; .venv/bin/mypy
# pytest keeps the modules it rewrites for assertions as bytecode in __pycache__ (git-ignored). A
# PYTHONDONTWRITEBYTECODE inherited from the machine would have the suite and each of the Python and
# pytest processes it starts compile and rewrite them all again (~500 modules per pytest process).
# Two worker processes (pytest-xdist), each taking a whole test file at a time (--dist loadfile), so a
# module's servers, browser and databases start once: each worker has its own redis-server, PostgreSQL
# database and event loop. BANATA_TEST_WORKERS=0 runs in this process alone (as does `-n 0` given to
# this script: a later -n wins); more workers on a machine with more cores.
workers=${BANATA_TEST_WORKERS:-2}
echo "== pytest ($workers workers)"
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
