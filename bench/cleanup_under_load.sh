#!/usr/bin/env bash
# The 10-million-row cleanup target on PostgreSQL: rotation throughput with ROWS expired
# refresh tokens in the table against a near-empty table, and while `rotor cleanup`
# deletes those ROWS (batches of CLEANUP_BATCH_SIZE, each its own transaction).
#
#   ROWS=10000000 bench/cleanup_under_load.sh     # the target's scale (long)
#   ROWS=2000000  bench/cleanup_under_load.sh     # what fits a short session
#
# Writes bench/results/cleanup-<ROWS>[-pause<CLEANUP_BATCH_PAUSE_MS>].json and prints a summary. Needs the release
# binaries (bench/run.sh builds them; or SKIP_BUILD=0 here), psql, PostgreSQL on PG_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-2000000}
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-15}
PORT=${PORT:-18090}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
DB=rotor_cleanup_bench
SECRET=bench-secret-key-that-is-long-enough-0123456789
if [ "${SKIP_BUILD:-1}" = 0 ]; then
  cargo build --release --bin rotor && cargo build --release -p rotor-loadgen
fi
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export DATABASE_URL="$PG_URL/$DB" SECRET_KEY=$SECRET RATE_LIMIT_AUTH=off CLEANUP_INTERVAL_SECONDS=0 ROTOR_DATA_DIR=$tmp MAX_CONNECTIONS_PER_IP=100000
HOST=127.0.0.1 PORT=$PORT target/release/rotor serve > "$tmp/server.log" 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do sleep 0.2; done
load() { # $1 = label
  target/release/loadgen --base-url "http://127.0.0.1:$PORT" --users 16 --sessions 128 \
    --concurrency "$CLIENTS" --duration "$DURATION" --warmup 3 --mode refresh --json \
    --email-prefix "$1" > "$tmp/$1.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['refresh']; print(r['per_s'], r['p99_us'], r['errors_total'])" "$tmp/$1.json"
}
echo "baseline (empty table)…"; read -r base_rps base_p99 base_err < <(load base)
echo "seeding $ROWS expired rows…"
t0=$(date +%s)
psql -q "$PG_URL/$DB" <<SQL
INSERT INTO users (id, email, hashed_password, created_at) VALUES (gen_random_uuid(), 'seed@bench.test', 'x', now());
INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, is_revoked, created_at)
SELECT gen_random_uuid(), md5(i::text || 'a') || md5(i::text || 'b'),
       (SELECT id FROM users WHERE email = 'seed@bench.test'), gen_random_uuid(),
       now() - interval '1 day', i % 2 = 0, now() - interval '8 days'
FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE refresh_tokens;
SQL
seed_s=$(( $(date +%s) - t0 ))
echo "with $ROWS rows in the table…"; read -r big_rps big_p99 big_err < <(load big)
echo "during cleanup…"
t0=$(date +%s.%N)
target/release/rotor cleanup > "$tmp/cleanup.out" 2> "$tmp/cleanup.err" &
cleaner=$!
read -r during_rps during_p99 during_err < <(load during)
cleanup_running_at_end=$(kill -0 $cleaner 2>/dev/null && echo true || echo false)
wait $cleaner
cleanup_s=$(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),1))" "$t0")
left=$(psql -tA "$PG_URL/$DB" -c "SELECT count(*) FROM refresh_tokens WHERE expires_at <= now()")
mkdir -p bench/results
python3 - "$ROWS" "$base_rps" "$base_p99" "$big_rps" "$big_p99" "$during_rps" "$during_p99" "$cleanup_s" "$seed_s" "$cleanup_running_at_end" "$left" "$(cat "$tmp/cleanup.out")" "$base_err/$big_err/$during_err" <<'PY' | tee "bench/results/cleanup-$ROWS${CLEANUP_BATCH_PAUSE_MS:+-pause$CLEANUP_BATCH_PAUSE_MS}.json"
import json, sys
a = sys.argv[1:]
rows, base, bp99, big, gp99, during, dp99, cs, ss, running, left, out, errs = a
import datetime
print(json.dumps({
  "run_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  "rows": int(rows),
  "baseline_rot_s": float(base), "baseline_p99_ms": int(bp99) / 1000,
  "with_rows_rot_s": float(big), "with_rows_p99_ms": int(gp99) / 1000,
  "with_rows_ratio": round(float(big) / float(base), 3),
  "during_cleanup_rot_s": float(during), "during_cleanup_p99_ms": int(dp99) / 1000,
  "during_cleanup_ratio": round(float(during) / float(base), 3),
  "cleanup_seconds": float(cs), "cleanup_still_running_when_load_ended": running == "true",
  "errors_base_big_during": errs,
  "expired_rows_left": int(left), "seed_seconds": int(ss), "cleanup_output": out,
}, indent=1))
PY
