"""What the server writes outside SQLite reaches the disk with its directory entry: the audit log key and blobs.

The real stores open in a temporary data directory; ``os.fsync`` is wrapped (the real one still runs) to
record which files and directories were synced, and in which order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.store.sqlite.audit import AuditStore
from server.store.sqlite.vault import SQLiteStorage


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


async def test_a_new_log_key_and_its_directory_entry_are_synced(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the first checkpoints must not lose log.key while audit.db keeps checkpoints signed with it."""
    data = tmp_path.resolve()
    synced = record_fsyncs(monkeypatch)
    store = await AuditStore.open(data)
    await store.close()
    key = data / "log.key"
    assert len(key.read_bytes()) == 32
    assert key.stat().st_mode & 0o777 == 0o600
    # the seed is synced in its temporary file (linked to log.key only once whole: processes sharing the data
    # directory may make it at once, tests/test_log_key_race.py), then the directory holding the new name
    [temporary, directory] = synced
    assert temporary.parent == data and temporary.name.startswith(".log.key.") and directory == data
    assert not temporary.exists()
    synced.clear()
    store = await AuditStore.open(data)  # an existing key is read, not written again
    await store.close()
    assert synced == []


async def test_a_committed_blob_is_synced_into_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path.resolve()
    store = await SQLiteStorage.open(data)
    try:
        blobs = store.blobs
        name = "ab" + "0" * 62
        temp = blobs.create()
        synced = record_fsyncs(monkeypatch)
        try:
            temp.write([b"cipher", b"text"])
            temp.sync()
            temp.close()
            blobs.commit(temp, name)
        finally:
            blobs.discard(temp)
        target = data / "blobs" / "ab" / name
        assert target.read_bytes() == b"ciphertext"
        assert synced[1:] == [target.parent]
        assert list((data / "tmp").iterdir()) == []
        assert blobs.response(name, {}) is not None
        blobs.delete(name)
        assert not target.exists()
        assert blobs.response(name, {}) is None
    finally:
        await store.close()
