#!/usr/bin/env bash
# The whole performance comparison in one go (BENCHMARKS.md):
#   - rotor on SQLite (embedded default, fresh data dir per run) and on PostgreSQL
#     (database rotor_bench, dropped and recreated per run), driven over HTTP by
#     bench/loadgen in refresh mode at each concurrency, peak RSS of the server read
#     from /proc/<pid>/status (VmHWM) and sampled (VmRSS) during the run;
#   - beside them, the database's own bounds at the same client counts:
#     pgbench running the single-statement rotation (bench/pgbench_rotate.sql) and
#     rotor's own statement plus its audit insert (bench/pgbench_rotate_rotor.sql),
#     and the raw SQLite bound (sqlite-bound, no HTTP);
#   - a mixed run (32 refresh clients + 32 login clients) beside refresh-only;
# then writes bench/results/*.json and regenerates the tables of BENCHMARKS.md and
# bench/results/throughput.png (bench/report.py; the chart needs matplotlib).
#
# Knobs (environment): DURATION (10), WARMUP (3), CONCURRENCY ("8 16 32"),
# REPEAT (1: rounds, interleaved, medians reported), MIXED_REFRESH (32),
# MIXED_LOGIN (32), USERS (32), SESSIONS (256), PORT (18080), LOADGEN_THREADS (1),
# PG_URL (postgres://postgres@127.0.0.1:5432), SKIP_BUILD (0), ONLY (all | sqlite |
# postgres: restrict to one backend), KEEP (0: 1 keeps earlier results), BENCH_REV
# (the revision to record when the tree is not a git checkout).
#
# It needs: cargo, psql/createdb/dropdb/pgbench (PostgreSQL client), a PostgreSQL
# server on PG_URL with trust auth, python3. It only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-"8 16 32"}
REPEAT=${REPEAT:-1}
MIXED_REFRESH=${MIXED_REFRESH:-32}
MIXED_LOGIN=${MIXED_LOGIN:-32}
USERS=${USERS:-32}
SESSIONS=${SESSIONS:-256}
PORT=${PORT:-18080}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
ONLY=${ONLY:-all}
OUT=$ROOT/bench/results
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROTOR=$TARGET/release/rotor
LOADGEN=$TARGET/release/loadgen
SQLITE_BOUND=$TARGET/release/sqlite-bound
WORK=$(mktemp -d /tmp/rotor-bench.XXXXXX)
SERVER_PID=
SAMPLER_PID=

cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (rotor, loadgen, sqlite-bound)"
  cargo build --release --quiet --bin rotor
  cargo build --release --quiet -p rotor-loadgen
fi
for b in "$ROTOR" "$LOADGEN" "$SQLITE_BOUND"; do
  [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }
done
mkdir -p "$OUT"
# Only this script's own results (cleanup_under_load.sh writes cleanup-*.json here too).
[ "${KEEP:-0}" = 1 ] || rm -f "$OUT"/rotor-*.json "$OUT"/pgbench-*.json "$OUT"/sqlite-bound-*.json

# --- environment -------------------------------------------------------------------
python3 - "$OUT/env.json" <<EOF
import json, os, platform, subprocess, sys, datetime
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
json.dump({
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  "git": os.environ.get("BENCH_REV") or sh("git rev-parse --short HEAD 2>/dev/null") or "unknown",
  "git_dirty": bool(sh("git status --porcelain --untracked-files=no 2>/dev/null")),
  "cpus": os.cpu_count(),
  "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
  "mem_gib": round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1),
  "kernel": platform.release(),
  "rustc": sh("rustc --version"),
  "postgres": sh("psql '$PG_URL/postgres' -Atc 'show server_version'"),
  "pg_settings": sh("psql '$PG_URL/postgres' -Atc \"select string_agg(name || '=' || setting, ' ') from pg_settings where name in ('synchronous_commit','fsync','shared_buffers','max_connections','wal_level','commit_delay')\""),
  "duration_s": $DURATION, "warmup_s": $WARMUP, "repeat": $REPEAT,
  "loadgen_threads": $LOADGEN_THREADS, "users": $USERS, "sessions": $SESSIONS,
  "load_avg_before": sh("cat /proc/loadavg"),
}, open(sys.argv[1], "w"), indent=1)
EOF

