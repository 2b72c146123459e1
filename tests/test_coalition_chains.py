"""Issue 20, coalition spaces: the acts (``vault.chains.coalition``) replayed by the real chain code and judged by
the one judge, with two organizations built by hand (tests/helpers/coalition_world.py).

Entry needs the member's own organization's approval signed with a coalition key the host's NCC pinned; removal
by either side (and the ally's expulsion of its member) rotates the key so the removed member opens nothing newer.
A server holds no member's device key and no coalition key: everything it could forge is one of the refusals here.
"""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import expect
from tests.helpers.coalition_world import Coalition
from tests.helpers.keyholder import openable
from vault.acts import Act
from vault.chains.coalition import APPROVAL_SECONDS, CoalitionKey
from vault.errors import ChainError, PolicyDenied
from vault.keys import DeviceKeys
from vault.links import make_link


@pytest.fixture
def c() -> Coalition:
    return Coalition()


def write_act(c: Coalition, who_id: str, device: str) -> Act:
    state = c.state()
    return Act(who_id, device, c.host.time + 1, "doc.write", team_seq=state.seq, gen=state.generation)


def judged(c: Coalition, act: Act) -> bool:
    return POLICY.entitled(act, c.host.org(), c.host.members(), c.state())


def test_both_organizations_members_write_after_an_approved_entry(c: Coalition) -> None:
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    c.add(alice, c.approval(ally, alice))
    state = c.state()
    assert set(state.members) == {c.admin.id, c.writer.id, alice.id}
    assert state.guests[alice.id].ally == ally.root
    assert (state.generation, alice.id) in state.boxes
    assert judged(c, write_act(c, alice.id, alice.device.device_id))
    assert judged(c, write_act(c, c.writer.id, c.writer.device.device_id))
    # A guest is judged by its team role alone: no organization act of the host, no admin act in the space.
    assert not POLICY.entitled(Act(alice.id, alice.device.device_id, c.host.time + 1, "org.invite"),
                               c.host.org(), c.host.members(), None)
    state_seq = c.state().seq
    assert not judged(c, Act(alice.id, alice.device.device_id, c.host.time + 1, "team.add", team_seq=state_seq))
    # The ally's own members find the pinned key in their own chain, recorded by their NCC.
    assert ally.world.org().coalitions["campaign"].key == c.state().allies[ally.root].key


def test_an_ally_member_without_an_approval_is_never_added(c: Coalition) -> None:
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    expect(ChainError, lambda: c.state([c.add(alice, None, append=False)]), "not an admitted member")


def test_an_approval_from_an_unpinned_ally_is_refused(c: Coalition) -> None:
    pinned, other = c.ally("pinned"), c.ally("never-pinned")
    c.pin(pinned)
    bob = other.member("bob", c.host)
    expect(ChainError, lambda: c.state([c.add(bob, c.approval(other, bob), append=False)]), "not an ally pinned")
    # Nor with the pinned ally's root but another key (a server or the host inventing the ally's consent).
    forged = c.approval(pinned, bob, root=pinned.root, key=CoalitionKey.generate())
    expect(ChainError, lambda: c.state([c.add(bob, forged, append=False)]), "not signed with the coalition key")


@pytest.mark.parametrize("change", ["member", "role", "space", "until"])
def test_an_approval_is_for_exactly_one_add(c: Coalition, change: str) -> None:
    ally = c.ally()
    c.pin(ally)
    alice, bob = ally.member("alice", c.host), ally.member("bob", c.host)
    approval = {"member": lambda: c.approval(ally, bob), "role": lambda: c.approval(ally, alice, "reader"),
                "space": lambda: c.approval(ally, alice, space="0" * 32),
                "until": lambda: c.approval(ally, alice, until=c.host.time + 10**6)}[change]()
    expect(ChainError, lambda: c.state([c.add(alice, approval, append=False)]))


def test_an_approval_is_used_once_and_expires(c: Coalition) -> None:
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    approval = c.approval(ally, alice)
    c.add(alice, approval)
    c.remove(alice, [c.admin, c.writer])
    expect(ChainError, lambda: c.state([c.add(alice, approval, append=False)]), "used once")
    old = c.approval(ally, alice, time=c.host.time - APPROVAL_SECONDS)
    expect(ChainError, lambda: c.state([c.add(alice, old, append=False)]), "not valid at the time")
    c.add(alice, c.approval(ally, alice))  # a fresh approval of the ally lets them back
    assert alice.id in c.state().members


