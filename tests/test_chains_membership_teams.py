"""Issue 3 chain links replayed with the shipped policy: team chains, every link type.

Valid histories are accepted and leave the expected state; every forged, unauthorized or
inconsistent link is rejected with one specific error.
"""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import MWorld, Person, Team, rejected
from vault.errors import ChainError, PolicyDenied
from vault.links import Link, make_link
from vault.teamkeys import open_history


@pytest.fixture
def world() -> MWorld:
    return MWorld()


@pytest.fixture
def team(world: MWorld) -> tuple[MWorld, Person, Person, Team]:
    """Founder (NCC, admin) and Alice (writer) in a circle; Bob admitted to the org."""
    alice, bob = world.admit("alice"), world.admit("bob")
    t = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    return world, alice, bob, t


# == team chains: every link type ====================================================================


def test_team_valid_history_through_every_link_type(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    nina, carol = world.admit("nina"), world.admit("carol")
    world.role(world.founder, nina, "ncc")  # an NCC outside the team, holding no key
    key1 = t.key
    world.add(t, world.founder, bob, "reader")
    world.team_role(t, world.founder, bob, "writer")
    world.add(t, nina, carol, "reader", keyless=True)  # NCC override; carol waits for a key holder
    state = world.replay_team(t.links)
    assert state.pending_share == {carol.id: nina.id} and state.role_of(carol.id, world.time) == "reader"
    assert not state.holds_key(carol.id, world.time) and not state.holds_key(nina.id, world.time)
    world.share(t, alice, carol)  # any key holder shares
    world.remove(t, world.founder, alice, [world.founder, bob, carol])  # a holder rotates in the same link
    key2 = t.key
    world.team_link(t, bob, "team.leave", {})
    state = world.replay_team(t.links)
    assert state.pending_rotation and state.rotation_reasons(world.time, world.members(), world.org())
    world.rotate(t, carol, [world.founder, carol])
    state = world.replay_team(t.links)

    assert state.generation == 3 and state.seq == len(t.links) == 8
    assert set(state.members) == {world.founder.id, carol.id}
    assert state.removed_at == {alice.id: 6, bob.id: 7}
    assert not state.pending_rotation and not state.pending_share
    assert state.rotation_reasons(world.time, world.members(), world.org()) == []
    assert {(g, m) for g, m in state.boxes if g == 3} == {(3, world.founder.id), (3, carol.id)}
    assert (2, alice.id) not in state.boxes and (2, bob.id) in state.boxes
    # History: each generation carries the previous seed; members can walk back to generation 1.
    assert set(state.prev) == {2, 3}
    assert open_history(t.key, state.prev[3], state.canaries[2]).seed == key2.seed
    assert open_history(key2, state.prev[2], state.canaries[1]).seed == key1.seed
    # The snapshot of every link is kept for document headers.
    assert set(state.snapshots) == set(range(1, 9))
    assert state.snapshots[3].roles[bob.id] == ("writer", None) and state.snapshots[2].roles[bob.id][0] == "reader"
    assert state.snapshots[5].generation == 1 and state.snapshots[6].generation == 2


def test_team_remove_of_the_last_admin(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, _, t = team
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    # Even an NCC (override) may not leave a team without an admin.
    world.remove(t, nina, world.founder, None)
    rejected(world, t.links, ChainError, "last admin")
    t.links.pop()
    world.team_link(t, world.founder, "team.leave", {})
    rejected(world, t.links, ChainError, "last admin")
    t.links.pop()
    world.team_role(t, world.founder, alice, "admin")
    world.remove(t, nina, world.founder, None)
    state = world.replay_team(t.links)
    assert state.admins(world.time) == {alice.id}


def test_removal_by_a_key_holder_must_rotate(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    world.add(t, world.founder, bob, "reader")
    world.remove(t, world.founder, alice, None)
    rejected(world, t.links, ChainError, "rotate the key in the same link")


def test_removal_by_a_non_holder_blocks_until_a_holder_rotates(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.add(t, world.founder, bob, "reader")
    # Not a holder: may not rotate in the removal...
    body, _ = world.new_generation(t, [world.founder, bob])
    world.team_link(t, nina, "team.remove", {"member": alice.id, "key": body})
    rejected(world, t.links, ChainError, "only a holder")
    t.links.pop()
    # ...so the team waits for one.
    world.remove(t, nina, alice, None)
    state = world.replay_team(t.links)
    reasons = state.rotation_reasons(world.time, world.members(), world.org())
    assert state.pending_rotation and any("not rotated" in r for r in reasons)
    assert any(alice.id in r and "removed" in r for r in reasons)
    carol = world.admit("carol")
    link = world.add(t, world.founder, carol, "reader", append=False)
    rejected(world, [*t.links, link], ChainError, "rotated before it is shared")
    world.rotate(t, bob, [world.founder, bob])
    state = world.replay_team(t.links)
    assert not state.pending_rotation and state.rotation_reasons(world.time, world.members(), world.org()) == []


@pytest.mark.parametrize("boxes", ["miss a member", "include the removed member", "include an outsider"])
def test_rotation_in_a_removal_must_box_exactly_the_members(team: tuple[MWorld, Person, Person, Team],
                                                            boxes: str) -> None:
    world, alice, bob, t = team
    carol = world.admit("carol")
    world.add(t, world.founder, bob, "reader")
    rest = {"miss a member": [world.founder], "include the removed member": [world.founder, bob, alice],
            "include an outsider": [world.founder, bob, carol]}[boxes]
    world.remove(t, world.founder, alice, rest)
    rejected(world, t.links, ChainError, "missing or extra box")


@pytest.mark.parametrize("boxes", ["miss a member", "include a former member", "include an outsider", "duplicate"])
def test_team_rotate_must_box_exactly_the_members(team: tuple[MWorld, Person, Person, Team], boxes: str) -> None:
    world, alice, bob, t = team
    world.add(t, world.founder, bob, "reader")
    world.remove(t, world.founder, bob, [world.founder, alice])
    members = {"miss a member": [world.founder], "include a former member": [world.founder, alice, bob],
               "include an outsider": [world.founder, alice, world.admit("carol")],
               "duplicate": [world.founder, alice, alice]}[boxes]
    world.rotate(t, alice, members)
    rejected(world, t.links, ChainError, "duplicate key box" if boxes == "duplicate" else "missing or extra box")


def test_rotation_generations_and_history(world: MWorld) -> None:
    alice = world.admit("alice")
    t = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    members = [world.founder, alice]
    for gen in (1, 3):  # must follow the current generation
        body, _ = world.new_generation(t, members, gen=gen)
        link = world.team_link(t, alice, "team.rotate", {"key": body}, append=False)
        rejected(world, [*t.links, link], ChainError, "does not follow")
    body, _ = world.new_generation(t, members, history=False)  # a team with history needs the old seed
    link = world.team_link(t, alice, "team.rotate", {"key": body}, append=False)
    rejected(world, [*t.links, link], ChainError, "previous key")
    body, _ = world.new_generation(t, members)
    body["extra"] = 1
    link = world.team_link(t, alice, "team.rotate", {"key": body}, append=False)
    rejected(world, [*t.links, link], ChainError, "unexpected fields")
    # A team without history must not carry it.
    body, quiet = world.team_create_body([(world.founder, "admin")])
    body["history"] = False
    quiet = Team(quiet.team_id, quiet.key, [make_link(chain=None, seq=1, prev=None, time=world.tick(),
                                                            signer=world.founder.id, device=world.founder.device,
                                                            type_="team.create", body=body)], {})
    body, _ = world.new_generation(quiet, [world.founder])
    link = world.team_link(quiet, world.founder, "team.rotate", {"key": body}, append=False)
    rejected(world, [*quiet.links, link], ChainError, "must not carry a previous key")
    body, _ = world.new_generation(quiet, [world.founder], history=False)
    world.team_link(quiet, world.founder, "team.rotate", {"key": body})
    state = world.replay_team(quiet.links)
    assert state.generation == 2 and state.prev == {}


def test_team_share_by_a_non_holder(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    nina, carol = world.admit("nina"), world.admit("carol")
    world.role(world.founder, nina, "ncc")
    world.add(t, nina, bob, "reader", keyless=True)
    world.add(t, nina, carol, "reader", keyless=True)
    # Carol has a role but no key: she may not share with Bob.
    link = world.share(t, carol, bob, append=False)
    rejected(world, [*t.links, link], PolicyDenied, "only a holder")
    # Nina (NCC, not in the team) has no team role to share with.
    link = world.share(t, nina, bob, append=False)
    rejected(world, [*t.links, link], PolicyDenied, "may not share")
    # Alice may; afterwards Bob is no longer waiting, and a share for a member not waiting is refused.
    world.share(t, alice, bob)
    state = world.replay_team(t.links)
    assert state.pending_share == {carol.id: nina.id} and state.holds_key(bob.id, world.time)
    link = world.share(t, alice, bob, append=False)
    rejected(world, [*t.links, link], ChainError, "not waiting")
    link = world.share(t, alice, world.admit("dave"), append=False)
    rejected(world, [*t.links, link], ChainError, "not waiting")


def test_team_add_by_a_key_holder_must_box_the_key(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    link = world.add(t, world.founder, bob, "reader", keyless=True, append=False)
    rejected(world, [*t.links, link], ChainError, "must box the key")


def test_team_role_rules(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    compa = world.admit("compa", role="compa")
    world.add(t, world.founder, bob, "reader")
    world.add(t, world.founder, compa, "reader")
    cases: list[tuple[Link, type[Exception], str]] = [
        (world.team_role(t, world.founder, world.founder, "writer", append=False), ChainError, "last admin"),
        (world.team_role(t, alice, bob, "writer", append=False), PolicyDenied, "may not role"),
        (world.team_role(t, world.founder, compa, "writer", append=False), PolicyDenied, "may not hold"),
        (world.team_role(t, world.founder, world.admit("dave"), "writer", append=False), ChainError, "not in team"),
        (world.team_role(t, world.founder, bob, "reader", append=False), ChainError, "nothing to change"),
        (world.team_role(t, world.founder, bob, "owner", append=False), ChainError, "unknown team role"),
        (world.team_role(t, world.founder, bob, "writer", until=world.time, append=False), ChainError, "past"),
    ]
    for link, exc, match in cases:
        rejected(world, [*t.links, link], exc, match)
    # With a second admin the first may step down; expiry counts as a change.
    world.team_role(t, world.founder, alice, "admin")
    world.team_role(t, alice, world.founder, "writer")
    until = world.time + 1000
    world.team_role(t, alice, bob, "reader", until=until)
    state = world.replay_team(t.links)
    assert state.admins(world.time) == {alice.id}
    assert (state.members[bob.id].role, state.members[bob.id].until) == ("reader", until)


@pytest.mark.parametrize("who", ["keyless member", "ncc outsider", "removed member", "outsider"])
def test_team_rotate_by_a_non_holder(team: tuple[MWorld, Person, Person, Team], who: str) -> None:
    world, alice, bob, t = team
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    signer = {"keyless member": bob, "ncc outsider": nina, "removed member": alice, "outsider": world.admit("o")}[who]
    if who == "keyless member":
        world.add(t, nina, bob, "reader", keyless=True)
    if who == "removed member":
        world.remove(t, nina, alice, None)
    members = [world.founder] + ([bob] if who == "keyless member" else []) + ([] if who == "removed member"
                                                                              else [alice])
    body, _ = world.new_generation(t, members)
    link = world.team_link(t, signer, "team.rotate", {"key": body}, append=False)
    rejected(world, [*t.links, link], PolicyDenied, "only a holder" if who == "keyless member" else "may not rotate")


def test_team_leave_rules(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    link = world.team_link(t, bob, "team.leave", {}, append=False)
    rejected(world, [*t.links, link], ChainError, "not in this team")
    world.team_link(t, alice, "team.leave", {})
    state = world.replay_team(t.links)
    assert alice.id not in state.members and state.removed_at[alice.id] == 2 and state.pending_rotation
    # Leaving does not rotate: the leaver's box of the current key is still out there.
    assert any(alice.id in r for r in state.rotation_reasons(world.time, world.members(), world.org()))
