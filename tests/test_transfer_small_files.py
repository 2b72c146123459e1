"""A batch put of many small files saves its pins and local copies index now and then (a killed batch keeps
what was acknowledged), but never so often that saving them dominates: each save rewrites the whole pins file
and index, so in a home of thousands of documents the fixed spacing of every 64 versions made a batch put
quadratic (bench/transfer.py's many-small-files row fell from 1.15x to 0.70x of ``age``). Real server, real
CLI; each save of the index is observed from outside the client (tests/helpers/flush_log) and can be made as
slow as in a big home."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from client.docs import PIN_FLUSH
from client.savepace import SHARE as FLUSH_SHARE
from client.uploadbatch import BATCH_ITEMS, IN_FLIGHT
from tests.conftest import Org
from tests.helpers.members import unlock_here

HOOK = Path(__file__).parent / "helpers" / "flush_log"


def _put_many(org: Org, tmp_path: Path, n: int, delay: float) -> tuple[list[dict[str, Any]], list[Path]]:
    alice = org.alice
    unlock_here(alice)
    folder = tmp_path / "many"
    folder.mkdir()
    files = []
    for i in range(n):
        f = folder / f"f{i:03d}.bin"
        f.write_bytes(os.urandom(64))
        files.append(f)
    log = tmp_path / "flushes.jsonl"
    alice.env_extra.update({"PYTHONPATH": str(HOOK), "FLUSH_LOG": str(log), "FLUSH_DELAY": str(delay)})
    try:
        alice.ok("put", "drafting", *map(str, files))
    finally:
        for k in ("PYTHONPATH", "FLUSH_LOG", "FLUSH_DELAY"):
            alice.env_extra.pop(k)
    return [json.loads(line) for line in log.read_text().splitlines()], files  # saves, and puts-off (``paced``)


def test_slow_saves_are_spaced_by_what_they_cost(org: Org, tmp_path: Path) -> None:
    """Each save made to take 0.3 s (a big home): during the batch, the next one waits at least
    (1 - FLUSH_SHARE) / FLUSH_SHARE times as long as the last took (the one at the end comes when the batch
    ends). Before, one came every PIN_FLUSH (64) versions whatever it cost. Every stored file is still in the
    index at the end."""
    logged, files = _put_many(org, tmp_path, 2 * PIN_FLUSH + 10, 0.3)
    saves = [s for s in logged if "paced" not in s]
    assert len(logged) > len(saves)  # the pace put saves off (each costs 0.3 s)
    assert sum(s["entries"] for s in saves) == len(files)  # each stored file recorded once
    for before, after in zip(saves[:-2], saves[1:-1], strict=True):
        took = before["end"] - before["start"]
        assert after["start"] - before["end"] >= took * (1 - FLUSH_SHARE) / FLUSH_SHARE
    # The index names each file's version: a put of a changed file goes on top of it without a conflict.
    files[0].write_bytes(b"changed")
    org.alice.ok("put", "drafting", str(files[0]))


def test_cheap_saves_still_come_every_pin_flush_versions(org: Org, tmp_path: Path) -> None:
    """In a small home a save costs milliseconds: a batch still saves as it goes, at least every PIN_FLUSH
    versions (or every second), so a killed batch keeps what was acknowledged pinned."""
    # Small files go up BATCH_ITEMS to a request, IN_FLIGHT requests at once: acknowledgements come in chunks.
    logged, files = _put_many(org, tmp_path, 4 * PIN_FLUSH + 10, 0.0)
    saves, paced = [s for s in logged if "paced" not in s], [s for s in logged if "paced" in s]
    assert sum(s["entries"] for s in saves) == len(files)
    assert len(saves) >= 2  # the first flush always saves (nothing cost anything yet), and the batch's end
    if not paced:  # every save was cheap (a loaded machine can make one cost enough for the pace to put one off)
        assert len(saves) >= 3  # at least two during the batch, one at its end
        assert max(s["entries"] for s in saves) <= PIN_FLUSH + BATCH_ITEMS * IN_FLIGHT  # + what was in flight
