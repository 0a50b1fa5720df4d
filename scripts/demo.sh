#!/usr/bin/env bash
# One command: set up a virtualenv from this repo and run the demo (embedded in-memory store, no Redis).
# Accounts and second factors are kept in ./banata-demo.db (the demo's default --database-url) and the
# app secret that encrypts them in ./.banata-demo-secret, so both survive a restart.
#   bash scripts/demo.sh [banata-mfa demo options, e.g. --port 8000 --framework werkzeug]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all]'
if [ ! -s .banata-demo-secret ]; then
  (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))' > .banata-demo-secret)
fi
BANATA_AUTH_SECRET="$(cat .banata-demo-secret)" exec .venv/bin/banata-mfa demo "$@"