# --- helpers -------------------------------------------------------------------------
# Adds top-level fields to a JSON result file: add_fields FILE key=json_value ...
add_fields() {
  local file=$1; shift
  python3 - "$file" "$@" <<'EOF'
import json, sys
path = sys.argv[1]
d = json.load(open(path))
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    d[k] = json.loads(v)
json.dump(d, open(path, "w"), indent=1)
EOF
}

jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

fresh_pg_db() {
  dropdb --if-exists --force --maintenance-db="$PG_URL/postgres" "$1" 2>/dev/null \
    || psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
  createdb --maintenance-db="$PG_URL/postgres" "$1" 2>/dev/null || psql -q "$PG_URL/postgres" -c "CREATE DATABASE $1"
}

# start_rotor BACKEND: a fresh database, rotor serve in the background, wait for health.
start_rotor() {
  local backend=$1
  local data="$WORK/data-$backend"
  rm -rf "$data"; mkdir -p "$data"
  local -a env=(ROTOR_DATA_DIR="$data" HOST=127.0.0.1 PORT="$PORT" RATE_LIMIT_AUTH=off
                CLEANUP_INTERVAL_SECONDS=0 SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789
                MAX_CONNECTIONS_PER_IP=100000)
  if [ "$backend" = postgres ]; then
    fresh_pg_db rotor_bench
    env+=(DATABASE_URL="$PG_URL/rotor_bench")
  fi
  ROTOR_ENV="${env[*]}"
  env "${env[@]}" "$ROTOR" serve >"$WORK/rotor-$backend.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "rotor did not start; its log:" >&2; cat "$WORK/rotor-$backend.log" >&2; exit 1
}

# Samples the server's VmRSS (KiB) every 200 ms into $WORK/rss.series as
# "<ms since the sampler started> <KiB>" lines.
start_sampler() {
  local pid=$1
  : >"$WORK/rss.series"
  ( t0=$(date +%s%N)
    while kill -0 "$pid" 2>/dev/null; do
      r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      echo "$(( ($(date +%s%N) - t0) / 1000000 )) ${r:-0}" >>"$WORK/rss.series"
      sleep 0.2
    done ) &
  SAMPLER_PID=$!
}

stop_rotor() {
  local hwm
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
  kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
  kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  echo "$hwm"
}

