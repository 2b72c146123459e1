"""Member and organization chains replayed with the shipped policy.

A valid history is accepted; a server (or insider) that forges, reorders, drops, replays or
rolls back links, or a signer without the right, is rejected with a specific error.
"""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import T0, World, expect, member_create_body, new_person, relink, with_sig
from vault.chains import (
    replay_member,
    replay_org,
)
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.errors import (
    BadSignature,
    ChainError,
    InviteNotOpen,
    PolicyDenied,
)
from vault.links import invite_public, make_link, parse_link


@pytest.fixture
def world() -> World:
    return World()


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
