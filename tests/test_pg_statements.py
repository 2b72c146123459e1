"""The statements a login and a request send PostgreSQL (issue 19, session 19), counted with ``pg_stat_statements``
(bench/pgcount.py's counting: a count, not a time) on a cluster of this file's own (the tests' shared clusters do
not load the extension).

- A challenge and a login: four statements (six before: the challenge stored its nonce after its budget's
  statement; the login read its nonce, then took it with the session).
- A request whose small body came with its headers: one read of the links other processes stored (two before:
  ``chains_middleware``'s replay, then ``check_session_now``'s once the body had arrived, which that replay
  already was).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.threads.team import Threads
from tests.conftest import Member, ServerThread, found_org
from tests.helpers.http import Http, login_as
from tests.helpers.members import SECRETS, session
from tests.helpers.pgcluster import Cluster, bin_dir

N = 20


class CountingCluster(Cluster):
    """With ``pg_stat_statements`` loaded (bench/pgcount.py's)."""

    def serve(self) -> CountingCluster:
        options = (f"-k {self.root} -c listen_addresses='' -p {self.port} -c max_connections=200 "
                   "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        return self


@pytest.fixture(scope="module")
def counting() -> Iterator[CountingCluster]:
    found = bin_dir()
    if found is None:
        pytest.skip("PostgreSQL's server binaries are missing")
    c = CountingCluster(found).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def counted(counting: CountingCluster, make_member: Any, tmp_path: Path) -> Iterator[tuple[ServerThread, Any, str]]:
    """A server on a fresh database of the counting cluster, the organization of the tests founded on it."""
    url = counting.new_database()
    counting.psql("CREATE EXTENSION pg_stat_statements", url)
    server = ServerThread(tmp_path / "data", database_url=url).start()
    try:
        yield server, found_org(server, make_member), url
    finally:
        server.stop()


def _sent(c: Cluster, url: str, like: str = "") -> int:
    """Top-level statements of this database since the last reset (those whose text matches ``like``)."""
    return int(c.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE toplevel AND dbid = "
                      f"(SELECT oid FROM pg_database WHERE datname = current_database()) AND query ~* '{like}'", url))


async def _logged_in(server: ServerThread, member: Member) -> tuple[str, str]:
    async with session(server, member):  # opens the member's keys (tests/helpers/members.py), logged in
        pass
    home, secrets = SECRETS[member.home]
    return home.config().member_id, secrets.device


def test_a_login_is_four_statements(counting: CountingCluster, counted: tuple[ServerThread, Any, str]) -> None:
    server, org, url = counted

    async def go() -> None:
        member, device = await _logged_in(server, org.alice)
        async with Http(server) as h:
            await login_as(h, member, device)  # warm-up
            counting.psql("SELECT pg_stat_statements_reset()", url)
            for _ in range(N):
                await login_as(h, member, device)

    asyncio.run(go())
    sent, peeks = _sent(counting, url), _sent(counting, url, r"^\s*SELECT .* FROM login_nonces")
    assert peeks == 0  # no nonce read without its take
    # a few statements of the server's own in the background (the live leases' renewal, a purge) are allowed for
    assert sent <= 4 * N + 3, f"{sent} statements for {N} logins (6 each before session 19)"


def test_a_small_body_reads_other_processes_links_once(counting: CountingCluster,
                                                      counted: tuple[ServerThread, Any, str]) -> None:
    """``POST .../bodies`` (a batch download: ``check_session_now`` once its body arrived; one unknown version
    asked for, answered 200 with its item refused), N times."""
    server, org, url = counted

    async def go() -> list[int]:
        async with session(server, org.alice) as s:
            team = (await Threads.open(s, "drafting")).team.team_id
        member, device = await _logged_in(server, org.alice)
        async with Http(server) as h:
            token = await login_as(h, member, device)
            counting.psql("SELECT pg_stat_statements_reset()", url)
            return [(await h.call("POST", f"/api/v1/teams/{team}/bodies", js={"vids": ["0" * 32]}, token=token))[0]
                    for _ in range(N)]

    assert asyncio.run(go()) == [200] * N
    reads = _sent(counting, url, r"FROM links WHERE id >")
    assert reads <= N + 2, f"{reads} reads of other processes' links for {N} requests (2 each before session 19)"
