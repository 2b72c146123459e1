"""Issue 16's first-sync cost: the sealed files a pass saves again and again (the local copies index, the
folder's index) are saved on a pace that keeps saving under a share of the pass's time (client/savepace.py),
and the local copies index is read again only when another command changed it.

Before, every save of a batch put or of a pass's pulls opened the whole local copies index again (and sealed it
again every second or 64 versions), so a first sync grew as the square of the tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.localcopies import LocalCopies
from client.savepace import SavePace
from client.sync.engine import Outcome
from tests.conftest import Member, Org
from tests.helpers.in_process_pass import fill, run_pass
from tests.test_sync import tree
from vault.fileio import atomic_write
from vault.keys import DeviceKeys
from vault.localindex import LocalCopy, LocalIndex

FILES = 150  # more than PIN_FLUSH (64): the batch saves its pins and local copies before its end


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cheap_saves_keep_the_old_rule_and_costly_ones_are_spaced_out() -> None:
    clock = Clock()
    pace = SavePace(1.0, 64, clock=clock)
    assert not pace.due(10)
    assert pace.due(64)  # enough changes waiting
    clock.now += 1.0
    assert pace.due(0)  # or enough time
    with pace.saving():
        clock.now += 0.01  # a cheap save: the rule stands (once a tenth of a second went by)
    assert not pace.due(64)
    clock.now += 0.2
    assert pace.due(64) and not pace.due(63)
    with pace.saving():
        clock.now += 0.5  # a save of a big file: no other for ten times as long
    clock.now += 4.9
    assert not pace.due(10_000)
    clock.now += 0.2
    assert pace.due(64) and pace.due(0)


def counted_pass(org: Org, m: Member, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, int, int]:
    """One in-process pass: its outcome, how many times it read the local copies index and how many times it
    wrote it."""
    reads: list[int] = []
    writes: list[int] = []
    read = LocalCopies._read

    def reading(self: LocalCopies) -> LocalIndex:
        reads.append(1)
        return read(self)

    def writing(path: Path, data: bytes) -> None:
        writes.append(1)
        atomic_write(path, data)

    monkeypatch.setattr(LocalCopies, "_read", reading)
    monkeypatch.setattr("client.localcopies.atomic_write", writing)
    out = run_pass(org, m, folder, monkeypatch)
    return out, len(reads), len(writes)


def test_a_first_sync_both_ways_reads_the_local_copies_index_once(org: Org, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fill(a, FILES)
    out, reads, writes = counted_pass(org, org.alice, a, monkeypatch)
    assert len(out.rows) == FILES and {r["action"] for r in out.rows} == {"push"}
    assert reads == 1 and writes >= 1  # read when the pass began; every save after it was its own
    out, reads, writes = counted_pass(org, org.bob, b, monkeypatch)
    assert len(out.rows) == FILES and {r["action"] for r in out.rows} == {"pull"}
    assert reads == 1 and writes >= 1
    assert tree(b) == tree(a)
    # Every file is recorded (the next pass reads what the first one wrote), so the next passes have nothing to do.
    for m, folder in ((org.alice, a), (org.bob, b)):
        assert counted_pass(org, m, folder, monkeypatch)[0].rows == []


def test_a_save_keeps_what_another_command_recorded_meanwhile(tmp_path: Path) -> None:
    """Two commands of one member save the local copies index at once: each save under the lock reads the file
    again when it changed since this command saw it, so neither drops the other's entry."""
    device = DeviceKeys.generate()
    first, second = LocalCopies(tmp_path, device), LocalCopies(tmp_path, device)
    copy = LocalCopy("a" * 32, 1, bytes(32), 1, 1, 1)
    first.save([("t", "d1", "/x/one", copy)])
    second.load()
    first.save([("t", "d2", "/x/two", copy)])  # the second command's index is now stale
    second.save([("t", "d3", "/x/three", copy)])
    first.save([("t", "d4", "/x/four", copy)])
    index = LocalCopies(tmp_path, device).load()
    assert {p for paths in index.docs.values() for p in paths} == {"/x/one", "/x/two", "/x/three", "/x/four"}
