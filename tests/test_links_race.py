"""Review round 26, finding 2 (session 20, fix26links): over PostgreSQL with two server processes, every link append
is judged on every link stored before it (``append_links``'s ``seen``, ``server/access.py`` ``append_judged``). The
review's own order (a team link judged in one process, its device's revocation stored by the other meanwhile) is
tests/test_review26_exploits.py; here the other order: the revocation judged in one process, a team link dated after
it stored by the other meanwhile."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from client.admin import create_team, invite
from server.context import CHAINS
from tests.conftest import ServerThread
from tests.helpers.members import SECRETS, session
from tests.helpers.pair import Pair
from tests.test_revoke_race import _laptop, dated_after_or_refused, revocation_held_while, revoked_while_held


async def test_team_links_appended_at_once_through_both_processes_are_all_stored(pair: Pair) -> None:
    """A burst: every link judged again in its transaction when the other process stored one meanwhile, none refused
    (with a retry after the transaction instead, 10 of 100 such appends in five bursts ended in 409 after three tries;
    this test does not fail on the code before review 26's fix, which did not judge again). First in the
    module: alice's sessions are opened before the revocations below rotate her keys."""
    alice = pair.org.alice
    async with session(pair.one, alice) as s1, session(pair.two, alice) as s2:
        names = [f"burst-{i}-{n}" for i in range(10) for n in (1, 2)]
        made = await asyncio.gather(*(create_team(s1 if name.endswith("1") else s2, name, "program")
                                      for name in names), return_exceptions=True)
        assert not [x for x in made if isinstance(x, BaseException)]
        for s in (s1, s2):
            assert set(names) <= {t.name for t in (await s.chains.view(refresh=True)).teams.values()}


async def test_a_revocation_held_in_one_process_is_refused_once_the_other_stored_a_team_link_dated_after_it(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        server_errors: list[logging.LogRecord]) -> None:
    alice, laptop = pair.org.alice, _laptop(pair, tmp_path, monkeypatch)
    refused = await revocation_held_while(pair, laptop, monkeypatch,
                                          lambda s: create_team(s, "cover", "program"))  # dated AHEAD s after it
    # secure: alice's chains verify through both processes and a restart, with the team; the revocation, if taken,
    # is dated after the team link (here: refused, "sign it again dated ... or later")
    for server in (pair.one, pair.two):
        async with session(server, alice) as s:
            view = await s.chains.view(refresh=True)
            assert "cover" in {t.name for t in view.teams.values()}
            device = view.members[s.session.me].devices[SECRETS[laptop.home][1].device.device_id]
    await asyncio.to_thread(lambda: ServerThread(pair.one.data_dir, database_url=pair.url).start().stop())
    assert not [r.getMessage() for r in server_errors]  # process one takes process two's links, and back
    dated_after_or_refused(device, refused, s.session.now())


async def test_an_org_link_held_in_one_process_is_refused_once_the_other_stored_its_devices_revocation(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        server_errors: list[logging.LogRecord]) -> None:
    """The review's order, for an organization link (an invite) signed by the device being revoked."""
    alice, laptop = pair.org.alice, _laptop(pair, tmp_path, monkeypatch)
    async with session(pair.one, laptop):
        pass
    entered, revoked = threading.Event(), threading.Event()
    real = pair.one.app[CHAINS].append_links

    async def held(links: Any, *args: Any, **kwargs: Any) -> Any:  # process one's org links: judged, held
        links = list(links)
        if any(x.kind == "org" for x in links):
            entered.set()
            await asyncio.get_running_loop().run_in_executor(None, revoked.wait, 60)
        return await real(links, *args, **kwargs)

    monkeypatch.setattr(pair.one.app[CHAINS], "append_links", held)

    await revoked_while_held(pair, laptop, entered, revoked,  # judged again after LinksMoved
                             lambda s: invite(s, "member", "cover"))  # dated AHEAD s after the revocation
    for server in (pair.one, pair.two):  # every replay takes the organization chain
        async with session(server, alice) as s:
            view = await s.chains.view(refresh=True)
            assert view.members[s.session.me].devices[SECRETS[laptop.home][1].device.device_id].revoked is not None
    await asyncio.to_thread(lambda: ServerThread(pair.one.data_dir, database_url=pair.url).start().stop())
    assert not [r.getMessage() for r in server_errors]