# rotor_run BACKEND MODE C LOGIN_C REP
rotor_run() {
  local backend=$1 mode=$2 c=$3 lc=$4 rep=$5
  local name="rotor-$backend-$mode-c$c"
  [ "$mode" = mixed ] && name="$name-l$lc"
  local file="$OUT/$name-r$rep.json"
  start_rotor "$backend"
  start_sampler "$SERVER_PID"
  local -a cmd=("$LOADGEN" --base-url "http://127.0.0.1:$PORT" --users "$USERS" --sessions "$SESSIONS"
                --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" --mode "$mode"
                --threads "$LOADGEN_THREADS" --json)
  [ "$mode" = mixed ] && cmd+=(--login-concurrency "$lc")
  log "$name (round $rep)"
  local rc=0
  "${cmd[@]}" >"$file" || rc=$?
  local hwm; hwm=$(stop_rotor)
  [ -s "$file" ] || { echo "loadgen produced nothing ($name)" >&2; exit 1; }
  local shown="${cmd[*]}"; shown=${shown//$TARGET\/release\//target\/release\/}
  add_fields "$file" kind='"rotor"' backend="$(jstr "$backend")" round="$rep" \
    peak_rss_kib="$hwm" loadgen_exit="$rc" \
    command="$(jstr "$shown")" \
    server_command="$(jstr "env $ROTOR_ENV target/release/rotor serve" | sed "s|$WORK|\$TMP|g")"
  python3 - "$file" "$WORK/rss.series" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
# RSS over time: idle (first sample), at the end of the setup (user creation and
# logins, i.e. Argon2), and the largest sample inside the measured window.
series = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
setup_ms = d.get("setup_s", 0) * 1000
w0 = setup_ms + d.get("warmup_s", 0) * 1000
w1 = w0 + d.get("duration_s", 0) * 1000
inside = [k for (t, k) in series if w0 <= t <= w1]
after_setup = [k for (t, k) in series if t >= setup_ms]
d["rss_idle_kib"] = series[0][1] if series else None
d["rss_after_setup_kib"] = after_setup[0] if after_setup else None
d["rss_max_measured_kib"] = max(inside) if inside else None
d["sampled_rss_kib"] = max((k for (_, k) in series), default=None)
json.dump(d, open(sys.argv[1], "w"), indent=1)
r = d.get("refresh") or d.get("login")
mib = lambda k: (k or 0) / 1024
print(f"    -> {r['per_s']}/s p99 {r['p99_us']/1000:.2f} ms errors {r['errors_total']} "
      f"RSS idle/after setup/max measured/VmHWM {mib(d['rss_idle_kib']):.0f}/{mib(d['rss_after_setup_kib']):.0f}/"
      f"{mib(d['rss_max_measured_kib']):.0f}/{mib(d['peak_rss_kib']):.0f} MiB "
      f"replay_ok={(d.get('replay_check') or {}).get('ok')}", file=sys.stderr)
EOF
}

# --- pgbench bound ------------------------------------------------------------------
PGB_DB=rotor_pgbench
pgbench_prepare() {
  fresh_pg_db "$PGB_DB"
  DATABASE_URL="$PG_URL/$PGB_DB" ROTOR_DATA_DIR="$WORK/pgb" SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789 \
    "$ROTOR" migrate >/dev/null
}

# Seeds one user, C sessions and C live tokens whose hashes are sha256('<client>.0').
pgbench_seed() {
  local c=$1
  psql -q -v ON_ERROR_STOP=1 "$PG_URL/$PGB_DB" <<EOF >/dev/null
TRUNCATE refresh_tokens, sessions, audit_events, users;
INSERT INTO users (id, email, hashed_password) VALUES ('00000000-0000-7000-8000-000000000001', 'pgbench@bench.example.com', 'x');
INSERT INTO sessions (id, user_id, created_at, last_used_at, absolute_expires_at)
SELECT ('00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, '00000000-0000-7000-8000-000000000001', now(), now(), now() + interval '30 days'
  FROM generate_series(0, $c - 1) g;
INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, created_at)
SELECT gen_random_uuid(), encode(sha256(convert_to(g::text || '.0', 'UTF8')), 'hex'),
       '00000000-0000-7000-8000-000000000001', ('00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'))::uuid,
       now() + interval '7 days', now()
  FROM generate_series(0, $c - 1) g;
VACUUM ANALYZE;
EOF
}

