"""A small body of a batch download lands beside its name in one worker-thread call (``download.small_beside``):
its temporary file is made there too, never on the event loop (issue 16's first sync, session 13: a file's creation
waits for the file system's journal while other pulls fsync theirs, and on the loop that stopped every transfer).
Its plaintext is written only once verified; a tampered body or a cancelled call leaves nothing behind."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import blake3
import pytest

from client import download
from client.client import Client
from client.sync.engine import Outcome, sync_pass
from tests.conftest import Org
from tests.helpers.envelope import TEAM_A, data_of, write_doc
from tests.helpers.members import in_session
from tests.test_sync import tree, write
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
    tmp, digest = asyncio.run(download.small_beside(tmp_path / "plan.txt", opened, doc.body))
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
    for i in range(30):
        write(a / f"d{i % 3}" / f"f{i:02d}.md", f"file {i}\n")
    org.alice.json("sync", "drafting", str(a))
    made: list[tuple[str, bool]] = []  # (temporary file's name, made on the event loop's thread)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        made.append((name, on_loop))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    async def one_pass(c: Client) -> Outcome:
        return await sync_pass(c, "drafting", b)

    out = in_session(org.server, org.bob, one_pass, monkeypatch)
    monkeypatch.undo()
    assert {r["action"] for r in out.rows} == {"pull"} and tree(b) == tree(a)
    pulled = [name for name, _ in made if name.endswith(".mvault-part")]
    assert len(pulled) == 30
    assert [name for name, on_loop in made if on_loop and name.endswith(".mvault-part")] == []  # before: all 30
