"""A group commit's versions written in the SQLite connection's own thread (server/store/sqlite/inthread.py).

The batch upload's versions share one group commit; each was written statement by statement, six trips to
aiosqlite's thread a version (~0.24 ms of server CPU each, issue 16's first sync). Now a group's versions are one
trip, with every check and savepoint as before: these tests count the trips (more than 300 for 64 versions before)
and show that refusals, constraints, a failing statement and the other writes of the same group behave as they
did. The batch upload's own behaviour through the real server: tests/test_batch_upload.py, tests/test_quotas.py.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.store.records import HeadMoved, StoredVersion, TeamMoved, VersionAdded
from server.store.sqlite.inthread import InThread, Tx
from server.store.sqlite.vault import SQLiteStorage
from server.usage import Allowance, OverDailyCount
from vault.errors import ServiceUnavailable

MEMBER = "m" * 32
TEAM = "t" * 32


def version(n: int, seq: int = 1, doc: int | None = None, vid: int | None = None) -> StoredVersion:
    v = f"{n if vid is None else vid:064x}"
    return StoredVersion(v, TEAM, f"{n if doc is None else doc:032x}", seq, b"record", v, 4096)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    s = await SQLiteStorage.open(tmp_path)
    try:
        yield s
    finally:
        await s.close()


def trips(store: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every trip to the connection's thread from here on (aiosqlite's ``_execute``: what each
    ``execute``, ``execute_fetchall`` and the in-thread writes go through)."""
    db: Any = store._db
    count = [0]
    real = db._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(db, "_execute", counted)
    return count


def rows(store: SQLiteStorage, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(store.data_dir / "vault.db")
    try:
        return list(con.execute(sql).fetchall())
    finally:
        con.close()


async def test_a_group_of_64_versions_is_a_few_trips_not_six_a_version(store: SQLiteStorage,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    count = trips(store, monkeypatch)
    allowance = Allowance(MEMBER, 10_000)
    out = await asyncio.gather(*(store.add_version(version(n), None, 1000, allowance=allowance) for n in range(64)))
    assert all(isinstance(o, VersionAdded) for o in out)
    assert count[0] <= 8, count[0]  # BEGIN, the versions, COMMIT: 3 (the code before: 6 a version, 387 here)
    assert rows(store, "SELECT count(*) FROM versions") == [(64,)]
    assert rows(store, "SELECT count(*), sum(bytes) FROM authored") == [(64, 64 * 4096)]
    assert rows(store, "SELECT bytes FROM authored_bytes") == [(64 * 4096,)]


async def test_refusals_and_constraints_fail_alone_in_the_group(store: SQLiteStorage) -> None:
    await store.add_version(version(1), None, 1000)
    first_vid = version(1).vid
    out = await asyncio.gather(
        store.add_version(version(2), None, 1000),  # stored
        store.add_version(version(3, seq=2, doc=1), "0" * 64, 1000),  # not on top of doc 1's head: HeadMoved
        store.add_version(version(4, doc=9, vid=2), None, 1000),  # version 2's id again: a constraint
        store.add_version(version(5, seq=2, doc=1), first_vid, 1000),  # on top of the head: stored
        store.add_version(version(6), None, 1000, team_seq=7),  # the team chain is not at link 7: TeamMoved
        return_exceptions=True)
    assert isinstance(out[0], VersionAdded) and isinstance(out[3], VersionAdded), out
    assert isinstance(out[1], HeadMoved) and isinstance(out[4], TeamMoved), out
    assert isinstance(out[2], sqlite3.IntegrityError), out  # refused alone, as a write of the group always was
    assert sorted(r[0] for r in rows(store, "SELECT vid FROM versions")) == sorted(
        [first_vid, version(2).vid, version(5).vid])
    assert rows(store, "SELECT count(*) FROM authored") == [(3,)]  # the refused ones left no usage row


async def test_the_daily_quota_is_reached_at_the_same_item(store: SQLiteStorage) -> None:
    allowance = Allowance(MEMBER, 5)
    await store.add_version(version(100), None, 1000, allowance=allowance)
    out = await asyncio.gather(*(store.add_version(version(n), None, 1000, allowance=allowance) for n in range(6)))
    assert [type(o) for o in out] == [VersionAdded] * 4 + [OverDailyCount] * 2, out
    over = out[4]
    assert isinstance(over, OverDailyCount) and over.retry_after == 86400  # the oldest of the day leaves then


async def test_other_writes_of_the_same_group_are_kept_in_order(store: SQLiteStorage) -> None:
    out = await asyncio.gather(store.add_version(version(1), None, 1000),
                               store.add_session(b"s" * 32, MEMBER, "d" * 32, 9e9),
                               store.add_version(version(2), None, 1000),
                               store.add_version(version(3, seq=2, doc=2), version(2).vid, 1000))
    assert isinstance(out[0], VersionAdded) and isinstance(out[2], VersionAdded) and isinstance(out[3], VersionAdded)
    assert await store.session(b"s" * 32) is not None
    assert len(rows(store, "SELECT vid FROM versions")) == 3


async def test_a_failing_statement_rolls_back_the_whole_group(store: SQLiteStorage,
                                                               server_errors: list[logging.LogRecord]) -> None:
    def broken(conn: sqlite3.Connection, tx: Tx) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")  # not a refusal: the transaction fails

    out = await asyncio.gather(store.add_version(version(1), None, 1000),
                               store._group_commit(InThread(broken)),  # type: ignore[arg-type]
                               store.add_version(version(2), None, 1000), return_exceptions=True)
    assert all(isinstance(o, ServiceUnavailable) for o in out), out
    assert rows(store, "SELECT count(*) FROM versions") == [(0,)]
    assert rows(store, "SELECT count(*) FROM authored") == [(0,)]
    assert isinstance(await store.add_version(version(1), None, 1000), VersionAdded)  # the store goes on
    assert [r.getMessage() for r in server_errors] == [
        "storing 3 items (the change) failed; they and 0 queued behind them get 503"]
