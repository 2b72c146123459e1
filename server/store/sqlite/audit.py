"""The audit log in SQLite (``AuditLog``): storage, group commit, checkpoints, retention.

The log lives in its own SQLite file (``audit.db``, WAL, ``synchronous=FULL``) with its
own connection, so its transactions never interleave with the vault's. Appends are
group-committed (``server.store.commit``): events that arrive while a transaction is being
written wait for the next one, so concurrent requests share one fsync. A request that records
an event waits until the event is durable before its answer is sent. A leaf gets its index in
the Merkle tree when its batch is written; if the batch fails, the tree's uncommitted tail is
dropped (and the next batch first adopts any rows the database has beyond it).

The server holds the sealed leaves and their hashes; it cannot read an event after
sealing it (nor can anyone who seizes the disk) unless it is the actor's or the
Security Team's. Retention deletes leaf bytes older than the protocol's cap and keeps
their hashes, so the tree and every checkpoint stay verifiable.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import aiosqlite

from security.events import Checkpoint
from security.merkle import MerkleTree, leaf_hash
from server.store.auditnotes import AuditNotes
from server.store.commit import GroupCommitter
from server.store.logkey import log_seed
from server.store.records import (
    ChainLengths,
    Cosig,
    CosigAdded,
    CosigOutcome,
    SignerHeads,
    StoredCheckpoint,
    signer_moved,
)
from server.store.shred import EVERY_DAY, compact_sqlite
from server.store.space import rollback
from vault.errors import LogCorrupted
from vault.logsign import log_keypair

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (idx INTEGER PRIMARY KEY, day INTEGER NOT NULL, hash BLOB NOT NULL, leaf BLOB);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, raw BLOB NOT NULL, sig BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cosigs (
    size INTEGER NOT NULL, member TEXT NOT NULL, device TEXT NOT NULL, sig BLOB NOT NULL, time INTEGER NOT NULL,
    PRIMARY KEY (size, device));
CREATE TABLE IF NOT EXISTS witness_cosigs (
    size INTEGER NOT NULL, name TEXT NOT NULL, key_id BLOB NOT NULL, sig BLOB NOT NULL, time INTEGER NOT NULL,
    PRIMARY KEY (size, name, key_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS restore_acceptances (
    id INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL, time INTEGER NOT NULL, raw BLOB NOT NULL,
    sig BLOB NOT NULL);
DROP TABLE IF EXISTS failures;
DROP TABLE IF EXISTS lockouts;
"""
MAX_PAGE = 2000
ROWS_PER_STATEMENT = 249  # 4 parameters a row: within SQLite's smallest limit of 999 per statement


@lru_cache(maxsize=ROWS_PER_STATEMENT)
def _insert_rows(n: int) -> str:
    return "INSERT INTO events VALUES " + ", ".join(["(?, ?, ?, ?)"] * n)


