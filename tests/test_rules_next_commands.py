"""A finding that one command resolves carries that command (``Finding.next_command``), exactly as it is to be
run: the ids it names are accepted by the command (issue 15: ``audit approve`` takes what the finding prints).

Real chain replays (``MWorld``) and hand-made events, as in tests/test_rules_*.py."""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import DAY, MWorld
from tests.helpers.rules import HOUR, audit, circle_of, event, link_event, only, result, verify_event


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def test_two_person_warning_carries_the_approval_and_the_link_hash(world: MWorld) -> None:
    alice = world.admit("alice")
    grant = world.role(world.founder, alice, "security")
    inp = audit(world, [], [link_event(grant, member=alice.id)], now=grant.time + HOUR)
    f = only(result(inp, "two-person"), "warning")
    assert f.next_command == f"mvault audit approve {grant.hash.hex()[:16]}"
    assert f"`{f.next_command}`" in f.message and f"org seq {grant.seq}" in f.message
    assert f.to_json()["next_command"] == f.next_command
    # Once the window has passed an approval no longer helps: the violation names the link, no command.
    late = only(result(audit(world, [], [link_event(grant, member=alice.id)], now=grant.time + 73 * HOUR),
                       "two-person"), "violation")
    assert late.next_command == "" and grant.hash.hex()[:16] in late.message


def test_rotation_findings_carry_team_rotate(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (alice, "writer"), (bob, "reader"))
    leave = world.team_link(t, bob, "team.leave", {})
    f = only(result(audit(world, [t], [link_event(leave, team=t.team_id)], now=leave.time + HOUR),
                    "rotate-on-removal"), "warning")
    assert f.next_command == f"mvault team rotate {t.team_id}"


def test_dormant_and_lost_devices_carry_device_revoke(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    now = world.time + 61 * DAY
    logins = [event(now - DAY, "auth.login", p.id, p.device.device_id) for p in (world.founder, alice)]
    f = only(result(audit(world, [], logins, now=now), "dormant-devices"), "violation")
    assert f.next_command == f"mvault device revoke {phone.device_id}"
    lost = event(world.time + HOUR, "attest.lost", alice.id, alice.device.device_id,
                 res={"member": alice.id, "device": phone.device_id})
    f = only(result(audit(world, [], [lost], now=world.time + 2 * HOUR), "lost-device"), "warning")
    assert f.next_command == f"mvault device revoke {phone.device_id}"


def test_key_verification_carries_verify(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    verify = verify_event(world, world.time + HOUR, alice, world.founder.id)
    world.time += 2 * DAY
    world.add_device(world.founder, "phone")
    change = world.founder.chain[-1]
    f = only(result(audit(world, [t], [verify, link_event(change)], now=change.time + DAY), "key-verification"))
    assert f.next_command == f"mvault verify {world.founder.id}"


def test_an_unwitnessed_log_carries_audit_witness(world: MWorld) -> None:
    now = world.time + DAY
    for last in (None, now - 30 * HOUR):
        f = only(result(audit(world, [], now=now, last_witness=last), "log-integrity"), "violation")
        assert f.next_command == "mvault audit witness"
