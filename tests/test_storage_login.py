"""Real SQLite storage: in-memory single-use nonces; sessions and versions group-committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from server.store import local as storage_mod
from server.store.sqlite.vault import SQLiteStorage
from vault.errors import ServiceUnavailable


async def test_a_nonce_is_taken_once_and_a_flood_evicts_the_oldest(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = await SQLiteStorage.open(tmp_path)
    try:
        await store.add_nonce(b"n1", "m", "d", 100.0)
        assert await store.take_nonce(b"n1") == ("m", "d", 100.0)
        assert await store.take_nonce(b"n1") is None  # single use
        assert await store.take_nonce(b"never") is None
        monkeypatch.setattr(storage_mod, "MAX_NONCES", 3)
        for i in range(5):
            await store.add_nonce(b"f%d" % i, "m", "d", 100.0 + i)
        assert [await store.take_nonce(b"f%d" % i) is not None for i in range(5)] == [False, False, True, True, True]
        await store.add_nonce(b"old", "m", "d", 10.0)
        await store.add_nonce(b"new", "m", "d", 1000.0)
        await store.purge_expired(500.0)
        assert await store.take_nonce(b"old") is None and await store.take_nonce(b"new") is not None
    finally:
        await store.close()


async def test_a_nonce_does_not_survive_a_restart(tmp_path: Path) -> None:
    store = await SQLiteStorage.open(tmp_path)
    await store.add_nonce(b"n", "m", "d", 1e12)
    await store.close()
    store = await SQLiteStorage.open(tmp_path)
    try:
        assert await store.take_nonce(b"n") is None
    finally:
        await store.close()


async def test_concurrent_sessions_are_all_durable_when_their_calls_return(tmp_path: Path) -> None:
    store = await SQLiteStorage.open(tmp_path)
    try:
        tokens = [b"t%03d" % i for i in range(50)]
        await asyncio.gather(*(store.add_session(t, f"m{i}", "d", 1e12) for i, t in enumerate(tokens)))
        # Read by another connection: committed, not only in this process's cache.
        db = sqlite3.connect(tmp_path / "vault.db")
        try:
            rows = dict(db.execute("SELECT token, member FROM sessions").fetchall())
        finally:
            db.close()
        assert {bytes(t): m for t, m in rows.items()} == {t: f"m{i}" for i, t in enumerate(tokens)}
        found = await store.session(tokens[7])
        assert found is not None and found.member == "m7"
        # In one batch, a refused write fails alone (its row is not written) and the others commit.
        results = await asyncio.gather(store.add_session(b"fresh", "m", "d", 1e12),
                                       store.add_session(tokens[0], "x", "d", 1e12), return_exceptions=True)
        assert results[0] is None and isinstance(results[1], sqlite3.IntegrityError)
        db = sqlite3.connect(tmp_path / "vault.db")
        try:
            assert db.execute("SELECT count(*) FROM sessions WHERE token=?", (b"fresh",)).fetchone() == (1,)
            assert db.execute("SELECT member FROM sessions WHERE token=?", (tokens[0],)).fetchone() == ("m0",)
        finally:
            db.close()
        await store.add_session(b"after", "m", "d", 1e12)  # the next batch works
        assert await store.session(b"after") is not None
    finally:
        await store.close()


async def test_concurrent_versions_commit_together_and_a_conflict_fails_alone(tmp_path: Path) -> None:
    from server.store.records import HeadMoved, StoredVersion, VersionAdded

    store = await SQLiteStorage.open(tmp_path)
    try:
        def v(doc: str, seq: int) -> StoredVersion:
            return StoredVersion(f"{doc}-{seq}", "team", doc, seq, b"record", f"{doc}-{seq}", 0)

        await asyncio.gather(*(store.add_version(v(f"d{i}", 1), None, 1) for i in range(20)))
        assert [x.vid for x in await store.versions("team", "d7")] == ["d7-1"]
        # Same batch: d0 v2 on top of v1 is fine; a second v2 of d0 and a v2 with a wrong parent are not.
        results = await asyncio.gather(store.add_version(v("d0", 2), "d0-1", 2),
                                       store.add_version(v("d0", 2), "d0-1", 2),
                                       store.add_version(v("d1", 2), "elsewhere", 2),
                                       store.add_version(v("d2", 2), "d2-1", 2), return_exceptions=True)
        assert results[0] == VersionAdded() and results[3] == VersionAdded()
        assert results[1] == HeadMoved(2) and results[2] == HeadMoved(1)
        assert [x.vid for x in await store.versions("team", "d0")] == ["d0-1", "d0-2"]
        assert [x.vid for x in await store.versions("team", "d1")] == ["d1-1"]
    finally:
        await store.close()


async def test_a_cancelled_commit_fails_its_writes_and_the_queue_goes_on(tmp_path: Path) -> None:
    """Shutdown cancels the committing task: its waiting writes get a clear error (never hang),
    nothing of them is stored, and later writes are committed by a new committer."""
    store = await SQLiteStorage.open(tmp_path)
    try:
        await store._lock.acquire()  # another storage call is running
        waiter = asyncio.ensure_future(store.add_session(b"queued", "m", "d", 1e12))
        await asyncio.sleep(0.01)
        committer = store._writes._task
        assert committer is not None
        committer.cancel()
        await asyncio.sleep(0.01)
        store._lock.release()
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await asyncio.wait_for(waiter, 5)
        assert await store.session(b"queued") is None
        await asyncio.wait_for(store.add_session(b"later", "m", "d", 1e12), 5)
        assert await store.session(b"later") is not None
    finally:
        await store.close()


async def test_a_version_is_refused_when_the_team_chain_moved_while_it_waited(tmp_path: Path) -> None:
    """The team-state check runs inside the commit: a team link stored after the handler's own
    check (a removal with its rotation, say) makes the version TeamMoved, and nothing is stored."""
    from server.store.records import StoredLink, StoredVersion, TeamMoved

    store = await SQLiteStorage.open(tmp_path)
    try:
        await store.append_links([StoredLink("team", 1, "team", b"create")], [], [])
        v1 = StoredVersion("v1", "team", "doc", 1, b"record", "v1", 0)
        await store.add_version(v1, None, 1, team_seq=1)
        await store.append_links([StoredLink("team", 2, "team", b"remove+rotate")], [], [])
        v2 = StoredVersion("v2", "team", "doc", 2, b"record", "v2", 0)
        assert await store.add_version(v2, "v1", 2, team_seq=1) == TeamMoved(2)
        assert [x.vid for x in await store.versions("team", "doc")] == ["v1"]
        await store.add_version(v2, "v1", 2, team_seq=2)
        assert [x.vid for x in await store.versions("team", "doc")] == ["v1", "v2"]
    finally:
        await store.close()
