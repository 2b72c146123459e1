"""A small body of a batch download lands beside its name in one worker-thread call (``download.small_beside``):
its temporary file is made there too, never on the event loop (issue 16's first sync, session 13: a file's creation
waits for the file system's journal while other pulls fsync theirs, and on the loop that stopped every transfer).
Its plaintext is written only once verified; a tampered body or a cancelled call leaves nothing behind. Since session
18 a pulled file with nothing to check against its name first is also placed in that call (one thread trip a file)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import blake3
import pytest

from client import download
from tests.conftest import Org
from tests.helpers.envelope import TEAM_A, data_of, write_doc
from tests.helpers.in_process_pass import on_loop, run_pass, synced_by_alice
from tests.test_sync import tree
from vault.envelope import open_record
from vault.errors import DecryptionFailed
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey


def _small(size: int = 5000) -> tuple[Any, Any]:
    key = TeamKey.generate(TEAM_A, 1)
    doc = write_doc(key, DeviceKeys.generate(), data_of(size))
    return doc, open_record(doc.record, key)


def test_a_small_body_lands_verified_beside_its_name(tmp_path: Path) -> None:
    doc, opened = _small()
    tmp, digest, placed = asyncio.run(download.small_beside(tmp_path / "plan.txt", opened, doc.body))
    assert placed is None  # no ``then``: the caller places it
    assert tmp.parent == tmp_path and tmp.name.startswith(".plan.txt.") and tmp.name.endswith(".mvault-part")
    assert tmp.read_bytes() == doc.plaintext and digest == b"\x02" + blake3.blake3(doc.plaintext).digest()


def test_a_tampered_small_body_leaves_nothing(tmp_path: Path) -> None:
    doc, opened = _small()
    body = bytearray(doc.body)
    body[len(body) // 2] ^= 1
    with pytest.raises(DecryptionFailed):
        asyncio.run(download.small_beside(tmp_path / "plan.txt", opened, bytes(body)))
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_small_body_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled (Ctrl-C, a failed sibling) while its worker writes: the worker finishes, then its file goes."""
    doc, opened = _small()
    writing, release = threading.Event(), threading.Event()
    real = download.receive_small

    def held(*args: Any) -> bytes:
        writing.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(download, "receive_small", held)

    async def go() -> None:
        task = asyncio.create_task(download.small_beside(tmp_path / "plan.txt", opened, doc.body))
        await asyncio.to_thread(writing.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert writing.is_set() and list(tmp_path.iterdir()) == []


def test_a_pass_makes_no_pulled_file_on_the_event_loop(org: Org, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    synced_by_alice(org, a, 30)
    made: list[tuple[str, bool]] = []  # (temporary file's name, made on the event loop's thread)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        made.append((name, on_loop()))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    out = run_pass(org, org.bob, b, monkeypatch)
    assert {r["action"] for r in out.rows} == {"pull"} and tree(b) == tree(a)
    pulled = [name for name, _ in made if name.endswith(".mvault-part")]
    assert len(pulled) == 30
    assert [name for name, loop in made if loop and name.endswith(".mvault-part")] == []  # before: all 30


def test_then_places_the_verified_file_in_the_same_worker_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc, opened = _small()
    threads: dict[str, threading.Thread] = {}
    real = download.receive_small

    def recorded(*args: Any) -> bytes:
        threads["write"] = threading.current_thread()
        return real(*args)

    def then(tmp: Path) -> bool:
        threads["place"] = threading.current_thread()
        assert tmp.read_bytes() == doc.plaintext  # written and verified before it is placed
        return download.place(tmp, tmp_path / "plan.txt", False)

    monkeypatch.setattr(download, "receive_small", recorded)
    tmp, _, placed = asyncio.run(download.small_beside(tmp_path / "plan.txt", opened, doc.body, then))
    assert placed is True and not tmp.exists() and (tmp_path / "plan.txt").read_bytes() == doc.plaintext
    assert threads["place"] is threads["write"] is not threading.main_thread()
    assert [p.name for p in tmp_path.iterdir()] == ["plan.txt"]


def test_a_failing_then_leaves_no_temporary_file(tmp_path: Path) -> None:
    doc, opened = _small()

    def then(tmp: Path) -> bool:
        raise PermissionError("read-only folder")

    with pytest.raises(PermissionError):
        asyncio.run(download.small_beside(tmp_path / "plan.txt", opened, doc.body, then))
    assert list(tmp_path.iterdir()) == []


def test_a_pass_places_each_small_pulled_file_in_its_writing_worker(org: Org, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker trip a small pulled file (write, fsync and link), not a second trip to place it; a file created
    under the name meanwhile is still never replaced (``place`` links without replacing: a conflict)."""
    a, b = tmp_path / "a", tmp_path / "b"
    synced_by_alice(org, a, 12)
    second_trips: list[Path] = []
    real_place_off_loop = download.place_off_loop

    async def counted(tmp: Path, out: Path, *args: Any) -> bool:
        second_trips.append(out)
        return await real_place_off_loop(tmp, out, *args)

    monkeypatch.setattr(download, "place_off_loop", counted)
    real_receive_small = download.receive_small

    def meanwhile(opened: Any, body: bytes, fd: int) -> bytes:
        digest = real_receive_small(opened, body, fd)
        taken = b / "d1" / "f01.md"
        if not taken.exists() and not list(b.glob("d1/f01.md.*")):
            taken.write_text("bob's own file, saved while it downloaded\n")
        return digest

    monkeypatch.setattr(download, "receive_small", meanwhile)
    out = run_pass(org, org.bob, b, monkeypatch)
    assert second_trips == []  # before: one per pulled file (12)
    assert (b / "d1" / "f01.md").read_text() == "bob's own file, saved while it downloaded\n"  # not replaced
    pulled = {r["name"] for r in out.rows if r["action"] == "pull"}
    assert len(pulled) == 11 and "d1/f01.md" not in pulled
    assert not [p for p in b.rglob("*") if p.name.endswith(".mvault-part")]
