"""Issue 16, bench "sync memory": big files (16 MiB or more) go up in their own batch put and come down with at
most ``BIG_IN_FLIGHT`` of them in flight, beside small ones in the same pass (real server, real CLI).

The memory bound itself is measured by bench/sync.py (a 2 GiB tree); this checks the split path keeps every
byte, names each document right and leaves nothing to do afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from client.sync.engine import BIG_FILE
from tests.conftest import Org


def test_big_and_small_files_in_one_pass_arrive_whole_and_in_step(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "big").mkdir(parents=True)
    files = {f"big/b{i}.bin": os.urandom(BIG_FILE + i) for i in range(3)}  # three big ones: more than in flight
    files |= {"small.txt": b"small\n", "big/edge.bin": os.urandom(BIG_FILE - 1)}
    for name, data in files.items():
        (a / name).write_bytes(data)

    up = alice.json("sync", "drafting", str(a))
    assert sorted((r["action"], r["name"], r["seq"]) for r in up) == sorted(("push", n, 1) for n in files)
    down = bob.json("sync", "drafting", str(b))
    assert sorted((r["action"], r["name"]) for r in down) == sorted(("pull", n) for n in files)
    got = {str(p.relative_to(b)): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    assert got == files
    assert alice.json("sync", "drafting", str(a)) == [] and bob.json("sync", "drafting", str(b)) == []
