#!/usr/bin/env bash
# The whole test suite: unit tests, the integration suite on SQLite AND PostgreSQL,
# the stock OAuth client (Python authlib) test, doc tests and the example build.
#
# Needs PostgreSQL on 127.0.0.1:5432 with trust auth for user `postgres` (override
# with ROTOR_TEST_PG_URL). Starts the local cluster if it is installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${ROTOR_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -d "$pg_url" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL…"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -d "$pg_url" && break; sleep 1; done
  fi
fi
pg_isready -q -d "$pg_url" || { echo "PostgreSQL is not reachable at $pg_url" >&2; exit 1; }

# The OAuth interoperability test drives rotor with unmodified client libraries.
# Schemathesis checks /openapi.json against the live server; the webhook tests verify
# every signature with the standardwebhooks package.
if ! python3 -c 'import authlib, jwt, requests, cryptography, standardwebhooks' 2>/dev/null \
   || [ "$(st --version 2>/dev/null)" != "st, version 4.32.5" ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi

cargo test --all-targets "$@"
cargo test --doc "$@"
