"""``mvault-server check`` and ``backup`` on both backends (the ``backend`` fixture): the same summary and the same
problems found from the same tampering, whether the rows are in SQLite files or in PostgreSQL. A PostgreSQL
deployment's backup restores as an SQLite one, which ``migrate`` copies back into PostgreSQL: the same audit
root on every leg."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from security.merkle import leaf_hash
from tests.conftest import Org
from tests.helpers.backup_world import refused, restored, server_cli
from tests.helpers.postgres import SyncConnection

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)


def _check(data: Path, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    p = server_cli("check", "--data", str(data), "--json", *(("--database", url) if url else ()), *extra)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


def _audit_db(data: Path, url: str) -> sqlite3.Connection | SyncConnection:
    return SyncConnection(url) if url else sqlite3.connect(data / "audit.db", isolation_level=None)


def test_check_and_backup_find_the_same_on_both_backends(org: Org, backend: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    server, alice, bob = org.server, org.alice, org.bob
    doc = tmp_path / "plan.md"
    doc.write_text("plan")
    bob.ok("put", "drafting", str(doc))
    alice.ok("thread", "create", "drafting", "talk")
    alice.ok("thread", "post", "drafting", "talk", "hello")
    data = server.data_dir

    code, report = _check(data, backend)  # while serving
    s = report["summary"]
    assert code == 0 and report["problems"] == [], report
    assert (s["members"], s["documents"], s["versions"], s["blobs"], s["threads"], s["messages"]) == (2, 1, 1, 1, 1, 1)
    assert s["audit_size"] > 0 and s["checkpoint_size"]

    archive = tmp_path / "backup.tar"
    p = server_cli("backup", "--data", str(data), "--to", str(archive), "--json",
                   *(("--database", backend) if backend else ()))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["audit"]["root"] == s["audit_root"]
    copy = restored(archive, tmp_path / "restored")  # an SQLite deployment, whichever backend it came from
    code, again = _check(copy, "")
    assert code == 0 and {k: again["summary"][k] for k in ("documents", "messages", "audit_root")} == {
        k: s[k] for k in ("documents", "messages", "audit_root")}
    if backend:
        refused(server_cli("check", "--data", str(data), "--database", backend, "--repair-orphans"), "SQLite")
        back = request.getfixturevalue("pg_cluster").new_database()
        p = server_cli("migrate", "--data", str(copy), "--to", back, "--json")
        assert p.returncode == 0, p.stderr
        code, there = _check(copy, back)
        assert code == 0 and there["summary"]["audit_root"] == s["audit_root"]

    server.stop()  # the storage tampered with, as a seized or hostile host would
    db = server.db()
    db.execute("UPDATE versions SET seq = 2")
    db.close()
    code, report = _check(data, backend)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["version"]
    audit = _audit_db(data, backend)
    idx, leaf = audit.execute("SELECT idx, leaf FROM events WHERE leaf IS NOT NULL ORDER BY idx LIMIT 1").fetchall()[0]
    forged = bytes(leaf[:-1]) + bytes([leaf[-1] ^ 1])
    audit.execute("UPDATE events SET leaf=?, hash=? WHERE idx=?", (forged, leaf_hash(forged), idx))
    audit.close()
    code, report = _check(data, backend)
    assert any(p["kind"] == "audit" and "not the log's root" in p["detail"] for p in report["problems"]), report
