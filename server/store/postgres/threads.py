"""Thread records and messages in PostgreSQL (``ThreadStore``), the base of ``PostgresStorage``."""

from __future__ import annotations

from typing import Any

import asyncpg

from server.store.notices import CHANNEL, MessagesStored, messages_stored, thread_stored
from server.store.positions import place
from server.store.postgres import usage as PU
from server.store.postgres.listen import notify, payloads
from server.store.postgres.schema import chain_heads, lock_chain
from server.store.records import (
    MessageOutcome,
    MessagePost,
    SignerHeads,
    StoredHead,
    StoredMessage,
    StoredThread,
    ThreadAdded,
    ThreadExists,
    ThreadOutcome,
    signer_moved,
)
from server.usage import Allowance, over_quota, thread_creator

# A batch's writes in one statement (one round trip instead of four): its messages, each sender's last message,
# each thread's next position and last time, and the notices (a data-modifying WITH runs once, read or not).
STORE_MESSAGES = """
WITH m AS (
    INSERT INTO messages (team, thread, pos, mid, device, seq, time, record)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                         $8::bytea[])),
s AS (
    INSERT INTO thread_senders (team, thread, device, seq, mid, time)
    SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::bigint[])
    ON CONFLICT (team, thread, device) DO UPDATE SET seq=excluded.seq, mid=excluded.mid, time=excluded.time),
t AS (
    UPDATE threads SET next_pos=greatest(threads.next_pos, u.next_pos), last_time=greatest(threads.last_time, u.time)
    FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[]) AS u (team, thread, next_pos, time)
    WHERE threads.team=u.team AND threads.thread=u.thread)
SELECT pg_notify($19, n) FROM unnest($20::text[]) AS n"""

# A thread's row locked and its senders read in one statement (one round trip less a batch; issue 19, session 19).
# The senders come from the statement's snapshot, taken before the lock was granted: they are the ones under the
# lock only if no transaction committed to the thread meanwhile. Every change of ``thread_senders`` commits with a
# larger ``next_pos`` (``STORE_MESSAGES``, under this lock), so the locked row's ``next_pos`` (the newest version,
# READ COMMITTED's recheck) equal to the snapshot's (``seen``, an uncorrelated subquery: the statement's snapshot)
# means those senders are current; else ``add_messages`` reads them again, under the lock.
LOCK_AND_SENDERS = """
SELECT t.next_pos, (SELECT next_pos FROM threads WHERE team=$1 AND thread=$2) AS seen,
       s.devices, s.seqs, s.mids
FROM threads t, (SELECT array_agg(device ORDER BY device) AS devices, array_agg(seq ORDER BY device) AS seqs,
                        array_agg(mid ORDER BY device) AS mids
                 FROM thread_senders WHERE team=$1 AND thread=$2) s
WHERE t.team=$1 AND t.thread=$2 FOR UPDATE OF t"""


def _columns(rows: list[StoredMessage]) -> list[list[Any]]:
    """``STORE_MESSAGES``'s arrays but the notices': the rows, each device's last row (an upsert may touch a row
    once), each thread's next position and newest time."""
    last: dict[tuple[str, str, str], StoredMessage] = {(m.team, m.thread, m.device): m for m in rows}
    heads: dict[tuple[str, str], tuple[int, int]] = {}
    for m in rows:
        pos, time = heads.get((m.team, m.thread), (0, 0))
        heads[(m.team, m.thread)] = (max(pos, m.pos + 1), max(time, m.time))
    columns: list[list[Any]] = [list(c) for c in zip(*[(m.team, m.thread, m.pos, m.mid, m.device, m.seq, m.time,
                                                         m.record) for m in rows], strict=True)]
    columns += [list(c) for c in zip(*[(m.team, m.thread, m.device, m.seq, m.mid, m.time) for m in last.values()],
                                     strict=True)]
    columns += [list(c) for c in zip(*[(t, h, p, time) for (t, h), (p, time) in heads.items()], strict=True)]
    return columns


def _placed(origin: str, rows: list[StoredMessage]) -> list[MessagesStored]:
    """The notices of a batch, thread by thread: the positions it placed there, with the records when they fit
    (``messages_stored``)."""
    placed: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
    for m in rows:
        placed.setdefault((m.team, m.thread), []).append((m.pos, m.record))
    return [n for (team, thread), p in placed.items() for n in messages_stored(origin, team, thread, sorted(p))]


def _thread(r: asyncpg.Record) -> StoredThread:
    return StoredThread(str(r[0]), str(r[1]), bytes(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))


