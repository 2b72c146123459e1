"""The embedded backend of ``server.store.protocols.Storage``: SQLite (aiosqlite, WAL) + blobs on disk.

The server stores only what clients sent it: signed chain links, sealed key boxes, signed document records and
ciphertext bodies. Blobs are named by the version id (a hash over the signed header, which covers the SHA-256 of the
body) and written with write, fsync, rename, fsync(dir), so an acknowledged write survives a crash. A blob is
referenced by the database only after it is in place; blobs nobody references (a crash between rename and commit)
and temporary files of interrupted uploads are removed at start-up by ``collect_garbage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from server import usage as U
from server.guard import LocalGuard
from server.store.blobs import BlobStore, FileBlobs
from server.store.commit import GroupCommitter, Refused
from server.store.local import LocalLogins, Nonces, SessionCache
from server.store.positions import place
from server.store.records import (
    AuthSession,
    ChainMoved,
    LinksAppended,
    LinksMoved,
    LinksOutcome,
    MessageOutcome,
    MessagePost,
    Rejudge,
    SignedCheck,
    SignerHeads,
    SlotFill,
    SlotMissing,
    SlotOpen,
    SlotRead,
    SlotsFull,
    StoredHead,
    StoredLink,
    StoredMessage,
    StoredThread,
    StoredVersion,
    ThreadAdded,
    ThreadExists,
    ThreadOutcome,
    VersionOutcome,
    signer_moved,
)
from server.store.shred import shred_sqlite
from server.store.space import rollback
from server.store.sqlite.inthread import InThread, Tx, chain_lengths, in_thread, insert_version, run_in_thread
from server.store.sqlite.schema import SCHEMA
from vault.errors import VaultError
from vault.links import link_hash

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Outcome = TypeVar("Outcome")  # what a store answers
T = TypeVar("T")


def _atomic(method: F) -> F:
    """One storage call at a time on the shared connection (no statement lands in another call's transaction)."""

    @functools.wraps(method)
    async def wrapper(self: SQLiteStorage, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class SQLiteStorage(LocalLogins):
    """The default backend: one SQLite file in WAL mode, explicit transactions (login nonces: in memory)."""

    def __init__(self, db: aiosqlite.Connection, data_dir: Path) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._nonces = Nonces()  # server/store/local.py: in memory, as one process serves an SQLite data directory
        self._writes: GroupCommitter[Callable[[], Awaitable[Any]], Any] = GroupCommitter(
            self._commit_writes, "the change")  # sessions and versions: see _group_commit
        self._sessions = SessionCache()
        self.data_dir = data_dir
        self.blobs: BlobStore = FileBlobs(data_dir)

    @property
    def committer(self) -> GroupCommitter[Callable[[], Awaitable[Any]], Any]:
        return self._writes

    def guard(self, rate: float, burst: int, max_sources: int) -> LocalGuard:
        """Request budgets and failed logins in memory: one process serves an SQLite data directory."""
        return LocalGuard(rate, burst, max_sources)

    @classmethod
    async def open(cls, data_dir: Path, collect: bool = True) -> SQLiteStorage:
        """``collect``: remove unreferenced blobs and interrupted uploads first (only where no other process serves)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(data_dir / "vault.db", isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.executescript(SCHEMA)
        store = cls(db, data_dir)
        if collect:
            await store.collect_garbage()
        await U.prepare(db)
        return store

    async def close(self) -> None:
        await self._writes.close()
        await self._db.close()

    # -- blobs ----------------------------------------------------------------------------

    async def collect_garbage(self) -> None:
        self.blobs.collect({row[0] for row in await self._db.execute_fetchall("SELECT blob FROM versions")})

    # -- meta -------------------------------------------------------------------------------

    @_atomic
    async def get_meta(self, key: str) -> bytes | None:
        rows = list(await self._db.execute_fetchall("SELECT value FROM meta WHERE key=?", (key,)))
        return bytes(rows[0][0]) if rows else None

    @_atomic
    async def set_meta(self, key: str, value: bytes) -> None:
        await self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @_atomic
    async def claim_meta(self, key: str, value: bytes) -> bool:
        async with self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value)) as cur:
            return cur.rowcount == 1

    # -- chains and boxes -------------------------------------------------------------------

    @_atomic
    async def all_links(self) -> list[StoredLink]:
        async with self._db.execute("SELECT chain, seq, kind, wire FROM links ORDER BY rowid") as cur:
            rows = await cur.fetchall()
        return [StoredLink(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    @contextlib.asynccontextmanager
    async def chains_held(self, chains: Sequence[str]) -> AsyncIterator[None]:
        """Nothing to hold: this process stores every link itself, under the application's chain lock."""
        yield

    @_atomic
    async def links_after(self, after: int) -> list[tuple[int, StoredLink]]:
        """The links stored after order number ``after`` (the rowid), each with its own, in the order stored."""
        return await self._links_after(after)

    async def _links_after(self, after: int) -> list[tuple[int, StoredLink]]:
        async with self._db.execute("SELECT rowid, chain, seq, kind, wire FROM links WHERE rowid > ? ORDER BY rowid",
                                    (after,)) as cur:
            rows = await cur.fetchall()
        return [(int(r[0]), StoredLink(r[1], r[2], r[3], bytes(r[4]))) for r in rows]

    async def _refusable(self, write: Callable[[], Awaitable[Outcome]], done: Outcome, conflict: Outcome) -> Outcome:
        """``write`` in one transaction, committed only if it answers ``done``; any other answer (a refusal
        it found) rolls it back, and so does a row that is there already (the ``conflict`` outcome)."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            outcome = await write()
            await self._db.execute("COMMIT" if outcome == done else "ROLLBACK")
        except sqlite3.IntegrityError:
            await self._db.execute("ROLLBACK")
            return conflict
        except BaseException:
            await rollback(self._db)
            raise
        return outcome

    @_atomic
    async def append_links(self, links: Iterable[StoredLink], puk_boxes: Iterable[tuple[str, int, str, bytes]],
                           team_boxes: Iterable[tuple[str, int, str, bytes]],
                           signed: SignedCheck | None = None, seen: int | None = None,
                           again: Rejudge | None = None) -> LinksOutcome:
        """The links and their key boxes in one transaction, with a note of each link in ``unlogged_links``
        until its audit event is recorded (``server/recorder.py``), so that a crash between the two leaves no
        link without its event; ``signed``: judged first, in the transaction (records.py); ``seen``, ``again``: as
        PostgreSQL's (the routes pass none here: this process stores every link itself, under ``LOCK``; ``again`` runs
        under this store's lock and must not call it)."""
        links = list(links)

        async def write() -> LinksOutcome:
            nonlocal signed
            if seen is not None:
                since = await self._links_after(seen)  # links_after takes the store's lock: held here
                if since:
                    if again is None:
                        return LinksMoved()
                    signed = await again(since)
            if signed is not None:
                signed.judge(await self._signed_since(signed.member, signed.devices, signed.since))
            for link in links:
                await self._db.execute(
                    "INSERT INTO links (chain, seq, kind, wire, time) VALUES (?, ?, ?, ?, strftime('%s','now'))",
                    (link.chain, link.seq, link.kind, link.wire),
                )
            await self._db.executemany("INSERT INTO puk_boxes VALUES (?, ?, ?, ?)", list(puk_boxes))
            await self._db.executemany("INSERT INTO team_boxes VALUES (?, ?, ?, ?)", list(team_boxes))
            await self._db.executemany("INSERT OR REPLACE INTO unlogged_links VALUES (?, ?, ?)",
                                       [(link_hash(link.wire), link.chain, link.seq) for link in links])
            return LinksAppended()

        return await self._refusable(write, LinksAppended(), ChainMoved())

    @_atomic
    async def unlogged_links(self) -> list[tuple[bytes, int]]:
        """The links stored whose audit events were not yet recorded (a crash came between): (wire, time
        the server stored it), in the order they were stored."""
        async with self._db.execute("SELECT l.wire, l.time FROM unlogged_links u JOIN links l "
                                    "ON l.chain=u.chain AND l.seq=u.seq ORDER BY l.rowid") as cur:
            return [(bytes(r[0]), int(r[1])) for r in await cur.fetchall()]

    @_atomic
    async def links_logged(self, hashes: list[bytes]) -> None:
        """The audit events of these links are recorded: forget them (``unlogged_links``)."""
        await self._db.executemany("DELETE FROM unlogged_links WHERE hash=?", [(h,) for h in hashes])

    @_atomic
    async def team_boxes_for(self, team: str, member: str) -> list[tuple[int, bytes]]:
        return await self._boxes("SELECT gen, box FROM team_boxes WHERE team=? AND member=? ORDER BY gen", team, member)

    @_atomic
    async def puk_boxes_for(self, member: str, device: str) -> list[tuple[int, bytes]]:
        return await self._boxes("SELECT puk_gen, box FROM puk_boxes WHERE member=? AND device=? ORDER BY puk_gen",
                                 member, device)

    async def _boxes(self, query: str, *args: str) -> list[tuple[int, bytes]]:
        """Key boxes with their generation, oldest first."""
        async with self._db.execute(query, args) as cur:
            return [(int(r[0]), bytes(r[1])) for r in await cur.fetchall()]

    # -- documents --------------------------------------------------------------------------

    async def add_version(self, v: StoredVersion, parent: str | None, now: int, team_seq: int | None = None,
                          allowance: U.Allowance | None = None, signer: SignerHeads | None = None) -> VersionOutcome:
        """Insert a version only on top of the current head, and (with ``team_seq``) only while the team chain is
        still at that link: checked inside the transaction, so a removal and rotation stored while the upload waited
        cannot let in a version under the old key (``TeamMoved`` otherwise); with ``allowance``, only within the
        author's quotas; with ``signer``, only while those chains are at those lengths (``SignerMoved``). Concurrent
        uploads share one transaction."""
        return await self._group_commit(insert_version(v, parent, now, team_seq, allowance, signer))

    @_atomic
    async def usage(self, member: str, kind: str, now: int, per_day: int) -> U.Usage:
        return await U.usage_of(self._db, member, kind, now, per_day)

    def _version(self, r: Any) -> StoredVersion:
        return StoredVersion(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bytes(r[4]), str(r[5]), int(r[6]))

    _COLS = "vid, team, doc, seq, record, blob, body_len"

    @_atomic
    async def versions(self, team: str, doc: str) -> list[StoredVersion]:
        async with self._db.execute(
            f"SELECT {self._COLS} FROM versions WHERE team=? AND doc=? ORDER BY seq", (team, doc)
        ) as cur:
            return [self._version(r) for r in await cur.fetchall()]

    @_atomic
    async def heads(self, team: str) -> list[StoredVersion]:
        async with self._db.execute(
            f"SELECT {self._COLS} FROM versions v WHERE team=? AND seq = "
            "(SELECT MAX(seq) FROM versions w WHERE w.team=v.team AND w.doc=v.doc) ORDER BY doc",
            (team,),
        ) as cur:
            return [self._version(r) for r in await cur.fetchall()]

    @_atomic
    async def team_versions(self, team: str) -> list[StoredVersion]:
        async with self._db.execute(f"SELECT {self._COLS} FROM versions WHERE team=? ORDER BY created, doc, seq",
                                    (team,)) as cur:
            return [self._version(r) for r in await cur.fetchall()]

    @_atomic
    async def version(self, team: str, vid: str) -> StoredVersion | None:
        async with self._db.execute(f"SELECT {self._COLS} FROM versions WHERE team=? AND vid=?", (team, vid)) as cur:
            row = await cur.fetchone()
        return None if row is None else self._version(row)

    @_atomic
    async def versions_by_id(self, team: str, vids: Sequence[str]) -> dict[str, StoredVersion]:
        """The versions of ``team`` among ``vids`` (one query; an unknown id is left out)."""
        wanted = sorted(set(vids))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        async with self._db.execute(f"SELECT {self._COLS} FROM versions WHERE team=? AND vid IN ({marks})",
                                    (team, *wanted)) as cur:
            return {v.vid: v for v in map(self._version, await cur.fetchall())}

    async def _heads(self, chains: Iterable[str]) -> dict[str, int]:
        """Each chain's length as stored (absent: no link), in the caller's transaction (``SignerHeads``)."""
        return await in_thread(self._db, chain_lengths, list(chains))

    chain_heads = _atomic(_heads)  # for the audit store's cosignatures (``ChainLengths``)

    async def _signed_since(self, member: str, devices: Sequence[str], since: int) -> list[tuple[str, int]]:
        """``member``'s versions and threads stored, and messages of ``devices`` dated, after ``since``: (device, signed
        time) each (``Directory.learn_signed``; ``signed_since``: under the lock)."""
        records: list[list[bytes]] = []
        for sql in U.SIGNED_SINCE:
            async with self._db.execute(sql.format(member="?", since="?"), (member, since)) as cur:
                records.append([bytes(r[0]) for r in await cur.fetchall()])
        marks = ", ".join("?" * len(devices))
        async with self._db.execute(f"SELECT device, max(time) FROM messages WHERE device IN ({marks}) AND time > ? "
                                    "GROUP BY device", (*devices, since)) as cur:
            sent = [(str(r[0]), int(r[1])) for r in await cur.fetchall()]
        return U.signed_of(*records) + sent

    signed_since = _atomic(_signed_since)

    # -- login ------------------------------------------------------------------------------

    async def add_session(self, token: bytes, member: str, device: str, expires: float) -> None:
        """Durable before it returns; concurrent logins share one transaction (one fsync)."""
        await self._group_commit(functools.partial(self._db.execute, "INSERT INTO sessions VALUES (?, ?, ?, ?)",
                                                   (token, member, device, expires)))

    async def _group_commit(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run one write in the next shared transaction (``server.store.commit``); its result once committed."""
        return cast(T, await self._writes.submit(write))

    @_atomic
    async def _commit_writes(self, writes: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """One BEGIN .. COMMIT for a batch of writes (one fsync). Each runs in its own savepoint: one that
        refuses (a ``VaultError`` or a constraint) is rolled back alone and fails alone. ``tx``: inside this
        transaction (no other writer until it ends), each team's chain length and each author's usage, read by its
        first version and carried forward by the next (``inthread.insert_version``)."""
        outcomes: list[Any] = []
        tx: Tx = {}
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            for i, write in enumerate(writes):
                if isinstance(write, InThread):  # it and the InThread writes after it: one trip (inthread.py)
                    if i == 0 or not isinstance(writes[i - 1], InThread):
                        run = list(itertools.takewhile(lambda w: isinstance(w, InThread), writes[i:]))
                        outcomes += await run_in_thread(self._db, tx, cast(list[InThread], run))
                    continue
                await self._db.execute("SAVEPOINT write")
                try:
                    outcomes.append(await write())
                except (VaultError, sqlite3.IntegrityError) as e:
                    await self._db.execute("ROLLBACK TO write")
                    outcomes.append(Refused(e))
                await self._db.execute("RELEASE write")
            await self._db.execute("COMMIT")
        except BaseException:
            await rollback(self._db)  # SQLite may have rolled back already (a full disk)
            raise
        return outcomes

    @_atomic
    async def session(self, token: bytes) -> AuthSession | None:
        """A session by its token hash (found ones are kept in memory: one query fewer per request)."""
        cached = self._sessions.get(token)
        if cached is not None:
            return cached
        async with self._db.execute("SELECT member, device, expires FROM sessions WHERE token=?", (token,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return self._sessions.keep(token, AuthSession(str(row[0]), str(row[1]), float(row[2])))

    # -- device-link mailbox ---------------------------------------------------------------

    @_atomic
    async def open_slot(self, slot: str, member: str, expires: float, now: float = 0,
                        max_open: int = 0) -> SlotOpen | SlotsFull:
        if max_open:
            wait = await U.open_slots_wait(self._db, member, now, max_open)
            if wait is not None:
                return SlotsFull(max_open, wait)
        try:
            await self._db.execute("INSERT INTO link_slots VALUES (?, ?, ?, NULL)", (slot, member, expires))
        except sqlite3.IntegrityError:
            return SlotOpen.IN_USE
        return SlotOpen.OPENED

    @_atomic
    async def fill_slot(self, slot: str, payload: bytes, now: float) -> SlotFill:
        """Deliver a new device's keys once; unknown, expired or filled slots are refused."""
        async with self._db.execute(
            "UPDATE link_slots SET payload=? WHERE slot=? AND payload IS NULL AND expires > ? RETURNING slot",
            (payload, slot, now),
        ) as cur:
            row = await cur.fetchone()
        return SlotFill.UNAVAILABLE if row is None else SlotFill.FILLED

    @_atomic
    async def read_slot(self, slot: str, member: str, now: float) -> SlotRead | SlotMissing:
        async with self._db.execute(
            "SELECT payload FROM link_slots WHERE slot=? AND member=? AND expires > ?", (slot, member, now)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return SlotMissing.UNKNOWN
        if row[0] is not None:
            await self._db.execute("DELETE FROM link_slots WHERE slot=?", (slot,))
        return SlotRead(None if row[0] is None else bytes(row[0]))

    # -- threads ----------------------------------------------------------------------------

    @_atomic
    async def add_thread(self, t: StoredThread, now: int, allowance: U.Allowance | None = None,
                         signer: SignerHeads | None = None) -> ThreadOutcome:
        creator = allowance.member if allowance is not None else U.thread_creator(t.record)

        async def write() -> ThreadOutcome:
            if signer and (gone := signer_moved(signer, await self._heads(signer))):
                return gone
            if allowance is not None:
                over = U.over_quota("thread", allowance, await U.usage_of(self._db, allowance.member, "thread", now,
                                                                           allowance.per_day), 0)
                if over is not None:
                    return over
            await self._db.execute("INSERT INTO threads VALUES (?, ?, ?, ?, ?, 1, ?)",
                                   (t.team, t.thread, t.record, t.expire, now, now))
            await U.add_authored(self._db, "thread", f"{t.team}/{t.thread}", creator, 0, now)
            return ThreadAdded()

        return await self._refusable(write, ThreadAdded(), ThreadExists())

    def _thread(self, r: Any) -> StoredThread:
        return StoredThread(str(r[0]), str(r[1]), bytes(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))

    @_atomic
    async def threads(self, team: str, now: int) -> list[StoredThread]:
        async with self._db.execute(
            "SELECT t.team, t.thread, t.record, t.expire, t.next_pos, t.last_time, "
            "(SELECT COUNT(*) FROM messages m WHERE m.team=t.team AND m.thread=t.thread "
            " AND (t.expire = 0 OR m.time + t.expire > ?)) "
            "FROM threads t WHERE team=? ORDER BY created, thread", (now, team)
        ) as cur:
            return [self._thread(r) for r in await cur.fetchall()]

    @_atomic
    async def thread(self, team: str, thread: str) -> StoredThread | None:
        async with self._db.execute(
            "SELECT team, thread, record, expire, next_pos, last_time, 0 FROM threads WHERE team=? AND thread=?",
            (team, thread),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else self._thread(row)

    @_atomic
    async def thread_head(self, team: str, thread: str) -> StoredHead | None:
        """A thread's next position, its record, and each device's last message (None: no such thread)."""
        async with self._db.execute("SELECT next_pos, record FROM threads WHERE team=? AND thread=?",
                                    (team, thread)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        async with self._db.execute("SELECT device, seq, mid, time FROM thread_senders WHERE team=? AND thread=?",
                                    (team, thread)) as cur:
            senders = {str(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in await cur.fetchall()}
        return StoredHead(int(row[0]), bytes(row[1]), senders)

    @_atomic
    async def add_messages(self, posts: list[MessagePost]) -> list[MessageOutcome]:
        """Append messages, each at its thread's next position as stored (``server/store/positions.py``): one
        transaction (and one fsync) for many concurrent posts."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            next_pos: dict[tuple[str, str], int] = {}
            senders: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
            devices: dict[tuple[str, str], set[str]] = {}
            for p in posts:
                devices.setdefault((p.message.team, p.message.thread), set()).add(p.message.device)
            for key, posting in devices.items():  # one query per thread: its next position, its posters' last
                async with self._db.execute(
                        "SELECT t.next_pos, s.device, s.seq, s.mid FROM threads t LEFT JOIN thread_senders s "
                        f"ON s.team=t.team AND s.thread=t.thread AND s.device IN ({', '.join('?' * len(posting))}) "
                        "WHERE t.team=? AND t.thread=?", (*posting, *key)) as cur:
                    found = list(await cur.fetchall())
                if not found:
                    raise RuntimeError(f"thread {key[1]} of team {key[0]} vanished from storage")
                next_pos[key] = int(found[0][0])
                senders[key] = {str(r[1]): (int(r[2]), str(r[3])) for r in found if r[1] is not None}
            heads = await self._heads(c for p in posts for c in p.signer or ())  # the senders' (``SignerHeads``)
            rows, outcomes = place(posts, next_pos, senders, heads)
            await self._db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       [(m.team, m.thread, m.pos, m.mid, m.device, m.seq, m.time, m.record)
                                        for m in rows])
            await self._db.executemany("INSERT OR REPLACE INTO thread_senders VALUES (?, ?, ?, ?, ?, ?)",
                                       [(m.team, m.thread, m.device, m.seq, m.mid, m.time) for m in rows])
            await self._db.executemany("UPDATE threads SET next_pos=MAX(next_pos, ?), last_time=MAX(last_time, ?) "
                                       "WHERE team=? AND thread=?",
                                       [(m.pos + 1, m.time, m.team, m.thread) for m in rows])
            await self._db.execute("COMMIT")
        except BaseException:
            await rollback(self._db)
            raise
        return outcomes

    @_atomic
    async def messages(self, team: str, thread: str, after: int, limit: int, now: int) -> list[StoredMessage]:
        """Messages after position ``after`` that have not expired, oldest first."""
        async with self._db.execute(
            "SELECT m.team, m.thread, m.pos, m.mid, m.device, m.seq, m.time, m.record FROM messages m "
            "JOIN threads t ON t.team=m.team AND t.thread=m.thread "
            "WHERE m.team=? AND m.thread=? AND m.pos>? AND (t.expire = 0 OR m.time + t.expire > ?) "
            "ORDER BY m.pos LIMIT ?", (team, thread, after, now, limit)
        ) as cur:
            return [StoredMessage(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), int(r[6]),
                                  bytes(r[7])) for r in await cur.fetchall()]

    @_atomic
    async def last_sent(self, team: str, thread: str, device: str) -> tuple[int, str, int] | None:
        async with self._db.execute("SELECT seq, mid, time FROM thread_senders WHERE team=? AND thread=? AND "
                                    "device=?", (team, thread, device)) as cur:
            row = await cur.fetchone()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    @_atomic
    async def purge_messages(self, now: int) -> list[tuple[str, str, int]]:
        """Delete expired messages; (team, thread, count) for each thread that lost some."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            async with self._db.execute(
                "SELECT m.team, m.thread, COUNT(*) FROM messages m JOIN threads t ON t.team=m.team AND "
                "t.thread=m.thread WHERE t.expire > 0 AND m.time + t.expire <= ? GROUP BY m.team, m.thread",
                (now,)
            ) as cur:
                gone = [(str(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]
            await self._db.execute(
                "DELETE FROM messages WHERE rowid IN (SELECT m.rowid FROM messages m JOIN threads t ON "
                "t.team=m.team AND t.thread=m.thread WHERE t.expire > 0 AND m.time + t.expire <= ?)", (now,))
            await self._db.execute("COMMIT")
        except BaseException:
            await rollback(self._db)
            raise
        return gone

    @_atomic
    async def shred_closed(self) -> int:
        """The organization closed (``org.closed``): delete every blob, key box, document version, thread,
        message, session, device-link slot and team chain, in one transaction; the organization and member
        chains stay (what a member's client verifies the closing against). How many rows went."""
        gone = await shred_sqlite(self._db)
        self._sessions.purge(float("inf"))
        self.blobs.collect(set())
        return gone

    @_atomic
    async def purge_expired(self, now: float) -> None:
        await self._db.execute("DELETE FROM link_slots WHERE expires < ?", (now,))
        self._nonces.purge(now)
        await self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
        self._sessions.purge(now)
