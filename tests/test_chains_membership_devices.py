"""Issue 3 chain links replayed with the shipped policy: member chains, devices added and revoked.

Pure chain tests (no server): ``vault.chains`` replays member, organization and team chains
under ``security.policy.POLICY``. Valid histories are accepted and leave the expected state;
every forged, unauthorized or inconsistent link is rejected with one specific error.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.chain_world import MWorld, expect
from vault.chains import replay_member
from vault.errors import BadSignature, ChainError
from vault.keys import DeviceKeys, PukKeys
from vault.links import make_link, sign_device_proof


@pytest.fixture
def world() -> MWorld:
    return MWorld()


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