def test_only_the_hosts_ncc_pins_an_ally_and_only_in_a_coalition_space(c: Coalition) -> None:
    ally = c.ally()
    expect(PolicyDenied, lambda: c.state([c.pin(ally, signer=c.writer, append=False)]), "pin an allied")
    circle = c.host.create_team(c.admin, [(c.admin, "admin")], kind="circle")
    expect(ChainError, lambda: c.host.replay_team(circle.links + [c.pin(ally, team=circle, append=False)]),
           "not a coalition space")
    c.pin(ally)
    expect(ChainError, lambda: c.state([c.pin(ally, append=False)]), "already in the space")


def test_a_guest_is_never_an_admin_and_never_adds(c: Coalition) -> None:
    ally = c.ally()
    c.pin(ally)
    alice, bob = ally.member("alice", c.host), ally.member("bob", c.host)
    expect(PolicyDenied, lambda: c.state([c.add(alice, c.approval(ally, alice, "admin"), "admin", append=False)]),
           "may not hold team role 'admin'")
    c.add(alice, c.approval(ally, alice))
    expect(PolicyDenied, lambda: c.state([c.add(bob, c.approval(ally, bob), signer=alice, append=False)]))


def test_the_server_cannot_add_a_member_of_either_organization(c: Coalition) -> None:
    """The server holds no host device key and no coalition key: a team.add it signs with a key of its own, in the
    name of the space's admin, does not verify; an approval it makes does not either."""
    ally = c.ally()
    c.pin(ally)
    alice = ally.member("alice", c.host)
    server = DeviceKeys.generate()
    head = c.space.links[-1]
    commit, _ = c.host.box_commit(c.space.key, alice)
    forged = make_link(chain=c.space.team_id, seq=head.seq + 1, prev=head.hash, time=c.host.tick(),
                       signer=c.admin.id, device=server, type_="team.add",
                       body={"member": alice.id, "role": "writer", "until": None, "org_seq": c.host.org_seq,
                             "approval": c.approval(ally, alice), "key": {"gen": 1, "boxes": [commit]}})
    expect(ChainError, lambda: c.state([forged]))
    # A host member the server would add (no admin's signature): the same; with an admin's real add refused above
    # for a missing approval, an outsider's member chain gets in no other way.
    outsider = c.host.person("outsider")
    expect(ChainError, lambda: c.state([c.add(outsider, None, append=False)]), "not an admitted member")


@pytest.mark.parametrize("side", ["host", "ally", "expelled"])
def test_removal_by_either_side_cuts_the_member_off(c: Coalition, side: str) -> None:
    ally, alice, bob = c.ally_with_two_guests()
    before = c.state().generation
    if side == "host":
        c.remove(alice, [c.admin, c.writer, bob])
    else:
        if side == "expelled":  # the ally's NCC removes alice from its own organization, then from the space
            ally.world.org_link(ally.world.founder, "org.remove", {"member": alice.id, "reason": "expelled"})
            assert not ally.world.org().admitted(alice.id)
        # Any member of the space carries the ally's signed removal: here bob, the ally's other member.
        c.remove(alice, [c.admin, c.writer, bob], signer=bob, statement=c.removal(ally, alice))
    state = c.state()
    assert alice.id not in state.members and state.generation == before + 1
    assert set(m for g, m in state.boxes if g == state.generation) == {c.admin.id, c.writer.id, bob.id}
    assert not state.rotation_reasons(c.host.time, c.host.members(), c.host.org())
    # Holding every box the server ever had (the old and the new), alice opens nothing newer than her last key.
    assert openable(c.space.team_id, state.canaries, state.prev, [alice.puk], c.every_box) == set(range(1, before + 1))
    assert openable(c.space.team_id, state.canaries, state.prev, [bob.puk], c.every_box) == set(range(1, before + 2))
    assert not judged(c, write_act(c, alice.id, alice.device.device_id))


