"""Issue 3 chain links replayed with the shipped policy: devices, admission, roles, team changes.

Pure chain tests (no server): ``vault.chains`` replays member, organization and team chains
under ``security.policy.POLICY``. Valid histories are accepted and leave the expected state;
every forged, unauthorized or inconsistent link is rejected with one specific error.
Team links name the organization state they were made against (``org_seq``), and roles are
judged there; device keys are judged at the link's time.
"""

from __future__ import annotations

from typing import Any

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import DAY, MWorld, Person, Team, expect, new_person
from vault.acts import Act
from vault.chains import MAX_OPEN_INVITES, replay_member, replay_org
from vault.errors import BadSignature, ChainError, PolicyDenied
from vault.keys import DeviceKeys, PukKeys
from vault.links import Link, invite_public, make_link, sign_device_proof
from vault.teamkeys import TeamKey, box_hash, open_history, seal_history


@pytest.fixture
def world() -> MWorld:
    return MWorld()


@pytest.fixture
def team(world: MWorld) -> tuple[MWorld, Person, Person, Team]:
    """Founder (NCC, admin) and Alice (writer) in a circle; Bob admitted to the org."""
    alice, bob = world.admit("alice"), world.admit("bob")
    t = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")])
    return world, alice, bob, t


def rejected(world: MWorld, links: list[Link], exc: type[Exception], match: str | None = None) -> None:
    expect(exc, lambda: world.replay_team(links), match)  # type: ignore[arg-type]


# == member chains: devices ========================================================================


def test_devices_added_and_revoked_valid_history(world: MWorld) -> None:
    alice = world.admit("alice")
    laptop, puk1 = alice.device, alice.puk
    phone = world.add_device(alice, "phone")
    t_phone = world.time
    paper = world.add_device(alice, "paper-1", kind="paper", by=phone)  # a new device signs once it is added
    puk2 = world.revoke_device(alice, phone, by=laptop)
    t_revoked = world.time
    state = replay_member(alice.chain)

    assert state.seq == 4 and state.head == alice.chain[-1].hash
    assert {d.device_id for d in state.active_devices()} == {laptop.device_id, paper.device_id}
    assert state.devices[paper.device_id].kind == "paper" and state.devices[phone.device_id].kind == "device"
    assert state.devices[phone.device_id].revoked == t_revoked
    assert state.puk_gen == 2 and state.puk_sign_public == puk2.sign_public
    assert set(state.puks[1].box_hashes) == {laptop.device_id, phone.device_id, paper.device_id}
    assert set(state.puks[2].box_hashes) == {laptop.device_id, paper.device_id}
    # The new generation carries the old one for history, and generations are dated.
    prev = state.puks[2].prev
    assert prev is not None and puk2.open_previous(prev).seed == puk1.seed
    assert state.puk_gen_at(t_revoked - 1) == 1 and state.puk_gen_at(t_revoked) == 2
    # What the phone signed while it was active still verifies; nothing it signs afterwards does.
    assert state.device_at(phone.device_id, t_phone).sign_public == phone.sign_public
    expect(ChainError, lambda: state.device_at(phone.device_id, t_revoked), "not an active device")
    expect(ChainError, lambda: state.device_at(phone.device_id, t_phone - 1), "not an active device")
    expect(ChainError, lambda: state.device(phone.device_id))


@pytest.mark.parametrize("forgery", ["another key", "another member", "another box key", "no proof", "garbage"])
def test_device_add_without_a_valid_proof(world: MWorld, forgery: str) -> None:
    alice = world.admit("alice")
    phone, other = DeviceKeys.generate(), DeviceKeys.generate()
    body = world.device_add_body(alice, phone)
    if forgery == "another key":  # the server substitutes its own device key: the proof is not by it
        body["proof"] = sign_device_proof(other, alice.id)
    elif forgery == "another member":  # a proof the phone made for someone else
        body["proof"] = sign_device_proof(phone, world.founder.id)
    elif forgery == "another box key":  # the phone's signing key with a box key the phone never proved
        body["device"]["box_pk"] = other.box_public
    elif forgery == "no proof":
        del body["proof"]
    else:
        body["proof"] = bytes(64)
    world.member_link(alice, "device.add", body)
    wanted = ChainError if forgery == "no proof" else BadSignature
    expect(wanted, lambda: replay_member(alice.chain))


