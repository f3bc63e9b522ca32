#!/usr/bin/env python3
"""Where one request's instructions go: the per-request callgrind profile behind the
account in BENCHMARKS.md ("Cost per request").

Runs bench/cost.py's measurement (N = 200 and N = 1,200 requests under callgrind) for
one database and request kind, keeps both profiles, and prints, per request (the
difference of the two runs divided by 1,000, so start-up cancels out), the self cost
grouped by where it goes and the most expensive functions.

Usage: bench/cost_profile.py sqlite|postgres health|me|refresh [--binary PATH]
       [--out DIR] [--top N]
Needs what bench/cost.py needs, and callgrind_annotate (valgrind).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost  # noqa: E402

SMALL, LARGE = 200, 1200

# First match wins; patterns are searched in the function name.
GROUPS = [
    ("allocation", r"malloc|free|realloc|_int_|__rdl|__rust_alloc|__rust_dealloc|__rust_realloc|alloc::raw_vec|^_?mi_|unlink_chunk"),
    ("crypto (SHA-256, HMAC, base64)", r"ring::|ring_core|sha256|hmac|base64|jsonwebtoken"),
    ("DB client: rusqlite", r"rusqlite|fallible_streaming"),
    ("DB client: sqlx", r"sqlx|crossbeam|event_listener"),
    ("memcpy/memset", r"memcpy|memmove|memset|memcmp|bcmp|strlen"),
    ("SQLite's mutexes", r"pthread_mutex"),
    ("DB engine: SQLite", r"sqlite3|^yy|[wW]al[A-Z]|^vdbe|^pcache|^unix|^pager|^btree"),
    ("logging (tracing)", r"tracing|nu_ansi|sharded_slab"),
    ("formatting (core::fmt)", r"core::fmt|as core::fmt::Write>|fmt::Formatter|Display>::fmt|Debug>::fmt"),
    ("HTTP (hyper, httparse)", r"hyper|httparse"),
    ("HTTP types (headers, bytes)", r"^http::|<http::|bytes::"),
    ("runtime, threads, clocks", r"tokio|mio|futex|epoll|syscall|pthread|sched_yield|clock_gettime|std::sys::|std::thread|std::sync|Instant|Timespec|__libc|writev|^recv$|^send$"),
    ("axum, tower, matchit", r"axum|tower|matchit|futures_util"),
    ("JSON (serde)", r"serde|itoa|ryu"),
    ("uuid, chrono", r"uuid|chrono|getrandom"),
    ("hashing (maps)", r"hash|Hasher|sip"),
    ("metrics", r"rotor::metrics"),
    ("rotor's own code", r"rotor"),
    # C functions without a namespace in this binary are SQLite's.
    ("DB engine: SQLite", r"^[a-z][A-Za-z0-9_]*(\.part\.0|\.isra\.0|\.constprop\.0)*$"),
]


def functions(path):
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m or ":" not in m.group(2):
            continue
        name = re.sub(r" \[[^]]*\]$", "", m.group(2).split(":", 1)[1])
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("backend", choices=["sqlite", "postgres"])
    p.add_argument("kind", choices=["health", "me", "refresh"])
    p.add_argument("--binary", default="target/release/rotor")
    p.add_argument("--out", default=None, help="keep the two callgrind profiles here")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    out = args.out or os.path.join(tempfile.gettempdir(), f"rotor-cost-profile-{args.backend}-{args.kind}")
    os.makedirs(out, exist_ok=True)
    pg = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
    measured = cost.total_instructions
    for n in (SMALL, LARGE):
        def keep(path, n=n):
            shutil.copy(path, os.path.join(out, f"callgrind.{n}.out"))
            return measured(path)
        cost.total_instructions = keep
        cost.measure(args.binary, args.backend, args.kind, n, pg)
    small = functions(os.path.join(out, f"callgrind.{SMALL}.out"))
    large = functions(os.path.join(out, f"callgrind.{LARGE}.out"))
    per = {k: (large.get(k, 0) - small.get(k, 0)) / (LARGE - SMALL) for k in set(small) | set(large)}
    groups = {}
    for name, v in per.items():
        group = next((g for g, pat in GROUPS if re.search(pat, name)), "other")
        groups[group] = groups.get(group, 0) + v
    total = sum(groups.values())
    print(f"{args.backend} {args.kind}: instructions per request, callgrind self cost")
    for g, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {g:34} {v:9,.0f}  {100 * v / total:5.1f} %")
    print(f"  {'total':34} {total:9,.0f}")
    print(f"\ntop {args.top} functions:")
    for name, v in sorted(per.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {v:9,.0f}  {name[:110]}")
    print(f"\nprofiles kept in {out}/ (callgrind_annotate --inclusive=yes ... for call trees)")


if __name__ == "__main__":
    sys.exit(main())
