"""Review 16 (session 16): a ``team.role`` in a coalition space never goes past what the member's organization
approved (the role and end of its last ``coalition.admit`` for them) without a new approval of that organization,
on the host's side and a guest's (``vault.chains.coalitionspace.change_role``). Chain level: two organizations by
hand (tests/helpers/coalition_world.py), both replays."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.chain_world import DAY, Person
from tests.helpers.coalition_world import Coalition
from vault.chains import TeamState
from vault.errors import ChainError
from vault.links import Link


def role(c: Coalition, signer: Person, member: Person, to: str, until: int | None,
         approval: dict[str, Any] | None = None, append: bool = True) -> Link:
    body: dict[str, Any] = {"member": member.id, "role": to, "until": until}
    if approval is not None:
        body["approval"] = approval
    return c.host.team_link(c.space, signer, "team.role", body, append=append)


def refused(c: Coalition, link: Link, match: str) -> None:
    for replay in c.both(link):
        with pytest.raises(ChainError, match=match):
            replay()


def views(c: Coalition) -> list[TeamState]:
    """The host's replay and a guest's (a join code vouching for the chain up to its last pin, or its first link)."""
    host, guest = c.state(), c.outside(c.space.links)
    assert guest.members == host.members
    return [host, guest]


def test_a_host_members_approved_term_is_shortened_freely_and_extended_only_with_the_hosts_approval() -> None:
    c = Coalition(hosted=True)
    bob = c.host.admit("bob")
    until = c.host.time + 10 * DAY
    c.add(bob, c.host_approval(bob, "admin", until=until), role="admin", until=until)
    role(c, c.admin, bob, "writer", until - DAY)  # within what the host approved: no approval asked
    role(c, c.admin, bob, "writer", until)  # back to the approved end: still within it
    past = "past what their organization approved"
    refused(c, role(c, c.admin, bob, "writer", until + DAY, append=False), past)  # a later end
    refused(c, role(c, c.admin, bob, "writer", None, append=False), past)  # no end
    refused(c, role(c, c.admin, bob, "admin", until, append=False), "to admin")  # a promotion: always the host's act
    longer = c.host.time + 30 * DAY
    refused(c, role(c, c.admin, bob, "writer", longer, c.host_approval(bob, "writer", until=until), append=False),
            "another member, role or end")  # an approval of another end
    role(c, c.admin, bob, "writer", longer, c.host_approval(bob, "writer", until=longer))  # the host approves it
    for state in views(c):
        assert (state.members[bob.id].role, state.members[bob.id].until) == ("writer", longer)
        assert state.approved[bob.id] == ("writer", longer)
    refused(c, role(c, c.admin, bob, "writer", None, append=False), past)  # the new approval bounds in turn


def test_a_guests_approved_role_and_end_bound_every_change_without_the_allys_new_approval() -> None:
    c = Coalition()
    ally, other = c.ally("ally"), c.ally("other")
    c.pin(ally)
    c.pin(other)
    alice = ally.member("alice", c.host)
    until = c.host.time + 10 * DAY
    c.add(alice, c.approval(ally, alice, "reader", until=until), role="reader", until=until)
    role(c, c.admin, alice, "reader", until - DAY)  # shorter: the host's side alone (a removal would be too)
    past = "past what their organization approved"
    refused(c, role(c, c.admin, alice, "writer", until - DAY, append=False), past)  # a higher role than approved
    refused(c, role(c, c.admin, alice, "reader", None, append=False), past)
    refused(c, role(c, c.admin, alice, "writer", None, c.approval(other, alice, "writer"), append=False),
            "not of the organization the member entered for")  # another ally answers for nobody of this one
    refused(c, role(c, c.admin, alice, "writer", None, c.approval(ally, alice, "writer", until=until),
                    append=False), "another member, role or end")
    approval = c.approval(ally, alice, "writer")
    role(c, c.admin, alice, "writer", None, approval)  # the ally's new approval: writer, no end
    for state in views(c):
        assert (state.members[alice.id].role, state.members[alice.id].until) == ("writer", None)
    role(c, c.admin, alice, "reader", None)
    refused(c, role(c, c.admin, alice, "writer", None, approval, append=False), "used once")  # not used twice
    role(c, c.admin, alice, "writer", None)  # back within the last approval: no new one needed
    assert [s.members[alice.id].role for s in views(c)] == ["writer", "writer"]


def test_a_space_without_host_key_keeps_the_admins_word_for_host_members() -> None:
    """No host approval exists in such a space (created before session 15): a host member's role and end are the
    space admin's, as before; a carried approval is refused (nothing to check it with)."""
    c = Coalition()
    dan = c.host.admit("dan")
    c.host.add(c.space, c.admin, dan, until=c.host.time + DAY)
    role(c, c.admin, dan, "admin", None)
    assert c.state().members[dan.id].until is None
    c.host_key = None
    refused(c, role(c, c.admin, dan, "writer", None, {"statement": b"x", "sig": bytes(64)}, append=False),
            "only in a space with host_key")
