"""The PostgreSQL backend of ``server.store.protocols.Storage`` (asyncpg) + blobs on disk (``server/store/blobs.py``).

The same semantics as the SQLite backend (``server/store/sqlite/vault.py``), with the serialization that
SQLite gets from its single writer made explicit, so that several server processes may share the database:

- chain appends: the expected head (a batch's first link of a chain follows the stored last one) and the
  primary key (chain, seq) are checked in the transaction; a lost race is ``ChainMoved``, never two links at
  one position. A chain's appends take its advisory lock, which a version upload takes shared: a removal
  and rotation cannot be stored between an upload's check of the team chain and its commit;
- a document's versions: its advisory lock, then the head check; (team, doc, seq) is unique as well;
- quotas: the member's advisory lock before counting (``server/store/postgres/usage.py``);
- thread messages: each one's position is assigned from the thread's ``next_pos``, and its sender's sequence
  checked, under the thread row's lock (``FOR UPDATE``), in the transaction that stores it.

Every method is one transaction on a connection of the pool. Blobs are named by version id and written
before the row that references them; unreferenced ones are collected at start (``collect_garbage``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server.store.blobs import BlobStore, FileBlobs
from server.store.commit import GroupCommitter
from server.store.local import SessionCache
from server.store.logkey import log_seed
from server.store.notices import VersionStored, links_stored
from server.store.postgres import usage as PU
from server.store.postgres.guard import PostgresGuard
from server.store.postgres.listen import Listener, notify
from server.store.postgres.schema import LINKS_LOCK, Conn, chain_heads, connect, lock_chain, lost_is_unavailable
from server.store.postgres.threads import ThreadTables
from server.store.records import (
    AuthSession,
    ChainMoved,
    LinksAppended,
    LinksMoved,
    LinksOutcome,
    Rejudge,
    SignedCheck,
    SignerHeads,
    SlotFill,
    SlotMissing,
    SlotOpen,
    SlotRead,
    SlotsFull,
    StoredLink,
    StoredVersion,
    TakenNonce,
    TeamMoved,
    VersionAdded,
    VersionOutcome,
    moved_head,
    signer_moved,
)
from server.store.shred import SHRED, VACUUM_PG
from server.usage import SIGNED_SINCE, Allowance, Usage, over_quota, signed_of, version_author
from vault.links import link_hash
from vault.logsign import notice_key, source_tag_key

_COLS = "vid, team, doc, seq, record, blob, body_len"


def _version(r: asyncpg.Record) -> StoredVersion:
    return StoredVersion(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bytes(r[4]), str(r[5]), int(r[6]))


@lost_is_unavailable
class PostgresStorage(ThreadTables):
    """Chains, boxes, documents, login and slots in PostgreSQL (threads: ``ThreadTables``)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], data_dir: Path, url: str = "") -> None:
        seed = log_seed(data_dir / "log.key")
        super().__init__(pool, secrets.token_hex(8), notice_key(seed))
        self.data_dir = data_dir
        self.url = url
        self.blobs: BlobStore = FileBlobs(data_dir)
        # Sessions are never changed once stored, only expired (a revoked device or removed member is refused
        # from the chains, ``server/access.py``): one found is still right on every process until its expiry.
        self._sessions = SessionCache()
        self._tag_key = source_tag_key(seed)
        self._versions: GroupCommitter[_VersionWrite, VersionOutcome] = GroupCommitter(
            self._store_versions, "the document version")

    def guard(self, rate: float, burst: int, max_sources: int) -> PostgresGuard:
        """Request budgets and failed logins in the database (``max_sources``: rows expire instead)."""
        return PostgresGuard(self._pool, self._tag_key, rate, burst, self.origin)

    @classmethod
    async def open(cls, url: str, data_dir: Path, collect: bool = True) -> PostgresStorage:
        """``collect``: remove unreferenced blobs first (only where no other process is serving)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        pool = await connect(url)
        store = cls(pool, data_dir, url)
        try:
            if collect:
                await store.collect_garbage()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._versions.close()
        await self._pool.close()

    def listener(self) -> Listener:
        """What the other processes on this database store, as they commit it (``server/relay.py``)."""
        return Listener(self.url, self.origin, self._notice_key)

    async def collect_garbage(self) -> None:
        """Remove blobs no version references (with several processes: only at a start, before serving, as
        an upload's blob waits in ``tmp/`` until its row is about to be written)."""
        self.blobs.collect({str(r[0]) for r in await self._pool.fetch("SELECT blob FROM versions")})

    # -- meta -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        value = await self._pool.fetchval("SELECT value FROM meta WHERE key=$1", key)
        return None if value is None else bytes(value)

    async def set_meta(self, key: str, value: bytes) -> None:
        await self._pool.execute("INSERT INTO meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value=$2",
                                 key, value)

    async def claim_meta(self, key: str, value: bytes) -> bool:
        """One row per key (the primary key): a second claim, from whichever process, inserts nothing."""
        return await self._pool.fetchval("INSERT INTO meta VALUES ($1, $2) ON CONFLICT (key) DO NOTHING "
                                         "RETURNING true", key, value) is not None

    # -- chains and boxes -------------------------------------------------------------------

    async def all_links(self) -> list[StoredLink]:
        rows = await self._pool.fetch("SELECT chain, seq, kind, wire FROM links ORDER BY id")
        return [StoredLink(str(r[0]), int(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    @contextlib.asynccontextmanager
    async def chains_held(self, chains: Sequence[str]) -> AsyncIterator[None]:
        """No link appended to ``chains`` by any process while this is held: their locks taken shared, in
        ``append_links``'s order (no deadlock), in a transaction of its own until the block ends; a link append
        that holds one already is waited for, so every link stored before this returns is read by a catch-up."""
        async with self._pool.acquire() as conn, conn.transaction():
            for chain in sorted(set(chains)):
                await lock_chain(conn, chain, shared=True)
            yield

    async def links_after(self, after: int) -> list[tuple[int, StoredLink]]:
        """The links stored after order number ``after`` (``links.id``), each with its own, in the order stored:
        how a server process learns the links another one stored (``server/directory.py`` ``catch_up``)."""
        async with self._pool.acquire() as conn:
            return await _links_after(conn, after)

    async def append_links(self, links: Iterable[StoredLink], puk_boxes: Iterable[tuple[str, int, str, bytes]],
                           team_boxes: Iterable[tuple[str, int, str, bytes]],
                           signed: SignedCheck | None = None, seen: int | None = None,
                           again: Rejudge | None = None) -> LinksOutcome:
        """The links and their key boxes in one transaction, with a note of each link in ``unlogged_links``
        until its audit event is recorded (``server/recorder.py``); ``signed``: judged under the chains' locks, which
        a version's transaction holds shared (``_store_versions``): it sees every version stored before; ``seen``: the
        order number the route caught up to (``Directory.seen``): a link stored since (by another process) is given to
        ``again`` (the route judges again; none: ``LinksMoved``), under ``LINKS_LOCK`` and before the chains' locks:
        every link append is judged on every link stored before it (review 26, finding 2), and while it is judged
        again it holds no lock a version, thread or message waits for (their connections stay free for its reads)."""
        links = list(links)
        first: dict[str, int] = {}
        for link in links:
            first.setdefault(link.chain, link.seq)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # one append of links at a time in the whole database: ``links.id`` then grows in commit order, so
                # a process that has read the links up to an id has missed none below it (``links_after``)
                await conn.execute("SELECT pg_advisory_xact_lock($1)", LINKS_LOCK)
                after = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM links"))  # the newest's number
                if seen is not None and after > seen:
                    if again is None:
                        return LinksMoved()  # nothing written yet: the route catches up and judges again
                    signed = await again(await _links_after(conn, seen))  # raises (rolled back) to refuse
                for chain in sorted(first):  # one order for every process: no deadlock between two appends
                    await lock_chain(conn, chain)
                    head = await conn.fetchval("SELECT max(seq) FROM links WHERE chain=$1", chain)
                    if head is not None and first[chain] != head + 1:
                        return ChainMoved()  # nothing written yet
                if signed is not None:
                    signed.judge(await _signed_since(conn, signed.member, signed.devices, signed.since))
                orders = {(str(r[1]), int(r[2])): int(r[0]) for r in await conn.fetch(
                    "INSERT INTO links (chain, seq, kind, wire, time) "
                    "SELECT c, s, k, w, extract(epoch FROM now())::bigint "
                    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[]) "
                    "WITH ORDINALITY AS x(c, s, k, w, o) "
                    "ORDER BY o RETURNING id, chain, seq",  # ids in the order given, as the links are replayed
                    [x.chain for x in links], [x.seq for x in links], [x.kind for x in links],
                    [x.wire for x in links])}
                await conn.executemany("INSERT INTO puk_boxes VALUES ($1, $2, $3, $4)", list(puk_boxes))
                await conn.executemany("INSERT INTO team_boxes VALUES ($1, $2, $3, $4)", list(team_boxes))
                await conn.executemany(
                    "INSERT INTO unlogged_links VALUES ($1, $2, $3) ON CONFLICT (hash) DO UPDATE "
                    "SET chain=excluded.chain, seq=excluded.seq",
                    [(link_hash(link.wire), link.chain, link.seq) for link in links])
                await notify(conn, self.origin, [links_stored(self.origin, after, sorted(
                    ((orders[(x.chain, x.seq)], x) for x in links), key=lambda o: o[0]))], self._notice_key)
        except asyncpg.UniqueViolationError:  # rolled back: a link at one of these positions, or a box, is stored
            return ChainMoved()
        return LinksAppended()

    async def unlogged_links(self) -> list[tuple[bytes, int]]:
        rows = await self._pool.fetch("SELECT l.wire, l.time FROM unlogged_links u JOIN links l "
                                      "ON l.chain=u.chain AND l.seq=u.seq ORDER BY l.id")
        return [(bytes(r[0]), int(r[1])) for r in rows]

    async def links_logged(self, hashes: list[bytes]) -> None:
        await self._pool.execute("DELETE FROM unlogged_links WHERE hash = ANY($1::bytea[])", hashes)

    async def team_boxes_for(self, team: str, member: str) -> list[tuple[int, bytes]]:
        rows = await self._pool.fetch("SELECT gen, box FROM team_boxes WHERE team=$1 AND member=$2 ORDER BY gen",
                                      team, member)
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def puk_boxes_for(self, member: str, device: str) -> list[tuple[int, bytes]]:
        rows = await self._pool.fetch("SELECT puk_gen, box FROM puk_boxes WHERE member=$1 AND device=$2 "
                                      "ORDER BY puk_gen", member, device)
        return [(int(r[0]), bytes(r[1])) for r in rows]

    # -- documents --------------------------------------------------------------------------

    async def add_version(self, v: StoredVersion, parent: str | None, now: int, team_seq: int | None = None,
                          allowance: Allowance | None = None, signer: SignerHeads | None = None) -> VersionOutcome:
        """Insert a version only on top of its document's head, only while the team chain is at ``team_seq``
        (when given), only within the author's quotas (``allowance``) and only while the ``signer`` chains are at
        those lengths (under their locks, shared: no link appended meanwhile); a refusal stores nothing. Concurrent
        uploads through this process share one transaction (``_store_versions``): one durable commit, where one
        each, serialized by the author's quota lock, made a folder's upload wait for one WAL flush per file."""
        return await self._versions.submit(_VersionWrite(v, parent, now, team_seq, allowance, signer))

    async def _store_versions(self, writes: list[_VersionWrite]) -> list[VersionOutcome]:
        """One batch of ``add_version`` (``GroupCommitter``): every lock first, in one order for every process
        (team chains shared, then documents, then authors, each sorted: no deadlock between two batches), then
        each write judged in order (later ones see the rows of earlier ones: the same transaction)."""
        async with self._pool.acquire() as conn, conn.transaction():
            for chain in sorted({w.v.team for w in writes if w.team_seq is not None}
                                | {c for w in writes for c in w.signer or ()}):
                await lock_chain(conn, chain, shared=True)  # one order with append_links's: no deadlock
            for team, doc in sorted({(w.v.team, w.v.doc) for w in writes}):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('doc:' || $1 || '/' || $2, 0))",
                                   team, doc)
            for member in sorted({w.allowance.member for w in writes if w.allowance is not None}):
                await PU.lock_member(conn, member)
            heads: dict[str, int | None] = {}  # team -> chain head (no link is added under the shared lock)
            outcomes = [await _version_in(conn, w, heads) for w in writes]
            await notify(conn, self.origin, [VersionStored(w.v.team, w.v.doc, w.v.seq, w.v.vid)
                                             for w, o in zip(writes, outcomes, strict=True)
                                             if isinstance(o, VersionAdded)])
        return outcomes

    async def usage(self, member: str, kind: str, now: int, per_day: int) -> Usage:
        async with self._pool.acquire() as conn:
            return await PU.usage_of(conn, member, kind, now, per_day)

    async def versions(self, team: str, doc: str) -> list[StoredVersion]:
        return [_version(r) for r in await self._pool.fetch(
            f"SELECT {_COLS} FROM versions WHERE team=$1 AND doc=$2 ORDER BY seq", team, doc)]

    async def heads(self, team: str) -> list[StoredVersion]:
        return [_version(r) for r in await self._pool.fetch(
            f"SELECT DISTINCT ON (doc) {_COLS} FROM versions WHERE team=$1 ORDER BY doc, seq DESC", team)]

    async def team_versions(self, team: str) -> list[StoredVersion]:
        return [_version(r) for r in await self._pool.fetch(
            f"SELECT {_COLS} FROM versions WHERE team=$1 ORDER BY created, doc, seq", team)]

    async def version(self, team: str, vid: str) -> StoredVersion | None:
        row = await self._pool.fetchrow(f"SELECT {_COLS} FROM versions WHERE team=$1 AND vid=$2", team, vid)
        return None if row is None else _version(row)

    async def versions_by_id(self, team: str, vids: Sequence[str]) -> dict[str, StoredVersion]:
        rows = await self._pool.fetch(f"SELECT {_COLS} FROM versions WHERE team=$1 AND vid = ANY($2::text[])", team,
                                      sorted(set(vids)))
        return {v.vid: v for v in map(_version, rows)}

    async def signed_since(self, member: str, devices: Sequence[str], since: int) -> list[tuple[str, int]]:
        """The device and signed time of ``member``'s versions and threads stored after ``since`` and of messages
        of ``devices`` dated after it, whichever process stored them (``Directory.learn_signed``)."""
        async with self._pool.acquire() as conn:
            return await _signed_since(conn, member, devices, since)

    # -- login ------------------------------------------------------------------------------

    async def add_nonce(self, nonce: bytes, member: str, device: str, expires: float) -> None:
        """In the database, so that a login may reach any process (expired ones go in ``purge_expired``)."""
        await self._pool.execute("INSERT INTO login_nonces VALUES ($1, $2, $3, $4)", nonce, member, device, expires)

    async def take_nonce(self, nonce: bytes) -> tuple[str, str, float] | None:
        """A nonce can be taken once, by one process: the row's deletion decides."""
        row = await self._pool.fetchrow("DELETE FROM login_nonces WHERE nonce=$1 RETURNING member, device, expires",
                                        nonce)
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]))

    async def add_session(self, token: bytes, member: str, device: str, expires: float) -> None:
        await self._pool.execute("INSERT INTO sessions VALUES ($1, $2, $3, $4)", token, member, device, expires)

    async def take_nonce_login(self, nonce: bytes, now: float,
                               session: tuple[bytes, str, str, float] | None) -> TakenNonce | None:
        """The nonce taken and the session stored in one statement (one round trip, one transaction): a session
        only for the login whose deletion of the nonce row took it, and only if the row is the one the session
        fits (its member and device, not expired at ``now``). A refused login passes no session: its nonce is
        used up all the same (issue 19, session 19: the nonce was read first, a round trip more).

        Its commit does not wait for the WAL flush (``synchronous_commit`` off for this transaction only): the
        login's ``auth.login`` event is appended after it and before the token is answered, with a flushed commit,
        and flushing the WAL up to that commit flushes this one, which precedes it. A token answered is as durable
        as before, for one WAL flush a login instead of two (issue 19, session 18); a crash before the answer can
        lose a session nobody was given. (The nonces are UNLOGGED: a refused login's take writes no WAL.)"""
        token, member, device, expires = session if session is not None else (None, "", "", 0.0)
        row = await self._pool.fetchrow(
            "WITH taken AS (DELETE FROM login_nonces WHERE nonce=$1 RETURNING member, device, expires), "
            "stored AS (INSERT INTO sessions SELECT $2, t.member, t.device, $5 FROM taken t "
            "WHERE $2::bytea IS NOT NULL AND t.member=$3 AND t.device=$4 AND t.expires > $6 "
            "AND set_config('synchronous_commit', 'off', true) = 'off' RETURNING 1) "
            "SELECT member, device, expires, EXISTS (SELECT 1 FROM stored) FROM taken",
            nonce, token, member, device, expires, now)
        return None if row is None else TakenNonce(str(row[0]), str(row[1]), float(row[2]), bool(row[3]))

    async def session(self, token: bytes) -> AuthSession | None:
        cached = self._sessions.get(token)
        if cached is not None:
            return cached
        row = await self._pool.fetchrow("SELECT member, device, expires FROM sessions WHERE token=$1", token)
        if row is None:
            return None
        return self._sessions.keep(token, AuthSession(str(row[0]), str(row[1]), float(row[2])))

    async def shred_closed(self) -> int:
        """As ``SQLiteStorage.shred_closed`` (the same statements): the organization closed, every blob, box,
        version, thread, message, session, slot and team chain goes; the organization and member chains stay."""
        gone = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for statement in SHRED:
                gone += int((await conn.execute(statement)).rsplit(" ", 1)[-1])
        async with self._pool.acquire() as conn:
            await conn.execute(VACUUM_PG)  # the deleted rows out of the tables' files (outside a transaction)
        self._sessions.purge(float("inf"))
        self.blobs.collect(set())
        return gone

    async def purge_expired(self, now: float) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM link_slots WHERE expires < $1", now)
            await conn.execute("DELETE FROM sessions WHERE expires < $1", now)
            await conn.execute("DELETE FROM login_nonces WHERE expires < $1", now)
        self._sessions.purge(now)

    # -- device-link mailbox ---------------------------------------------------------------

    async def open_slot(self, slot: str, member: str, expires: float, now: float = 0,
                        max_open: int = 0) -> SlotOpen | SlotsFull:
        async with self._pool.acquire() as conn, conn.transaction():
            if max_open:
                await PU.lock_member(conn, member)
                wait = await PU.open_slots_wait(conn, member, now, max_open)
                if wait is not None:
                    return SlotsFull(max_open, wait)
            opened = await conn.fetchval("INSERT INTO link_slots VALUES ($1, $2, $3, NULL) "
                                         "ON CONFLICT (slot) DO NOTHING RETURNING slot", slot, member, expires)
        return SlotOpen.IN_USE if opened is None else SlotOpen.OPENED

    async def fill_slot(self, slot: str, payload: bytes, now: float) -> SlotFill:
        """Deliver a new device's keys once; unknown, expired or filled slots are refused."""
        filled = await self._pool.fetchval(
            "UPDATE link_slots SET payload=$1 WHERE slot=$2 AND payload IS NULL AND expires > $3 RETURNING slot",
            payload, slot, now)
        return SlotFill.UNAVAILABLE if filled is None else SlotFill.FILLED

    async def read_slot(self, slot: str, member: str, now: float) -> SlotRead | SlotMissing:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT payload FROM link_slots WHERE slot=$1 AND member=$2 AND expires > $3 "
                                      "FOR UPDATE", slot, member, now)
            if row is None:
                return SlotMissing.UNKNOWN
            if row[0] is not None:
                await conn.execute("DELETE FROM link_slots WHERE slot=$1", slot)
        return SlotRead(None if row[0] is None else bytes(row[0]))


