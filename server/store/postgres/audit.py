"""The audit log in PostgreSQL (``AuditLog``): one Merkle log, whichever server process appends.

Appends are group-committed (``server.store.commit``) like SQLite's, and each batch is one statement
(``mvault_audit_append``, schema migration 4) whose transaction first takes one advisory lock (``AUDIT_LOCK``):
batches of every process are serialized by the database. Under the lock the statement inserts the batch at the
index this process's tree expects next, or, when the table has leaves beyond the tree (appended by another
process, or by a batch of this one whose failure came after its commit), inserts nothing and answers them: the
tree adopts them and the batch is sent again at the next index. The tree is the table's, never a process's
guess. ``committed`` is what this process has seen
committed; its reads (``leaves``, checkpoints) cover that much.

Checkpoints: the first signed at a size is kept (``ON CONFLICT DO NOTHING``), so every process hands out the
same checkpoint at one size. The checkpoint-signing key is the data directory's ``log.key``
(``server/store/logkey.py``): processes that share the database share the data directory.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from security.events import Checkpoint
from security.merkle import MerkleTree, leaf_hash
from server.store.auditnotes import AuditNotes
from server.store.commit import GroupCommitter
from server.store.logkey import log_seed
from server.store.notices import AuditMetaStored
from server.store.postgres.listen import notify
from server.store.postgres.schema import Conn, chain_heads, connect, lock_chain, lost_is_unavailable
from server.store.records import Cosig, CosigAdded, CosigOutcome, SignerHeads, StoredCheckpoint, signer_moved
from server.store.shred import EVERY_DAY, VACUUM_AUDIT_PG
from vault.errors import LogCorrupted
from vault.logsign import log_keypair

MAX_PAGE = 2000
EXTEND_PAGE = 2000


@lost_is_unavailable
class PostgresAudit(AuditNotes):
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], tree: MerkleTree, log_secret: bytes,
                 log_public: bytes, origin: str = "") -> None:
        self._pool = pool
        self.origin = origin  # names this process's notices: the vault store's (server/store/notices.py)
        self.tree = tree
        self.committed = tree.size
        self.log_secret = log_secret
        self.log_public = log_public
        self._leaves: GroupCommitter[tuple[bytes, int], int] = GroupCommitter(
            self._store_leaves, "the audit event", on_failure=self._drop_uncommitted)
        self._latest: StoredCheckpoint | None = None
        self._witness_note: str | None = None

    @classmethod
    async def open(cls, url: str, data_dir: Path, origin: str = "") -> PostgresAudit:
        public, secret = log_keypair(log_seed(data_dir / "log.key"))
        pool = await connect(url)
        try:
            tree = MerkleTree()
            async with pool.acquire() as conn:
                await _extend(conn, tree)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, tree, secret, public, origin)

    async def close(self) -> None:
        await self._leaves.close()
        await self._pool.close()

    # -- appends ------------------------------------------------------------------------------

    async def _store_leaves(self, leaves: list[tuple[bytes, int]]) -> list[int]:
        """The batch in one statement, one round trip (``mvault_audit_append``, migration 4: the lock, the read of
        other processes' leaves, the insert, and the commit of the statement's own transaction): when another
        process appended since this one's last batch, the statement inserts nothing and answers those leaves,
        which this tree adopts before the batch is sent again at the next index."""
        hashes = [leaf_hash(leaf) for leaf, _ in leaves]
        days = [day for _, day in leaves]
        bodies = [leaf for leaf, _ in leaves]
        while True:
            start = self.tree.size
            others = await self._pool.fetch("SELECT * FROM mvault_audit_append($1, $2, $3, $4, $5)",
                                            start, days, hashes, bodies, EXTEND_PAGE)
            if not others:
                break
            _adopt(self.tree, others)
            self.committed = self.tree.size
        for h in hashes:
            self.tree.append(h)
        self.committed = self.tree.size
        return list(range(start, self.committed))

    def _drop_uncommitted(self, leaves: list[tuple[bytes, int]]) -> None:
        self.tree.truncate(self.committed)  # the next batch adopts them if the commit happened after all

    # -- reads --------------------------------------------------------------------------------

    async def leaves(self, start: int, count: int) -> list[tuple[int, bytes, bytes | None]]:
        end = min(self.committed, start + min(count, MAX_PAGE))
        rows = await self._pool.fetch("SELECT idx, hash, leaf FROM events WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                                      start, end)
        return [(int(r[0]), bytes(r[1]), None if r[2] is None else bytes(r[2])) for r in rows]

    # -- checkpoints ----------------------------------------------------------------------------

    async def checkpoint(self, org: str, now: int) -> StoredCheckpoint:
        """A signed checkpoint of everything committed: the one stored at that size when its root is the
        tree's (whichever process signed it), else a new one."""
        size = self.committed
        if self._latest is not None and self._latest.checkpoint.size == size:
            return self._latest
        cp = Checkpoint.build(org, size, self.tree.root(size), now)
        sig = cp.sign(self.log_secret)
        # One round trip: ours stored, or the one stored at that size before this statement (another process's,
        # or this one's before a restart); nothing when one was committed meanwhile (read it then).
        row = await self._pool.fetchrow(
            "WITH ins AS (INSERT INTO checkpoints VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING "
            "RETURNING raw, sig) SELECT raw, sig FROM ins UNION ALL SELECT raw, sig FROM checkpoints WHERE size=$1",
            size, cp.raw, sig)
        stored = self._matching(row, size) if row is not None else await self._stored_at(size)
        if stored is None:  # a row whose root is not the tree's: replaced, as the SQLite backend does
            await self._pool.execute("UPDATE checkpoints SET raw=$2, sig=$3 WHERE size=$1", size, cp.raw, sig)
            stored = StoredCheckpoint(cp, sig)
        self._latest = stored
        return stored

    async def _stored_at(self, size: int) -> StoredCheckpoint | None:
        row = await self._pool.fetchrow("SELECT raw, sig FROM checkpoints WHERE size=$1", size)
        return None if row is None else self._matching(row, size)

    def _matching(self, row: asyncpg.Record, size: int) -> StoredCheckpoint | None:
        """The checkpoint stored at ``size`` (raw, sig), if its root is the tree's there."""
        cp = Checkpoint.parse(bytes(row[0]))
        return StoredCheckpoint(cp, bytes(row[1])) if cp.root == self.tree.root(size) else None

    async def issued(self, raw: bytes) -> StoredCheckpoint | None:
        cp = Checkpoint.parse(raw)
        row = await self._pool.fetchrow("SELECT raw, sig FROM checkpoints WHERE size=$1", cp.size)
        if row is None or bytes(row[0]) != raw or cp.size > self.committed or cp.root != self.tree.root(cp.size):
            return None
        return StoredCheckpoint(cp, bytes(row[1]))

    async def add_cosig(self, size: int, member: str, device: str, sig: bytes, now: int,
                        signer: SignerHeads | None = None) -> CosigOutcome:
        """Stored only while the ``signer`` chains (the member's, "org") are at the lengths the route judged it on,
        under their locks taken shared, as a version is (review 27, finding 2): a ``device.revoke``, cut, removal or
        role change of another process either committed before (``SignerMoved``: judged again) or waits for this
        commit and its ``SignedCheck`` reads the cosignature (the ``cosigs`` table: ``_signed_since``)."""
        async with self._pool.acquire() as conn, conn.transaction():
            for chain in sorted(signer or ()):  # one order with append_links's: no deadlock
                await lock_chain(conn, chain, shared=True)
            if signer and (gone := signer_moved(signer, await chain_heads(conn, signer))):
                return gone
            await conn.execute("INSERT INTO cosigs VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size, device) "
                               "DO UPDATE SET member=$2, sig=$4, time=$5", size, member, device, sig, now)
        return CosigAdded()

    async def cosigned(self) -> list[tuple[str, str, int]]:
        """(member, device, latest signed time) of every device's stored cosignatures (``Directory.note_signed``)."""
        rows = await self._pool.fetch("SELECT member, device, max(time) FROM cosigs GROUP BY member, device")
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def witnessed(self) -> tuple[StoredCheckpoint, list[Cosig]] | None:
        """The newest cosigned checkpoint and its cosignatures: one statement (one snapshot, one round trip)."""
        rows = await self._pool.fetch(
            "SELECT c.raw, c.sig, x.member, x.device, x.sig, x.time FROM (SELECT max(size) AS size FROM cosigs) s "
            "JOIN checkpoints c ON c.size = s.size JOIN cosigs x ON x.size = s.size ORDER BY x.time")
        if not rows:
            return None
        cosigs = [Cosig(str(r[2]), str(r[3]), bytes(r[4]), int(r[5])) for r in rows]
        return StoredCheckpoint(Checkpoint.parse(bytes(rows[0][0])), bytes(rows[0][1])), cosigs

    async def issued_size(self, size: int) -> StoredCheckpoint | None:
        raw = await self._pool.fetchval("SELECT raw FROM checkpoints WHERE size=$1", size)
        return None if raw is None else await self.issued(bytes(raw))

    # -- outside witnesses' cosignatures of the checkpoint notes (vault/signednote.py) ---------------

    async def add_witness_cosig(self, size: int, name: str, key_id: bytes, sig: bytes, time: int) -> None:
        await self._pool.execute("INSERT INTO witness_cosigs VALUES ($1, $2, $3, $4, $5) ON CONFLICT "
                                 "(size, name, key_id) DO UPDATE SET sig=$4, time=$5", size, name, key_id, sig, time)
        self._witness_note = None

    async def witness_cosigned(self) -> tuple[StoredCheckpoint, list[tuple[str, bytes, bytes]]] | None:
        size = await self._pool.fetchval("SELECT max(size) FROM witness_cosigs")
        stored = None if size is None else await self.issued_size(int(size))
        if stored is None:
            return None
        rows = await self._pool.fetch("SELECT name, key_id, sig FROM witness_cosigs WHERE size=$1 "
                                      "ORDER BY name, key_id", stored.checkpoint.size)
        return stored, [(str(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    # -- meta, restore acceptances, retention ----------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        value = await self._pool.fetchval("SELECT value FROM audit_meta WHERE key=$1", key)
        return None if value is None else bytes(value)

    async def set_meta(self, key: str, value: bytes) -> None:
        """Stored and announced to the other processes in one transaction (the audit key: ``server/relay.py``)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO audit_meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value=$2",
                               key, value)
            await notify(conn, self.origin, [AuditMetaStored(key)])

    async def add_acceptance(self, size: int, time: int, raw: bytes, sig: bytes) -> None:
        await self._pool.execute("INSERT INTO restore_acceptances (size, time, raw, sig) VALUES ($1, $2, $3, $4)",
                                 size, time, raw, sig)

    async def acceptances(self, limit: int = 16) -> list[tuple[bytes, bytes]]:
        """The newest ``limit`` acceptances (statement, signature), newest first."""
        rows = await self._pool.fetch("SELECT raw, sig FROM restore_acceptances ORDER BY id DESC LIMIT $1", limit)
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    async def prune(self, before_day: int) -> int:
        """Delete leaf bytes of days before ``before_day``; hashes stay. Returns how many went."""
        rows = await self._pool.fetch("UPDATE events SET leaf=NULL WHERE day < $1 AND leaf IS NOT NULL AND idx < $2 "
                                      "RETURNING idx", before_day, self.committed)
        return len(rows)

    async def shred(self) -> int:
        """The closing (docs/lifecycle.md "Running it"): every committed leaf body deleted (hashes stay), then the
        table written anew without the dead rows (``VACUUM FULL``): no body stays in the table's files. The
        write-ahead log's segments keep them until PostgreSQL recycles them (SECURITY.md)."""
        gone = await self.prune(EVERY_DAY)
        async with self._pool.acquire() as conn:
            await conn.execute(VACUUM_AUDIT_PG)  # outside a transaction
        return gone


async def _extend(conn: Conn, tree: MerkleTree) -> None:
    """Append to ``tree`` the stored leaves from its size on, ``EXTEND_PAGE`` at a time (a long log is not read at
    once; rows are only ever added after the last, so pages read apart see one log). One round trip when nothing is
    new (a cursor took two: an append's batch reads here under its lock)."""
    while True:
        rows = await conn.fetch("SELECT idx, hash, leaf FROM events WHERE idx >= $1 ORDER BY idx LIMIT $2",
                                tree.size, EXTEND_PAGE)
        _adopt(tree, rows)
        if len(rows) < EXTEND_PAGE:
            return


def _adopt(tree: MerkleTree, rows: list[asyncpg.Record]) -> None:
    """Append to ``tree`` stored leaves (index, hash, leaf) that follow it."""
    for idx, stored_hash, leaf in rows:
        if idx != tree.size:
            raise LogCorrupted(f"audit log has a gap at leaf {tree.size}")
        # The leaf bytes are what the tree covers; the hash column only stands in for pruned leaves.
        tree.append(leaf_hash(bytes(leaf)) if leaf is not None else bytes(stored_hash))
