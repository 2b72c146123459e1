"""The server's stored state as tests read it: row counts, SQL on ``vault.db`` and ``audit.db``."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from security.events import Leaf
from tests.conftest import Org, ServerThread, open_db

TABLES = ("links", "team_boxes", "puk_boxes", "versions", "threads", "messages", "thread_senders")


def counts(server: ServerThread, tables: Iterable[str] = TABLES) -> dict[str, int]:
    """Rows in each of ``tables`` of ``vault.db``."""
    con = server.db()
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def snapshot(server: ServerThread) -> dict[str, Any]:
    """What a refused request must not change: row counts and blob/temp files."""
    state: dict[str, Any] = dict(counts(server))
    for d in ("blobs", "tmp"):
        state[d] = sorted(str(p.relative_to(server.data_dir))
                          for p in (server.data_dir / d).rglob("*") if p.is_file())
    return state


def sql(org: Org, query: str, *args: Any) -> list[tuple[Any, ...]]:
    db = org.server.db()
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


@contextmanager
def rows_deleted(org: Org, *vids: str) -> Iterator[None]:
    saved = [sql(org, "SELECT * FROM versions WHERE vid=?", vid)[0] for vid in vids]
    for vid in vids:
        sql(org, "DELETE FROM versions WHERE vid=?", vid)
    try:
        yield
    finally:
        for row in saved:
            sql(org, f"INSERT INTO versions VALUES ({', '.join('?' * len(row))})", *row)


def rows(server: ServerThread, sql: str = "SELECT COUNT(*) FROM messages") -> Any:
    with server.db() as db:
        return db.execute(sql).fetchall()


# -- copies of a server's storage (both backends) ----------------------------------------------------------


def storage_copy(server: ServerThread, dest: Path) -> tuple[ServerThread, dict[str, Any]]:
    """A copy of a running server's storage to tamper with and start a ``ServerThread(dest, **config)`` on: its
    TLS key and certificate in ``dest`` and its database (SQLite's backup API; on PostgreSQL ``CREATE DATABASE
    ... TEMPLATE``, which needs the server stopped for a moment). The server (restarted on PostgreSQL) and the
    copy's config; ``copy_db(dest, config)`` opens the copy's database."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("server.crt", "server.key"):
        shutil.copy(server.data_dir / name, dest / name)
    url = server.config.get("database_url")
    if not url:
        src, dst = server.db(), sqlite3.connect(dest / "vault.db")
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return server, {}
    from tests.helpers.postgres import cluster_of

    server.stop()
    copy = cluster_of(url).copy_database(url)
    return server.restart(), {"database_url": copy}


def copy_db(dest: Path, config: dict[str, Any]) -> sqlite3.Connection:
    """The database of a copy made by ``storage_copy`` (each statement committed at once)."""
    return open_db(dest, config.get("database_url", ""))


def save_stopped(server: ServerThread, dest: Path) -> str:
    """Copy a stopped server's data directory into ``dest`` and, on PostgreSQL, its database (the copy's URL)."""
    shutil.copytree(server.data_dir, dest)
    url = server.config.get("database_url")
    if not url:
        return ""
    from tests.helpers.postgres import cluster_of

    return cluster_of(url).copy_database(url)


def put_back_stopped(server: ServerThread, saved: Path, database: str) -> None:
    """Replace a stopped server's data directory (and database) with what ``save_stopped`` saved."""
    shutil.rmtree(server.data_dir)
    shutil.copytree(saved, server.data_dir)
    url = server.config.get("database_url")
    if url:
        from tests.helpers.postgres import cluster_of

        cluster_of(url).copy_database(database, into=url)


# -- audit.db, read as a seized disk would be ------------------------------------------------------------


def audit_db(server: ServerThread) -> sqlite3.Connection:
    """``audit.db``; on PostgreSQL the server's one database, which holds the audit tables too (the audit log's
    ``meta`` is ``audit_meta`` there)."""
    if server.config.get("database_url"):
        return server.db()
    return sqlite3.connect(server.data_dir / "audit.db", isolation_level=None)


def audit_meta(server: ServerThread) -> str:
    """The name of the audit log's ``meta`` table on the server's backend."""
    return "audit_meta" if server.config.get("database_url") else "meta"


def audit_disk(server: ServerThread) -> bytes:
    """What a seized disk holds of the audit log: ``audit.db`` and its WAL; on PostgreSQL the files of the audit
    tables and their TOAST tables (after a checkpoint; the cluster's WAL mixes in every other table, so it is
    left out there)."""
    url = server.config.get("database_url")
    if not url:
        return b"".join(p.read_bytes() for p in sorted(server.data_dir.glob("audit.db*")) if p.is_file())
    from tests.helpers.postgres import table_files

    return b"".join(p.read_bytes() for p in table_files(url, AUDIT_TABLES))


AUDIT_TABLES = ("events", "checkpoints", "cosigs", "witness_cosigs", "audit_meta", "restore_acceptances")


def log_size(server: ServerThread) -> int:
    con = audit_db(server)
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()


def leaves_from(server: ServerThread, start: int) -> list[Leaf]:
    con = audit_db(server)
    try:
        rows = con.execute("SELECT leaf FROM events WHERE idx >= ? ORDER BY idx", (start,)).fetchall()
    finally:
        con.close()
    return [Leaf.parse(bytes(r[0])) for r in rows]
