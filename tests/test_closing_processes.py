"""A closing made through one of two ``mvault-server run`` processes over one PostgreSQL database (issue 20, docs/
lifecycle.md section 3): the other process learns it from the notice bus (``server/relay.py``), drops the team chains
it held in memory (its log says so), ends its live followers with ``org_closed`` at once, refuses logins with
``org_closed`` and serves the closing for members' clients to verify. Real processes, real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.threads.team import Threads
from tests.conftest import Member, Org, security_team
from tests.helpers.agetools import AGE_KEYGEN, age_identity
from tests.helpers.http import Http
from tests.helpers.killable_server import ServerProcess
from tests.helpers.members import session
from tests.helpers.pair import open_keys, wire
from tests.helpers.postgres import Cluster
from tests.helpers.process_pair import process_pair
from tests.test_export import write

pytestmark = pytest.mark.skipif(not AGE_KEYGEN, reason="Debian's age (.ci/run installs it)")

DROPPED = "team chains dropped from memory"


@pytest.fixture
def pair(tmp_path: Path, pg_cluster: Cluster) -> Iterator[tuple[ServerProcess, ServerProcess, Org, Member]]:
    carol: list[Member] = []
    with process_pair(tmp_path, pg_cluster.new_database(),
                      lambda org, make: carol.append(security_team(org, make))) as (one, two, org):
        yield one, two, org, carol[0]


async def test_the_other_process_drops_its_teams_and_answers_org_closed(
        pair: tuple[ServerProcess, ServerProcess, Org, Member], tmp_path: Path) -> None:
    one, two, org, carol = pair
    async with session(one, org.alice) as s:  # type: ignore[arg-type]
        threads = await Threads.open(s, "drafting")
        await threads.create("before", 0)
        team = threads.team.team_id
    write(org.alice, "plan.md", "the plan\n")
    _, recipient = age_identity(tmp_path, "successor")
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[hand-over]]\nteam = "drafting"\nto = ["{recipient}"]\n')
    org.alice.ok("org", "close", "--hand-over", str(plan))
    carol.ok("org", "approve-close")
    await open_keys(one, org.bob)  # type: ignore[arg-type]
    async with wire(two, org.bob, team, {"all": True}) as w:  # type: ignore[arg-type]
        assert DROPPED not in two.log.read_text(errors="replace")
        started = time.monotonic()
        await asyncio.to_thread(org.alice.ok, "org", "close", "--run", "--out", str(tmp_path / "handover"))
        await w.until(lambda: False, timeout=30)  # until the server closes the connection
        assert time.monotonic() - started < 30
    [closed] = w.of_type("closed")
    assert closed["error"] == "org_closed", closed  # the reason, before the connection ends
    deadline = time.monotonic() + 10
    while DROPPED not in two.log.read_text(errors="replace") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    logged = two.log.read_text()  # both processes' (one data directory): only the other one drops, once
    assert logged.count(DROPPED) == 1 and "through another server process: 2 " + DROPPED in logged, logged[-2000:]
    async with Http(two) as h:  # type: ignore[arg-type]
        status, body = await h.call("GET", "/api/v1/closing")
    assert status == 200 and body["org"], status
    r = org.bob.run("ls", "drafting")  # bob's client (pinned to one) verifies the closing and wipes
    assert r.code != 0 and "was closed" in r.err, r.err
