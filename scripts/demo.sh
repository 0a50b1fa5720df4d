#!/usr/bin/env bash
# One command: set up a virtualenv from this repo and run the demo (embedded in-memory store, no Redis).
#   bash scripts/demo.sh [banata-mfa demo options, e.g. --port 8000 --framework werkzeug]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all]'
exec .venv/bin/banata-mfa demo "$@"
