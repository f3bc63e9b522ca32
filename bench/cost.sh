#!/usr/bin/env bash
# Instructions per request (health, /v1/users/me, one refresh rotation) on SQLite and
# PostgreSQL, counted by callgrind on the release binary: see bench/cost.py.
#   bench/cost.sh                 # both databases, all three requests
#   ONLY=sqlite bench/cost.sh     # one database
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --bin rotor
args=()
[ -n "${ONLY:-}" ] && args+=(--only "$ONLY")
[ -n "${JSON:-}" ] && args+=(--json "$JSON")
exec python3 bench/cost.py "${args[@]}" "$@"
