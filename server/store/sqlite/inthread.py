"""Writes of the SQLite group commit that run whole in the connection's own thread (issue 16's first sync).

aiosqlite runs every statement in one thread per connection: each ``await db.execute`` is a trip there and back
(a queue put, a wake-up, the answer handed back to the event loop). A version written statement by statement made
six (its savepoint, the head query, the row, two usage rows, the release): ~0.24 ms of server CPU a version, for
SQLite work of a few microseconds. ``InThread`` marks a write that is one plain function of the ``sqlite3``
connection; ``run_in_thread`` runs a group's consecutive such writes, each in its own savepoint exactly as
``SQLiteStorage._commit_writes`` runs the others, in one trip (docs/performance.md, "Issue 16, session 20").

The connection's thread is reached through aiosqlite's ``Connection._execute`` and ``_conn`` (private: the version is
pinned in pyproject.toml, and tests/test_sqlite_in_thread.py fails if either goes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiosqlite

from server import usage as U
from server.store.commit import Refused
from server.store.records import (
    SignerHeads,
    StoredVersion,
    TeamMoved,
    VersionAdded,
    VersionOutcome,
    moved_head,
    signer_moved,
)
from vault.errors import VaultError

T = TypeVar("T")
Tx = dict[tuple[str, ...], Any]  # what one transaction carries from write to write (``SQLiteStorage._tx``)


@dataclass(frozen=True)
class InThread:
    """A write run in the connection's thread: ``run(connection, tx)`` returns its outcome or raises (a
    ``VaultError`` or a constraint: this write alone is rolled back and refused)."""

    run: Callable[[sqlite3.Connection, Tx], Any]

    async def __call__(self) -> Any:  # the committer's writes are callables; this one is never awaited alone
        raise TypeError("an InThread write runs through run_in_thread")


def _each(conn: sqlite3.Connection, tx: Tx, writes: Sequence[InThread]) -> list[Any]:
    outcomes: list[Any] = []
    for write in writes:
        conn.execute("SAVEPOINT write")
        try:
            outcomes.append(write.run(conn, tx))
        except (VaultError, sqlite3.IntegrityError) as e:
            conn.execute("ROLLBACK TO write")
            outcomes.append(Refused(e))
        conn.execute("RELEASE write")
    return outcomes


async def in_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(connection, *args)`` in the connection's thread, in the caller's transaction: one trip."""
    execute = cast(Callable[..., Awaitable[T]], db._execute)  # untyped in aiosqlite
    return await execute(fn, db._conn, *args)


async def run_in_thread(db: aiosqlite.Connection, tx: Tx, writes: Sequence[InThread]) -> list[Any]:
    """``writes``, in order, inside the transaction the caller began: one trip to the connection's thread."""
    return await in_thread(db, _each, tx, writes)


def chain_lengths(conn: sqlite3.Connection, chains: Iterable[str]) -> dict[str, int]:
    """Each chain's length as stored (absent: no link), in the caller's transaction (``SignerHeads``)."""
    wanted = sorted(set(chains))
    if not wanted:
        return {}
    rows = conn.execute(f"SELECT chain, max(seq) FROM links WHERE chain IN ({', '.join('?' * len(wanted))}) "
                        "GROUP BY chain", tuple(wanted)).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def insert_version(v: StoredVersion, parent: str | None, now: int, team_seq: int | None,
                   allowance: U.Allowance | None, signer: SignerHeads | None = None) -> InThread:
    """The write of ``SQLiteStorage.add_version``: (with ``signer``) only while the signer's member chain and the
    organization chain are at the lengths the route judged them at (``SignerMoved``: a revocation stored meanwhile,
    review 24), only on top of the current head, (with ``team_seq``) only while
    the team chain is at that link, (with ``allowance``) only within the author's quotas; a refusal writes nothing.
    The team's chain length and the author's usage are read once per transaction (``tx``): later versions of the
    group carry them forward."""

    def run(conn: sqlite3.Connection, tx: Tx) -> VersionOutcome:
        if signer and (gone := signer_moved(signer, chain_lengths(conn, signer))):
            return gone
        if team_seq is not None:
            if ("links", v.team) not in tx:
                rows = conn.execute("SELECT max(seq) FROM links WHERE chain=?", (v.team,)).fetchall()
                tx["links", v.team] = rows[0][0] if rows else None
            if tx["links", v.team] != team_seq:
                return TeamMoved(int(tx["links", v.team] or 0))
        heads = conn.execute("SELECT vid, seq FROM versions WHERE team=? AND doc=? ORDER BY seq DESC LIMIT 1",
                             (v.team, v.doc)).fetchall()
        head_vid, head_seq = (heads[0][0], heads[0][1]) if heads else (None, 0)
        moved = moved_head(parent, v.seq, head_vid, head_seq)
        if moved is not None:
            return moved
        use, usage = None, ("usage", allowance.member, str(now), str(allowance.per_day)) if allowance else ()
        if allowance is not None:  # after the other checks: rows written by earlier writes of the batch count
            use = tx.get(usage) or U.usage_now(conn, allowance.member, "version", now, allowance.per_day)
            over = U.over_quota("version", allowance, use, v.body_len)
            if over is not None:
                return over
        author = allowance.member if allowance is not None else U.version_author(v.record)
        conn.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (v.vid, v.team, v.doc, v.seq, v.record, v.blob, v.body_len, now))
        U.add_authored_now(conn, "version", v.vid, author, v.body_len, now)
        if allowance is not None and use is not None and use.today + 1 < allowance.per_day:
            tx[usage] = U.Usage(use.stored_bytes + v.body_len, use.today + 1, 0)  # what usage_of would read now
        else:
            tx.pop(usage, None)  # at the daily quota: the next one reads it (and when a row leaves the window)
        return VersionAdded()

    return InThread(run)
