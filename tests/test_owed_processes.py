"""Owed audit events of two ``mvault-server run`` processes over one PostgreSQL database and one data directory
(issue 19): each keeps its own journal (``server/store/owed.py``). The audit log fails in both after a login was
done (``tests/helpers/audit_down``: the database "goes away" for the audit appends alone), so each process owes
that login's event; both are killed with -9 before the log is back; one process starts again and appends both.
Before: both wrote ``DATA/.owed-audit.bin`` (each from its own generation counter, into the same slot) and the
second save overwrote the first process's event: one login was in the sessions and never in the log."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import Member
from tests.helpers.killable_server import ServerProcess
from tests.helpers.members import session
from tests.helpers.postgres import Cluster, SyncConnection
from tests.helpers.process_pair import process_pair
from vault.errors import VaultError

HELPERS = Path(__file__).parent / "helpers"


def _events(url: str) -> int:
    with SyncConnection(url) as db:
        row = db.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


async def _login_refused(server: ServerProcess, m: Member) -> str:
    with pytest.raises(VaultError) as refused:
        async with session(server, m):  # type: ignore[arg-type]
            pass
    return str(refused.value)


def test_each_process_keeps_its_owed_events(tmp_path: Path, pg_cluster: Cluster,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    down = tmp_path / "audit-down"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HELPERS / "audit_down"), str(HELPERS.parents[1])]))
    monkeypatch.setenv("AUDIT_DOWN_WHILE", str(down))
    url = pg_cluster.new_database()
    with process_pair(tmp_path, url) as (one, two, org):
        before = _events(url)
        down.touch()
        for server, m in ((one, org.alice), (two, org.bob)):
            why = asyncio.run(_login_refused(server, m))
            assert "database" in why, why  # 503: the login's session is stored, its event owed
        assert _events(url) == before
        one.kill()
        two.kill()  # kill -9 of both while the events are owed
        down.unlink()
        one.start()
        assert _events(url) == before + 2  # both logins' events, appended at the start
        two.start()
        assert _events(url) == before + 2  # once each
        verified = org.alice.json("audit", "verify")
        assert verified["ok"] and verified["problems"] == [], verified
