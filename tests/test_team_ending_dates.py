"""Team links ending a member's rights (session 25, fix37b; review 37's second finding): which team links they are
(``POLICY.team_rights_ended``), the honest flows their bound must leave alone (a removal, a demotion or a leave right
after a link dated at the server's skew; the rotation ``maintain`` makes after a removal), and a leave after a link
a colluding server took a day ahead, refused on one line naming it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from client.view import CLOCKS_APART, END_AHEAD
from security.authority import POLICY
from server.context import CONFIG
from tests.conftest import Org
from tests.helpers.members import add_members, session

DAY = 86400


async def test_which_team_links_end_a_members_rights(org: Org) -> None:
    """Removals, a leave, a lower role and a new or earlier end; not a rotation, an add, a promotion, a later end."""
    org.alice.ok("team", "role", "drafting", "bob", "writer", "--until", "2099-06-30")
    async with session(org.server, org.alice) as sa:
        view = await sa.chains.view(refresh=True)
    team = view.team_by_name("drafting")
    alice, bob = sa.session.me, view.member_by_name("bob").member_id
    until = team.members[bob].until
    assert until is not None

    def ends(link: str, body: dict[str, Any], signer: str = alice) -> str | None:
        return POLICY.team_rights_ended(link, body, team, signer)

    assert ends("team.remove", {"member": bob, "key": None}) == bob
    assert ends("coalition.remove", {"member": bob, "departed": True, "key": None}) == bob
    assert ends("team.leave", {}, signer=bob) == bob
    assert ends("team.role", {"member": bob, "role": "reader", "until": until}) == bob  # lower
    assert ends("team.role", {"member": bob, "role": "writer", "until": until - 1}) == bob  # an earlier end
    assert ends("team.role", {"member": alice, "role": "admin", "until": until}) == alice  # an end she had not
    assert ends("team.role", {"member": bob, "role": "admin", "until": until}) is None  # a promotion
    assert ends("team.role", {"member": bob, "role": "writer", "until": None}) is None  # the end lifted
    assert ends("team.role", {"member": bob, "role": "writer", "until": until + 1}) is None  # a later end
    assert ends("team.role", {"member": "nobody", "role": "reader", "until": None}) is None
    assert ends("team.rotate", {"key": {}}) is None
    assert ends("team.add", {"member": bob, "role": "reader"}) is None


@pytest.mark.parametrize("link", ["team.role", "team.remove", "team.leave"])
async def test_a_team_link_ending_rights_right_after_an_honest_link_at_the_skew_is_taken(
        org: Org, make_member: Any, link: str) -> None:
    """An honest server (window 600 s); bob's clock 600 s ahead: his ``team rotate drafting`` is taken dated + 600.
    Right after, with the other clocks right, alice demotes bob (``[team.role]``) or removes him (``[team.remove]``),
    or carol leaves (``[team.leave]``): each is dated at drafting's head, within ``END_AHEAD`` + ``CLOCKS_APART`` of
    the signer's clock, and stored. After the removal alice's own link rotated the key (she holds it); after the
    leave alice's next command's ``maintain`` rotates it, dated at the head too."""
    (carol,) = add_members(org, make_member, ["carol"])
    start = int(time.time())
    org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "600"
    org.bob.ok("team", "rotate", "drafting")
    del org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"]
    if link == "team.role":
        org.alice.ok("team", "role", "drafting", "bob", "reader")
    elif link == "team.remove":
        assert org.alice.json("team", "remove", "drafting", "bob")["rotated"] is True
    else:
        carol.ok("leave", "drafting")
        assert "rotated the key of team drafting" in org.alice.ok("whoami").err
    end = int(time.time())
    async with session(org.server, org.alice) as sa:
        view = await sa.chains.view(refresh=True)
    team = view.team_by_name("drafting")
    bob, carol_id = view.member_by_name("bob").member_id, view.member_by_name("carol").member_id
    assert start + 600 <= team.time <= end + 600 < end + END_AHEAD + CLOCKS_APART, (team.time - start, end - start)
    assert team.generation == (2 if link == "team.role" else 3), team.generation  # created, bob's, the rotation
    if link == "team.role":
        assert team.role_of(bob, team.time) == "reader"
    else:
        gone = carol_id if link == "team.leave" else bob
        assert gone not in team.members and (team.generation, gone) not in team.boxes


async def test_a_leave_after_a_link_taken_a_day_ahead_is_refused_naming_it(org: Org, make_member: Any) -> None:
    """The second finding of review 37 for a leave: the server's window widened to two days, bob's ``team rotate
    drafting`` dated a day ahead is taken; carol (clock right) ``leave drafting``: refused on one line naming
    drafting's link and its signer, nothing stored (carol stays in drafting until that date passes: the residue)."""
    (carol,) = add_members(org, make_member, ["carol"])
    org.server.app[CONFIG].clock_skew = 2 * DAY
    org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(DAY)
    org.bob.ok("team", "rotate", "drafting")
    del org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"]
    shown = org.alice.json("team", "show", "drafting")
    r = carol.fails("leave", "drafting", contains="team drafting's link")
    assert "(signed by bob)" in r.err and "nothing was signed" in r.err, r.err
    after = org.alice.json("team", "show", "drafting")
    assert after["generation"] == shown["generation"]
    assert "carol" in [m["name"] for m in after["members"]]
