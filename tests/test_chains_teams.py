"""Team chains and team key boxes replayed with the shipped policy.

A valid history is accepted; a server (or insider) that forges, reorders, drops, replays or
rolls back links, or a signer without the right, is rejected with a specific error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from security.policy import TEAM_KINDS
from tests.helpers.chain_world import T0, Person, Team, World, expect, new_person, relink, with_sig
from vault.chains import (
    BoxCommitment,
    TeamState,
)
from vault.crypto import labels
from vault.errors import (
    BadSignature,
    ChainError,
    DecryptionFailed,
    IntegrityError,
    PolicyDenied,
)
from vault.links import make_link
from vault.teamkeys import TeamKey, box_hash, open_team_box


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def circle(world: World) -> tuple[World, Person, Person, Team]:
    """Founder (NCC, admin) and Alice (writer) in a circle; Bob admitted to the org."""
    alice = world.admit("alice")
    bob = world.admit("bob")
    team = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    return world, alice, bob, team


# -- team chains --------------------------------------------------------------------------------


def test_team_chain_valid_history(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader")
    state = world.replay_team(team.links)
    assert state.team_id == team.team_id and state.org_id == world.org_id
    assert state.kind == "circle" and state.generation == 1
    assert state.role_of(world.founder.id, world.time) == "admin"
    assert state.role_of(alice.id, world.time) == "writer"
    assert state.role_of(bob.id, world.time) == "reader"
    assert state.canaries[1] == team.key.canary
    assert set(state.boxes) == {(1, world.founder.id), (1, alice.id), (1, bob.id)}
    assert state.seq == 2 and state.head == team.links[-1].hash
    # Every member can open its box against the chain's commitment.
    for person in (world.founder, alice, bob):
        key = open_team_box(team.boxes[person.id], person.puk, team.team_id, person.id,
                            state.boxes[(1, person.id)], state.canaries[1])
        assert (key.team_id, key.gen, key.seed) == (team.key.team_id, 1, team.key.seed)
        assert (key.doc_key, key.name_key) == (team.key.doc_key, team.key.name_key)


def test_plain_member_may_not_create_a_circle(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, _ = circle
    team = world.create_team(alice, [(alice, "admin"), (bob, "writer")])
    expect(PolicyDenied, lambda: world.replay_team(team.links))


@pytest.mark.parametrize("kind", ["ncc", "staff", "program", "security", "org", "coalition"])
def test_plain_member_may_not_create_other_kinds(circle: tuple[World, Person, Person, Team], kind: str) -> None:
    world, alice, _, _ = circle
    team = world.create_team(alice, [(alice, "admin")], kind=kind)
    expect(PolicyDenied, lambda: world.replay_team(team.links))


@pytest.mark.parametrize("kind", TEAM_KINDS)
def test_ncc_may_create_every_kind(world: World, kind: str) -> None:
    team = world.create_team(world.founder, [(world.founder, "admin")], kind=kind)
    assert world.replay_team(team.links).kind == kind


def test_outsider_may_not_create_a_team(world: World) -> None:
    outsider = world.person("outsider")
    team = world.create_team(outsider, [(outsider, "admin")])
    expect(PolicyDenied, lambda: world.replay_team(team.links))


def test_non_admin_may_not_add(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, team = circle
    world.team_add_link(team, alice, bob, "reader")
    expect(PolicyDenied, lambda: world.replay_team(team.links))


def test_outsider_may_not_add(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    outsider = world.person("outsider")
    world.team_add_link(team, outsider, bob, "reader")
    expect(PolicyDenied, lambda: world.replay_team(team.links))


def test_team_link_signed_by_unknown_member(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, new_person("ghost"), bob, "reader")
    expect(ChainError, lambda: world.replay_team(team.links))


def test_mo_term_expiry_ends_admin_rights_and_ncc_override_remains(world: World) -> None:
    mo, bob, carol = world.admit("mo"), world.admit("bob"), world.admit("carol")
    term_end = world.time + 1000
    team = world.create_team(world.founder, [(world.founder, "admin"), (mo, "admin")],
                             until={world.founder.id: world.time + 100, mo.id: term_end})
    world.team_add_link(team, mo, bob, "writer")
    world.replay_team(team.links)
    # After the term: the MO may no longer add anyone.
    late = world.team_add_link(team, mo, carol, "writer", time=term_end, append=False)
    expect(PolicyDenied, lambda: world.replay_team([*team.links, late]))
    # The founder's own team role expired too, but NCC may sign membership changes anywhere.
    # Without a team role the founder holds no usable key: carol waits for a key holder.
    boxed = world.team_add_link(team, world.founder, carol, "writer", time=term_end, append=False)
    expect(ChainError, lambda: world.replay_team([*team.links, boxed]), "rotated before it is shared")
    world.team_add_link(team, world.founder, carol, "writer", time=term_end, keyless=True)
    state = world.replay_team(team.links)
    assert state.role_of(mo.id, term_end) is None
    assert state.role_of(world.founder.id, term_end) is None
    assert state.role_of(carol.id, term_end) == "writer"
    assert state.pending_share == {carol.id: world.founder.id}
    assert (1, carol.id) not in state.boxes
    # The expired admins still hold generation 1: it must be rotated before new content.
    reasons = state.rotation_reasons(term_end, world.members(), world.org())
    assert any(mo.id in r and "role ended" in r for r in reasons)


def test_team_create_forged_signature(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    forged = with_sig(team.links[0], sig=bob.device.sign(labels.SIG_TEAM_LINK, team.links[0].raw))
    expect(BadSignature, lambda: world.replay_team([forged]))


def test_team_add_forged_signature(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, team = circle
    link = world.team_add_link(team, world.founder, bob, "admin", append=False)
    forged = with_sig(link, sig=alice.device.sign(labels.SIG_TEAM_LINK, link.raw))
    expect(BadSignature, lambda: world.replay_team([*team.links, forged]))
    # A signature under the org domain tag does not count as a team-link signature.
    cross = with_sig(link, sig=world.founder.device.sign(labels.SIG_ORG_LINK, link.raw))
    expect(BadSignature, lambda: world.replay_team([*team.links, cross]))


def test_team_creator_must_be_admin(world: World) -> None:
    alice = world.admit("alice")
    team = world.create_team(world.founder, [(world.founder, "writer"), (alice, "admin")])
    expect(ChainError, lambda: world.replay_team(team.links))
    team = world.create_team(world.founder, [(alice, "admin")])
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_links_reordered(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    carol = world.admit("carol")
    world.team_add_link(team, world.founder, bob, "reader")
    world.team_add_link(team, world.founder, carol, "reader")
    world.replay_team(team.links)
    expect(ChainError, lambda: world.replay_team([team.links[0], team.links[2], team.links[1]]))
    expect(ChainError, lambda: world.replay_team([team.links[1], team.links[0], team.links[2]]))


def test_team_link_dropped(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    carol = world.admit("carol")
    world.team_add_link(team, world.founder, bob, "reader")
    world.team_add_link(team, world.founder, carol, "reader")
    expect(ChainError, lambda: world.replay_team([team.links[0], team.links[2]]), "sequence")


def test_team_link_replayed_from_another_team(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team_a = circle
    team_b = world.create_team(world.founder, [(world.founder, "admin")])
    world.team_add_link(team_b, world.founder, bob, "reader")
    world.replay_team(team_b.links)
    expect(ChainError, lambda: world.replay_team([*team_a.links, team_b.links[1]]))


def test_team_link_naming_another_chain(circle: tuple[World, Person, Person, Team]) -> None:
    # Even with the right seq and prev, a link that names another chain is refused.
    world, _, bob, team_a = circle
    team_b = world.create_team(world.founder, [(world.founder, "admin")])
    link = world.team_add_link(team_a, world.founder, bob, "reader", append=False)
    moved = relink(link, by=world.founder.device, chain=team_b.team_id)
    expect(ChainError, lambda: world.replay_team([*team_a.links, moved]), "another chain")


def test_team_link_with_rolled_back_prev(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    carol = world.admit("carol")
    world.team_add_link(team, world.founder, bob, "reader")
    link = world.team_add_link(team, world.founder, carol, "reader", append=False)
    forked = relink(link, by=world.founder.device, prev=team.links[0].hash)
    expect(ChainError, lambda: world.replay_team([*team.links, forked]), "current head")


def test_team_link_dated_before_the_previous(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader", time=T0)
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_add_box_commitment_for_the_wrong_member(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader", box_for=alice)
    expect(ChainError, lambda: world.replay_team(team.links), "new member's key box")


def test_team_add_with_two_boxes(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, bob, team = circle
    boxes = [{"member": bob.id, "puk_gen": 1, "hash": bytes(32)}, {"member": alice.id, "puk_gen": 1,
                                                                     "hash": bytes(32)}]
    world.team_add_link(team, world.founder, bob, "reader", boxes=boxes)
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_add_without_box(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader", boxes=[])
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_add_box_for_a_stale_generation_or_puk(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    link = world.team_add_link(team, world.founder, bob, "reader", gen=2, append=False)
    expect(ChainError, lambda: world.replay_team([*team.links, link]))
    link = world.team_add_link(team, world.founder, bob, "reader", puk_gen=2, append=False)
    expect(ChainError, lambda: world.replay_team([*team.links, link]))


def test_team_add_member_already_in_team(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, _, team = circle
    world.team_add_link(team, world.founder, alice, "reader")
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_add_with_expiry_in_the_past(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader", until=T0)
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_add_of_non_member_and_pending_member(circle: tuple[World, Person, Person, Team]) -> None:
    world, alice, _, team = circle
    outsider = world.person("outsider")
    link = world.team_add_link(team, world.founder, outsider, "reader", append=False)
    expect(ChainError, lambda: world.replay_team([*team.links, link]))
    pending = world.person("pending")
    world.join(pending, world.invite(alice))
    link = world.team_add_link(team, world.founder, pending, "reader", append=False)
    expect(ChainError, lambda: world.replay_team([*team.links, link]))


def test_compa_only_as_reader(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, _, team = circle
    compa = world.admit("compa", role="compa")
    link = world.team_add_link(team, world.founder, compa, "writer", append=False)
    expect(PolicyDenied, lambda: world.replay_team([*team.links, link]))
    world.team_add_link(team, world.founder, compa, "reader")
    assert world.replay_team(team.links).role_of(compa.id, world.time) == "reader"


def test_team_add_unknown_role(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, world.founder, bob, "owner")
    expect(ChainError, lambda: world.replay_team(team.links))


def test_team_create_boxes_miss_a_member(world: World) -> None:
    alice = world.admit("alice")
    team = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")],
                             boxed=[world.founder])
    expect(ChainError, lambda: world.replay_team(team.links), "missing or extra box")


def test_team_create_boxes_add_an_outsider(world: World) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    team = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")],
                             boxed=[world.founder, alice, bob])
    expect(ChainError, lambda: world.replay_team(team.links), "missing or extra box")


def test_team_create_duplicate_box(world: World) -> None:
    body, team = world.team_create_body([(world.founder, "admin")])
    body["key"]["boxes"].append(dict(body["key"]["boxes"][0]))
    link = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                     device=world.founder.device, type_="team.create", body=body)
    expect(ChainError, lambda: world.replay_team([link]))


@pytest.mark.parametrize(
    "edit",
    [
        lambda b, w: b.update(org="0" * 32),
        lambda b, w: b.update(kind="cabal"),
        lambda b, w: b["key"].update(gen=2),
        lambda b, w: b["key"].update(canary=b"short"),
        lambda b, w: b.update(name="bad name!"),
        lambda b, w: b.update(nonce=b"short"),
        lambda b, w: b["members"].append({"member": w.person("outsider").id, "role": "reader", "until": None}),
        lambda b, w: b["members"].append(dict(b["members"][0])),
        lambda b, w: b["key"]["boxes"][0].update(puk_gen=2),
    ],
    ids=["other-org", "unknown-kind", "gen-2", "short-canary", "bad-name", "short-nonce", "outsider-member",
         "duplicate-member", "stale-puk"],
)
def test_team_create_malformed(world: World, edit: Callable[[dict[str, Any], World], None]) -> None:
    body, _ = world.team_create_body([(world.founder, "admin")])
    edit(body, world)
    link = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                     device=world.founder.device, type_="team.create", body=body)
    expect(ChainError, lambda: world.replay_team([link]))


def test_team_chain_must_start_with_create(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader")
    expect(ChainError, lambda: world.replay_team(team.links[1:]))
    expect(ChainError, lambda: world.replay_team([]))


def test_unknown_team_link_type(circle: tuple[World, Person, Person, Team]) -> None:
    world, _, _, team = circle
    head = team.links[-1]
    link = make_link(chain=team.team_id, seq=2, prev=head.hash, time=world.tick(), signer=world.founder.id,
                     device=world.founder.device, type_="team.takeover", body={})
    expect(ChainError, lambda: world.replay_team([*team.links, link]))


# -- team key boxes ------------------------------------------------------------------------------


@dataclass
class Boxes:
    world: World
    alice: Person
    bob: Person
    team: Team
    state: TeamState
    other: Team = field(init=False)
    other_state: TeamState = field(init=False)


@pytest.fixture
def boxes(circle: tuple[World, Person, Person, Team]) -> Boxes:
    world, alice, bob, team = circle
    world.team_add_link(team, world.founder, bob, "reader")
    b = Boxes(world, alice, bob, team, world.replay_team(team.links))
    b.other = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    b.other_state = world.replay_team(b.other.links)
    return b


def test_open_team_box(boxes: Boxes) -> None:
    b = boxes
    key = open_team_box(b.team.boxes[b.alice.id], b.alice.puk, b.team.team_id, b.alice.id,
                        b.state.boxes[(1, b.alice.id)], b.state.canaries[1])
    assert key.seed == b.team.key.seed and key.doc_key == b.team.key.doc_key


def test_box_for_another_member(boxes: Boxes) -> None:
    b = boxes
    # Bob's box with Bob's commitment, offered to Alice.
    expect(IntegrityError, lambda: open_team_box(b.team.boxes[b.bob.id], b.alice.puk, b.team.team_id,
                                                 b.alice.id, b.state.boxes[(1, b.bob.id)], b.state.canaries[1]),
           "another member")


def test_box_for_another_team(boxes: Boxes) -> None:
    b = boxes
    expect(IntegrityError, lambda: open_team_box(b.other.boxes[b.alice.id], b.alice.puk, b.team.team_id,
                                                 b.alice.id, b.other_state.boxes[(1, b.alice.id)],
                                                 b.state.canaries[1]))
    expect(IntegrityError, lambda: open_team_box(b.other.boxes[b.alice.id], b.alice.puk, b.team.team_id,
                                                 b.alice.id, b.other_state.boxes[(1, b.alice.id)],
                                                 b.other_state.canaries[1]))


def test_swapped_box(boxes: Boxes) -> None:
    b = boxes
    # The server hands Alice Bob's box (or another team's box) under Alice's commitment.
    for box in (b.team.boxes[b.bob.id], b.other.boxes[b.alice.id], b.team.boxes[b.alice.id][:-1]):
        expect(IntegrityError, lambda box=box: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id,
                                                             b.state.boxes[(1, b.alice.id)],
                                                             b.state.canaries[1]))


def test_wrong_canary(boxes: Boxes) -> None:
    b = boxes
    for canary in (b.other_state.canaries[1], bytes(32)):
        expect(IntegrityError, lambda canary=canary: open_team_box(
            b.team.boxes[b.alice.id], b.alice.puk, b.team.team_id, b.alice.id,
            b.state.boxes[(1, b.alice.id)], canary), "canary")


def test_box_for_a_key_with_the_wrong_seed_fails_the_canary(boxes: Boxes) -> None:
    # An admin boxes a different seed than the one the canary was made from.
    b = boxes
    fake = TeamKey.generate(b.team.team_id, 1)
    box = fake.seal_for(b.alice.id, 1, b.alice.puk.box_public)
    commitment = BoxCommitment(1, b.alice.id, 1, box_hash(box))
    expect(IntegrityError, lambda: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id, commitment,
                                                 b.state.canaries[1]))


def test_box_bound_to_another_member_inside(boxes: Boxes) -> None:
    # Sealed to Alice's key and committed for Alice, but the payload names Bob.
    b = boxes
    box = b.team.key.seal_for(b.bob.id, 1, b.alice.puk.box_public)
    commitment = BoxCommitment(1, b.alice.id, 1, box_hash(box))
    expect(IntegrityError, lambda: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id, commitment,
                                                 b.state.canaries[1]))


def test_box_bound_to_another_generation_inside(boxes: Boxes) -> None:
    b = boxes
    gen2 = TeamKey(b.team.team_id, 2, b.team.key.seed)
    box = gen2.seal_for(b.alice.id, 1, b.alice.puk.box_public)
    commitment = BoxCommitment(1, b.alice.id, 1, box_hash(box))
    expect(IntegrityError, lambda: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id, commitment,
                                                 b.state.canaries[1]))


def test_box_committed_for_another_puk_generation(boxes: Boxes) -> None:
    b = boxes
    box = b.team.boxes[b.alice.id]
    commitment = BoxCommitment(1, b.alice.id, 2, box_hash(box))
    expect(IntegrityError, lambda: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id, commitment,
                                                 b.state.canaries[1]))


def test_box_sealed_to_someone_else_does_not_open(boxes: Boxes) -> None:
    b = boxes
    box = b.team.key.seal_for(b.alice.id, 1, b.bob.puk.box_public)
    commitment = BoxCommitment(1, b.alice.id, 1, box_hash(box))
    expect(DecryptionFailed, lambda: open_team_box(box, b.alice.puk, b.team.team_id, b.alice.id, commitment,
                                                   b.state.canaries[1]))