def test_device_add_other_rules(world: MWorld) -> None:
    alice = world.admit("alice")
    base = list(alice.chain)

    def refused(body: dict[str, Any], match: str, *, by: DeviceKeys | None = None) -> None:
        alice.chain = list(base)
        world.member_link(alice, "device.add", body, by=by)
        expect(ChainError, lambda: replay_member(alice.chain), match)

    phone, other = DeviceKeys.generate(), DeviceKeys.generate()
    refused(world.device_add_body(alice, phone, name="laptop"), "already exists")  # the first device's name
    body = world.device_add_body(alice, phone)
    body["device"]["id"] = other.device_id
    refused(body, "does not match its key")
    body = world.device_add_body(alice, phone)
    body["puk_boxes"] = [{"device": alice.device.device_id, "hash": bytes(32)}]
    refused(body, "exactly the new device")
    body = world.device_add_body(alice, phone)
    body["puk_gen"] = 2
    refused(body, "exactly the new device")
    refused(world.device_add_body(alice, phone, kind="server"), "kind")
    # The new device cannot introduce itself.
    refused(world.device_add_body(alice, phone), "not an active device", by=phone)
    # Another member's device cannot add to Alice's chain.
    bob = world.admit("bob")
    alice.chain = list(base)
    head = alice.chain[-1]
    alice.chain.append(make_link(chain=alice.id, seq=2, prev=head.hash, time=world.tick(), signer=bob.id,
                                 device=bob.device, type_="device.add", body=world.device_add_body(alice, phone)))
    expect(ChainError, lambda: replay_member(alice.chain), "signed by the member")


