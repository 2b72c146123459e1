"""Issue 20, the host's members' entry verifiable by a guest (docs/lifecycle.md "The host's members' entry, verifiable
by a guest"): a coalition space whose ``team.create`` carries the host's own coalition key (``host_key``), judged
by the real chain code and the one judge on both sides: the host's (with its organization chain) and a guest's
(``vault/chains/outside.py``: no organization chain, a join code vouching for the chain up to a link).

In such a space a host member's ``team.add``, and a promotion to ``admin``, carry the host's ``coalition.admit``
signed with that key; the host's removal of one of its members is a ``coalition.remove`` statement signed with it.
So the guest's client refuses what it used to take on a space admin's word: an add without the host NCC's approval.
"""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import expect
from tests.helpers.coalition_world import Coalition
from tests.helpers.keyholder import openable
from vault.chains.coalition import CoalitionKey, admit_statement, signed_statement
from vault.errors import ChainError
from vault.links import Link, make_link


@pytest.fixture
def c() -> Coalition:
    return Coalition(hosted=True)






def test_a_host_members_add_needs_the_hosts_approval_on_every_side(c: Coalition) -> None:
    bob = c.host.admit("bob")
    for replay in c.both(c.add(bob, None, append=False)):
        expect(ChainError, replay, "needs the host's coalition.admit")
    c.add(bob, c.host_approval(bob))
    for state in (c.state(), c.outside(c.space.links)):
        assert state.members[bob.id].role == "writer"
        assert bob.id not in state.guests  # a host member, not a guest
        assert (state.generation, bob.id) in state.boxes


@pytest.mark.parametrize("bad", ["ally-key", "other-member", "other-role", "expired", "other-space"])
def test_a_host_approval_is_for_exactly_one_add_signed_with_the_host_key(c: Coalition, bad: str) -> None:
    bob, dan = c.host.admit("bob"), c.host.admit("dan")
    key = c.host_key
    assert key is not None
    approval = {"ally-key": lambda: c.host_approval(bob, key=CoalitionKey.generate()),
                "other-member": lambda: c.host_approval(dan),
                "other-role": lambda: c.host_approval(bob, "reader"),
                "expired": lambda: c.host_approval(bob, time=c.host.time - 15 * 86400),
                "other-space": lambda: signed_statement(key, admit_statement(
                    "0" * 32, c.host.org_links[0].hash, bob.id, "writer", None, c.host.time))}[bad]()
    for replay in c.both(c.add(bob, approval, append=False)):
        expect(ChainError, replay)


def test_a_host_approval_is_used_once(c: Coalition) -> None:
    bob = c.host.admit("bob")
    approval = c.host_approval(bob)
    c.add(bob, approval)
    c.remove(bob, [c.admin, c.writer])
    for replay in c.both(c.add(bob, approval, append=False)):
        expect(ChainError, replay, "used once")


def test_the_host_approves_only_its_own_admitted_members(c: Coalition) -> None:
    """The host's clients and server refuse a host approval of someone their organization never admitted (the
    guest cannot tell: the host's NCC answers for its members, as an ally's for its own)."""
    stranger = c.host.person("stranger")
    expect(ChainError, lambda: c.state([c.add(stranger, c.host_approval(stranger), append=False)]),
           "not an admitted member of the host organization")


def test_a_promotion_to_admin_needs_the_hosts_approval(c: Coalition) -> None:
    def role(approval: dict[str, object] | None) -> Link:
        body: dict[str, object] = {"member": c.writer.id, "role": "admin", "until": None}
        if approval is not None:
            body["approval"] = approval
        return c.host.team_link(c.space, c.admin, "team.role", body, append=False)

    for replay in c.both(role(None)):
        expect(ChainError, replay)
    for replay in c.both(role(c.host_approval(c.writer, "writer"))):
        expect(ChainError, replay, "another member, role or end")
    promoted = role(c.host_approval(c.writer, "admin"))
    for replay in c.both(promoted):
        assert replay().members[c.writer.id].role == "admin"
    c.space.links.append(promoted)
    demoted = c.host.team_link(c.space, c.admin, "team.role", {"member": c.writer.id, "role": "reader", "until": None},
                               append=False)  # a demotion is no entry: no approval
    for replay in c.both(demoted):
        assert replay().members[c.writer.id].role == "reader"


def test_host_key_must_be_the_hosts_recorded_key_of_a_coalition_space() -> None:
    c = Coalition(hosted=True)
    first, host_key = c.space.links[0], c.host_key
    assert host_key is not None
    for key, kind in ((CoalitionKey.generate().public, "coalition"), (host_key.public, "circle")):
        body = dict(first.body.raw, host_key=key, kind=kind)
        forged = make_link(chain=None, seq=1, prev=None, time=first.time, signer=c.admin.id, device=c.admin.device,
                           type_="team.create", body=body)
        expect(ChainError, lambda forged=forged: c.host.replay_team([forged]), "host_key")


def test_the_hosts_removal_of_its_member_reaches_the_guests_view(c: Coalition) -> None:
    """The host expels bob from its organization: the host's clients drop him from the space at its next link, the
    guest's never saw that. The admin's ``coalition.remove`` carrying the host's signed statement rotates the key:
    both sides accept it, and bob holds no box of the new generation on either."""
    bob = c.host.admit("bob")
    c.add(bob, c.host_approval(bob))
    c.host.org_link(c.admin, "org.remove", {"member": bob.id, "reason": "expelled"})
    link = c.remove(bob, [c.admin, c.writer], statement=c.host_removal(bob), append=False)
    host, guest = (replay() for replay in c.both(link))
    for state in (host, guest):
        assert bob.id not in state.members
        assert {m for g, m in state.boxes if g == state.generation} == {c.admin.id, c.writer.id}
    c.accept(link)
    assert not openable(c.space.team_id, host.canaries, host.prev, [bob.puk], c.every_box) - {1}


def test_a_host_statement_never_removes_a_guest_nor_an_ally_key_a_host_member(c: Coalition) -> None:
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    for link in (c.remove(alice, [c.admin, c.writer], statement=c.host_removal(alice), append=False),
                 c.remove(c.writer, [c.admin, alice], statement=c.removal(ally, c.writer), append=False)):
        for replay in c.both(link):
            expect(ChainError, replay, "only its own members")


def test_a_space_without_host_key_keeps_the_admins_word() -> None:
    """Spaces made before the host key: the guest's client takes a space admin's add of a host member on the admin's
    word (the client says so at `coalition join`)."""
    c = Coalition()
    bob = c.host.admit("bob")
    c.add(bob, None)
    assert c.outside(c.space.links).members[bob.id].role == "writer"


def test_a_later_rekey_of_the_host_key_keeps_the_space_replaying(c: Coalition) -> None:
    """The host's ``team.create`` is judged against the key in force at the organization state it names: an
    ``org.coalition`` that later replaces the host's key for the space's name (a rekey) retires it, and the space's
    chain still replays on the host's side (before, the check read the name's current entry and every replay of the
    space failed from the rekey on)."""
    assert c.host_key is not None
    c.rekey_host_key()  # checks the name's key replaced and the old one retired
    assert c.state().host_key == c.host_key.public
