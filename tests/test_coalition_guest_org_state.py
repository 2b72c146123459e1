"""Issue 20, session 17 (review 17's second finding): the organization state the host's side judges a guest's team
link at. A guest never sees the host's organization chain and names the space's last ``org_seq``; the host's side
judges its link at the newer of that state and the one in force ``ALLOWANCE`` before the link
(``vault/chains/coalitionspace.py`` ``guest_org_seq``): an ordinary host act no longer refuses every guest link 20
minutes later (tests/test_review17_exploits.py), and a host removal or a retirement of the host key older than that
is never bypassed by a guest link naming an old state. Real chain code, both the host's replay and a guest's view."""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Ally, Coalition
from vault.acts import ALLOWANCE
from vault.encoding import Value
from vault.errors import ChainError, PolicyDenied
from vault.links import Link
from vault.teamkeys import TeamKey, seal_history


def carried(c: Coalition, target: Person, carrier: Person, rest: list[Person], org_seq: int,
            statement: dict[str, Value]) -> Link:
    """A guest's ``coalition.remove`` carrying ``statement``, rotating, boxed to ``rest``, naming ``org_seq`` (the
    space's last, as a guest's client names it: ``client/view.py``). Not appended."""
    key = TeamKey.generate(c.space.team_id, c.space.key.gen + 1)
    boxes = [c.host.box_commit(key, m)[0] for m in rest]
    body = {"gen": key.gen, "canary": key.canary, "boxes": boxes, "prev": seal_history(key, c.space.key)}
    return c.host.team_link(c.space, carrier, "coalition.remove",
                            {"member": target.id, "statement": statement, "key": body}, org_seq=org_seq, append=False)


def two_guests() -> tuple[Coalition, Ally, Person, Person, int]:
    c = Coalition()
    ally, alice, bob = c.ally_with_two_guests()
    return c, ally, alice, bob, c.state().org_seq



def _hosted_with_alice_and_bob(bob_role: str | None = None) -> tuple[Coalition, Person, Person]:
    """A hosted space with an ally pinned, the ally's alice admitted with its approval and the host's bob with the
    host's (as ``bob_role`` when given: the host approves that role)."""
    c = Coalition(hosted=True)
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    bob = c.host.admit("bob")
    if bob_role is None:
        c.add(bob, c.host_approval(bob))
    else:
        c.add(bob, c.host_approval(bob, bob_role), role=bob_role)
    return c, alice, bob

def test_a_host_removal_older_than_the_allowance_is_never_bypassed_by_a_guests_link() -> None:
    """The host's organization removes host-writer (in the space); nobody carries it into the space. 25 minutes
    later bob, the ally's guest, carries the ally's removal of alice naming the space's last ``org_seq`` (before the
    removal): boxed to host-writer (his view of the space) or not, the host's judge refuses it, naming the removal,
    so its server stores nothing and host-writer never gets a box of a guest's generation. Within ``ALLOWANCE`` of the
    removal the guest's link is still judged at the state it names (the residue every act has: SECURITY.md); it then
    boxes host-writer, as every client of the space still lists them."""
    c, ally, alice, bob, named = two_guests()
    c.host.org_link(c.admin, "org.remove", {"member": c.writer.id, "reason": "expelled"})
    c.host.time += ALLOWANCE + 300
    for rest in ([c.admin, c.writer, bob], [c.admin, bob]):
        link = carried(c, alice, bob, rest, named, c.removal(ally, alice))
        with pytest.raises(PolicyDenied, match=f"removed {c.writer.id}, still in space"):
            c.state([link])


def test_within_the_allowance_a_guests_link_is_judged_at_the_state_it_names() -> None:
    c, ally, alice, bob, named = two_guests()
    c.host.org_link(c.admin, "org.remove", {"member": c.writer.id, "reason": "expelled"})
    c.host.time += ALLOWANCE // 2
    link = carried(c, alice, bob, [c.admin, c.writer, bob], named, c.removal(ally, alice))
    for replay in c.both(link):
        state = replay()
        assert alice.id not in state.members and c.writer.id in state.members


def test_an_ordinary_host_act_leaves_the_state_a_guest_names_as_the_guests_next_link_names_it() -> None:
    """After bob's carried removal (judged at a later state on the host's side) the space records the state he named,
    so his client's next link, naming it again, is not refused as going back; both views agree."""
    c, ally, alice, bob, named = two_guests()
    c.host.admit("zed")
    c.host.time += ALLOWANCE + 300
    link = carried(c, alice, bob, [c.admin, c.writer, bob], named, c.removal(ally, alice))
    c.pending = (link, lambda: None)
    c.accept(link)
    assert c.state().org_seq == named == c.outside(c.space.links).org_seq
    leave = c.host.team_link(c.space, bob, "team.leave", {}, org_seq=named, append=False)
    for replay in c.both(leave):
        assert bob.id not in replay().members


def test_a_retired_host_key_is_never_bypassed_by_a_guests_link_naming_an_old_state() -> None:
    """The host's NCC rekeys its coalition key (a departed NCC member kept the old seed); nobody carries the rekey
    into the space. 25 minutes later a guest carries a host removal signed with the retired key, naming the space's
    last ``org_seq`` (before the rekey): the host's judge refuses it (the key is not in force at the state it judges
    the guest's link at), as it refuses a host member's. (Within ``ALLOWANCE`` of the rekey it is taken: the residue
    every act has, SECURITY.md.)"""
    c, alice, bob = _hosted_with_alice_and_bob()
    named, old = c.state().org_seq, c.host_key
    c.rekey_host_key()
    c.host.time += ALLOWANCE + 300
    link = carried(c, bob, alice, [c.admin, c.writer, alice], named, c.host_removal(bob, key=old))
    with pytest.raises(ChainError, match="at the organization state the link names \\(retired there"):
        c.state([link])


def test_after_the_hosts_removal_of_the_last_admin_the_hosts_ncc_appoints_one() -> None:
    """Review 17's third finding, what comes after: the host expels bob, the space's only admin (the founder, NCC,
    stepped down to writer), and the founder's carried removal is taken on both sides (tests/test_review17_exploits.py).
    The space then has no admin on either side; the founder's ``team.role`` making herself admin again (an NCC
    override, carrying the host's approval) is taken by the host's judge, and a guest's view stops at it
    (``PolicyDenied``: no override counts outside the host; a newer join code vouches for it)."""
    c, alice, bob = _hosted_with_alice_and_bob("admin")
    c.host.team_link(c.space, bob, "team.role", {"member": c.admin.id, "role": "writer", "until": None})
    c.host.org_link(c.admin, "org.remove", {"member": bob.id, "reason": "expelled"})
    c.remove(bob, [c.admin, c.writer, alice], statement=c.host_removal(bob))
    for state in (c.state(), c.outside(c.space.links)):
        assert bob.id not in state.members and not state.admins(c.host.time)
    link = c.host.team_link(c.space, c.admin, "team.role", {"member": c.admin.id, "role": "admin", "until": None,
                                                            "approval": c.host_approval(c.admin, "admin")},
                            append=False)
    assert c.state([link]).admins(c.host.time) == {c.admin.id}
    with pytest.raises(PolicyDenied, match="no organization role counts"):
        c.outside([*c.space.links, link])
