#!/usr/bin/env bash
# Does a slow webhook receiver move refresh latency? For each backend, runs the load
# generator in refresh mode twice per repeat: once with no webhook configured, once with
# every event sent to a receiver that takes 5 s to answer each request
# (tests/clients/webhook_receiver.py --delay 5, verifying with the stock
# standardwebhooks package). The load generator's setup (users registered, sessions
# logged in) writes user.created and session.created events, so during the measured
# refreshes the delivery worker holds its 32 requests in flight to the slow receiver the
# whole time. Prints one line per run: backend, receiver, rotations/s, p50/p99/max (ms),
# and how many webhook requests the receiver had got by the end.
#
# Needs: release binaries (cargo build --release -p rotor -p rotor-loadgen), python3
# with standardwebhooks (pip install -r tests/clients/requirements.txt), PostgreSQL at
# PG_URL (trust auth) for the postgres runs. Talks to 127.0.0.1 only.
#
#   bench/webhooks_slow_receiver.sh                 # both backends, REPEAT=3
#   BACKENDS=sqlite REPEAT=1 DURATION=5 bench/webhooks_slow_receiver.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
BACKENDS=${BACKENDS:-"sqlite postgres"}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-32}
DELAY=${DELAY:-5}
PORT=${PORT:-18090}
TARGET=${CARGO_TARGET_DIR:-target}
ROTOR=$TARGET/release/rotor
LOADGEN=$TARGET/release/loadgen
SECRET=whsec_cm90b3Itd2ViaG9vay10ZXN0LXNlY3JldC1uZXctMDI=
WORK=$(mktemp -d)
SERVER_PID=""
RECEIVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$RECEIVER_PID" ] && kill "$RECEIVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$ROTOR" ] && [ -x "$LOADGEN" ] || {
  echo "build first: cargo build --release -p rotor -p rotor-loadgen" >&2; exit 1; }

start_receiver() {
  : >"$WORK/hooks.jsonl"
  python3 tests/clients/webhook_receiver.py --secret "$SECRET" --out "$WORK/hooks.jsonl" \
    --delay "$DELAY" >"$WORK/receiver.out" 2>&1 &
  RECEIVER_PID=$!
  for _ in $(seq 1 50); do
    grep -q listening "$WORK/receiver.out" 2>/dev/null && break
    sleep 0.1
  done
  RECEIVER_PORT=$(awk '/listening/ {print $2}' "$WORK/receiver.out")
  [ -n "$RECEIVER_PORT" ] || { cat "$WORK/receiver.out" >&2; exit 1; }
}

# start_rotor BACKEND HOOKS(0|1)
start_rotor() {
  local backend=$1 hooks=$2 data="$WORK/data-$backend"
  rm -rf "$data"; mkdir -p "$data"
  local -a env=(ROTOR_DATA_DIR="$data" HOST=127.0.0.1 PORT="$PORT" RATE_LIMIT_AUTH=off
                CLEANUP_INTERVAL_SECONDS=0 SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789
                MAX_CONNECTIONS_PER_IP=100000 LOG_LEVEL=error)
  if [ "$backend" = postgres ]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS rotor_hooks_bench WITH (FORCE)" >/dev/null
    psql "$PG_URL/postgres" -qc "CREATE DATABASE rotor_hooks_bench" >/dev/null
    env+=(DATABASE_URL="$PG_URL/rotor_hooks_bench")
  fi
  if [ "$hooks" = 1 ]; then
    env+=(WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/hooks" WEBHOOK_SECRET="$SECRET"
          WEBHOOK_TIMEOUT_SECONDS=30)
  fi
  env "${env[@]}" "$ROTOR" serve >"$WORK/rotor.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$WORK/rotor.log" >&2; exit 1
}

printf '%-9s %-14s %10s %9s %9s %9s %9s\n' backend receiver "rot/s" "p50 ms" "p99 ms" "max ms" "hooks rx"
for backend in $BACKENDS; do
  for _ in $(seq 1 "$REPEAT"); do
    for hooks in 0 1; do
      if [ "$hooks" = 1 ]; then start_receiver; fi
      start_rotor "$backend" "$hooks"
      "$LOADGEN" --base-url "http://127.0.0.1:$PORT" --users 32 --sessions 256 \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --mode refresh --threads 1 --json >"$WORK/run.json"
      received=0
      if [ "$hooks" = 1 ]; then received=$(wc -l <"$WORK/hooks.jsonl"); fi
      python3 - "$WORK/run.json" "$backend" "$hooks" "$received" "$DELAY" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["refresh"]
label = f"slow ({sys.argv[5]} s)" if sys.argv[3] == "1" else "none"
print(f"{sys.argv[2]:<9} {label:<14} {r['per_s']:>10.0f} {r['p50_us']/1000:>9.2f} "
      f"{r['p99_us']/1000:>9.2f} {r['max_us']/1000:>9.2f} {sys.argv[4]:>9}")
PY
      kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
      if [ -n "$RECEIVER_PID" ]; then
        kill "$RECEIVER_PID"; wait "$RECEIVER_PID" 2>/dev/null || true; RECEIVER_PID=""
      fi
    done
  done
done
