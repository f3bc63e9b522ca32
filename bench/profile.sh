#!/usr/bin/env bash
# Profiles the rotor server during a refresh run with perf (cpu-clock sampling, DWARF
# call graphs), so the report shows where a rotation's CPU goes.
#
#   bench/profile.sh [sqlite|postgres]   (default sqlite)
#
# Knobs: CONCURRENCY (32), SECONDS_RECORDED (10), PORT (18090), FREQ (499),
# KEEP_PERF_DATA (a path: keep perf.data there for your own `perf report`),
# PG_URL (postgres://postgres@127.0.0.1:5432), SKIP_BUILD (0).
# Writes bench/results/profile-<backend>.txt (flat, self time),
# profile-<backend>-children.txt (inclusive time) and profile-<backend>-threads.txt
# (per thread, and self time inside the rotor binary). perf.data stays in a temporary
# directory (it is large). Hardware counters are not needed: `perf stat -e
# instructions true` says "not supported" on this kind of VM, cpu-clock works.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-sqlite}
CONCURRENCY=${CONCURRENCY:-32}
SECONDS_RECORDED=${SECONDS_RECORDED:-10}
PORT=${PORT:-18090}
FREQ=${FREQ:-499}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
OUT=bench/results
WORK=$(mktemp -d /tmp/rotor-profile.XXXXXX)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; [ -n "${KEEP_PERF_DATA:-}" ] && cp "$WORK/perf.data" "$KEEP_PERF_DATA"; rm -rf "$WORK"' EXIT
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --quiet --bin rotor
  cargo build --release --quiet -p rotor-loadgen
fi
mkdir -p "$OUT"

env_vars=(ROTOR_DATA_DIR="$WORK/data" HOST=127.0.0.1 PORT="$PORT" RATE_LIMIT_AUTH=off CLEANUP_INTERVAL_SECONDS=0
          SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789 MAX_CONNECTIONS_PER_IP=100000)
if [ "$BACKEND" = postgres ]; then
  psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS rotor_profile WITH (FORCE)"
  psql -q "$PG_URL/postgres" -c "CREATE DATABASE rotor_profile"
  env_vars+=(DATABASE_URL="$PG_URL/rotor_profile")
fi
env "${env_vars[@]}" "$TARGET/release/rotor" serve >"$WORK/rotor.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done

# Load for setup + 3 s warm-up + the recording + 2 s margin; record once warm.
"$TARGET/release/loadgen" --base-url "http://127.0.0.1:$PORT" --concurrency "$CONCURRENCY" --sessions 256 \
  --users 32 --warmup 3 --duration $((SECONDS_RECORDED + 4)) --json >"$WORK/loadgen.json" &
LOAD_PID=$!
# Wait for the setup (user creation and logins) to finish: the refresh phase starts
# when the first rotation is recorded by the server's metrics counter.
for _ in $(seq 1 600); do
  n=$(curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null | awk '/^rotor_refresh(es)?_total/ {print $2}' | head -n1)
  [ -n "${n:-}" ] && [ "${n%.*}" -gt 0 ] 2>/dev/null && break
  sleep 0.1
done
sleep 3
perf record -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -p "$SERVER_PID" -o "$WORK/perf.data" \
  -- sleep "$SECONDS_RECORDED" 2>"$WORK/perf-record.log"
wait "$LOAD_PID" || true
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.7 -g none \
  2>/dev/null | grep -v '^$' >"$OUT/profile-$BACKEND.txt"
perf report -i "$WORK/perf.data" --children --sort symbol --stdio --percent-limit 3 -g none \
  2>/dev/null | grep -v '^$' >"$OUT/profile-$BACKEND-children.txt"
# Which threads burn the CPU (tokio workers, sqlx's SQLite worker, Argon2's blocking
# threads) and the hottest user-space functions of the rotor binary itself.
{ perf report -i "$WORK/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^$'
  echo "# ---- by shared object (kernel = syscalls, futex wake-ups, context switches, TCP)"
  perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
  echo "# ---- self time inside the rotor binary only"
  perf report -i "$WORK/perf.data" --no-children --dsos rotor --sort symbol --stdio --percent-limit 0.3 -g none \
    2>/dev/null | grep -v '^$'
} >"$OUT/profile-$BACKEND-threads.txt"
python3 - "$WORK/loadgen.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); r = d["refresh"]
print(f"profile load: {r['per_s']} rot/s, p99 {r['p99_us']/1000:.2f} ms (the profiler itself costs some)")
EOF
echo "wrote $OUT/profile-$BACKEND.txt and $OUT/profile-$BACKEND-children.txt"
