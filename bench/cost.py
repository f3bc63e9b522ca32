#!/usr/bin/env python3
"""Instructions the server executes per request, counted by callgrind.

For each database and request kind: start the release binary under
`valgrind --tool=callgrind`, log one user in, send N requests one after another over
one keep-alive connection, stop the server with SIGTERM and read the run's total
instruction count. Done for N = 200 and N = 1200; (total(1200) - total(200)) / 1000 is
the cost of one request, with start-up, the login's Argon2 and shutdown cancelled out.
The same binary and inputs give the same counts whatever else the machine is doing.

Usage: bench/cost.py [--binary target/release/rotor] [--only sqlite|postgres]
                     [--kinds health,me,refresh] [--json OUT]
Needs valgrind, python3 and, for PostgreSQL, a server on PG_URL with trust auth.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

SECRET = "cost-benchmark-secret-key-0123456789abcdef"
EMAIL = "cost@example.com"
PASSWORD = "CostPass123"


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(backend, data_dir, pg_url, port):
    env = dict(os.environ)
    env.update(
        {
            "ROTOR_DATA_DIR": data_dir,
            "SECRET_KEY": SECRET,
            "RATE_LIMIT_AUTH": "off",
            "CLEANUP_INTERVAL_SECONDS": "0",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "info",
            "MAX_CONNECTIONS_PER_IP": "100000",
        }
    )
    env.pop("RUST_LOG", None)
    if backend == "postgres":
        env["DATABASE_URL"] = pg_url
    else:
        env["DATABASE_URL"] = "sqlite://" + os.path.join(data_dir, "rotor.db")
    return env


def wait_ready(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def run_requests(port, kind, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = urllib.parse.urlencode({"username": EMAIL, "password": PASSWORD})
    conn.request(
        "POST",
        "/v1/auth/login-mobile",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    r = conn.getresponse()
    login = json.loads(r.read())
    assert r.status == 200, login
    access, refresh = login["access_token"], login["refresh_token"]
    for _ in range(n):
        if kind == "health":
            conn.request("GET", "/health")
        elif kind == "me":
            conn.request("GET", "/v1/users/me", headers={"Authorization": "Bearer " + access})
        elif kind == "refresh":
            conn.request(
                "POST",
                "/v1/auth/refresh-mobile",
                json.dumps({"refresh_token": refresh}),
                {"Content-Type": "application/json"},
            )
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{kind}: {r.status} {data[:200]!r}")
        if kind == "refresh":
            refresh = json.loads(data)["refresh_token"]
    conn.close()


def total_instructions(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + out_file)


def pg_database(pg_base):
    name = "rotor_cost_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", pg_base + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    return name


def measure(binary, backend, kind, n, pg_base, setup_sql=None):
    data_dir = tempfile.mkdtemp(prefix="rotor-cost-")
    db = pg_database(pg_base) if backend == "postgres" else None
    pg_url = f"{pg_base}/{db}" if db else None
    port = free_port()
    env = env_for(backend, data_dir, pg_url, port)
    try:
        # The user is created outside valgrind (its Argon2 hash is not counted).
        subprocess.run(
            [binary, "users", "create-admin", "--email", EMAIL],
            env={**env, "ROTOR_ADMIN_PASSWORD": PASSWORD},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if setup_sql and backend == "sqlite":
            # An experiment on the schema (--sqlite-sql): run after the migrations.
            import sqlite3

            with sqlite3.connect(os.path.join(data_dir, "rotor.db")) as c:
                c.executescript(setup_sql)
        out = os.path.join(data_dir, "callgrind.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, proc)
            run_requests(port, kind, n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=300)
        return total_instructions(out)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if db:
            subprocess.run(
                ["psql", pg_base + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                check=False,
            )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/release/rotor")
    p.add_argument("--only", choices=["sqlite", "postgres"])
    p.add_argument("--kinds", default="health,me,refresh")
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--large", type=int, default=1200)
    p.add_argument("--json")
    p.add_argument("--sqlite-sql", help="SQL run on the migrated SQLite database before the server starts (schema experiments)")
    args = p.parse_args()
    pg_base = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
    backends = [args.only] if args.only else ["sqlite", "postgres"]
    results = {}
    print(f"{'request':<10} {'database':<10} {'instructions/request':>22}")
    for backend in backends:
        for kind in args.kinds.split(","):
            small = measure(args.binary, backend, kind, args.small, pg_base, args.sqlite_sql)
            large = measure(args.binary, backend, kind, args.large, pg_base, args.sqlite_sql)
            per = (large - small) / (args.large - args.small)
            results[f"{backend}/{kind}"] = round(per)
            print(f"{kind:<10} {backend:<10} {per:>22,.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
