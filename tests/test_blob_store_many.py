"""A batch upload's blobs (``FileBlobs.store_many``): written and their write-back started first, then each fsync'd,
and only then does any get its name; a failure on the way leaves no blob and no temporary file.

Since session 18 the fsyncs come after every blob of the batch is written (a few journal commits for the batch
instead of one a blob: docs/performance.md); what must not change is that a blob is durable before its name exists.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import server.store.blobs as blobs_module
from server.store.blobs import FileBlobs
from vault.errors import InsufficientStorage


def batch(n: int) -> list[tuple[str, bytes]]:
    return [(os.urandom(16).hex(), os.urandom(4096 + i)) for i in range(n)]


def test_every_blob_is_written_then_fsynced_before_any_gets_its_name(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobs(tmp_path)
    events: list[tuple[str, str]] = []
    fsync_path, replace, started = blobs_module.fsync_path, os.replace, blobs_module.start_writeback

    def recorded_fsync(path: Path) -> None:
        events.append(("fsync", str(path)))
        fsync_path(path)

    def recorded_replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", str(src)))
        replace(src, dst)

    def recorded_start(fd: int) -> None:
        events.append(("start", os.readlink(f"/proc/self/fd/{fd}")))
        started(fd)

    monkeypatch.setattr(blobs_module, "fsync_path", recorded_fsync)
    monkeypatch.setattr(blobs_module, "start_writeback", recorded_start)
    monkeypatch.setattr(os, "replace", recorded_replace)
    items = batch(12)
    store.store_many(items)

    kinds = [k for k, _ in events]
    temps = [p for k, p in events if k == "replace"]
    assert len(temps) == 12
    assert sorted(p for k, p in events if k == "start") == sorted(temps)  # each written and started ...
    assert sorted(p for k, p in events if k == "fsync" and p in temps) == sorted(temps)  # ... and fsync'd
    assert max(i for i, k in enumerate(kinds) if k == "start") < min(i for i, k in enumerate(kinds) if k == "fsync")
    last_file_fsync = max(i for i, (k, p) in enumerate(events) if k == "fsync" and p in temps)
    assert last_file_fsync < kinds.index("replace")  # durable before any has its name
    for name, content in items:
        assert (tmp_path / "blobs" / name[:2] / name).read_bytes() == content
    assert not list((tmp_path / "tmp").iterdir())


def test_a_failed_fsync_leaves_no_blob_and_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobs(tmp_path)
    calls = []
    fsync_path = blobs_module.fsync_path

    def failing(path: Path) -> None:
        calls.append(path)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync_path(path)

    monkeypatch.setattr(blobs_module, "fsync_path", failing)
    items = batch(8)
    with pytest.raises(InsufficientStorage):
        store.store_many(items)
    assert len(calls) == 5
    assert not list((tmp_path / "tmp").iterdir())
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))
    monkeypatch.setattr(blobs_module, "fsync_path", fsync_path)
    store.store_many(items)  # the same batch again, once there is room
    for name, content in items:
        assert (tmp_path / "blobs" / name[:2] / name).read_bytes() == content
