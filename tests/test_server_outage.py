"""A PostgreSQL that goes away under a running server (issue 19): ``pg_ctl stop -m fast`` on a cluster of the test's
own. Every request is answered 503 ``unavailable`` with a clear message (never a 500), nothing is half stored,
the audit events of what was refused are kept owed, and once the database is back the same server process
serves again (its pool connects anew) and appends them: one contiguous log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.context import AUDIT, DIRECTORY, STATE
from server.store.postgres.schema import DatabaseUnavailable, connect, lost_is_unavailable
from tests.conftest import Member, ServerThread
from tests.helpers.http import Http, login_as
from tests.helpers.members import SECRETS, session
from tests.helpers.postgres import Cluster, bin_dir

CHALLENGE = "/api/v1/auth/challenge"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A cluster of this test's own: stopping it disturbs no other test."""
    bindir = bin_dir()
    assert bindir is not None, "PostgreSQL's server binaries are missing (tests/helpers/postgres.py)"
    c = Cluster(bindir).start()
    yield c
    if not (c.root / "data" / "postmaster.pid").exists():  # the test failed while it was halted
        c.serve()
    c.stop()


async def _keys(server: ServerThread, m: Member) -> Any:
    async with session(server, m):
        pass
    home, secrets = SECRETS[m.home]
    return home.config().member_id, secrets.device


async def _until_served(h: Http, body: dict[str, str], seconds: float = 30) -> int:
    """Ask for a challenge until the server answers 200 (the database is back); how many 503s it took."""
    deadline, refused = time.monotonic() + seconds, 0
    while True:
        status, res = await h.call("POST", CHALLENGE, js=body)
        if status == 200:
            return refused
        assert (status, res["error"]) == (503, "unavailable"), res
        refused += 1
        assert time.monotonic() < deadline, "the server did not serve again once the database was back"
        await asyncio.sleep(0.2)


def test_a_database_that_goes_away_is_503_and_the_server_comes_back(tmp_path: Path, cluster: Cluster,
                                                                    make_member: Any) -> None:
    url = cluster.new_database()
    server = ServerThread(tmp_path / "data", database_url=url).start()
    try:
        alice = make_member("alice")
        alice.ok("join", server.invite or "", "--name", "alice")
        alice.ok("team", "create", "drafting", "--kind", "program")
        (tmp_path / "a.txt").write_text("before\n")
        alice.ok("put", "drafting", str(tmp_path / "a.txt"))
        member_id, device = asyncio.run(_keys(server, alice))
        body = {"member": member_id, "device": device.device_id}

        async def outage() -> None:
            async with Http(server) as h:
                token = await login_as(h, member_id, device)
                assert (await h.call("GET", "/api/v1/directory", token=token))[0] == 200  # its session now known
                cluster.halt()
                team = next(iter(server.app[DIRECTORY].teams))
                for method, path, kw in (("POST", CHALLENGE, {"js": body}),
                                         ("GET", f"/api/v1/teams/{team}/boxes", {"token": token}),
                                         ("GET", "/api/v1/audit/checkpoint", {"token": token})):
                    status, res = await h.call(method, path, **kw)
                    assert (status, res["error"]) == (503, "unavailable"), (path, res)
                    assert "database" in res["message"] and "try again" in res["message"], res
                assert not server.app[STATE].broken  # refused for now, not for good
                # every request meets the database before its handler (the chain links other processes stored,
                # server/access.py chains_middleware): refused before anything is done, nothing to record
                assert server.app[STATE].owed == []
                status, res = await h.call("GET", "/api/v1/directory", token=token)  # even what memory holds
                assert (status, res["error"]) == (503, "unavailable"), res
                assert "database" in res["message"], res

        asyncio.run(outage())
        (tmp_path / "b.txt").write_text("during\n")
        failed = alice.fails("put", "drafting", str(tmp_path / "b.txt"))
        assert "503" in failed.err and "database" in failed.err, failed.err

        cluster.serve()

        async def recovery() -> None:
            async with Http(server) as h:
                await _until_served(h, body)
                await login_as(h, member_id, device)

        asyncio.run(recovery())
        assert server.app[STATE].owed == [] and not server.app[STATE].broken
        alice.ok("put", "drafting", str(tmp_path / "b.txt"))
        names = {d["name"]: d["version"] for d in alice.json("ls", "drafting")}
        assert names == {"a.txt": 1, "b.txt": 1}  # the refused put left no version behind
        with server.db() as db:
            indices = [r[0] for r in db.execute("SELECT idx FROM events ORDER BY idx").fetchall()]
            assert indices == list(range(len(indices))) == list(range(server.app[AUDIT].committed))
            assert db.execute("SELECT count(*) FROM versions").fetchone() == (2,)
    finally:
        server.stop()


@lost_is_unavailable
class _Napper:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool

    async def nap(self) -> None:
        await self.pool.execute("SELECT pg_sleep(60)")


async def test_a_connection_ended_mid_query_is_unavailable_not_a_crash(pg_cluster: Cluster) -> None:
    """A store's query cut by the database (an operator's shutdown ends every backend this way) raises
    ``DatabaseUnavailable`` (503, and the event owed), never asyncpg's own error (a 500 that would stop the audit
    log for good); the pool then serves again."""
    pool = await connect(pg_cluster.new_database())
    try:
        napping = asyncio.ensure_future(_Napper(pool).nap())
        # the nap's query running, as PostgreSQL sees it (a fixed pause let a loaded machine end nothing, and the
        # nap then ran its 60 s out)
        deadline = time.monotonic() + 30
        while not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                      "AND query LIKE 'SELECT pg_sleep%'"):
            assert not napping.done() and time.monotonic() < deadline, "the nap never ran"
            await asyncio.sleep(0.05)
        ended = await pool.fetchval("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE query LIKE 'SELECT pg_sleep%') AS t")
        assert ended == 1, ended
        with pytest.raises(DatabaseUnavailable, match="the database went away"):
            await napping
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
