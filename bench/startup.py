"""Start-up: how long ``mvault`` takes to answer before it does any work, beside ``python -c pass``.

Rows (each a median of wall times of whole processes, rounds alternating reference and ours):

* ``start-up --help`` and ``start-up --version``: ``mvault --help`` / ``mvault --version``, which import
  click and the command table only (client/cli/main.py); target under 0.1 s (issue 15).
* ``start-up lock``: ``mvault lock`` with no unlock session, a real command that needs no server: it
  imports its group (client/cli/account.py with the client API, aiohttp, rich), builds the command's
  context and prints ``locked``: what every command pays before its own work. No target.

Reference: ``python -c pass`` with the same interpreter (the floor: interpreter, site, the editable
install's finder). Our modules are compiled first, as a wheel install has them (``precompile``).
Nothing here asserts a time.

    python bench/startup.py [--quick] [--rounds R] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Row, alternate, fmt, machine, precompile  # noqa: E402

MVAULT = str(Path(sys.executable).parent / "mvault")
#: row name, the mvault arguments, its target (an absolute bound on our median, or None)
CASES: list[tuple[str, list[str], float | None]] = [
    ("start-up --help", ["--help"], 0.1),
    ("start-up --version", ["--version"], 0.1),
    ("start-up lock", ["lock"], None),
]


def timed(cmd: list[str], env: dict[str, str]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
        return elapsed

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 rounds per row")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-startup.json")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 5
    if args.rounds < 5:
        ap.error("--rounds must be at least 5 (each row alternates reference and ours at least 5 times)")
    precompile()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mvault-bench-startup-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
        env.update(MVAULT_HOME=str(Path(tmp) / "home"), COLUMNS="80")
        reference = timed([sys.executable, "-c", "pass"], env)
        for name, mvault_args, bound in CASES:
            refs, mine = alternate(reference, timed([MVAULT, *mvault_args], env), args.rounds)
            rows.append(Row(
                row=name, unit="s", ours=mine, reference=refs, higher_is_better=False,
                ours_what=f"wall time of the whole process `mvault {' '.join(mvault_args)}` (subprocess, output "
                          "captured; no server, no unlock session)",
                reference_what="wall time of `python -c pass` with the same interpreter",
                target_abs=None if bound is None else ("<", bound),
                target_text="-" if bound is None else f"< {bound} s",
            ))
    result = {"rows": [row.as_json() for row in rows], "machine": machine(), "rounds": args.rounds,
              "quick": args.quick, "clock": "time.perf_counter around subprocess.run (wall)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        status = {True: "met", False: "MISSED", None: "-"}[row.met]
        print(f"{row.row}: ours {fmt(row.ours_median, 's')}, python -c pass {fmt(row.reference_median, 's')}, "
              f"ratio of medians {row.ratio or 0:.2f}x over {args.rounds} rounds (target {row.target_text}: {status})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