class AuditStore(AuditNotes):
    def __init__(self, db: aiosqlite.Connection, tree: MerkleTree, log_secret: bytes, log_public: bytes,
                 heads: ChainLengths | None = None) -> None:
        self._db = db
        self._heads = heads  # the vault's chain lengths (``add_cosig``'s signer check)
        self.tree = tree
        self.committed = tree.size
        self.log_secret = log_secret
        self.log_public = log_public
        self._leaves: GroupCommitter[tuple[bytes, int], int] = GroupCommitter(
            self._store_leaves, "the audit event", on_failure=self._drop_uncommitted)
        self._unsure = False  # a batch failed: the database may hold rows beyond ``committed`` (see _adopt)
        self._latest: StoredCheckpoint | None = None
        self._witness_note: str | None = None  # witness_note(), until the next witness cosignature
        # One connection: no other write may land inside the flusher's transaction (or be rolled back with it).
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: Path, heads: ChainLengths | None = None) -> AuditStore:
        seed = log_seed(data_dir / "log.key")
        public, secret = log_keypair(seed)
        db = await aiosqlite.connect(data_dir / "audit.db", isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.executescript(SCHEMA)
            tree = MerkleTree()
            await _extend(db, tree)
        except BaseException:
            await db.close()
            raise
        return cls(db, tree, secret, public, heads)

    async def close(self) -> None:
        await self._leaves.close()
        await self._db.close()

    # -- appends ------------------------------------------------------------------------------

    async def _store_leaves(self, leaves: list[tuple[bytes, int]]) -> list[int]:
        if self._unsure:
            await self._adopt()
        start = self.tree.size
        rows = []
        for leaf, day in leaves:
            h = leaf_hash(leaf)
            rows.append((self.tree.append(h), day, h, leaf))
        await self._insert(rows)
        self.committed = self.tree.size
        return list(range(start, self.committed))

    def _drop_uncommitted(self, leaves: list[tuple[bytes, int]]) -> None:
        self.tree.truncate(self.committed)
        self._unsure = True

    async def _adopt(self) -> None:
        """After a failed batch: rows the database has beyond ``committed`` (a batch cut by a cancellation
        may have been committed all the same) join the tree before the next index is given."""
        await _extend(self._db, self.tree)
        self.committed = self.tree.size
        self._unsure = False

    async def _insert(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        """One transaction for the whole batch, durable (synchronous=FULL) when this returns."""
        async with self._write:
            if len(rows) <= ROWS_PER_STATEMENT:
                # A single statement outside BEGIN is its own transaction: all rows or none, committed
                # when it returns; one trip to the database thread instead of three.
                try:
                    await self._db.execute(_insert_rows(len(rows)), [v for row in rows for v in row])
                except BaseException:
                    await rollback(self._db)
                    raise
                return
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
                await self._db.execute("COMMIT")
            except BaseException:
                await rollback(self._db)
                raise

    # -- reads --------------------------------------------------------------------------------

    async def leaves(self, start: int, count: int) -> list[tuple[int, bytes, bytes | None]]:
        end = min(self.committed, start + min(count, MAX_PAGE))
        async with self._db.execute(
            "SELECT idx, hash, leaf FROM events WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        ) as cur:
            return [(int(r[0]), bytes(r[1]), None if r[2] is None else bytes(r[2])) for r in await cur.fetchall()]

    # -- checkpoints ----------------------------------------------------------------------------

    async def checkpoint(self, org: str, now: int) -> StoredCheckpoint:
        """A signed checkpoint of everything committed (the same one while nothing changed)."""
        size = self.committed
        if self._latest is not None and self._latest.checkpoint.size == size:
            return self._latest
        async with self._db.execute("SELECT raw, sig FROM checkpoints WHERE size=?", (size,)) as cur:
            row = await cur.fetchone()
        if row is not None:
            cp = Checkpoint.parse(bytes(row[0]))
            if cp.root == self.tree.root(size):
                self._latest = StoredCheckpoint(cp, bytes(row[1]))
                return self._latest
        cp = Checkpoint.build(org, size, self.tree.root(size), now)
        stored = StoredCheckpoint(cp, cp.sign(self.log_secret))
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", (size, cp.raw, stored.sig))
        self._latest = stored
        return stored

    async def issued(self, raw: bytes) -> StoredCheckpoint | None:
        cp = Checkpoint.parse(raw)
        async with self._db.execute("SELECT raw, sig FROM checkpoints WHERE size=?", (cp.size,)) as cur:
            row = await cur.fetchone()
        if row is None or bytes(row[0]) != raw or cp.size > self.committed or cp.root != self.tree.root(cp.size):
            return None
        return StoredCheckpoint(cp, bytes(row[1]))

    async def add_cosig(self, size: int, member: str, device: str, sig: bytes, now: int,
                        signer: SignerHeads | None = None) -> CosigOutcome:
        """Stored only while the ``signer`` chains are at the lengths the route judged it on (``SignerMoved``), as
        on PostgreSQL. The links are in the vault's file (``heads``, one indexed read): not one transaction with the
        insert, but one process stores every link under the chain lock, which the cosign route holds throughout."""
        if signer:
            if self._heads is None:
                raise RuntimeError("the audit store was opened without the vault's chains: it cannot check a signer")
            if gone := signer_moved(signer, await self._heads(sorted(signer))):
                return gone
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO cosigs VALUES (?, ?, ?, ?, ?)",
                                   (size, member, device, sig, now))
        return CosigAdded()

    async def cosigned(self) -> list[tuple[str, str, int]]:
        """(member, device, latest signed time) of every device's stored cosignatures (``Directory.note_signed``)."""
        async with self._db.execute("SELECT member, device, max(time) FROM cosigs GROUP BY member, device") as cur:
            return [(str(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def witnessed(self) -> tuple[StoredCheckpoint, list[Cosig]] | None:
        """The newest cosigned checkpoint and its cosignatures."""
        async with self._db.execute("SELECT MAX(size) FROM cosigs") as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        size = int(row[0])
        async with self._db.execute("SELECT raw, sig FROM checkpoints WHERE size=?", (size,)) as cur:
            cp_row = await cur.fetchone()
        if cp_row is None:
            return None
        async with self._db.execute("SELECT member, device, sig, time FROM cosigs WHERE size=? ORDER BY time",
                                    (size,)) as cur:
            cosigs = [Cosig(str(r[0]), str(r[1]), bytes(r[2]), int(r[3])) for r in await cur.fetchall()]
        return StoredCheckpoint(Checkpoint.parse(bytes(cp_row[0])), bytes(cp_row[1])), cosigs

    async def issued_size(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint this server issued at ``size`` for its current log, if any."""
        async with self._db.execute("SELECT raw FROM checkpoints WHERE size=?", (size,)) as cur:
            row = await cur.fetchone()
        return None if row is None else await self.issued(bytes(row[0]))

    # -- outside witnesses' cosignatures of the checkpoint notes (vault/signednote.py) ---------------

    async def add_witness_cosig(self, size: int, name: str, key_id: bytes, sig: bytes, time: int) -> None:
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO witness_cosigs VALUES (?, ?, ?, ?, ?)",
                                   (size, name, key_id, sig, time))
        self._witness_note = None

    async def witness_cosigned(self) -> tuple[StoredCheckpoint, list[tuple[str, bytes, bytes]]] | None:
        """The newest checkpoint an outside witness cosigned, and its cosignatures (name, key id, signature)."""
        async with self._db.execute("SELECT MAX(size) FROM witness_cosigs") as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        stored = await self.issued_size(int(row[0]))
        if stored is None:
            return None
        async with self._db.execute("SELECT name, key_id, sig FROM witness_cosigs WHERE size=? ORDER BY name, key_id",
                                    (stored.checkpoint.size,)) as cur:
            return stored, [(str(r[0]), bytes(r[1]), bytes(r[2])) for r in await cur.fetchall()]

    # -- meta (the Security Team's audit key) -----------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        async with self._db.execute("SELECT value FROM meta WHERE key=?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def set_meta(self, key: str, value: bytes) -> None:
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- restore acceptances (server/routes/restore.py) ----------------------------------------------

    async def add_acceptance(self, size: int, time: int, raw: bytes, sig: bytes) -> None:
        async with self._write:
            await self._db.execute("INSERT INTO restore_acceptances (size, time, raw, sig) VALUES (?, ?, ?, ?)",
                                   (size, time, raw, sig))

    async def acceptances(self, limit: int = 16) -> list[tuple[bytes, bytes]]:
        """The newest ``limit`` acceptances (statement, signature), newest first."""
        async with self._db.execute("SELECT raw, sig FROM restore_acceptances ORDER BY id DESC LIMIT ?",
                                    (limit,)) as cur:
            return [(bytes(r[0]), bytes(r[1])) for r in await cur.fetchall()]

    # -- retention ------------------------------------------------------------------------------

    async def prune(self, before_day: int) -> int:
        """Delete leaf bytes of days before ``before_day``; hashes stay. Returns how many went."""
        async with self._write:
            return await self._prune(before_day)

    async def _prune(self, before_day: int) -> int:
        async with self._db.execute(
            "UPDATE events SET leaf=NULL WHERE day < ? AND leaf IS NOT NULL AND idx < ? RETURNING idx",
            (before_day, self.committed),
        ) as cur:
            return len(list(await cur.fetchall()))

    async def shred(self) -> int:
        """The closing (docs/lifecycle.md "Running it"): every committed leaf body deleted (hashes stay) and
        overwritten in the file, which is then rebuilt without its free pages, and its write-ahead log emptied: no body
        stays on the database's own files (as ``shred_sqlite`` for the vault database)."""
        async with self._write:
            await self._db.execute("PRAGMA secure_delete=ON")
            gone = await self._prune(EVERY_DAY)
            await compact_sqlite(self._db)
            return gone


async def _extend(db: aiosqlite.Connection, tree: MerkleTree) -> None:
    """Append to ``tree`` the stored leaves from its size on."""
    async with db.execute("SELECT idx, hash, leaf FROM events WHERE idx >= ? ORDER BY idx", (tree.size,)) as cur:
        async for idx, stored_hash, leaf in cur:
            if idx != tree.size:
                raise LogCorrupted(f"audit log has a gap at leaf {tree.size}")
            # The leaf bytes are what the tree covers; the hash column only stands in for pruned leaves.
            tree.append(leaf_hash(bytes(leaf)) if leaf is not None else bytes(stored_hash))
