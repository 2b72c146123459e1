"""The time of a chain link (review round 8): a link is dated by its signer's clock, and the real server refuses
one dated more than its clock window (``clock_skew``, at most half of ``vault/acts.py ALLOWANCE``) from its own
clock, in either direction, with a 400 naming the difference, storing nothing. A member whose device clock is off
gets one ``error:`` line naming it. (The rules' side, judging windows of days by when links were appended, is in
tests/test_review8_exploits.py.)"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.helpers.forgery import Forge, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.http import Http, b64, login_as, refused
from vault.acts import ALLOWANCE
from vault.links import Link, make_link

forge = forge_fixture  # the fixture (tests/helpers/forgery.py)
TWO_HOURS = 2 * 3600


def _vouch(f: Forge, signer: str, member: str, when: int) -> Link:
    org = f.d.require_org()
    return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=when, signer=f.ids[signer],
                     device=f.device(signer), type_="org.vouch", body={"member": f.ids[member]})


def _review(f: Forge) -> Link:
    """alice (admin of ops) confirms its member list, dated by the server's clock."""
    return team_link(f, f.ops, "alice", "team.review", {"roster": f.d.team(f.ops).roster(f.d.require_org())})


def _dated(link: Link, when: int, f: Forge, signer: str) -> Link:
    """``link`` made again, dated ``when``."""
    raw = link.body.raw
    return make_link(chain=link.chain, seq=link.seq, prev=link.prev, time=when, signer=link.signer,
                     device=f.device(signer), type_=link.type, body=dict(raw))


@pytest.mark.parametrize("offset", [TWO_HOURS, -TWO_HOURS, ALLOWANCE // 2 + 30])
def test_a_link_dated_away_from_the_servers_clock_is_refused_at_append(forge: Forge, offset: int) -> None:
    """An org record (carol's vouch) and a team link (alice's review of a team's list), each dated ``offset`` from the
    server's clock: 400, the message names how far the clock is off, nothing stored. The same links dated now are
    taken."""
    f = forge
    direction = "ahead of" if offset > 0 else "behind"

    async def post() -> None:
        async with Http(f.server) as h:
            token = await login_as(h, f.ids["carol"], f.device("carol"))
            admin = await login_as(h, f.ids["alice"], f.device("alice"))
            vouch = _vouch(f, "carol", "bob", f.now() + offset)
            body = await refused(h, "POST", "/api/v1/org/links", 400, token=token, js={"link": b64(vouch.wire)},
                                 contains=f"clock is {'2h 0m' if abs(offset) == TWO_HOURS else '10m 30s'} {direction}",
                                 what="vouch")
            assert "set the clock right" in body["message"]
            late = _dated(_review(f), f.now() + offset, f, "alice")
            await refused(h, "POST", f"/api/v1/teams/{f.ops}/links", 400, token=admin,
                          js={"link": b64(late.wire), "boxes": {}}, contains=direction, what="team review")
            # The following scenario: the same acts dated by the server's clock are appended.
            got, _ = await h.call("POST", "/api/v1/org/links", token=token,
                                  js={"link": b64(_vouch(f, "carol", "bob", f.now()).wire)})
            assert got == 201
            got, answer = await h.call("POST", f"/api/v1/teams/{f.ops}/links", token=admin,
                                       js={"link": b64(_review(f).wire), "boxes": {}})
            assert got == 201, answer

    asyncio.run(post())
    assert [r.type for r in f.d.require_org().records] == ["org.vouch"]
    assert [by for _, by, _ in f.d.team(f.ops).reviews] == [f.ids["alice"]]


def test_a_device_whose_clock_is_off_gets_one_error_line(forge: Forge, monkeypatch: Any) -> None:
    """bob's device clock runs two hours ahead: his vouch is refused with one ``error:`` line naming the difference
    (the login, signed with the same clock, is refused first), and the organization chain is unchanged; with the
    clock right, it is recorded."""
    f = forge
    bob = f.org.bob
    before = len(f.d.org_links)
    bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(TWO_HOURS)
    r = bob.fails("vouch", "carol", contains="clock")
    assert re.search(r"clock is (1h 59m|2h 0m) ahead of the server's", r.err), r.err  # at login, before any link
    assert len(f.d.org_links) == before
    bob.env_extra.pop("MVAULT_TEST_CLOCK_OFFSET")
    bob.ok("vouch", "carol")
    assert len(f.d.org_links) == before + 1