class ThreadTables:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], origin: str, notice_key: bytes) -> None:
        self._pool = pool
        self.origin = origin  # names this process's notices (server/store/notices.py)
        self._notice_key = notice_key  # tags those that carry records

    async def add_thread(self, t: StoredThread, now: int, allowance: Allowance | None = None,
                         signer: SignerHeads | None = None) -> ThreadOutcome:
        """The thread record, unless one with its id is stored, within the creator's quota (``allowance``) and while
        the ``signer`` chains are at those lengths (under their locks, shared: an append to them waits)."""
        creator = allowance.member if allowance is not None else thread_creator(t.record)
        async with self._pool.acquire() as conn, conn.transaction():
            for chain in sorted(signer or ()):  # first: one order with the other transactions' (no deadlock)
                await lock_chain(conn, chain, shared=True)
            if signer and (gone := signer_moved(signer, await chain_heads(conn, signer))):
                return gone
            if allowance is not None:
                await PU.lock_member(conn, allowance.member)
                use = await PU.usage_of(conn, allowance.member, "thread", now, allowance.per_day)
                over = over_quota("thread", allowance, use, 0)
                if over is not None:
                    return over
            added = await conn.fetchval("INSERT INTO threads VALUES ($1, $2, $3, $4, $5, 1, $5) "
                                        "ON CONFLICT (team, thread) DO NOTHING RETURNING thread",
                                        t.team, t.thread, t.record, t.expire, now)
            if added is None:
                return ThreadExists()
            await PU.add_authored(conn, "thread", f"{t.team}/{t.thread}", creator, 0, now)
            await notify(conn, self.origin, [thread_stored(self.origin, t.team, t.thread, t.record)],
                         self._notice_key)
        return ThreadAdded()

    async def threads(self, team: str, now: int) -> list[StoredThread]:
        return [_thread(r) for r in await self._pool.fetch(
            "SELECT t.team, t.thread, t.record, t.expire, t.next_pos, t.last_time, "
            "(SELECT count(*) FROM messages m WHERE m.team=t.team AND m.thread=t.thread "
            " AND (t.expire = 0 OR m.time + t.expire > $1)) "
            "FROM threads t WHERE team=$2 ORDER BY created, thread", now, team)]

    async def thread(self, team: str, thread: str) -> StoredThread | None:
        row = await self._pool.fetchrow("SELECT team, thread, record, expire, next_pos, last_time, 0 FROM threads "
                                        "WHERE team=$1 AND thread=$2", team, thread)
        return None if row is None else _thread(row)

    async def thread_head(self, team: str, thread: str) -> StoredHead | None:
        """A thread's next position, its record, and each device's last message (None: no such thread)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow("SELECT next_pos, record FROM threads WHERE team=$1 AND thread=$2",
                                      team, thread)
            if row is None:
                return None
            senders = {str(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in await conn.fetch(
                "SELECT device, seq, mid, time FROM thread_senders WHERE team=$1 AND thread=$2", team, thread)}
        return StoredHead(int(row[0]), bytes(row[1]), senders)

    async def add_messages(self, posts: list[MessagePost]) -> list[MessageOutcome]:
        """Append messages in one transaction, each at its thread's next position as the database has it under
        the thread row's lock (``server/store/positions.py``): two processes never take one position."""
        async with self._pool.acquire() as conn, conn.transaction():
            chains = sorted({c for p in posts for c in p.signer or ()})  # the senders' (``SignerHeads``): first
            for chain in chains:
                await lock_chain(conn, chain, shared=True)
            next_pos: dict[tuple[str, str], int] = {}
            senders: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
            for key in sorted({(p.message.team, p.message.thread) for p in posts}):  # one lock order: no deadlock
                row = await conn.fetchrow(LOCK_AND_SENDERS, *key)
                if row is None:
                    raise RuntimeError(f"thread {key[1]} of team {key[0]} vanished from storage")
                next_pos[key] = int(row[0])
                if row[0] == row[1]:  # nothing committed to the thread between the snapshot and the lock
                    senders[key] = dict(zip(row[2] or [], zip(row[3] or [], row[4] or [], strict=True), strict=True))
                else:  # another transaction stored messages while this one waited: read them under the lock
                    senders[key] = {str(r[0]): (int(r[1]), str(r[2])) for r in await conn.fetch(
                        "SELECT device, seq, mid FROM thread_senders WHERE team=$1 AND thread=$2", *key)}
            rows, outcomes = place(posts, next_pos, senders, await chain_heads(conn, chains))
            if rows:
                notices = payloads(self.origin, _placed(self.origin, rows), self._notice_key)
                await conn.execute(STORE_MESSAGES, *_columns(rows), CHANNEL, notices)
        return outcomes

    async def messages(self, team: str, thread: str, after: int, limit: int, now: int) -> list[StoredMessage]:
        """Messages after position ``after`` that have not expired, oldest first."""
        return [StoredMessage(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), int(r[6]),
                              bytes(r[7])) for r in await self._pool.fetch(
            "SELECT m.team, m.thread, m.pos, m.mid, m.device, m.seq, m.time, m.record FROM messages m "
            "JOIN threads t ON t.team=m.team AND t.thread=m.thread "
            "WHERE m.team=$1 AND m.thread=$2 AND m.pos>$3 AND (t.expire = 0 OR m.time + t.expire > $4) "
            "ORDER BY m.pos LIMIT $5", team, thread, after, now, limit)]

    async def last_sent(self, team: str, thread: str, device: str) -> tuple[int, str, int] | None:
        row = await self._pool.fetchrow("SELECT seq, mid, time FROM thread_senders WHERE team=$1 AND thread=$2 "
                                        "AND device=$3", team, thread, device)
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    async def purge_messages(self, now: int) -> list[tuple[str, str, int]]:
        """Delete expired messages; (team, thread, count) for each thread that lost some."""
        rows = await self._pool.fetch(
            "WITH gone AS (DELETE FROM messages m USING threads t WHERE t.team=m.team AND t.thread=m.thread "
            "AND t.expire > 0 AND m.time + t.expire <= $1 RETURNING m.team, m.thread) "
            "SELECT team, thread, count(*) FROM gone GROUP BY team, thread ORDER BY team, thread", now)
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
