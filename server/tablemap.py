"""Which SQLite table of a data directory is which PostgreSQL table: every table of ``vault.db`` and ``audit.db``
by the name of its table in PostgreSQL (the same, except ``audit.db``'s ``meta``: ``audit_meta``). Found in the
files, not listed here, so a table added to one backend and forgotten in the other is noticed
(``server/migrate.py``, ``server/pgdump.py``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DATABASES = ("vault.db", "audit.db")
RENAMED = {("audit.db", "meta"): "audit_meta"}  # (file, SQLite table) -> PostgreSQL table, where they differ
# Tables only PostgreSQL has, for state an SQLite server keeps in its one process's memory (login nonces, request
# budgets, failed-login counts, per-member refusal counts and live connections: server/store/postgres/guard.py).
# Not copied either way: a migrated database starts with them empty, as an SQLite server starts with that memory
# empty.
PG_ONLY: frozenset[str] = frozenset({"login_nonces", "source_budgets", "login_failures", "member_refusals",
                                     "live_leases"})


@dataclass
class SQLiteTable:
    con: sqlite3.Connection
    table: str
    columns: list[str]

    def rows(self, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        """The values of ``columns`` of every row, in the order they were stored."""
        cols = ", ".join(f'"{c}"' for c in columns)
        yield from self.con.execute(f'SELECT {cols} FROM "{self.table}" ORDER BY rowid')

    def insert(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        cols = ", ".join(f'"{c}"' for c in columns)
        self.con.executemany(f'INSERT INTO "{self.table}" ({cols}) VALUES ({", ".join("?" * len(columns))})', rows)


def sqlite_tables(cons: dict[str, sqlite3.Connection]) -> dict[str, SQLiteTable]:
    """Every table of the SQLite files (``DATABASES`` -> connection), by the name of its PostgreSQL table."""
    found: dict[str, SQLiteTable] = {}
    for db, con in cons.items():
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                                    "'sqlite_%' ORDER BY name").fetchall():
            columns = [str(r[1]) for r in con.execute(f'PRAGMA table_info("{table}")')]
            found[RENAMED.get((db, table), table)] = SQLiteTable(con, table, columns)
    return found


def matched(sources: dict[str, SQLiteTable], columns: dict[str, list[str]], generated: dict[str, list[str]]
            ) -> dict[str, list[str]]:
    """The columns both sides hold for each table (PostgreSQL's identity columns aside: it numbers those in the
    order rows come, as SQLite's rowid); ``ValueError`` naming the difference if the tables or columns differ."""
    missing, extra = sorted(set(sources) - set(columns)), sorted(set(columns) - set(sources) - PG_ONLY)
    if missing or extra:
        raise ValueError(f"the schemas differ: tables only in SQLite {missing}, only in PostgreSQL {extra}")
    copied: dict[str, list[str]] = {}
    for name, src in sources.items():
        cols = [c for c in src.columns if c not in generated[name]]
        if set(cols) != set(columns[name]):
            raise ValueError(f"the schemas differ in table {name}: {cols} against {columns[name]}")
        copied[name] = cols
    return copied
