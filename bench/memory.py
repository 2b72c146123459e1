"""Peak RSS of server and client while putting and getting one large file.

Starts a real ``mvault-server run`` and drives the real ``mvault`` CLI (separate
processes), sampling both RSS every 20 ms with psutil. Prints figures; asserts nothing
about time. ``--size-mib`` picks the file size (default 1024 = 1 GiB); ``--quick`` uses
64 MiB. Writes ``bench/results-memory.json``.

    python bench/memory.py [--size-mib N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Sampler, free_port

BIN = Path(sys.executable).parent
LIMIT_MIB = 200


def run_client(env: dict[str, str], *args: str) -> tuple[float, int, str]:
    """Run one mvault command; return (seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    p = subprocess.Popen([str(BIN / "mvault"), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    sampler = Sampler(p.pid)
    out, err = p.communicate()
    peak = sampler.stop()
    if p.returncode != 0:
        raise SystemExit(f"mvault {' '.join(args)} failed: {err}")
    return time.perf_counter() - start, peak, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results-memory.json"))
    args = ap.parse_args()
    size_mib = 64 if args.quick else args.size_mib
    with tempfile.TemporaryDirectory(prefix="mvault-bench-") as tmp_s:
        tmp = Path(tmp_s)
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "mvault-server"), "run", "--data", str(tmp / "data"), "--port", str(port), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            server_sampler = Sampler(server.pid)
            (tmp / "pass").write_text("bench passphrase 123\n")
            env = {**os.environ, "MVAULT_HOME": str(tmp / "home"), "MVAULT_PASSPHRASE_FILE": str(tmp / "pass")}
            run_client(env, "join", info["invite"], "--name", "bench")
            run_client(env, "team", "create", "bench", "--kind", "program")
            big = tmp / "big.bin"
            block = os.urandom(1024 * 1024)
            with big.open("wb") as f:
                for i in range(size_mib):
                    f.write(block[i % 7 :] + block[: i % 7])
            put_s, put_rss, _ = run_client(env, "put", "bench", str(big))
            get_s, get_rss, _ = run_client(env, "get", "bench", "big.bin", "-o", str(tmp / "big.out"))
            server_rss = server_sampler.stop()
            same = os.path.getsize(tmp / "big.out") == big.stat().st_size
        finally:
            server.terminate()
            server.wait(10)
    mib = 1024 * 1024
    result = {
        "size_mib": size_mib,
        "put_seconds": round(put_s, 2),
        "get_seconds": round(get_s, 2),
        "put_mib_s": round(size_mib / put_s, 1),
        "get_mib_s": round(size_mib / get_s, 1),
        "client_put_peak_rss_mib": round(put_rss / mib, 1),
        "client_get_peak_rss_mib": round(get_rss / mib, 1),
        "server_peak_rss_mib": round(server_rss / mib, 1),
        "round_trip_ok": same,
        "limit_mib": LIMIT_MIB,
    }
    print(f"{'file size':<28}{size_mib} MiB")
    print(f"{'put':<28}{result['put_seconds']} s ({result['put_mib_s']} MiB/s)")
    print(f"{'get':<28}{result['get_seconds']} s ({result['get_mib_s']} MiB/s)")
    put_mib, get_mib = result["client_put_peak_rss_mib"], result["client_get_peak_rss_mib"]
    print(f"{'client peak RSS (put/get)':<28}{put_mib} / {get_mib} MiB")
    print(f"{'server peak RSS':<28}{result['server_peak_rss_mib']} MiB (limit {LIMIT_MIB} MiB)")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    ok = same and max(put_rss, get_rss, server_rss) < LIMIT_MIB * mib
    print("memory: OK" if ok else "memory: OVER LIMIT or round trip failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
