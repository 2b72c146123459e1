"""``mvault-server migrate``: copy a stopped SQLite deployment into an empty PostgreSQL database, and prove it.

What is copied: every row of every table of ``vault.db`` and ``audit.db`` (chains, key boxes, document versions,
threads and messages, sessions, slots, quotas' bookkeeping, the audit log's leaves, checkpoints, cosignatures,
notes, restore acceptances), each into the table of the same name (``audit.db``'s ``meta`` into ``audit_meta``).
The tables are found in the files, not listed here: a table of either side without its counterpart on the other
stops the copy (``MigrateRefused``), so nothing is left behind when a table is added. What stays: the data
directory (blobs, ``log.key`` that signs checkpoints, the certificate, the configuration), which the server on
PostgreSQL keeps using.

Refused, with nothing written: a server is running on the directory (its lock, ``server/datalock.py``, is held
for the whole copy, so none starts meanwhile); the source fails ``mvault-server check``; the database holds
rows already. Before the check, the SQLite files are brought to this release's schema as a start of its server
would (which also removes blobs no version names, as a start does).

The proof, read back inside the copy's transaction (committed only if it holds): for every table, the number
of rows and an order-free digest of them (the sum of each row's SHA-256, modulo 2^256) equal on both sides; and,
printed for the operator and the Security Team, the audit log's size and root and its last checkpoint, every
chain's head (seq and link hash) and every document's head (seq and version id), equal on both sides, and every
blob a version references present in the data directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from security.merkle import MerkleTree, leaf_hash
from server.check import check_data
from server.datalock import exclusive
from server.store.postgres.schema import redacted
from server.store.postgres.tables import Tables
from server.store.sqlite.audit import AuditStore
from server.store.sqlite.vault import SQLiteStorage
from server.tablemap import DATABASES, matched, sqlite_tables
from vault.errors import VaultError
from vault.links import link_hash

MODULUS = 1 << 256


class MigrateRefused(VaultError):
    """Nothing was copied: the database was left as it was."""

    code = "migrate_refused"


@dataclass
class Proof:
    """What both sides must agree on, accumulated row by row in any order."""

    digests: dict[str, list[int]] = field(default_factory=dict)  # table -> [rows, sum of row hashes]
    events: dict[int, bytes] = field(default_factory=dict)  # idx -> the leaf's hash (stored hash if pruned)
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)  # chain -> (seq, link hash)
    documents: dict[str, tuple[int, str]] = field(default_factory=dict)  # team/doc -> (seq, version id)
    checkpoint: int | None = None

    def table(self, name: str) -> None:
        self.digests.setdefault(name, [0, 0])

    def feed(self, table: str, columns: list[str], row: tuple[Any, ...]) -> None:
        row = tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        d = self.digests[table]
        d[0] += 1
        d[1] = (d[1] + int.from_bytes(hashlib.sha256(msgspec.msgpack.encode(row)).digest())) % MODULUS
        r = dict(zip(columns, row, strict=True))
        if table == "events":
            self.events[int(r["idx"])] = leaf_hash(r["leaf"]) if r["leaf"] is not None else bytes(r["hash"])
        elif table == "links" and r["seq"] > self.chains.get(r["chain"], (0, ""))[0]:
            self.chains[r["chain"]] = (int(r["seq"]), link_hash(r["wire"]).hex())
        elif table == "versions" and r["seq"] > self.documents.get(f"{r['team']}/{r['doc']}", (0, ""))[0]:
            self.documents[f"{r['team']}/{r['doc']}"] = (int(r["seq"]), str(r["vid"]))
        elif table == "checkpoints":
            self.checkpoint = max(self.checkpoint or 0, int(r["size"]))

    def summary(self) -> dict[str, Any]:
        tree = MerkleTree()
        for idx in sorted(self.events):
            if idx != tree.size:
                raise MigrateRefused(f"the audit log has a gap at leaf {tree.size}")
            tree.append(self.events[idx])
        return {"audit": {"size": tree.size, "root": tree.root().hex(), "checkpoint": self.checkpoint},
                "chains": {c: {"seq": s, "head": h} for c, (s, h) in sorted(self.chains.items())},
                "documents": {d: {"seq": s, "version": v} for d, (s, v) in sorted(self.documents.items())},
                "tables": {t: rows for t, (rows, _) in sorted(self.digests.items())}}


@dataclass
class MigrateDone:
    target: str  # the database URL without its password
    summary: dict[str, Any]
    blobs: int


async def _copy(data: Path, url: str, cons: dict[str, sqlite3.Connection]) -> MigrateDone:
    sources = sqlite_tables(cons)
    async with Tables(url) as target:
        try:
            copied = matched(sources, target.columns, target.generated)
        except ValueError as e:
            raise MigrateRefused(str(e)) from None
        full = {t: n for t, n in (await target.counts()).items() if n}
        if full:
            raise MigrateRefused(f"the database at {redacted(url)} is not empty ({', '.join(sorted(full))} hold "
                                 "rows): migrate only into a new, empty database")
        before, after = Proof(), Proof()
        for name, columns in sorted(copied.items()):
            before.table(name)
            after.table(name)

            def fed(rows: Iterator[tuple[Any, ...]], name: str = name, columns: list[str] = columns
                    ) -> Iterator[tuple[Any, ...]]:
                for row in rows:
                    before.feed(name, columns, row)
                    yield row

            await target.copy(name, columns, fed(sources[name].rows(columns)))
            async for row in target.rows(name, columns):
                after.feed(name, columns, row)
        differ = sorted(t for t in copied if before.digests[t] != after.digests[t])
        if differ or before.summary() != after.summary():
            raise MigrateRefused(f"the copy does not prove equal (tables {differ}): nothing was committed")
        blobs = set(await _referenced(target))
        absent = sorted(b for b in blobs if not (data / "blobs" / b[:2] / b).is_file())
        if absent:
            raise MigrateRefused(f"{len(absent)} blobs referenced are missing from {data / 'blobs'} (the first: "
                                 f"{absent[0]}): nothing was committed")
        return MigrateDone(redacted(url), after.summary(), len(blobs))


async def _referenced(target: Tables) -> list[str]:
    return [str(r[0]) async for r in target.rows("versions", ["blob"])]


async def _upgraded(data: Path) -> None:
    """The SQLite files brought to this release's schema, as a start of its server would (a deployment last
    served by an older release may lack a table added since)."""
    for store in (await SQLiteStorage.open(data), await AuditStore.open(data)):
        await store.close()


def migrate(data: Path, url: str) -> MigrateDone:
    """Copy the SQLite deployment in ``data`` into the empty database at ``url`` (see the module's docstring)."""
    for name in DATABASES:
        if not (data / name).is_file():
            raise MigrateRefused(f"{data} is not a Member Vault data directory on SQLite (no {name})")
    with exclusive(data):
        asyncio.run(_upgraded(data))
        report = check_data(data, grace=0)
        if report.problems:
            raise MigrateRefused(f"{data} fails its check ({len(report.problems)} problems; the first: "
                                 f"{report.problems[0].line()}): run mvault-server check --data {data}")
        cons = {name: sqlite3.connect(f"file:{data / name}?mode=ro", uri=True, isolation_level=None)
                for name in DATABASES}
        try:
            for con in cons.values():
                con.execute("BEGIN")
            return asyncio.run(_copy(data, url, cons))
        finally:
            for con in cons.values():
                con.close()
