"""Member, organization and team chains replayed with the shipped policy.

A valid history is accepted; a server (or insider) that forges, reorders, drops, replays or
rolls back links, or a signer without the right, is rejected with a specific error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.helpers.chain_world import T0, Person, Team, World, expect, member_create_body, new_person, relink, with_sig
from vault.chains import (
    BoxCommitment,
    TeamState,
    replay_member,
    replay_org,
)
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.errors import (
    BadSignature,
    ChainError,
    DecryptionFailed,
    IntegrityError,
    InviteNotOpen,
    PolicyDenied,
)
from vault.links import invite_public, make_link, parse_link
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


# -- member chains ------------------------------------------------------------------------------


def test_member_chain_valid() -> None:
    person = new_person("alice")
    state = replay_member(person.chain)
    assert state.member_id == person.id
    assert state.name == "alice"
    assert state.puk_gen == 1
    assert state.puk_box_public == person.puk.box_public
    assert state.device(person.device.device_id).sign_public == person.device.sign_public
    assert state.root == state.head == person.root


def test_member_chain_forged_signature() -> None:
    person, mallory = new_person("alice"), new_person("mallory")
    forged = with_sig(person.chain[0], sig=mallory.device.sign(labels.SIG_MEMBER_LINK, person.chain[0].raw))
    expect(BadSignature, lambda: replay_member([forged]))


def test_member_chain_signature_under_another_domain_tag() -> None:
    person = new_person("alice")
    link = person.chain[0]
    wrong_tag = with_sig(link, sig=person.device.sign(labels.SIG_TEAM_LINK, link.raw))
    expect(BadSignature, lambda: replay_member([wrong_tag]))


def test_member_chain_signer_must_be_the_key_it_defines() -> None:
    person, other = new_person("alice"), new_person("bob")
    link = relink(person.chain[0], by=person.device, signer=other.id)
    expect(ChainError, lambda: replay_member([link]))


def test_member_chain_device_id_must_match_key() -> None:
    person, other = new_person("alice"), new_person("bob")
    body = member_create_body("alice", person.device, person.puk)
    body["device"]["id"] = other.device.device_id
    link = relink(person.chain[0], by=person.device, body=body)
    expect(ChainError, lambda: replay_member([link]))


def test_member_chain_puk_boxes_must_cover_exactly_the_device() -> None:
    person = new_person("alice")
    body = member_create_body("alice", person.device, person.puk)
    body["puk_boxes"].append({"device": "f" * 32, "hash": bytes(32)})
    expect(ChainError, lambda: replay_member([relink(person.chain[0], by=person.device, body=body)]))
    body["puk_boxes"] = []
    expect(ChainError, lambda: replay_member([relink(person.chain[0], by=person.device, body=body)]))


def test_member_chain_must_start_with_create() -> None:
    person = new_person("alice")
    expect(ChainError, lambda: replay_member([relink(person.chain[0], by=person.device, seq=2)]))
    expect(ChainError, lambda: replay_member([]))
    expect(ChainError, lambda: replay_member([relink(person.chain[0], by=person.device,
                                                     prev=bytes(32))]))


def test_member_chain_unknown_follow_up_link() -> None:
    person = new_person("alice")
    state = replay_member(person.chain)
    follow = make_link(chain=person.id, seq=2, prev=state.head, time=T0 + 1, signer=person.id,
                       device=person.device, type_="member.rename", body={})
    expect(ChainError, lambda: replay_member([*person.chain, follow]))


def test_member_chain_second_link_out_of_sequence() -> None:
    person = new_person("alice")
    state = replay_member(person.chain)
    gap = make_link(chain=person.id, seq=3, prev=state.head, time=T0 + 1, signer=person.id,
                    device=person.device, type_="member.create", body={})
    expect(ChainError, lambda: replay_member([*person.chain, gap]))


# -- organization chain -------------------------------------------------------------------------


def test_org_chain_valid_history(world: World) -> None:
    alice = world.admit("alice")
    compa = world.admit("compa", role="compa")
    bob = world.person("bob")
    world.join(bob, world.invite(alice))  # a plain member's invitee waits for NCC admission
    org = world.org()
    assert org.org_id == world.org_id
    assert org.roles_of(world.founder.id) == {"member", "ncc"}
    assert org.roles_of(alice.id) == {"member"}
    assert org.roles_of(compa.id) == {"compa"}
    assert org.members[bob.id].status == "pending"
    assert org.roles_of(bob.id) == frozenset()
    assert org.members[alice.id].invited_by == world.founder.id
    assert org.seq == len(world.org_links) and org.head == world.org_links[-1].hash
    assert all(inv.used_by is not None for inv in org.invites.values())


def test_org_create_without_founder_cosignature(world: World) -> None:
    create = relink(world.org_links[0], by=world.founder.device)  # same bytes, no xsig
    assert create.raw == world.org_links[0].raw and create.xsig is None
    expect(ChainError, lambda: replay_org([create], world.members(), POLICY), "invite proof")


def test_org_create_cosigned_by_another_invite_key(world: World) -> None:
    create = relink(world.org_links[0], by=world.founder.device, invite_secret=p.random_bytes(32))
    expect(BadSignature, lambda: replay_org([create], world.members(), POLICY))


def test_org_create_must_pin_the_founders_chain(world: World) -> None:
    body = decode(world.org_links[0].raw)["body"]  # type: ignore[index, call-overload]
    body["member_head"] = bytes(32)
    create = relink(world.org_links[0], by=world.founder.device, invite_secret=world.founder_secret, body=body)
    expect(ChainError, lambda: replay_org([create], world.members(), POLICY))


def test_org_create_by_unknown_member(world: World) -> None:
    expect(ChainError, lambda: replay_org(world.org_links, {}, POLICY))


def test_org_link_forged_signature(world: World) -> None:
    world.admit("alice")
    mallory = world.person("mallory")
    invite = world.org_links[1]
    world.org_links[1] = with_sig(invite, sig=mallory.device.sign(labels.SIG_ORG_LINK, invite.raw))
    expect(BadSignature, world.org)


def test_org_link_body_altered_after_signing(world: World) -> None:
    world.invite(world.founder, "member")
    invite = world.org_links[1]
    value = decode(invite.raw)
    assert isinstance(value, dict)
    value["body"]["role"] = "compa"  # type: ignore[index]
    world.org_links[1] = parse_link(encode({"link": encode(value), "sig": invite.sig, "xsig": None}))
    expect(BadSignature, world.org)


def test_invite_by_someone_outside_the_org(world: World) -> None:
    outsider = world.person("outsider")  # has a member chain but never joined
    world.invite(outsider)
    expect(PolicyDenied, world.org)


def test_invite_by_unknown_member(world: World) -> None:
    stranger = new_person("stranger")  # no member chain known to the verifier
    world.invite(stranger)
    expect(ChainError, world.org)


def test_invite_signed_with_another_members_device(world: World) -> None:
    alice = world.admit("alice")
    mallory = world.person("mallory")
    secret = p.random_bytes(32)
    link = world.org_link(alice, "org.invite", {"role": "member", "invite": invite_public(secret),
                                               "expires": T0 + 10**6, "note": ""}, append=False)
    # Claims Alice as signer but carries Mallory's device id and signature.
    world.org_links.append(relink(link, by=mallory.device, device=mallory.device.device_id))
    expect(ChainError, world.org)
    # Claims Alice and her device id, but is signed by Mallory.
    world.org_links[-1] = relink(link, by=mallory.device)
    expect(BadSignature, world.org)


def test_compa_may_not_invite(world: World) -> None:
    compa = world.admit("compa", role="compa")
    world.invite(compa)
    expect(PolicyDenied, world.org)


def test_pending_member_may_not_invite(world: World) -> None:
    alice = world.admit("alice")
    bob = world.person("bob")
    world.join(bob, world.invite(alice))
    assert world.org().members[bob.id].status == "pending"
    world.invite(bob)
    expect(PolicyDenied, world.org)


@pytest.mark.parametrize("role", ["ncc", "staff", "security", "admin", ""])
def test_invite_may_not_grant_privileged_roles(world: World, role: str) -> None:
    world.invite(world.founder, role=role)
    expect(ChainError, world.org)


def test_invite_key_reuse(world: World) -> None:
    secret = world.invite(world.founder)
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(secret),
                                                 "expires": T0 + 10**6, "note": ""})
    expect(ChainError, world.org)


def test_founder_invite_key_cannot_be_recorded_again(world: World) -> None:
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(world.founder_secret),
                                                 "expires": T0 + 10**6, "note": ""})
    expect(ChainError, world.org)


def test_invite_that_expires_before_it_is_issued(world: World) -> None:
    secret = p.random_bytes(32)
    t = world.tick()
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(secret),
                                                 "expires": t, "note": ""}, time=t)
    expect(ChainError, world.org)


def test_org_links_reordered(world: World) -> None:
    world.invite(world.founder)
    world.invite(world.founder)
    world.org()  # the original order is fine
    links = world.org_links
    links[1], links[2] = links[2], links[1]
    expect(ChainError, world.org, "sequence")


def test_org_link_dropped(world: World) -> None:
    world.admit("alice")
    world.invite(world.founder)
    world.org()
    del world.org_links[2]  # alice's join: seq gap
    expect(ChainError, world.org, "sequence")


def test_org_link_dropped_at_the_start(world: World) -> None:
    world.invite(world.founder)
    expect(ChainError, lambda: replay_org(world.org_links[1:], world.members(), POLICY))


def test_org_link_with_rolled_back_prev(world: World) -> None:
    world.invite(world.founder)
    secret = p.random_bytes(32)
    link = world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(secret),
                                                        "expires": T0 + 10**6, "note": ""}, append=False)
    # Right sequence number, but it points at the link before the head (a fork).
    world.org_links.append(relink(link, by=world.founder.device, prev=world.org_links[0].hash))
    expect(ChainError, world.org, "current head")


def test_org_link_for_another_chain(world: World) -> None:
    world.invite(world.founder)
    link = world.org_links[1]
    world.org_links[1] = relink(link, by=world.founder.device, chain="0" * 32)
    expect(ChainError, world.org, "another chain")


def test_org_link_dated_before_the_previous(world: World) -> None:
    world.invite(world.founder)
    secret = p.random_bytes(32)
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(secret),
                                                 "expires": T0 + 10**6, "note": ""}, time=T0)
    expect(ChainError, world.org)


def test_join_with_used_invite(world: World) -> None:
    secret = world.invite(world.founder)
    world.join(world.person("alice"), secret)
    world.org()
    world.join(world.person("mallory"), secret)
    expect(InviteNotOpen, world.org, "already been used")


@pytest.mark.parametrize("late", [0, 1, 10**6])
def test_join_with_expired_invite(world: World, late: int) -> None:
    secret = world.invite(world.founder, lifetime=100)
    expires = world.org().invites[invite_public(secret)].expires
    alice = world.person("alice")
    world.org_link(alice, "org.join", world.join_body(alice, secret), invite_secret=secret, time=expires + late)
    expect(InviteNotOpen, world.org, "expired")


def test_join_just_before_expiry(world: World) -> None:
    secret = world.invite(world.founder, lifetime=100)
    expires = world.org().invites[invite_public(secret)].expires
    alice = world.person("alice")
    world.org_link(alice, "org.join", world.join_body(alice, secret), invite_secret=secret, time=expires - 1)
    assert world.org().roles_of(alice.id) == {"member"}


def test_join_without_invite_cosignature(world: World) -> None:
    secret = world.invite(world.founder)
    alice = world.person("alice")
    world.org_link(alice, "org.join", world.join_body(alice, secret))
    expect(ChainError, world.org, "invite proof")


def test_join_cosigned_with_another_invite_key(world: World) -> None:
    secret = world.invite(world.founder)
    other = world.invite(world.founder)
    alice = world.person("alice")
    world.org_link(alice, "org.join", world.join_body(alice, secret), invite_secret=other)
    expect(BadSignature, world.org)


def test_join_with_unknown_invite(world: World) -> None:
    secret = p.random_bytes(32)
    world.join(world.person("alice"), secret)
    expect(InviteNotOpen, world.org)


def test_join_twice(world: World) -> None:
    alice = world.admit("alice")
    world.join(alice, world.invite(world.founder))
    expect(ChainError, world.org)


def test_join_must_pin_own_member_chain(world: World) -> None:
    secret = world.invite(world.founder)
    alice, bob = world.person("alice"), world.person("bob")
    world.org_link(alice, "org.join", {"invite": invite_public(secret), "member_head": bob.root},
                   invite_secret=secret)
    expect(ChainError, world.org)


def test_unknown_org_link_type(world: World) -> None:
    world.org_link(world.founder, "org.dissolve", {})
    expect(ChainError, world.org)


def test_malformed_org_link_body(world: World) -> None:
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": b"short", "expires": T0 + 10**6,
                                                 "note": ""})
    expect(ChainError, world.org)


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
