"""Which backend a server opens: SQLite in the data directory (the default), or PostgreSQL at a URL
(``database_url``, ``server/store/postgres/``). Blobs and the audit log's signing key stay in the data
directory either way."""

from __future__ import annotations

from pathlib import Path

from server.store.postgres.audit import PostgresAudit
from server.store.postgres.vault import PostgresStorage
from server.store.records import ChainLengths
from server.store.sqlite.audit import AuditStore
from server.store.sqlite.vault import SQLiteStorage


async def open_storage(data_dir: Path, database_url: str = "", collect: bool = True) -> SQLiteStorage | PostgresStorage:
    if database_url:
        return await PostgresStorage.open(database_url, data_dir, collect)
    return await SQLiteStorage.open(data_dir, collect)


async def open_audit(data_dir: Path, database_url: str = "", origin: str = "",
                     heads: ChainLengths | None = None) -> AuditStore | PostgresAudit:
    """``origin``: the vault store's (PostgreSQL), which the audit store's notices carry as well; ``heads``: the
    vault's chain lengths (SQLite: its cosignatures are checked against the vault's file; PostgreSQL reads the
    links in the cosignature's own transaction)."""
    if database_url:
        return await PostgresAudit.open(database_url, data_dir, origin)
    return await AuditStore.open(data_dir, heads)