@dataclass(frozen=True)
class _VersionWrite:
    v: StoredVersion
    parent: str | None
    now: int
    team_seq: int | None
    allowance: Allowance | None
    signer: SignerHeads | None = None


async def _links_after(conn: Conn, after: int) -> list[tuple[int, StoredLink]]:
    rows = await conn.fetch("SELECT id, chain, seq, kind, wire FROM links WHERE id > $1 ORDER BY id", after)
    return [(int(r[0]), StoredLink(str(r[1]), int(r[2]), str(r[3]), bytes(r[4]))) for r in rows]


async def _signed_since(conn: Conn, member: str, devices: Sequence[str], since: int) -> list[tuple[str, int]]:
    records = [[bytes(r[0]) for r in await conn.fetch(sql.format(member="$1", since="$2"), member, since)]
               for sql in SIGNED_SINCE]
    sent = await conn.fetch("SELECT device, max(time) FROM messages WHERE device = ANY($1::text[]) "
                            "AND time > $2 GROUP BY device UNION ALL "  # and witness cosignatures (review 26)
                            "SELECT device, max(time) FROM cosigs WHERE member = $3 AND time > $2 GROUP BY device",
                            list(devices), since, member)
    return signed_of(*records) + [(str(r[0]), int(r[1])) for r in sent]