def test_revoked_device_cannot_come_back_or_sign(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.revoke_device(alice, phone)
    base = list(alice.chain)
    replay_member(base)
    world.member_link(alice, "device.add", world.device_add_body(alice, phone, name="phone-2"))
    expect(ChainError, lambda: replay_member(alice.chain), "cannot come back")
    alice.chain = list(base)
    world.member_link(alice, "device.add", world.device_add_body(alice, DeviceKeys.generate()), by=phone)
    expect(ChainError, lambda: replay_member(alice.chain), "not an active device")


def test_device_revoke_of_the_last_device(world: MWorld) -> None:
    alice = world.admit("alice")
    new_puk = PukKeys.generate(2)
    world.member_link(alice, "device.revoke", world.revoke_body(alice, alice.device, new_puk, boxed=[]))
    expect(ChainError, lambda: replay_member(alice.chain), "last device")
    # Also when another device was added and revoked before: the remaining one is the last.
    bob = world.admit("bob")
    phone = world.add_device(bob, "phone")
    world.revoke_device(bob, phone)
    world.member_link(bob, "device.revoke", world.revoke_body(bob, bob.device, PukKeys.generate(3), boxed=[]))
    expect(ChainError, lambda: replay_member(bob.chain), "last device")


@pytest.mark.parametrize("gen", [1, 3])
def test_device_revoke_must_roll_the_puk(world: MWorld, gen: int) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.member_link(alice, "device.revoke", world.revoke_body(alice, phone, PukKeys.generate(gen)))
    expect(ChainError, lambda: replay_member(alice.chain), "next generation")


@pytest.mark.parametrize("boxed", ["revoked device too", "missing a remaining device", "unknown device", "none"])
def test_device_revoke_boxes_must_match_the_remaining_devices(world: MWorld, boxed: str) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    tablet = world.add_device(alice, "tablet")
    new_puk = PukKeys.generate(2)
    devices = {"revoked device too": [alice.device, tablet, phone], "missing a remaining device": [alice.device],
               "unknown device": [alice.device, tablet, DeviceKeys.generate()], "none": []}[boxed]
    world.member_link(alice, "device.revoke", world.revoke_body(alice, phone, new_puk, boxed=devices))
    expect(ChainError, lambda: replay_member(alice.chain), "remaining devices")


def test_device_revoke_of_an_unknown_or_revoked_device(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.add_device(alice, "tablet")
    base = list(alice.chain)
    world.member_link(alice, "device.revoke", world.revoke_body(alice, DeviceKeys.generate(), PukKeys.generate(2)))
    expect(ChainError, lambda: replay_member(alice.chain), "not an active device")
    alice.chain = list(base)
    world.revoke_device(alice, phone)
    world.member_link(alice, "device.revoke", world.revoke_body(alice, phone, PukKeys.generate(3)))
    expect(ChainError, lambda: replay_member(alice.chain), "not an active device")


# == organization chain: admission and roles ========================================================


def test_admission_valid_history(world: MWorld) -> None:
    alice = world.admit("alice")
    bob = world.pending("bob", alice)
    joined_at = world.org().seq
    world.org_link(world.founder, "org.admit", {"member": bob.id})
    org = world.org()
    assert org.members[bob.id].status == "admitted" and org.members[bob.id].invited_by == alice.id
    assert org.roles_of(bob.id) == {"member"}
    assert org.admitted(bob.id) and not org.admitted(bob.id, seq=joined_at)
    assert org.roles_of(bob.id, seq=joined_at) == frozenset()


@pytest.mark.parametrize("who", ["plain member", "compa", "staff", "security", "pending", "outsider"])
def test_admit_by_non_ncc(world: MWorld, who: str) -> None:
    alice = world.admit("alice")
    signer = world.admit("signer", role="compa" if who == "compa" else "member")
    if who in ("staff", "security"):
        world.role(world.founder, signer, who)
    elif who == "pending":
        signer = world.pending("signer-2", alice)
    elif who == "outsider":
        signer = world.person("outsider")  # a member chain, never joined
    target = world.pending("bob", alice)
    world.org_link(signer, "org.admit", {"member": target.id})
    expect(PolicyDenied, world.org, "may not admit")


def test_admit_of_an_admitted_or_unknown_member(world: MWorld) -> None:
    alice = world.admit("alice")
    world.org_link(world.founder, "org.admit", {"member": alice.id})
    expect(ChainError, world.org, "already admitted")
    world.org_links.pop()
    world.org_link(world.founder, "org.admit", {"member": new_person("ghost").id})
    expect(ChainError, world.org, "unknown member")


@pytest.mark.parametrize("who", ["plain member", "compa", "staff", "security", "pending"])
def test_role_grant_by_non_ncc(world: MWorld, who: str) -> None:
    alice = world.admit("alice")
    signer = world.admit("signer", role="compa" if who == "compa" else "member")
    if who in ("staff", "security"):
        world.role(world.founder, signer, who)
    elif who == "pending":
        signer = world.pending("signer-2", alice)
    world.role(signer, alice, "ncc")
    expect(PolicyDenied, world.org, "may not grant")


def test_revoking_the_last_ncc(world: MWorld) -> None:
    world.role(world.founder, world.founder, "ncc", grant=False)
    expect(ChainError, world.org, "last NCC")
    world.org_links.pop()
    # With a second NCC the founder may step down; the second may then not.
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.role(world.founder, world.founder, "ncc", grant=False)
    org = world.org()
    assert org.roles_of(world.founder.id) == {"member"} and "ncc" in org.roles_of(nina.id)
    world.role(nina, nina, "ncc", grant=False)
    expect(ChainError, world.org, "last NCC")


def test_an_expired_ncc_term_does_not_count_as_another_ncc(world: MWorld) -> None:
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc", until=world.time + 100)
    world.role(world.founder, world.founder, "ncc", grant=False, time=world.time + 200)
    expect(ChainError, world.org, "last NCC")


def test_the_last_ncc_term_ending_leaves_a_caretaker(world: MWorld) -> None:
    """When every NCC term has ended and no one was granted NCC since, whoever's term ended last stays
    NCC (a caretaker) until they grant it to someone else: the organization is never left without
    anyone who may admit, remove or grant roles. The caretaker cannot renew themselves."""
    nina, omar, alice = world.admit("nina"), world.admit("omar"), world.admit("alice")
    t = world.tick()
    world.role(world.founder, nina, "ncc", until=t + 1000)
    world.role(world.founder, omar, "ncc", until=t + 500)  # two NCC members: omar's grant is only proposed...
    world.role(nina, omar, "ncc", until=t + 500)  # ...until nina agrees
    world.role(world.founder, world.founder, "ncc", grant=False)  # stepping down: one signature
    org = world.org()
    assert "ncc" in org.roles_of(omar.id, t + 400) and "ncc" not in org.roles_of(omar.id, t + 600)
    assert "ncc" in org.roles_of(nina.id, t + 600)
    assert org.caretakers(org.seq, t + 999) == frozenset()
    # Both terms over: nina's ended last, so she stays; omar does not.
    assert org.caretakers(org.seq, t + 2000) == {nina.id}
    assert "ncc" in org.roles_of(nina.id, t + 2000) and "ncc" not in org.roles_of(omar.id, t + 2000)
    # She cannot renew herself (she holds the role; a new term comes from someone else)...
    world.role(nina, nina, "ncc", until=t + 90 * DAY, time=t + 2000)
    expect(ChainError, world.org, "already holds")
    world.org_links.pop()
    # ...but may hand over: once alice holds NCC, nina's caretaking ends.
    world.role(nina, alice, "ncc", until=t + 90 * DAY, time=t + 2000)
    org = world.org()
    assert "ncc" in org.roles_of(alice.id, t + 2001)
    assert "ncc" not in org.roles_of(nina.id, t + 2001) and org.caretakers(org.seq, t + 2001) == frozenset()
    # The state before the hand-over still judges acts dated then as nina's.
    assert "ncc" in org.roles_of(nina.id, t + 1999, org.seq - 1)


@pytest.mark.parametrize("offset", [-1, 0])
def test_role_grant_with_past_until(world: MWorld, offset: int) -> None:
    alice = world.admit("alice")
    t = world.tick()
    world.role(world.founder, alice, "staff", until=t + offset, time=t)
    expect(ChainError, world.org, "in the past")


def test_role_grant_with_an_end_date_expires(world: MWorld) -> None:
    alice = world.admit("alice")
    until = world.time + 1000
    world.role(world.founder, alice, "staff", until=until)
    org = world.org()
    assert org.roles_of(alice.id, until - 1) == {"member", "staff"}
    assert org.roles_of(alice.id, until) == {"member"}
    assert org.members[alice.id].role_terms["staff"] == until
    # After the term the role may be granted again (it is no longer held).
    world.role(world.founder, alice, "staff", time=until + 10)
    assert world.org().roles_of(alice.id, until + 10) == {"member", "staff"}


def test_compa_grant_swaps_the_base_role(world: MWorld) -> None:
    alice = world.admit("alice")
    world.role(world.founder, alice, "compa")
    assert world.org().roles_of(alice.id) == {"compa"}
    world.role(world.founder, alice, "compa", grant=False)
    assert world.org().roles_of(alice.id) == {"member"}
    # A compa holding an extra role keeps it through the swap.
    world.role(world.founder, alice, "security")
    world.role(world.founder, alice, "compa")
    assert world.org().roles_of(alice.id) == {"compa", "security"}


@pytest.mark.parametrize(
    ("case", "match"),
    [("already held", "already holds"), ("not held", "does not hold"), ("revocation with an end date", "no end date"),
     ("not grantable", "role must be one of"), ("pending member", "not an admitted member"),
     ("unknown member", "not an admitted member"), ("compa with an end date", "no end date")],
)
def test_role_link_rules(world: MWorld, case: str, match: str) -> None:
    alice = world.admit("alice")
    if case == "already held":
        world.role(world.founder, world.founder, "ncc")
    elif case == "not held":
        world.role(world.founder, alice, "staff", grant=False)
    elif case == "revocation with an end date":
        world.role(world.founder, alice, "staff")
        world.role(world.founder, alice, "staff", grant=False, until=world.time + 100)
    elif case == "not grantable":
        world.role(world.founder, alice, "member")
    elif case == "pending member":
        world.role(world.founder, world.pending("bob", alice), "staff")
    elif case == "compa with an end date":  # compa replaces the base role: an end would leave none
        world.role(world.founder, alice, "compa", until=world.time + 1000)
    else:
        world.role(world.founder, new_person("ghost"), "staff")
    expect(ChainError, world.org, match)


def test_invites_expire_within_30_days(world: MWorld) -> None:
    t = world.tick()
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"a" * 32),
                                                 "expires": t + 30 * DAY, "note": ""}, time=t)
    world.org()
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"b" * 32),
                                                 "expires": t + 30 * DAY + 1, "note": ""}, time=t)
    expect(ChainError, world.org, "30 days")


