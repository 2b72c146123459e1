"""``mvault-server migrate``: an SQLite deployment copied into PostgreSQL, proved, and served from there to the
same members (their pinned checkpoints and chains carry on); refused while its server runs, when its source
fails its check, and into a database that holds rows; a lossy copy is caught by the proof and rolled back."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from server.migrate import MigrateRefused, migrate
from server.store.postgres.tables import Tables
from server.store.sqlite.audit import AuditStore
from server.store.sqlite.vault import SQLiteStorage
from server.tablemap import PG_ONLY, sqlite_tables
from tests.conftest import Member, Org, security_team
from tests.helpers.backup_world import refused, server_cli
from tests.helpers.postgres import Cluster


def _tables_of(url: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    async def read() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        async with Tables(url) as t:
            return t.columns, t.generated

    return asyncio.run(read())


def test_every_sqlite_table_has_its_postgresql_table(tmp_path: Path, pg_cluster: Cluster) -> None:
    """The two schemas hold the same tables and columns (migrate copies what it finds; one forgotten on a side
    would stop it): compared here on fresh databases of each backend."""

    async def create() -> None:
        for store in (await SQLiteStorage.open(tmp_path), await AuditStore.open(tmp_path)):
            await store.close()

    asyncio.run(create())
    cons = {n: sqlite3.connect(tmp_path / n) for n in ("vault.db", "audit.db")}
    try:
        sqlite = {t: set(s.columns) for t, s in sqlite_tables(cons).items()}
    finally:
        for c in cons.values():
            c.close()
    columns, generated = _tables_of(pg_cluster.new_database())
    postgres = {t: set(cols) | set(generated[t]) for t, cols in columns.items() if t not in PG_ONLY}
    assert set(sqlite) == set(postgres), (set(sqlite) ^ set(postgres))
    for t in sqlite:  # links.id is PostgreSQL's stand-in for SQLite's rowid
        assert sqlite[t] == postgres[t] - ({"id"} if t == "links" else set()), t
    assert {"links", "versions", "messages", "events", "cosigs", "audit_meta", "authored"} <= set(sqlite)


def _migrate(data: Path, url: str) -> Any:
    p = server_cli("migrate", "--data", str(data), "--to", url, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _populate(org: Org, make_member: Any, tmp_path: Path) -> Member:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    doc = tmp_path / "plan.md"
    for text in ("first", "second"):
        doc.write_text(text)
        bob.ok("put", "drafting", str(doc))
    alice.ok("thread", "create", "drafting", "talk")
    alice.ok("thread", "post", "drafting", "talk", "hello")
    assert carol.json("audit", "witness")["cosigned"] > 0  # a checkpoint cosigned by the Security Team
    assert alice.json("audit", "verify")["ok"]  # alice pins a checkpoint and the chains she replayed
    return carol


def test_migrate_round_trip_and_refusals(org: Org, make_member: Any, tmp_path: Path, pg_cluster: Cluster) -> None:
    server, alice, bob = org.server, org.alice, org.bob
    carol = _populate(org, make_member, tmp_path)
    data, url = server.data_dir, pg_cluster.new_database()
    refused(server_cli("migrate", "--data", str(data), "--to", url), "a server is running")
    server.stop()
    blobs = sorted((data / "blobs").glob("*/*"))
    # Started on the empty database, it would collect the SQLite deployment's blobs as garbage: refused.
    refused(server_cli("init", "--data", str(data), "--database", url), "migrate")
    assert sorted((data / "blobs").glob("*/*")) == blobs
    full = pg_cluster.new_database()
    assert server_cli("init", "--data", str(tmp_path / "other"), "--database", full).returncode == 0
    refused(server_cli("migrate", "--data", str(data), "--to", full), "not empty")
    assert pg_cluster.psql("SELECT count(*) FROM meta", full) == "2"  # the other deployment's, untouched
    blob = next((data / "blobs").glob("*/*"))
    blob.rename(tmp_path / "aside")
    refused(server_cli("migrate", "--data", str(data), "--to", url), "fails its check")
    (tmp_path / "aside").rename(blob)

    proof = _migrate(data, url)
    con = sqlite3.connect(data / "audit.db")
    size = con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert proof["audit"]["size"] == size and proof["audit"]["checkpoint"] is not None
    assert proof["tables"]["cosigs"] >= 1 and proof["tables"]["messages"] == 1 and proof["blobs"] == 2
    assert proof["documents"][next(iter(proof["documents"]))]["seq"] == 2
    assert pg_cluster.psql("SELECT count(*) FROM events", url) == str(size)
    refused(server_cli("migrate", "--data", str(data), "--to", url), "not empty")  # twice: refused

    server.config["database_url"] = url
    server.restart()
    out = tmp_path / "plan.out"
    alice.ok("get", "drafting", "plan.md", "-o", str(out))
    assert out.read_text() == "second"
    (tmp_path / "plan.md").write_text("third")
    assert bob.json("put", "drafting", str(tmp_path / "plan.md"))[0]["version"] == 3
    assert "hello" in bob.ok("thread", "read", "drafting", "talk").out
    for member in (alice, carol):
        v = member.json("audit", "verify")  # consistent with the checkpoint each pinned on SQLite
        assert v["ok"] and v["size"] > size


def test_a_lossy_copy_is_caught_and_rolled_back_an_old_schema_upgraded(org: Org, pg_cluster: Cluster,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    org.server.stop()
    url = pg_cluster.new_database()
    copy = Tables.copy

    async def lossy(self: Tables, table: str, columns: Any, rows: Iterable[tuple[Any, ...]]) -> None:
        kept = list(rows)
        await copy(self, table, columns, kept[:-1] if table == "links" else kept)

    monkeypatch.setattr(Tables, "copy", lossy)
    with pytest.raises(MigrateRefused, match="does not prove equal"):
        migrate(org.server.data_dir, url)
    assert pg_cluster.psql("SELECT count(*) FROM links", url) == "0"  # rolled back: still empty
    monkeypatch.undo()
    # A deployment last served by a release before the quotas' tables: brought up to date first, as a start would.
    db = sqlite3.connect(org.server.data_dir / "vault.db")
    db.executescript("DROP TABLE authored; DROP TABLE authored_bytes;")
    db.close()
    done = migrate(org.server.data_dir, url)
    assert "authored_bytes" in done.summary["tables"] and done.summary["tables"]["links"] > 0
