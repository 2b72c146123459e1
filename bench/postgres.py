"""The benches on PostgreSQL (issue 19), beside the same rows on SQLite in the same run.

1. Every row whose figure goes through the server's storage (transfer, sync, backup, login, fan-out): the
   script runs K times on each backend, alternating SQLite and PostgreSQL; on PostgreSQL ``mvault-server
   run``/``backup``/``check`` read ``MVAULT_DATABASE_URL``, a fresh database of a throw-away cluster with
   PostgreSQL's durable defaults (bench/pg.py) for each run. A sample is one run's median of the row; the
   row "X on PostgreSQL" compares the medians of PostgreSQL's samples with SQLite's (oriented as the row:
   higher is better for us), target >= 0.7x. Rows that do not touch the server's storage (rotation: client
   CPU; audit verify: local; start-up: no server) are not repeated; the audit appends' counterpart is
   bench/pg.py's own row.
2. login ``--workers 2`` against ``--workers 1``, both on PostgreSQL, alternating: >= 1.5x, and the
   two-worker runs' own ratio against bare aiohttp (bench/login.py's reference) >= 0.3x.
3. fan-out ``--workers 2`` against ``--workers 1``, both on PostgreSQL, alternating (followers and posters spread
   over the workers by the kernel, SO_REUSEPORT; a follower gets what another worker stored through the
   LISTEN/NOTIFY bus): >= 1.4x deliveries/s and p99 < 15 ms at the target rate.

    python bench/postgres.py [--quick] [--runs K] [--only SCRIPT ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Row, write_rows  # noqa: E402
from bench.pg import cluster  # noqa: E402
from tests.helpers.pgcluster import Cluster  # noqa: E402

#: the scripts whose rows go through the server's storage
STORAGE_SCRIPTS = ["transfer", "sync", "backup", "login", "fanout"]
NOT_REPEATED = {"rotation": "client CPU, no server", "audit appends": "bench/pg.py's row (2 processes)",
                "audit verify": "local work, no server", "start-up": "no server"}

def run(name: str, quick: bool, database: str, *extra: str) -> dict[str, dict[str, Any]]:
    """One run of ``bench/NAME.py`` on SQLite (``database`` "") or PostgreSQL; its rows by name."""
    env = {k: v for k, v in os.environ.items() if k != "MVAULT_DATABASE_URL"}
    if database:
        env["MVAULT_DATABASE_URL"] = database
    with tempfile.TemporaryDirectory(prefix="mvault-bench-pg-") as d:
        out = Path(d) / "rows.json"
        cmd = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--out", str(out), *(("--quick",) if quick else ()),
               *extra]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"{name} {' '.join(extra)} on {'PostgreSQL' if database else 'SQLite'} failed "
                             f"({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
        return {r["row"]: r for r in json.loads(out.read_text())["rows"]}


def on_both(c: Cluster, name: str, runs: int, quick: bool) -> list[Row]:
    """``name``'s rows on PostgreSQL against the same rows on SQLite, ``runs`` alternating runs each."""
    sqlite: list[dict[str, dict[str, Any]]] = []
    pg: list[dict[str, dict[str, Any]]] = []
    for _ in range(runs):
        sqlite.append(run(name, quick, ""))
        pg.append(run(name, quick, c.new_database()))
    rows = []
    for row, first in sqlite[0].items():
        rows.append(Row(f"{row} on PostgreSQL", first["unit"], [r[row]["ours_median"] for r in pg],
                        [r[row]["ours_median"] for r in sqlite], first["higher_is_better"],
                        f"{first['ours_what']}; on PostgreSQL (durable defaults, unix socket)",
                        "the same on SQLite, in alternating runs", target_ratio=0.7, target_text=">= 0.7x",
                        detail={"script": name, "runs": runs, "quick": quick}))
        print(f"{row}: SQLite {[round(r[row]['ours_median'], 3) for r in sqlite]}, "
              f"PostgreSQL {[round(r[row]['ours_median'], 3) for r in pg]} {first['unit']}", flush=True)
    return rows


def one_and_two(c: Cluster, name: str, row: str, runs: int, quick: bool) -> tuple[list[dict[str, Any]],
                                                                                  list[dict[str, Any]]]:
    """``row`` of ``bench/NAME.py`` with one server process and with two, both on PostgreSQL, alternating."""
    one: list[dict[str, Any]] = []
    two: list[dict[str, Any]] = []
    for _ in range(runs):
        one.append(run(name, quick, c.new_database(), "--workers", "1")[row])
        two.append(run(name, quick, c.new_database(), "--workers", "2")[row])
    return one, two


def login_workers(c: Cluster, runs: int, quick: bool) -> Row:
    """login with two server processes against one, both on PostgreSQL."""
    one, two = one_and_two(c, "login", "login", runs, quick)
    bare = [r["ratio"] for r in two]
    print(f"login --workers 1 {[round(r['ours_median']) for r in one]}, --workers 2 "
          f"{[round(r['ours_median']) for r in two]} logins/s; --workers 2 against bare aiohttp {bare}", flush=True)
    return Row("login --workers 2", "logins/s", [r["ours_median"] for r in two], [r["ours_median"] for r in one],
               True, "full challenge-response logins/s, mvault-server run --workers 2 on PostgreSQL",
               "the same with --workers 1", target_ratio=1.5, target_text=">= 1.5x; >= 0.3x of bare aiohttp",
               detail={"runs": runs, "quick": quick, "against_bare_aiohttp": bare},
               checks={">= 0.3x of bare aiohttp": statistics.median(bare) >= 0.3})


def fanout_workers(c: Cluster, runs: int, quick: bool) -> Row:
    """fan-out with two server processes against one, both on PostgreSQL."""
    one, two = one_and_two(c, "fanout", "fan-out", runs, quick)
    p99 = [r["detail"]["p99_ms"] for r in two]
    print(f"fan-out --workers 1 {[round(r['ours_median']) for r in one]}, --workers 2 "
          f"{[round(r['ours_median']) for r in two]} deliveries/s; --workers 2 p99 {p99} ms", flush=True)
    return Row("fan-out --workers 2", "deliveries/s", [r["ours_median"] for r in two],
               [r["ours_median"] for r in one], True,
               "thread messages to the followers, mvault-server run --workers 2 on PostgreSQL",
               "the same with --workers 1", target_ratio=1.4, target_text=">= 1.4x; p99 < 15 ms",
               detail={"runs": runs, "quick": quick, "p99_ms": p99,
                       "workers_1_p99_ms": [r["detail"]["p99_ms"] for r in one]},
               checks={"p99 < 15 ms": statistics.median(p99) < 15.0})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="each script's --quick, 3 runs on each backend")
    ap.add_argument("--runs", type=int, default=None, help="runs of each script on each backend (default 3)")
    ap.add_argument("--only", nargs="*", default=None,
                    help=f"only these of {STORAGE_SCRIPTS}, login-workers and fanout-workers")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-postgres.json")
    args = ap.parse_args()
    runs = max(args.runs or 3, 1)
    started = time.perf_counter()
    rows: list[Row] = []
    with cluster() as c:
        for name in STORAGE_SCRIPTS:
            if args.only is None or name in args.only:
                rows += on_both(c, name, runs, args.quick)
        if args.only is None or "login-workers" in args.only:
            rows.append(login_workers(c, runs, args.quick))
        if args.only is None or "fanout-workers" in args.only:
            rows.append(fanout_workers(c, runs, args.quick))
    print("not repeated on PostgreSQL: " + "; ".join(f"{k} ({v})" for k, v in NOT_REPEATED.items()))
    write_rows(args.out, rows, runs, started, digits=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
