"""A PostgreSQL deployment's rows as an SQLite deployment's files: ``vault.db`` and ``audit.db`` written from one
snapshot of the database (a repeatable-read transaction), while its servers go on serving.

``mvault-server backup`` archives these files (so a backup of a PostgreSQL deployment restores as an SQLite
one, which ``mvault-server migrate`` copies back into PostgreSQL) and ``mvault-server check`` checks them with
the same code as an SQLite deployment's. Every table is copied (``server/tablemap.py``): one of either side
without its counterpart stops the dump. Rows come in the order they were stored where it matters (the chains'
links, by their identity column).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from server.store.postgres.tables import Tables
from server.store.sqlite.audit import SCHEMA as AUDIT_SCHEMA
from server.store.sqlite.schema import SCHEMA as VAULT_SCHEMA
from server.tablemap import DATABASES, matched, sqlite_tables
from server.usage import SCHEMA as USAGE_SCHEMA
from vault.errors import VaultError

BATCH = 2000


class DumpFailed(VaultError):
    """The database could not be read into SQLite files."""

    code = "dump_failed"


async def _dump(url: str, cons: dict[str, sqlite3.Connection]) -> None:
    targets = sqlite_tables(cons)
    async with Tables(url, write=False) as source:
        try:
            copied = matched(targets, source.columns, source.generated)
        except ValueError as e:
            raise DumpFailed(str(e)) from None
        for name, columns in sorted(copied.items()):
            batch = []
            async for row in source.rows(name, columns):
                batch.append(row)
                if len(batch) == BATCH:
                    targets[name].insert(columns, batch)
                    batch = []
            targets[name].insert(columns, batch)


def dump(url: str, into: Path) -> None:
    """Write the database at ``url`` as ``into/vault.db`` and ``into/audit.db`` (new files)."""
    cons = {name: sqlite3.connect(into / name, isolation_level=None) for name in DATABASES}
    try:
        for con in cons.values():
            # Files of one run (a check's, or a backup's which fsyncs its archive): no journal or sync of their
            # own. Each statement of the schema was a synced transaction: ~0.6 s of a check's ~1 s on PostgreSQL.
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
        cons["vault.db"].executescript(VAULT_SCHEMA + USAGE_SCHEMA)
        cons["audit.db"].executescript(AUDIT_SCHEMA)
        for con in cons.values():
            con.execute("BEGIN")
        asyncio.run(_dump(url, cons))
        for con in cons.values():
            con.execute("COMMIT")
    finally:
        for con in cons.values():
            con.close()