async def _version_in(conn: Conn, w: _VersionWrite, heads: dict[str, int | None]) -> VersionOutcome:
    """One version of a batch under the batch's locks: checked, then stored (a refusal stores nothing)."""
    v, allowance = w.v, w.allowance
    if w.signer and (gone := signer_moved(w.signer, await chain_heads(conn, w.signer))):
        return gone
    if w.team_seq is not None:
        if v.team not in heads:
            heads[v.team] = await conn.fetchval("SELECT max(seq) FROM links WHERE chain=$1", v.team)
        if heads[v.team] != w.team_seq:
            return TeamMoved(int(heads[v.team] or 0))
    head = await conn.fetchrow("SELECT vid, seq FROM versions WHERE team=$1 AND doc=$2 ORDER BY seq DESC LIMIT 1",
                               v.team, v.doc)
    moved = moved_head(w.parent, v.seq, *((str(head[0]), int(head[1])) if head else (None, 0)))
    if moved is not None:
        return moved
    if allowance is not None:
        use = await PU.usage_of(conn, allowance.member, "version", w.now, allowance.per_day)
        over = over_quota("version", allowance, use, v.body_len)
        if over is not None:
            return over
    author = allowance.member if allowance is not None else version_author(v.record)
    await conn.execute("INSERT INTO versions VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                       v.vid, v.team, v.doc, v.seq, v.record, v.blob, v.body_len, w.now)
    await PU.add_authored(conn, "version", v.vid, author, v.body_len, w.now)
    return VersionAdded()
