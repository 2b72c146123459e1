"""The server's stored state as tests read it: row counts, SQL on ``vault.db`` and ``audit.db``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from security.events import Leaf
from tests.conftest import Org, ServerThread

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


# -- audit.db, read as a seized disk would be ------------------------------------------------------------


def audit_db(server: ServerThread) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "audit.db", isolation_level=None)


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
