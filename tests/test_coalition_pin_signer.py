"""Issue 20: the host's NCC member who puts an ally's pin in force (the second signature of the two-person
``coalition.ally``) need not be a member of the space. A guest's directory lists the space's members only, so the
guest's client cannot check that link's signature; the join code vouches for the chain up to its link (hash-linked:
the host's server can change no byte of it), so a link of that prefix signed by someone outside the space is taken
on the code's word. Past the code every link's signer must still be a member the guest can check. Found by helper
"guestpin" (session 16): before, every guest's replay failed ("link signed by unknown member")."""

from __future__ import annotations

import pytest

from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Coalition
from vault.chains import TeamState, replay_team
from vault.chains.outside import outside_org
from vault.errors import ChainError
from vault.links import Link


def guest_replay(c: Coalition, links: list[Link], code: int) -> TeamState:
    """A guest's client's replay with a join code at ``code`` and the directory a guest gets: the members of the
    space (as the host's replay of ``links`` states them) and nobody else."""
    vouched = c.host.replay_team(links[:code])
    org = outside_org(c.host.org_links[0].hash, c.space.team_id, code, vouched.ally_pins.items())
    space = c.host.replay_team(links)
    directory = {m: s for m, s in c.host.members().items() if m in space.members or m in vouched.members}
    return replay_team(links, org, directory, POLICY, TEAM_KINDS)


def pinned_by_outsider() -> tuple[Coalition, Person]:
    """The space's admin (the founder, NCC) proposes the ally's pin; nina, the host's other NCC member, who is not in
    the space, puts it in force."""
    c = Coalition()
    nina = c.host.admit("nina")
    c.host.role(c.admin, nina, "ncc")
    ally = c.ally()
    c.pin(ally)
    c.pin(ally, signer=nina)
    assert nina.id not in c.state().members
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    return c, nina


def test_a_pin_put_in_force_by_an_ncc_member_outside_the_space_replays_for_guests() -> None:
    c, _ = pinned_by_outsider()
    code = max(x.seq for x in c.space.links if x.type == "coalition.ally")
    guest = guest_replay(c, c.space.links, code)
    assert guest.members.keys() == c.state().members.keys()
    assert [a.key for a in guest.allies.values()] == [a.key for a in c.state().allies.values()]


def test_past_the_code_a_link_signed_by_someone_outside_the_space_is_still_refused() -> None:
    """nina (host NCC, not in the space) signs a team.add after the join code's link: the guest cannot check her
    signature and must not take it on anyone's word."""
    c, nina = pinned_by_outsider()
    code = max(x.seq for x in c.space.links if x.type == "coalition.ally")
    bob = c.host.admit("bob")
    forged = c.host.add(c.space, nina, bob, append=False)
    with pytest.raises(ChainError, match="unknown member"):
        guest_replay(c, [*c.space.links, forged], code)
