"""``make bench``: every row of the benchmark table, one table, ``bench/results.json``.

Runs each bench script in its own process (so one cannot warm or bloat another), in order,
gathers their rows (see ``bench/common.py``), prints one table and writes
``bench/results.json`` with the figures, references, ratios, targets, per-round samples,
machine facts and the git commit. ``--quick`` (``make bench QUICK=1``) runs each script's
small version. A missed target is reported, not an error; the exit code is 1 only when a
script failed (a broken round trip, a lost message, a crash).

    python bench/run.py [--quick] [--only NAME ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, fmt, machine, precompile  # noqa: E402

BENCH = ROOT / "bench"
#: (script, the rows it writes), in the order of the issue's table
SCRIPTS: list[tuple[str, list[str]]] = [
    ("transfer", ["upload", "download", "memory", "many small files"]),
    ("rotation", ["rotation"]),
    ("audit", ["audit appends", "audit verify"]),
    ("fanout", ["fan-out"]),
    ("login", ["login"]),
    ("startup", ["start-up --help", "start-up --version", "start-up lock"]),
    ("sync", ["first sync", "no-op sync", "propagation", "sync memory"]),
    ("backup", ["backup", "check"]),
]
#: issue 19: the rows above that go through the server's storage again on PostgreSQL (bench/postgres.py), login
#: with two server processes, and audit appends by two processes on PostgreSQL (bench/pg.py)
_ON_PG = ("transfer", "sync", "backup", "login", "fanout")
SCRIPTS += [
    ("postgres", [f"{row} on PostgreSQL" for name, rows in SCRIPTS if name in _ON_PG for row in rows]
     + ["login --workers 2"]),
    ("pg", ["audit appends on PostgreSQL"]),
]


def run_script(name: str, quick: bool, out: Path) -> tuple[int, float, str]:
    cmd = [sys.executable, str(BENCH / f"{name}.py"), "--out", str(out)]
    if quick:
        cmd.append("--quick")
    print(f"--- {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    text = (proc.stdout + proc.stderr).rstrip()
    if text:
        print("    " + text.replace("\n", "\n    "), flush=True)
    return proc.returncode, elapsed, text[-4000:]


def table(rows: list[dict[str, Any]]) -> str:
    head = ("row", "ours (median)", "reference (median)", "ratio", "target", "met", "rounds")
    lines = [head]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        failed = [k for k, v in r.get("checks", {}).items() if not v]
        if failed:
            met += " (" + "; ".join(failed) + ")"
        ref = fmt(r["reference_median"], r.get("reference_unit") or r["unit"])
        lines.append((r["row"], fmt(r["ours_median"], r["unit"]), ref, ratio, r["target_text"], met, str(r["rounds"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="run only these scripts (transfer, rotation, ...)")
    ap.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = ap.parse_args()
    started = time.perf_counter()
    precompile()
    rows: list[dict[str, Any]] = []
    scripts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mvault-bench-") as tmp:
        for name, expected in SCRIPTS:
            if args.only is not None and name not in args.only:
                continue
            out = Path(tmp) / f"{name}.json"
            code, elapsed, text = run_script(name, args.quick, out)
            got: list[dict[str, Any]] = []
            detail: dict[str, Any] = {}
            if out.exists():
                detail = json.loads(out.read_text())
                got = detail.pop("rows", [])
                detail.pop("machine", None)
            missing = [e for e in expected if e not in {r["row"] for r in got}]
            scripts[name] = {"exit": code, "seconds": round(elapsed, 1), "missing_rows": missing, "detail": detail}
            if code != 0:
                scripts[name]["output_tail"] = text
            rows.extend(got)
    result = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "rows": rows,
        "scripts": scripts,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(table(rows))
    m = result["machine"]
    print(f"\n{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, commit {m['commit'][:12]}"
          + (" (modified: " + ", ".join(m["modified"]) + ")" if m["modified"] else "")
          + f"; {result['seconds']:.0f} s{' (QUICK)' if args.quick else ''}; wrote {args.out}")
    broken = {n: s for n, s in scripts.items() if s["exit"] != 0 or s["missing_rows"]}
    for n, s in broken.items():
        print(f"bench {n} FAILED (exit {s['exit']}, missing rows {s['missing_rows']})")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
