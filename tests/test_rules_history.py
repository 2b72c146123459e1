"""Security-protocol rules judged on history (``security.rules.history``): a late rotation after a removal, a leave
or a device revocation, and a compa who was in a sensitive team, stay reported once the current state is fine.

For each: the late (or forbidden) history is reported, the timely one is not. Real chain replays (``MWorld``).
"""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import MWorld
from tests.helpers.rules import HOUR, audit, circle_of, link_event, ok, only, result


@pytest.fixture
def world() -> MWorld:
    return MWorld()


@pytest.mark.parametrize("hours", [30, 1])
def test_offboarding_judges_how_long_a_removed_member_kept_the_key(world: MWorld, hours: int) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (alice, "writer"), (bob, "writer"))
    removal = world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": "left"})
    world.time += hours * HOUR
    rotation = world.rotate(t, world.founder, [world.founder, bob])
    events = [link_event(removal, member=alice.id), link_event(rotation, team=t.team_id)]
    res = result(audit(world, [t], events, now=rotation.time + 10 * 24 * HOUR), "offboarding")
    if hours == 1:
        ok(res)  # rotated in time: nothing to report, then or now
        return
    f = only(res, "violation")  # the current state is fine (rotated); the history is not
    assert f.subject == alice.id and t.team_id in f.message and "removed from the organization" in f.message
    assert f.events == (0, 1)


@pytest.mark.parametrize("hours", [30, 1])
def test_rotate_on_removal_judges_late_rotations_after_a_leave(world: MWorld, hours: int) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (alice, "writer"), (bob, "writer"))
    leave = world.team_link(t, bob, "team.leave", {})
    world.time += hours * HOUR
    world.rotate(t, world.founder, [world.founder, alice])
    res = result(audit(world, [t], [link_event(leave, team=t.team_id)], now=world.time + 10 * 24 * HOUR),
                 "rotate-on-removal")
    if hours == 1:
        ok(res)
        return
    f = only(res, "violation")
    assert f.subject == t.team_id and f"{bob.id} left" in f.message and f.events == (0,)


@pytest.mark.parametrize("hours", [30, 1])
def test_rotate_on_removal_judges_late_rotations_after_a_device_revocation(world: MWorld, hours: int) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    t = circle_of(world, (alice, "writer"))
    world.revoke_device(alice, phone)
    revoke = alice.chain[-1]
    world.time += hours * HOUR
    world.rotate(t, world.founder, [world.founder, alice])
    res = result(audit(world, [t], now=world.time + 10 * 24 * HOUR), "rotate-on-removal")
    if hours == 1:
        ok(res)
        return
    f = only(res, "violation")
    assert f.subject == t.team_id and phone.device_id in f.message and revoke.type == "device.revoke"


@pytest.mark.parametrize("added", [True, False])
def test_need_to_know_remembers_a_compa_in_a_sensitive_team(world: MWorld, added: bool) -> None:
    alice, compa = world.admit("alice"), world.admit("cleo", role="compa")
    t = circle_of(world, (alice, "writer"))
    if added:
        add = world.add(t, world.founder, compa, "reader")
        world.remove(t, world.founder, compa, [world.founder, alice])  # and taken out again
    world.time += 61 * 24 * HOUR  # alice's probation is over: only the compa can be reported
    res = result(audit(world, [t]), "need-to-know")
    if not added:
        ok(res)
        return
    f = only(res, "violation")
    assert f.subject == compa.id and "since left" in f.message and add.type == "team.add"