def test_at_most_20_open_invites_per_member(world: MWorld) -> None:
    alice = world.admit("alice")
    secrets = [world.invite(alice, lifetime=DAY) for _ in range(MAX_OPEN_INVITES)]
    world.org()
    world.invite(alice)
    expect(PolicyDenied, world.org, "unused invites open")
    world.org_links.pop()
    # Another member has its own allowance; a used or expired invite frees a place.
    world.invite(world.founder)
    world.join(world.person("carol"), secrets[0])
    world.invite(alice)
    world.org()
    world.invite(alice)
    expect(PolicyDenied, world.org, "unused invites open")
    world.org_links.pop()
    t = world.time + 2 * DAY  # every open invite of alice's has expired by then
    world.org_link(alice, "org.invite", {"role": "member", "invite": invite_public(b"c" * 32),
                                         "expires": t + DAY, "note": ""}, time=t)
    world.org()


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


# == team chains: the organization state a link names ================================================


def test_team_link_citing_an_org_seq_beyond_the_org_chain(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    link = world.add(t, world.founder, bob, "reader", org_seq=world.org_seq + 1, append=False)
    rejected(world, [*t.links, link], ChainError, "does not exist")
    # A server that drops the org links a team chain already names is caught the same way.
    world.add(t, world.founder, bob, "reader")
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"x" * 32),
                                                 "expires": world.time + 100, "note": ""})
    carol = world.admit("carol")
    world.add(t, world.founder, carol, "reader")
    world.replay_team(t.links)
    dropped = world.org_links.pop()
    rejected(world, t.links, ChainError, "does not exist")
    world.org_links.append(dropped)
    body, _ = world.team_create_body([(world.founder, "admin")], org_seq=world.org_seq + 1)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                       device=world.founder.device, type_="team.create", body=body)
    rejected(world, [create], ChainError, "does not exist")
    body, _ = world.team_create_body([(world.founder, "admin")], org_seq=0)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=world.founder.id,
                       device=world.founder.device, type_="team.create", body=body)
    rejected(world, [create], ChainError, "org_seq")