# pgbench_run SCRIPT_LABEL SCRIPT_FILE C REP
pgbench_run() {
  local label=$1 script=$2 c=$3 rep=$4
  local name="pgbench-$label-c$c" file="$OUT/pgbench-$label-c$c-r$rep.json"
  pgbench_seed "$c"
  local total=$((DURATION + WARMUP))
  rm -f "$WORK"/pgb.*
  local -a cmd=(pgbench -n -M prepared -D n=0 -f "$script" -c "$c" -j 2 -T "$total" -r
                -l --log-prefix="$WORK/pgb" "$PG_URL/$PGB_DB")
  log "$name (round $rep)"
  "${cmd[@]}" >"$WORK/pgbench.out" 2>&1 || { cat "$WORK/pgbench.out" >&2; exit 1; }
  local revoked
  revoked=$(psql -At "$PG_URL/$PGB_DB" -c "SELECT count(*) FROM refresh_tokens WHERE is_revoked")
  local shown="pgbench -n -M prepared -D n=0 -f ${script#$ROOT/} -c $c -j 2 -T $total -r -l $PG_URL/$PGB_DB"
  python3 - "$file" "$WORK" "$WARMUP" "$DURATION" "$c" "$revoked" "$label" "$rep" "$shown" <<'EOF'
import glob, json, re, sys
file, work, warmup, duration, c, revoked, label, rep, shown = sys.argv[1:]
warmup, duration = float(warmup), float(duration)
out = open(f"{work}/pgbench.out").read()
processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
failed = re.search(r"number of failed transactions: (\d+)", out)
rows = []
for path in glob.glob(f"{work}/pgb.*"):
    for line in open(path):
        f = line.split()
        # client_id transaction_no latency_us script_no epoch_s epoch_us
        done = int(f[4]) + int(f[5]) / 1e6
        rows.append((done, int(f[2])))
rows.sort()
t0 = rows[0][0] - rows[0][1] / 1e6 if rows else 0  # first transaction's start
start, end = t0 + warmup, t0 + warmup + duration
lat = sorted(l for (done, l) in rows if done - l / 1e6 >= start and done <= end)
def q(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
d = {
  "kind": "pgbench", "label": label, "round": int(rep), "concurrency": int(c),
  "command": shown, "transactions_total": processed,
  "failed_transactions": int(failed.group(1)) if failed else 0,
  "revoked_rows": int(revoked), "consistent": int(revoked) == processed,
  "warmup_s": warmup, "duration_s": duration,
  "refresh": {"ok": len(lat), "per_s": round(len(lat) / duration, 1), "p50_us": q(0.5), "p90_us": q(0.9),
              "p99_us": q(0.99), "max_us": lat[-1] if lat else 0, "errors_total": 0},
  "pgbench_tps_whole_run": float(re.search(r"tps = ([\d.]+)", out).group(1)),
  # Average latency of each statement of the script, ms (pgbench -r).
  "statement_latencies_ms": [
      [float(m.group(1)), m.group(2).strip()]
      for m in re.finditer(r"^\s+([\d.]+)\s+\d+\s+(\S.*)$", out.split("statement latencies", 1)[-1], re.M)
      if not m.group(2).lstrip().startswith("\\")
  ],
}
json.dump(d, open(file, "w"), indent=1)
r = d["refresh"]
print(f"    -> {r['per_s']}/s p99 {r['p99_us']/1000:.2f} ms consistent={d['consistent']}", file=sys.stderr)
EOF
}

# --- SQLite raw bound ---------------------------------------------------------------
sqlite_bound_run() {
  local style=$1 c=$2 rep=$3
  local name="sqlite-bound-$style-c$c" file="$OUT/sqlite-bound-$style-c$c-r$rep.json"
  local db="$WORK/bound/rotor.db"
  rm -rf "$WORK/bound"; mkdir -p "$WORK/bound"
  DATABASE_URL="sqlite://$db" ROTOR_DATA_DIR="$WORK/bound" SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789 \
    "$ROTOR" migrate >/dev/null
  local -a cmd=("$SQLITE_BOUND" --db "$db" --style "$style" --concurrency "$c" --duration "$DURATION"
                --warmup "$WARMUP" --threads "$LOADGEN_THREADS" --json)
  log "$name (round $rep)"
  "${cmd[@]}" >"$file"
  local shown="${cmd[*]}"; shown=${shown//$TARGET\/release\//target\/release\/}; shown=${shown//$WORK/\$TMP}
  add_fields "$file" kind='"sqlite-bound"' label="$(jstr "$style")" round="$rep" command="$(jstr "$shown")"
  python3 - "$file" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); r = d["refresh"]
print(f"    -> {r['per_s']}/s p99 {r['p99_us']/1000:.2f} ms consistent={d['consistent']}", file=sys.stderr)
EOF
}

# --- the runs, interleaved so that each comparison is side by side -------------------
want postgres && pgbench_prepare
for rep in $(seq 1 "$REPEAT"); do
  for c in $CONCURRENCY; do
    if want sqlite; then
      rotor_run sqlite refresh "$c" 0 "$rep"
      sqlite_bound_run group "$c" "$rep"
      sqlite_bound_run serial "$c" "$rep"
    fi
    if want postgres; then
      rotor_run postgres refresh "$c" 0 "$rep"
      pgbench_run single "$ROOT/bench/pgbench_rotate.sql" "$c" "$rep"
      pgbench_run rotor-stmt "$ROOT/bench/pgbench_rotate_rotor.sql" "$c" "$rep"
    fi
  done
  # The refresh-under-logins target: refresh p99 while logins saturate Argon2, beside refresh-only (above).
  want sqlite && rotor_run sqlite mixed "$MIXED_REFRESH" "$MIXED_LOGIN" "$rep"
  want postgres && rotor_run postgres mixed "$MIXED_REFRESH" "$MIXED_LOGIN" "$rep"
done
want postgres && { dropdb --if-exists --maintenance-db="$PG_URL/postgres" "$PGB_DB" 2>/dev/null || true; }
python3 - "$OUT/env.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); d["load_avg_after"] = open("/proc/loadavg").read().strip()
json.dump(d, open(sys.argv[1], "w"), indent=1)
EOF

log "writing BENCHMARKS.md and the chart"
python3 bench/report.py --results "$OUT" --markdown BENCHMARKS.md --png "$OUT/throughput.png"
log "done: $OUT"
