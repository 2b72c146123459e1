"""Per-member usage for the quotas of the security protocols (``[quotas]``), kept in SQLite.

Every stored document version and thread has one row in ``authored`` (its author, its
body's bytes, when the server stored it), written in the same transaction as the version
or thread, so the counts are exact across restarts and never drift; ``authored_bytes`` keeps
each member's sum (updated in the same transaction, recomputed from ``authored`` at start-up:
summing on every upload cost ~50 ms for a member with 100,000 versions). Rows stored before
the table existed get their author from the signed record at start-up. "Per day" is the 24
hours before the server's clock. Device-link slots are counted in their own table.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import aiosqlite

from vault.envelope import Record
from vault.errors import EncodingError, VaultError
from vault.messages import ThreadRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS authored (
    kind TEXT NOT NULL, ref TEXT NOT NULL, member TEXT NOT NULL, bytes INTEGER NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (kind, ref));
CREATE INDEX IF NOT EXISTS authored_member ON authored (member, kind, created);
CREATE TABLE IF NOT EXISTS authored_bytes (
    member TEXT NOT NULL, kind TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (member, kind));
CREATE INDEX IF NOT EXISTS link_slots_member ON link_slots (member, expires);
"""
DAY = 86400


@dataclass(frozen=True)
class Allowance:
    """Per-member quotas a write is checked against inside its transaction (the last line of
    defence against concurrent requests that each passed the check made before the work)."""

    member: str
    per_day: int  # rows of this kind (versions, threads) the member may add in 24 hours
    stored_bytes: int | None = None  # bytes of this kind the member may hold in all


@dataclass(frozen=True)
class Usage:
    stored_bytes: int  # every row of the kind, all time
    today: int  # rows in the 24 hours before ``now``
    retry_after: int  # seconds until one of today's rows leaves the window (when today >= the quota)


@dataclass(frozen=True)
class OverStoredBytes:
    """Quota ``stored_bytes``: the member stores ``stored`` bytes, the write adds ``adds``; at most ``limit``."""

    stored: int
    adds: int
    limit: int


@dataclass(frozen=True)
class OverDailyCount:
    """Quota ``{kind}s_per_day``: ``per_day`` rows of ``kind`` in 24 hours; one more in ``retry_after`` s."""

    kind: str
    per_day: int
    retry_after: int


OverQuota: TypeAlias = OverStoredBytes | OverDailyCount  # what a store answers for a write over a quota


def over_quota(kind: str, a: Allowance, use: Usage, add_bytes: int) -> OverQuota | None:
    """Whether one more row of ``kind`` with ``add_bytes`` is over ``a`` (None: it is within): the one rule
    for the check before the work and the one inside the write's transaction."""
    if a.stored_bytes is not None and use.stored_bytes + add_bytes > a.stored_bytes:
        return OverStoredBytes(use.stored_bytes, add_bytes, a.stored_bytes)
    if use.today >= a.per_day:
        return OverDailyCount(kind, a.per_day, use.retry_after)
    return None


_USAGE = ("SELECT (SELECT bytes FROM authored_bytes WHERE member=? AND kind=?), "
          "(SELECT COUNT(*) FROM authored WHERE member=? AND kind=? AND created > ?)")
_OLDEST = ("SELECT created FROM authored WHERE member=? AND kind=? AND created > ? ORDER BY created "
           "LIMIT 1 OFFSET ?")
_AUTHORED = ("INSERT INTO authored VALUES (?, ?, ?, ?, ?)",
             "INSERT INTO authored_bytes VALUES (?, ?, ?) ON CONFLICT (member, kind) DO UPDATE "
             "SET bytes = bytes + excluded.bytes")


def _usage(row: Any) -> tuple[int, int]:
    return (int(row[0] or 0), int(row[1])) if row else (0, 0)


def _retry(first: Any, now: int) -> int:
    return max(1, int(first[0]) + DAY - now) if first else 1


async def usage_of(db: aiosqlite.Connection, member: str, kind: str, now: int, per_day: int) -> Usage:
    """What ``member`` stores and added in the last 24 hours (at most ``per_day`` rows of the index)."""
    rows = list(await db.execute_fetchall(  # one thread trip, not three (execute, fetch, close)
        _USAGE, (member, kind, member, kind, now - DAY)))
    stored, today = _usage(rows[0] if rows else None)
    retry = 0
    if today >= per_day:  # one more is allowed when the (today - per_day + 1)th oldest leaves the window
        async with db.execute(_OLDEST, (member, kind, now - DAY, today - per_day)) as cur:
            first = await cur.fetchone()
        retry = _retry(first, now)
    return Usage(stored, today, retry)