def test_an_organization_removes_only_its_own_members(c: Coalition) -> None:
    ally, other, alice, olga = c.two_allies()
    rest = [c.admin, c.writer, alice]
    # The other ally's coalition key cannot remove alice, nor can the ally remove a host member.
    expect(ChainError, lambda: c.state([c.remove(alice, rest, signer=olga, statement=c.removal(other, alice),
                                                 append=False)]), "only its own members")
    expect(ChainError, lambda: c.state([c.remove(c.writer, rest, signer=alice, statement=c.removal(ally, c.writer),
                                                 append=False)]), "only its own members")
    # A statement signed with a key the host never pinned for that ally.
    forged = c.removal(ally, alice, key=CoalitionKey.generate())
    expect(ChainError, lambda: c.state([c.remove(alice, [c.admin, c.writer, olga], signer=olga, statement=forged,
                                                 append=False)]), "not signed with the coalition key")
    # Without a statement, only the space's admins (the host's side) remove.
    expect(PolicyDenied, lambda: c.state([c.remove(alice, [c.admin, c.writer, olga], signer=olga, append=False)]))
    statement = c.removal(ally, alice)
    c.remove(alice, [c.admin, c.writer, olga], signer=olga, statement=statement)
    c.add(alice, c.approval(ally, alice))
    expect(ChainError, lambda: c.state([c.remove(alice, [c.admin, c.writer, olga], signer=olga, statement=statement,
                                                 append=False)]), "used once")


def test_org_coalition_is_the_ally_ncc_s_act() -> None:
    c = Coalition()
    ally = c.ally(record=False)
    member = ally.world.admit("plain")
    bad = ally.world.org_link(member, "org.coalition", {"name": "campaign", "key": ally.key.public, "host": None},
                              append=False)
    expect(PolicyDenied, lambda: ally.world.org().apply(bad, ally.world.members(), POLICY), "record a coalition key")
    ally.world.org_link(ally.world.founder, "org.coalition", {"name": "campaign", "key": ally.key.public, "host": None})
    again = ally.world.org_link(ally.world.founder, "org.coalition",
                                {"name": "campaign", "key": CoalitionKey.generate().public, "host": None}, append=False)
    expect(ChainError, lambda: ally.world.org().apply(again, ally.world.members(), POLICY), "already recorded")


def test_two_ncc_members_record_a_coalition_key_and_pin_an_ally(c: Coalition) -> None:
    """Rule two-person on ``org.coalition`` (the ally's chain) and ``coalition.ally`` (the space's chain): with a
    second NCC member at the time, the first signature proposes; the same act signed by another NCC member puts it in
    force; the proposer signing again is refused. With one NCC member, one signature does (the other tests)."""
    ally = c.ally(record=False)
    second = ally.world.admit("ally-ncc")
    ally.world.role(ally.world.founder, second, "ncc")
    body = {"name": c.space_name, "key": ally.key.public, "host": c.host.org_links[0].hash}
    ally.world.org_link(ally.world.founder, "org.coalition", body)
    assert ally.world.org().coalitions == {}  # proposed only
    ally.world.org_link(ally.world.founder, "org.coalition", body)
    expect(PolicyDenied, ally.world.org, "you proposed it already")
    ally.world.org_links.pop()
    other = {**body, "key": CoalitionKey.generate().public}  # another key proposed for the name meanwhile
    ally.world.org_link(second, "org.coalition", other)
    ally.world.org_link(second, "org.coalition", body)
    org = ally.world.org()
    assert org.coalitions[c.space_name].key == ally.key.public
    assert not [a for a in org.role_proposals if a[0] == "org.coalition"]  # the rival proposal is void

    host_ncc = c.host.admit("host-ncc")
    c.host.role(c.admin, host_ncc, "ncc")
    c.pin(ally)
    assert c.state().allies == {}  # proposed only: an approval of this ally is refused
    person = ally.member("erin", c.host)
    early = c.add(person, c.approval(ally, person), append=False)
    expect(ChainError, lambda: c.state([early]), "not an ally pinned")
    again = c.pin(ally, append=False)
    expect(PolicyDenied, lambda: c.state([again]), "you proposed this pin already")
    c.pin(ally, signer=host_ncc)
    assert c.state().allies[ally.root].key == ally.key.public
    c.add(person, c.approval(ally, person))
    assert person.id in c.state().guests