def test_team_link_citing_an_org_seq_that_goes_backwards(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    carol = world.admit("carol")
    world.add(t, world.founder, bob, "reader")  # made against the head after carol's join
    cited = world.org_seq
    link = world.add(t, world.founder, carol, "reader", org_seq=cited - 1, append=False)
    rejected(world, [*t.links, link], ChainError, "went back")
    world.add(t, world.founder, carol, "reader", org_seq=cited)  # the same state again is fine
    state = world.replay_team(t.links)
    assert state.org_seq == cited and state.snapshots[state.seq].org_seq == cited
    link = world.team_link(t, world.founder, "team.leave", {}, org_seq=cited - 2, append=False)
    rejected(world, [*t.links, link], ChainError, "went back")


def test_team_link_missing_org_seq(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    link = world.add(t, world.founder, bob, "reader", append=False)
    head = t.links[-1]
    value = {"member": bob.id, "role": "reader", "until": None, "key": None}
    bare = make_link(chain=t.team_id, seq=head.seq + 1, prev=head.hash, time=link.time, signer=world.founder.id,
                     device=world.founder.device, type_="team.add", body=value)
    rejected(world, [*t.links, bare], ChainError, "org_seq")


def test_roles_are_judged_at_the_org_seq_a_link_names(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    before_grant = world.org_seq
    world.role(world.founder, alice, "ncc")
    # A team.create citing the state before alice became NCC: she may not create a circle there.
    body, created = world.team_create_body([(alice, "admin")], org_seq=before_grant)
    create = make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=alice.id, device=alice.device,
                       type_="team.create", body=body)
    rejected(world, [create], PolicyDenied, "may not create")
    body, created = world.team_create_body([(alice, "admin")])
    created.links.append(make_link(chain=None, seq=1, prev=None, time=world.tick(), signer=alice.id,
                                   device=alice.device, type_="team.create", body=body))
    world.replay_team(created.links)
    # The NCC override is judged the same way: nina acts as NCC only from the org state that made her one.
    t = world.create_team(world.founder, [(world.founder, "admin")])
    nina = world.admit("nina")
    before_nina = world.org_seq
    world.role(world.founder, nina, "ncc")  # proposed (alice is NCC too)...
    world.role(alice, nina, "ncc")  # ...and put in force by alice
    link = world.add(t, nina, bob, "reader", keyless=True, org_seq=before_nina + 1, append=False)
    rejected(world, [*t.links, link], PolicyDenied, "may not add")
    world.add(t, nina, bob, "reader", keyless=True)
    world.replay_team(t.links)
    # Members added must be admitted at the named state too.
    carol = world.person("carol")
    before_carol = world.org_seq
    world.join(carol, world.invite(world.founder))
    link = world.add(t, world.founder, carol, "reader", org_seq=before_carol + 1, append=False)
    rejected(world, [*t.links, link], ChainError, "not an admitted member")
    world.add(t, world.founder, carol, "reader")
    world.replay_team(t.links)


def test_an_org_role_ending_is_judged_by_the_links_time(world: MWorld) -> None:
    nina, bob = world.admit("nina"), world.admit("bob")
    until = world.time + 500
    world.role(world.founder, nina, "ncc", until=until)
    t = world.create_team(world.founder, [(world.founder, "admin")])
    world.add(t, nina, bob, "reader", keyless=True, time=until - 1)
    world.replay_team(t.links)
    t.links.pop()
    world.add(t, nina, bob, "reader", keyless=True, time=until)
    rejected(world, t.links, PolicyDenied, "may not add")


# == devices and time ===============================================================================


def test_links_signed_by_a_device_revoked_before_the_links_time(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(world.founder, "phone")
    world.add(t, world.founder, bob, "reader", by=phone)  # signed while the phone was active
    invite = world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"p" * 32),
                                                          "expires": world.time + 1000, "note": ""}, by=phone)
    world.revoke_device(world.founder, phone)
    revoked_at = world.time
    # The older chains still replay: what the phone signed before its revocation stands.
    world.replay_team(t.links)
    assert invite in world.org_links and world.org().seq == invite.seq
    # After the revocation nothing it signs is accepted, in any chain.
    carol = world.admit("carol")
    link = world.team_role(t, world.founder, alice, "reader", by=phone, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"q" * 32),
                                                 "expires": world.time + 1000, "note": ""}, by=phone)
    expect(ChainError, world.org, "not an active device")
    world.org_links.pop()
    # Nor what it signs dated exactly at the revocation; and a device added later cannot sign earlier.
    link = world.add(t, world.founder, carol, "reader", by=phone, time=revoked_at, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")
    tablet = world.add_device(world.founder, "tablet")
    link = world.team_role(t, world.founder, alice, "reader", by=tablet, time=revoked_at, append=False)
    rejected(world, [*t.links, link], ChainError, "not an active device")


# == document headers: who could write at a team state ================================================


def test_who_could_write_at_a_team_state(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    compa = world.admit("compa", role="compa")
    until = world.time + 1000
    world.add(t, world.founder, bob, "reader")  # seq 2
    world.team_role(t, world.founder, bob, "writer", until=until)  # seq 3
    world.add(t, world.founder, compa, "reader")  # seq 4
    world.remove(t, world.founder, alice, [world.founder, bob, compa])  # seq 5, generation 2
    state = world.replay_team(t.links)
    org = world.org()
    now = world.time

    def can(seq: int, who: Person, gen: int, at: int = now) -> bool:
        act = Act(who.id, who.device.device_id, at, "doc.write", team_seq=seq, gen=gen)
        return POLICY.entitled(act, org, world.members(), state)

    assert can(1, alice, 1) and can(4, alice, 1)  # alice wrote while she was a writer
    assert not can(5, alice, 2) and not can(5, alice, 1)  # removed: no state after that lets her
    assert not can(2, bob, 1) and can(3, bob, 1) and can(5, bob, 2)  # a reader until seq 3
    assert not can(3, bob, 1, at=until)  # the role's end counts at the header's time
    assert not can(5, bob, 1)  # generation 1 is not the key of state 5
    assert not can(6, bob, 2)  # a state the chain does not have
    assert not can(1, bob, 1)  # not in the team yet
    assert not can(4, compa, 1)  # compas only read
    assert can(5, world.founder, 2)  # admins write
    # Org roles are taken at the org state current at the act's time: a later compa grant does not reach
    # back, but it counts for what bob signs after it.
    world.role(world.founder, bob, "compa")
    org = world.org()
    assert can(5, bob, 2)
    assert not can(5, bob, 2, at=world.time)


# == rotation reasons ===============================================================================


def test_rotation_reasons_after_expiry(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    until = world.time + 1000
    world.add(t, world.founder, bob, "reader", until=until)
    state = world.replay_team(t.links)
    members = world.members()
    assert state.rotation_reasons(world.time, members, world.org()) == []
    # Expiry: bob's role ends while he holds the current key.
    reasons = state.rotation_reasons(until, members, world.org())
    assert len(reasons) == 1 and bob.id in reasons[0] and "role ended" in reasons[0]
    assert state.rotation_reasons(until - 1, members, world.org()) == []


def test_rotation_reasons_after_a_device_revocation(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(alice, "phone")
    world.add(t, world.founder, bob, "reader")
    boxed_at = world.time
    world.revoke_device(alice, phone)  # alice's PUK rolls after her box was made
    revoked_at = world.time
    # Replaying the chain as it was (made before the revocation) still passes...
    state = world.replay_team(t.links)
    members = world.members()
    assert state.rotation_reasons(boxed_at, members, world.org()) == []
    # ...but from the revocation on, the current key must be rotated (only the replay of a
    # share judges the revocation's own second leniently).
    assert state.rotation_reasons(revoked_at, members, world.org(), tolerant=True) == []
    reasons = state.rotation_reasons(revoked_at, members, world.org())
    assert len(reasons) == 1 and alice.id in reasons[0] and "revoked a device" in reasons[0]
    carol = world.admit("carol")
    link = world.add(t, world.founder, carol, "reader", append=False)
    rejected(world, [*t.links, link], ChainError, "rotated before it is shared")
    # A box sealed to alice's old PUK is not accepted in a rotation either.
    stale = TeamKey.generate(t.team_id, 2)
    old_box = stale.seal_for(alice.id, 1, PukKeys.generate(1).box_public)
    body = {"gen": 2, "canary": stale.canary, "prev": seal_history(stale, t.key),
            "boxes": [world.box_commit(stale, world.founder)[0], world.box_commit(stale, bob)[0],
                      {"member": alice.id, "puk_gen": 1, "hash": box_hash(old_box)}]}
    link = world.team_link(t, bob, "team.rotate", {"key": body}, append=False)
    rejected(world, [*t.links, link], ChainError, "current key")
    world.rotate(t, bob, [world.founder, alice, bob])
    state = world.replay_team(t.links)
    assert state.rotation_reasons(world.time, world.members(), world.org()) == []
    assert state.boxes[(2, alice.id)].puk_gen == 2


def test_a_revocation_dated_like_an_earlier_team_link_keeps_the_team_replayable(
        team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    phone = world.add_device(alice, "phone")
    world.add(t, world.founder, bob, "reader")  # boxes the current key; alice's box is sealed to her PUK 1
    boxed_at = world.time
    world.replay_team(t.links)
    # Afterwards alice revokes her phone; the server accepts the link dated in the same second.
    world.revoke_device(alice, phone, time=boxed_at)
    assert replay_member(alice.chain).puk_gen == 2
    # The team chain is the one every client already verified: it must still replay (and from now on
    # ask for a rotation, since alice's old member key could open the current team key).
    state = world.replay_team(t.links)
    assert state.seq == len(t.links)
    assert any(alice.id in r for r in state.rotation_reasons(boxed_at + 10, world.members(), world.org()))


def test_no_rotation_reason_for_a_box_made_after_the_revocation(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, _, bob, t = team
    phone = world.add_device(bob, "phone")
    world.revoke_device(bob, phone)  # before bob is boxed anything: his box is sealed to the new PUK
    world.add(t, world.founder, bob, "reader")
    state = world.replay_team(t.links)
    assert state.boxes[(1, bob.id)].puk_gen == 2
    assert state.rotation_reasons(world.time, world.members(), world.org()) == []
    # A box sealed to the PUK bob revoked is refused outright.
    t.links.pop()
    stale = t.key.seal_for(bob.id, 1, PukKeys.generate(1).box_public)
    world.team_link(t, world.founder, "team.add", {"member": bob.id, "role": "reader", "until": None,
                                                    "key": {"gen": 1, "boxes": [{"member": bob.id, "puk_gen": 1,
                                                                                 "hash": box_hash(stale)}]}})
    rejected(world, t.links, ChainError, "current key")


def test_rotation_reasons_after_removal_and_leave(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.add(t, world.founder, bob, "reader")
    base = list(t.links)
    world.remove(t, nina, alice, None)  # removal without rotation (nina holds no key)
    reasons = world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org())
    assert any("not rotated" in r for r in reasons) and any(f"{alice.id} was removed" in r for r in reasons)
    t.links = list(base)
    world.team_link(t, bob, "team.leave", {})
    reasons = world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org())
    assert any("not rotated" in r for r in reasons) and any(f"{bob.id} was removed" in r for r in reasons)
    t.links = list(base)
    world.remove(t, world.founder, alice, [world.founder, bob])  # a holder rotates: nothing pending
    assert world.replay_team(t.links).rotation_reasons(world.time, world.members(), world.org()) == []


def test_replaying_older_states_is_stable(team: tuple[MWorld, Person, Person, Team]) -> None:
    """Every prefix of a valid history replays, whatever happened later in the member and org chains."""
    world, alice, bob, t = team
    world.add(t, world.founder, bob, "reader")
    phone = world.add_device(bob, "phone")
    world.remove(t, world.founder, alice, [world.founder, bob])
    world.revoke_device(bob, phone)
    world.role(world.founder, bob, "compa")
    world.rotate(t, world.founder, [world.founder, bob])
    for n in range(1, len(t.links) + 1):
        state = world.replay_team(t.links[:n])
        assert state.seq == n
    assert replay_org(world.org_links, world.members(), POLICY).roles_of(bob.id) == {"compa"}
    state = world.replay_team(t.links)
    assert state.role_of(bob.id, world.time) == "reader"  # kept in the chain, capped by the org role
    assert not POLICY.team_allows(world.org().roles_of(bob.id), state.role_of(bob.id, world.time), "doc.write")


# == orphaned teams: a re-key when no member holds the key =====================================


def test_an_orphaned_team_is_re_keyed_by_one_of_its_admins(team: tuple[MWorld, Person, Person, Team]) -> None:
    """The founder (NCC) holds the key alone; an NCC member outside the team adds an admin and a reader
    without keys and removes the founder: no member holds the key, so nobody could rotate. Only an
    admin of the team may then re-key it: a `team.rotate` without the old key, no history, boxed to
    the members who are not waiting for a share plus the admin itself."""
    world, alice, bob, t = team
    nina, erin = world.admit("nina"), world.admit("erin")
    world.role(world.founder, nina, "ncc")
    world.team_link(t, nina, "team.remove", {"member": alice.id, "key": None})  # alice out, no rotation
    world.add(t, nina, erin, "admin", keyless=True)
    world.add(t, nina, bob, "reader", keyless=True)
    world.team_link(t, nina, "team.remove", {"member": world.founder.id, "key": None})
    state = world.replay_team(t.links)
    assert state.key_holders(world.org(), world.org_seq, world.time, POLICY) == set()
    good = list(t.links)

    body, _ = world.new_generation(t, [erin], history=False)
    world.team_link(t, bob, "team.rotate", {"key": body})  # a reader may not
    rejected(world, t.links, PolicyDenied, "only one of its admins")
    t.links[:] = good
    body, _ = world.new_generation(t, [erin], history=True)  # it has no old key to carry
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, ChainError, "must not carry a previous key")
    t.links[:] = good
    body, _ = world.new_generation(t, [erin, bob], history=False)  # bob waits for a share: not boxed
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, ChainError, "do not match")
    t.links[:] = good

    body, key = world.new_generation(t, [erin], history=False)
    world.team_link(t, erin, "team.rotate", {"key": body})
    t.key = key
    state = world.replay_team(t.links)
    assert state.generation == 2 and state.rekeyed == {2: erin.id} and state.rotation_reasons(
        world.time, world.members(), world.org()) == []
    assert state.pending_share == {bob.id: nina.id} and state.holds_key(erin.id, world.time)
    world.share(t, erin, bob)
    assert world.replay_team(t.links).holds_key(bob.id, world.time)


def test_a_non_holder_may_not_re_key_while_a_member_holds_the_key(team: tuple[MWorld, Person, Person, Team]) -> None:
    world, alice, bob, t = team
    erin = world.admit("erin")
    world.add(t, world.founder, erin, "admin", keyless=True)  # a holder adding without a box is refused...
    rejected(world, t.links, ChainError, "must box")
    t.links.pop()
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.add(t, nina, erin, "admin", keyless=True)  # ...an NCC member outside the team may
    body, _ = world.new_generation(t, [world.founder, alice], history=False)
    world.team_link(t, erin, "team.rotate", {"key": body})
    rejected(world, t.links, PolicyDenied, "only a holder")