def usage_now(conn: sqlite3.Connection, member: str, kind: str, now: int, per_day: int) -> Usage:
    """``usage_of`` in the connection's own thread (``server/store/sqlite/inthread.py``): the same queries."""
    rows = conn.execute(_USAGE, (member, kind, member, kind, now - DAY)).fetchall()
    stored, today = _usage(rows[0] if rows else None)
    retry = 0
    if today >= per_day:
        first = conn.execute(_OLDEST, (member, kind, now - DAY, today - per_day)).fetchall()
        retry = _retry(first[0] if first else None, now)
    return Usage(stored, today, retry)


async def add_authored(db: aiosqlite.Connection, kind: str, ref: str, member: str, size: int, now: int) -> None:
    await db.execute(_AUTHORED[0], (kind, ref, member, size, now))
    await db.execute(_AUTHORED[1], (member, kind, size))


def add_authored_now(conn: sqlite3.Connection, kind: str, ref: str, member: str, size: int, now: int) -> None:
    """``add_authored`` in the connection's own thread."""
    conn.execute(_AUTHORED[0], (kind, ref, member, size, now))
    conn.execute(_AUTHORED[1], (member, kind, size))


def version_author(record: bytes) -> str:
    """The author a stored version counts against ("" for a record that does not parse: the server
    stores only verified records, so that is a test's or a tool's row, counted against nobody)."""
    try:
        return Record.parse(record).core.author
    except VaultError:
        return ""


def thread_creator(record: bytes) -> str:
    return ThreadRecord.parse(record).creator


def signed_of(versions: Iterable[bytes], threads: Iterable[bytes]) -> list[tuple[str, int]]:
    """The device and signed time of stored version records and thread records (``Storage.signed_since``)."""
    return ([(c.device, c.time) for c in (Record.parse(r).core for r in versions)]
            + [(t.device, t.time) for t in map(ThreadRecord.parse, threads)])


# The acts of a member stored since a time (``Storage.signed_since``), one query per kind, for either backend
# (``{member}``, ``{since}``: its placeholders): versions and threads by when they were stored, messages by their time.
SIGNED_SINCE = (
    "SELECT v.record FROM authored a JOIN versions v ON v.vid = a.ref "
    "WHERE a.member = {member} AND a.kind = 'version' AND a.created > {since}",
    "SELECT t.record FROM authored a JOIN threads t ON a.ref = t.team || '/' || t.thread "
    "WHERE a.member = {member} AND a.kind = 'thread' AND a.created > {since}",
)


async def open_slots_wait(db: aiosqlite.Connection, member: str, now: float, max_open: int) -> int | None:
    """Seconds until the member may open another device-link slot, or None if it may now."""
    async with db.execute("SELECT COUNT(*), MIN(expires) FROM link_slots WHERE member=? AND expires > ?",
                          (member, now)) as cur:
        row = await cur.fetchone()
    if row is not None and int(row[0]) >= max_open:
        return max(1, int(float(row[1]) - now) + 1)
    return None


async def prepare(db: aiosqlite.Connection) -> None:
    """Create the table and give every version and thread stored without a row its row."""
    await db.executescript(SCHEMA)
    rows: list[tuple[str, str, str, int, int]] = []
    async with db.execute("SELECT v.vid, v.record, v.body_len, v.created FROM versions v LEFT JOIN authored a "
                          "ON a.kind='version' AND a.ref=v.vid WHERE a.ref IS NULL") as cur:
        for r in await cur.fetchall():
            with contextlib.suppress(EncodingError):
                rows.append(("version", str(r[0]), version_author(bytes(r[1])), int(r[2]), int(r[3])))
    async with db.execute("SELECT t.team || '/' || t.thread, t.record, t.created FROM threads t LEFT JOIN authored a "
                          "ON a.kind='thread' AND a.ref=t.team || '/' || t.thread WHERE a.ref IS NULL") as cur:
        for r in await cur.fetchall():
            with contextlib.suppress(EncodingError):
                rows.append(("thread", str(r[0]), thread_creator(bytes(r[1])), 0, int(r[2])))
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.executemany("INSERT OR IGNORE INTO authored VALUES (?, ?, ?, ?, ?)", rows)
        await db.execute("DELETE FROM authored_bytes")
        await db.execute("INSERT INTO authored_bytes SELECT member, kind, SUM(bytes) FROM authored "
                         "GROUP BY member, kind")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
