"""The memory bench must keep running: a small run of bench/memory.py (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_memory_bench_runs_and_stays_flat(tmp_path: Path) -> None:
    out = tmp_path / "mem.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "memory.py"), "--size-mib", "16", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["round_trip_ok"] is True
    # A memory bound (not a timing): both processes stay well under the 200 MiB limit.
    assert result["server_peak_rss_mib"] < 200
    assert result["client_put_peak_rss_mib"] < 200 and result["client_get_peak_rss_mib"] < 200
    assert "server peak RSS" in r.stdout
