"""The local scan of a watched pass: full (every file's stat against the index) beside hinted (only the paths the
watcher reported: ``client/sync/scan.py`` ``scan(only=...)``), in the same process and run.

A folder of ``--files`` files of 4 KiB in 10 subfolders, indexed as synced (every entry the file's stat and
hash), then ``--rounds`` rounds of: a full scan (the reference: what every ``--watch`` pass did before), a scan
hinted with one changed file, and one with no path (a pass woken by a document notice alone). CPU seconds
(``time.process_time``) and wall seconds, medians. The rest of a pass (login, chains, the whole listing) is the
same in both: compare with a no-op pass's client CPU (bench/sync.py) for the share saved. Nothing is asserted.

    python bench/scan_hint.py [--files N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client.sync.scan import scan  # noqa: E402
from vault.syncindex import SyncEntry, SyncIndex  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mvault-scanhint-") as t:
        root = Path(t)
        for i in range(args.files):
            path = root / f"d{i % 10}" / f"f{i}.md"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(i.to_bytes(4, "big") * 1024)
        index = SyncIndex("t" * 32, str(root))
        for name, f in scan(root, None).files.items():
            assert f.sha256 is not None
            index.files[name] = SyncEntry("v" * 32, 1, f.sha256, f.size, f.mtime_ns, f.ino, "d" * 32)
        (root / "d3" / "f3.md").write_text("an edit\n")
        cases = {"full scan": None, "hinted, one path": frozenset({"d3/f3.md"}), "hinted, no path": frozenset()}
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, only in cases.items():
                c0, w0 = time.process_time(), time.perf_counter()
                found = scan(root, index, only=only)
                got[name].append((time.process_time() - c0, time.perf_counter() - w0))
                assert len(found.files) == args.files
    ref = statistics.median(c for c, _ in got["full scan"])
    print(f"{args.files} files, {args.rounds} rounds")
    for name, samples in got.items():
        cpu, wall = statistics.median(c for c, _ in samples), statistics.median(w for _, w in samples)
        print(f"{name:18} CPU {cpu * 1000:8.1f} ms  wall {wall * 1000:8.1f} ms  CPU vs full {cpu / ref:6.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
