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


def test_fanout_bench_runs(tmp_path: Path) -> None:
    """bench/fanout.py --quick: real server and reference, a few followers; keys only, no timings."""
    out = tmp_path / "fanout.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fanout.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    for side in ("ours", "reference"):
        for key in ("deliveries_per_s", "p50_ms", "p99_ms", "post_rate", "server_cpu_us_per_delivery", "rounds"):
            assert key in result[side], (side, key)
    for key in ("ratio_deliveries", "reader_verify_decrypt_us_per_msg", "machine", "followers", "frame_bytes"):
        assert key in result, key
    assert result["all_delivered"] is True and result["ours_in_order"] is True
    assert result["note"] == "server fan-out, clients do not decrypt"
    assert "ratio of medians" in r.stdout and "server fan-out, clients do not decrypt" in r.stdout
