"""Whole tables in and out of a PostgreSQL database, for ``mvault-server migrate`` (``server/migrate.py``).

``Tables`` is one connection in one transaction over every table of the schema (``schema.py``): the copy of an
SQLite deployment goes in with ``COPY`` (``copy``), and is read back (``rows``) in the same transaction to
prove it, so a copy that does not prove equal is rolled back and leaves the database as it was (empty). The
tables are locked (``ACCESS EXCLUSIVE``) before they are found empty: a server started on the database in the
meantime waits for the copy instead of writing beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

import asyncpg

from server.store.postgres.schema import connect, redacted
from vault.errors import VaultError


class Tables:
    """``async with Tables(url) as t``: the schema brought up to date, every table locked; committed when the
    block ends without an exception, rolled back otherwise. ``Tables(url, write=False)``: one snapshot of every
    table (a read-only, repeatable-read transaction), while servers go on writing."""

    def __init__(self, url: str, write: bool = True) -> None:
        self._url = url
        self._write = write
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._conn: Any = None
        self._tx: Any = None
        self.columns: dict[str, list[str]] = {}  # table -> its columns, without generated ones (identity)
        self.generated: dict[str, list[str]] = {}  # table -> its identity columns (the order rows came in)

    async def __aenter__(self) -> Tables:
        try:
            self._pool = await connect(self._url)  # DatabaseUnavailable, SchemaTooNew
        except asyncpg.PostgresError as e:  # a database of something else (a table of ours by another schema)
            raise VaultError(f"the database at {redacted(self._url)} cannot take the schema: {e}") from None
        try:
            self._conn = await self._pool.acquire()
            self._tx = self._conn.transaction(isolation=None if self._write else "repeatable_read",
                                              readonly=not self._write)
            await self._tx.start()
            rows = await self._conn.fetch(
                "SELECT table_name, column_name, is_identity FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name <> 'schema_version' "
                "ORDER BY table_name, ordinal_position")
            for r in rows:
                self.columns.setdefault(str(r[0]), [])
                self.generated.setdefault(str(r[0]), [])
                (self.generated if r[2] == "YES" else self.columns)[str(r[0])].append(str(r[1]))
            if self._write:
                names = ", ".join(_quoted(t) for t in sorted(self.columns))
                await self._conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        except BaseException:
            await self._close(commit=False)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._close(commit=kind is None)

    async def _close(self, commit: bool) -> None:
        try:
            if self._tx is not None:
                await (self._tx.commit() if commit else self._tx.rollback())
        finally:
            if self._pool is not None:
                if self._conn is not None:
                    await self._pool.release(self._conn)
                await self._pool.close()

    async def counts(self) -> dict[str, int]:
        """Rows in each table."""
        return {t: int(await self._conn.fetchval(f"SELECT count(*) FROM {_quoted(t)}")) for t in self.columns}

    async def copy(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """``rows`` (values of ``columns``, in order) into ``table`` with ``COPY``; identity columns numbered in
        the order the rows come."""
        await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))

    async def rows(self, table: str, columns: Sequence[str]) -> AsyncIterator[tuple[Any, ...]]:
        """Every row of ``table`` (the values of ``columns``): in the order they were stored if the table has an
        identity column, else in no particular order."""
        cols = ", ".join(_quoted(c) for c in columns)
        order = " ORDER BY " + ", ".join(map(_quoted, self.generated[table])) if self.generated[table] else ""
        async for r in self._conn.cursor(f"SELECT {cols} FROM {_quoted(table)}{order}", prefetch=2000):
            yield tuple(r)


async def holds_deployment(url: str) -> bool:
    """Whether the database at ``url`` holds a deployment (any chain link); its schema brought up to date."""
    pool = await connect(url)
    try:
        return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM links)"))
    finally:
        await pool.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
