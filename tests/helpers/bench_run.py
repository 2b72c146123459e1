"""Running a bench script from a test (tests/test_bench_smoke.py, tests/test_bench_postgres.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bench(script: str, out: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run ``bench/SCRIPT ARGS --out OUT``; it must succeed. Returns the process and the JSON it wrote."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--out", str(out)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, json.loads(out.read_text())
