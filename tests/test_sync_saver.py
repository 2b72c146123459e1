"""A batch put's saves off the event loop (issue 16's first sync, session 21): the document pins and the local
copies index saved during a batch put (a pass's uploads) are written by one saving thread (client/saver.py), in the
order the batch made them, instead of stopping the event loop for each file's write, fsync, rename and directory
fsync; the batch's last flush waits for them all. A fetch batch (a pass's pulls) does the same, and its folder's
index saves go to that thread too, after the saves before them (session 22; in session 21 they were waited for on
the loop: free of them, the loop's batch downloads went out smaller and more numerous, until the batcher waited for
an answer on purpose: tests/test_batcher_hold.py). A save that fails stops every save after it and fails the pass.

Real passes, in this process against the real server, with every file replaced by ``atomic_write`` watched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.docpins import save_merged as real_merge
from client.docs import Documents
from client.saver import Saver, take
from tests.conftest import Org
from tests.helpers.in_process_pass import TEAM, fill, on_loop, run_pass, synced_by_alice
from tests.test_sync import tree

FILES = 150  # more than PIN_FLUSH (64): the pass saves during its batch, not only at its end


def _watch_replaces(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[tuple[str, bool, str]]:
    """Each file of ``home`` renamed into place while a batch (of puts or of fetches, ``Documents._pin_batch``) ran,
    its last flush included: (its name, on the event loop's thread?, the thread's name). The pass's other saves
    (its view's pins before the batch, its folder's index at its end) are not the batch's."""
    made: list[tuple[str, bool, str]] = []
    lock, real, real_batch, batches = threading.Lock(), os.replace, Documents._pin_batch, [0]

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real(src, dst, *args, **kwargs)
        p = Path(dst)
        if p.is_relative_to(home) and batches[0]:
            with lock:
                made.append((str(p.relative_to(home)), on_loop(), threading.current_thread().name))

    @contextlib.contextmanager
    def pin_batch(self: Documents) -> Iterator[None]:
        batches[0] += 1
        try:
            with real_batch(self):
                yield
        finally:
            batches[0] -= 1

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Documents, "_pin_batch", pin_batch)
    return made


@pytest.mark.parametrize("who", ["up", "down"])
def test_a_pass_saves_its_files_off_the_event_loop(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   who: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fill(a, FILES)
    if who == "down":
        org.alice.json("sync", TEAM, str(a))
    member, folder = (org.bob, b) if who == "down" else (org.alice, a)
    made = _watch_replaces(monkeypatch, member.home)
    monkeypatch.setattr("client.sync.engine.SAVE_EVERY", 0.0)  # the folder's index saved during the pulls too
    out = run_pass(org, member, folder, monkeypatch)
    assert len(out.rows) == FILES and {r["action"] for r in out.rows} == {"pull" if who == "down" else "push"}
    if who == "down":
        assert tree(b) == tree(a)
    on_loop = [name for name, loop, _ in made if loop]
    saved = [name for name, loop, thread in made if not loop and thread.startswith("mvault-save")]
    # The pins (every PIN_FLUSH versions) and local copies saved during the batch, its last flush, and the folder's
    # index if the pace saved it during the pulls: all by the saving thread, none on the loop (on the code before,
    # all of them on the loop).
    assert sum(n == "pins.bin" for n in saved) >= 3
    assert "index.bin" in saved
    if who == "down":  # the folder's index too (session 22; on the code before, on the loop)
        assert any(n.startswith("sync/") and n.endswith(".bin") for n in saved)
    assert on_loop == []


def test_a_failed_save_stops_those_after_it_and_fails_the_pass(org: Org, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    synced_by_alice(org, a, FILES)
    made = _watch_replaces(monkeypatch, org.bob.home)
    merges: list[int] = []

    def save_merged(home: Any, batch: dict[str, list[Any]]) -> None:
        merges.append(len(batch))
        if len(merges) == 1:  # the batch's first flush of the pins: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_merge(home, batch)

    monkeypatch.setattr("client.docs.save_merged", save_merged)
    with pytest.raises(OSError) as failed:
        run_pass(org, org.bob, b, monkeypatch)
    assert failed.value.errno == errno.ENOSPC
    assert merges == [merges[0]]  # no flush after the failed one was made
    # Nothing saved after it: no pins, no local copies, no folder index (the next pass makes them up).
    assert [name for name, _, _ in made if name in ("pins.bin", "index.bin") or name.startswith("sync/")] == []


def test_saves_are_made_in_order_and_none_after_one_that_failed() -> None:
    saver, done, gate = Saver(), [], threading.Event()

    def first() -> None:
        gate.wait(5)
        done.append("first")

    def failing() -> None:
        raise OSError(errno.EIO, "I/O error")

    saver.submit(first)
    saver.submit(lambda: done.append("second"))
    assert saver.busy()
    gate.set()
    saver.submit(failing)
    saver.submit(lambda: done.append("after the failure"))
    with pytest.raises(OSError):
        saver.wait()
    assert done == ["first", "second"]
    assert not saver.busy()
    with pytest.raises(OSError):  # and every later save is refused, with the same error
        saver.submit(lambda: done.append("later"))
    with pytest.raises(OSError):
        saver.check()
    assert done == ["first", "second"]


def test_take_leaves_what_a_worker_adds_meanwhile() -> None:
    unsynced = {Path("/a"), Path("/b")}
    taken = take(unsynced)
    assert taken == {Path("/a"), Path("/b")} and unsynced == set()
    unsynced.add(Path("/c"))
    assert take(unsynced) == {Path("/c")}
    assert take(None) == set() and take(set()) == set()
