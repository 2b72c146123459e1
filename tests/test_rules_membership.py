"""Security-protocol rules (``security.rules``) evaluated over real chains and hand-made audit events:
evaluation as a whole, offboarding, rotate-on-removal, role terms, dormant and lost devices.

Chains are built with the chain tests' builders (``MWorld``): every organization, member and
team state here is a real replay. Events are ``Event`` objects as the server records them;
their audit log index is their position in the list given to ``audit`` (``tests/helpers/rules.py``).
"""

from __future__ import annotations

import pytest

from security.rules import CHECKS, Finding, evaluate, status_of
from tests.helpers.chain_world import DAY, MWorld, expect
from tests.helpers.rules import (
    DEFAULTS,
    HOUR,
    MINUTE,
    audit,
    circle_of,
    event,
    link_event,
    ncc,
    ok,
    only,
    result,
    with_params,
)
from vault.errors import ChainError


@pytest.fixture
def world() -> MWorld:
    return MWorld()


# -- helpers ------------------------------------------------------------------------------------------


# -- evaluate as a whole ----------------------------------------------------------------------------


def test_every_shipped_rule_is_implemented() -> None:
    assert set(CHECKS) == set(DEFAULTS.rules)


def test_one_result_per_rule_in_protocol_order(world: MWorld) -> None:
    results = evaluate(audit(world, []), DEFAULTS)
    assert [r.rule for r in results] == list(DEFAULTS.rules)
    assert all(r.severity == DEFAULTS.rule(r.rule).severity for r in results)
    data = results[0].to_json()
    assert set(data) == {"rule", "severity", "enabled", "status", "findings"}


def test_disabled_rule(world: MWorld) -> None:
    t = circle_of(world)  # one admin: admin-count is violated under the defaults
    inp = audit(world, [t])
    assert result(inp, "admin-count").status == "violated"
    res = result(inp, "admin-count", with_params("[rules.admin-count]\nenabled = false\n"))
    assert (res.status, res.enabled, res.findings) == ("disabled", False, ())
    assert res.to_json() == {"rule": "admin-count", "severity": "medium", "enabled": False, "status": "disabled",
                             "findings": []}


def test_status_precedence() -> None:
    def f(level: str) -> Finding:
        return Finding("r", level, "m", "")

    assert status_of(True, []) == "ok"
    assert status_of(True, [f("warning")]) == "warning"
    assert status_of(True, [f("warning"), f("alert")]) == "alert"
    assert status_of(True, [f("alert"), f("violation"), f("warning")]) == "violated"
    assert status_of(False, [f("violation")]) == "disabled"


def test_a_parameter_change_changes_the_verdict(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "admin"))
    inp = audit(world, [t])
    ok(result(inp, "admin-count"))
    f = only(result(inp, "admin-count", with_params("[rules.admin-count]\nmax = 1\n")), "violation")
    assert f.subject == t.team_id and "2 active admin" in f.message


# -- offboarding ------------------------------------------------------------------------------------


def test_offboarding_removed_member_still_in_a_team(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    removal = world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": "left"})
    events = [event(removal.time - 5, "doc.read", alice.id), link_event(removal, member=alice.id)]
    res = result(audit(world, [t], events, now=removal.time + 25 * HOUR), "offboarding")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == alice.id and f.events == (1,)
    assert t.team_id in f.message and alice.id in f.message
    # Inside the window it is a warning (the removal still has to reach the team).
    res = result(audit(world, [t], events, now=removal.time + HOUR), "offboarding")
    assert res.status == "warning" and only(res).subject == alice.id


def test_offboarding_member_removed_from_every_team(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    removal = world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": "left"})
    # Organization removal takes alice out of every team at once: the rotation (boxed to everyone but
    # her, as the judge requires) is all the team needs; a team.remove of her is refused.
    world.rotate(t, world.founder, [world.founder])
    ok(result(audit(world, [t], [link_event(removal, member=alice.id)], now=removal.time + 30 * DAY),
              "offboarding"))
    assert alice.id not in world.replay_team(t.links).members
    late = world.remove(t, world.founder, alice, [world.founder], append=False)
    expect(ChainError, lambda: world.replay_team([*t.links, late]), "not in team")


# -- rotate-on-removal ------------------------------------------------------------------------------


def test_rotate_on_removal_removal_without_rotation(world: MWorld) -> None:
    alice, nina = world.admit("alice"), ncc(world, "nina")
    t = circle_of(world, (alice, "writer"))
    removal = world.remove(t, nina, alice, None)  # nina holds no key: the rotation is pending
    events = [link_event(t.links[0]), link_event(removal, team=t.team_id, member=alice.id)]
    res = result(audit(world, [t], events, now=removal.time + 25 * HOUR), "rotate-on-removal")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == t.team_id and f.events == (1,)
    assert alice.id in f.message
    res = result(audit(world, [t], events, now=removal.time + 2 * HOUR), "rotate-on-removal")
    assert res.status == "warning" and only(res).subject == t.team_id


def test_rotate_on_removal_device_revocation(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    t = circle_of(world, (alice, "writer"))
    world.revoke_device(alice, phone)
    revoke = alice.chain[-1]
    events = [link_event(revoke)]
    f = only(result(audit(world, [t], events, now=revoke.time + 2 * DAY), "rotate-on-removal"), "violation")
    assert f.subject == t.team_id and f.events == (0,) and phone.device_id in f.message
    # After a rotation by a key holder the team is fine again.
    world.rotate(t, world.founder, [world.founder, alice])
    ok(result(audit(world, [t], events, now=revoke.time + 2 * DAY), "rotate-on-removal"))


def test_rotate_on_removal_leave(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (alice, "writer"), (bob, "reader"))
    leave = world.team_link(t, bob, "team.leave", {})
    f = only(result(audit(world, [t], [link_event(leave, team=t.team_id)], now=leave.time + 2 * DAY),
                    "rotate-on-removal"), "violation")
    assert f.subject == t.team_id and f.events == (0,) and f"{bob.id} left" in f.message


def test_rotate_on_removal_role_end(world: MWorld) -> None:
    alice = world.admit("alice")
    end = world.time + DAY
    t = circle_of(world, (alice, "writer"), until={alice.id: end})
    f = only(result(audit(world, [t], now=end + 2 * DAY), "rotate-on-removal"), "violation")
    assert f.subject == t.team_id and alice.id in f.message


def test_rotate_on_removal_rotated_in_the_removal(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    world.remove(t, world.founder, alice, [world.founder])
    ok(result(audit(world, [t], now=world.time + 30 * DAY), "rotate-on-removal"))


# -- role-terms -------------------------------------------------------------------------------------


def test_role_terms_open_ended_and_overlong_terms(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    grant = world.role(world.founder, alice, "security")
    long = world.role(world.founder, bob, "staff", until=world.time + 800 * DAY)
    t = circle_of(world, (alice, "writer"))
    events = [link_event(grant, member=alice.id), link_event(long, member=bob.id)]
    res = result(audit(world, [t], events), "role-terms")
    assert res.status == "violated"
    by_subject: dict[str, list[Finding]] = {}
    for f in res.findings:
        by_subject.setdefault(f.subject, []).append(f)
    assert set(by_subject) == {world.founder.id, alice.id, bob.id}
    (a,) = by_subject[alice.id]
    assert "'security'" in a.message and "without an end date" in a.message and a.events == (0,)
    (b,) = by_subject[bob.id]
    assert "'staff'" in b.message and b.events == (1,)
    # The founder's open-ended NCC seat and their open-ended circle admin term.
    messages = sorted(f.message for f in by_subject[world.founder.id])
    assert len(messages) == 2 and any(t.team_id in m for m in messages) and any("'ncc'" in m for m in messages)


def test_role_terms_organizer_term_too_short(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"), until={world.founder.id: world.time + 30 * DAY})
    f = next(f for f in result(audit(world, [t]), "role-terms").findings if t.team_id in f.message)
    assert f.level == "violation" and f.subject == world.founder.id and "a term of 29d 23h" in f.message


def test_role_terms_every_term_bounded(world: MWorld) -> None:
    alice = world.admit("alice")
    term = world.time + 200 * DAY
    t = circle_of(world, (alice, "admin"), until={world.founder.id: term, alice.id: term})
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc", until=world.time + 365 * DAY)
    # The founder's open-ended seat is re-granted with a term by another NCC member.
    world.role(nina, world.founder, "ncc", grant=False)
    world.role(nina, world.founder, "ncc", until=world.time + 365 * DAY)
    world.role(nina, alice, "security", until=world.time + 700 * DAY)
    ok(result(audit(world, [t], now=world.time + 10 * DAY), "role-terms"))


def test_role_terms_reports_a_caretaker_ncc(world: MWorld) -> None:
    """Every NCC term over and nobody granted since: the member whose term ended last stays NCC as a
    caretaker (vault.chains), and the rule says so until they hand the role on."""
    alice, nina = world.admit("alice"), world.admit("nina")
    t = circle_of(world, (alice, "writer"), until={world.founder.id: world.time + 200 * DAY})
    world.role(world.founder, nina, "ncc", until=world.time + 100 * DAY)
    world.role(world.founder, world.founder, "ncc", grant=False)  # stepping down: one signature
    during = result(audit(world, [t], now=world.time + 10 * DAY), "role-terms")
    assert not any("caretaker" in f.message for f in during.findings)
    after = result(audit(world, [t], now=world.time + 130 * DAY), "role-terms")
    (f,) = [f for f in after.findings if "caretaker" in f.message]
    assert f.subject == nina.id and f.level == "violation" and "ended 30d" in f.message


# -- dormant-devices ----------------------------------------------------------------------------------


def test_dormant_devices(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.add_device(alice, "paper", kind="paper")  # paper keys never log in
    bob = world.admit("bob")
    world.org_link(world.founder, "org.remove", {"member": bob.id, "reason": "left"})  # removed: not judged
    now = world.time + 61 * DAY
    logins = [event(now - DAY, "auth.login", p.id, p.device.device_id) for p in (world.founder, alice)]
    res = result(audit(world, [], logins, now=now), "dormant-devices")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == phone.device_id and alice.id in f.message and f.events == ()
    # Seen 50 days ago: a warning naming the login event.
    old = event(now - 50 * DAY, "auth.login", alice.id, phone.device_id)
    res = result(audit(world, [], [*logins, old], now=now), "dormant-devices")
    f = only(res, "warning")
    assert res.status == "warning" and f.subject == phone.device_id and f.events == (2,)
    # A failed login is not a sighting.
    failed = event(now - DAY, "auth.login", alice.id, phone.device_id, result="failed")
    assert result(audit(world, [], [*logins, failed], now=now), "dormant-devices").status == "violated"


def test_dormant_devices_all_seen(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    old = world.add_device(alice, "old-phone")
    world.revoke_device(alice, old)  # revoked devices are not judged
    now = world.time + 100 * DAY
    logins = [event(now - 3 * DAY, "auth.login", p, d) for p, d in
              ((world.founder.id, world.founder.device.device_id), (alice.id, alice.device.device_id),
               (alice.id, phone.device_id))]
    ok(result(audit(world, [], logins, now=now), "dormant-devices"))


# -- lost-device ----------------------------------------------------------------------------------------


def test_lost_device_revoked_late_not_rotated_and_used(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    t = circle_of(world, (alice, "writer"))
    reported = world.time + HOUR
    world.time = reported + 2 * HOUR
    world.revoke_device(alice, phone)
    revoke = alice.chain[-1]
    events = [event(reported, "attest.lost", alice.id, alice.device.device_id,
                    res={"member": alice.id, "device": phone.device_id}),
              event(reported + 10 * MINUTE, "doc.read", alice.id, phone.device_id, res={"team": t.team_id}),
              link_event(revoke)]
    res = result(audit(world, [t], events, now=revoke.time + 4 * HOUR), "lost-device")
    assert res.status == "violated" and {f.level for f in res.findings} == {"violation"}
    late, unrotated, used = res.findings
    assert late.subject == phone.device_id and late.events == (0, 2) and "revoked 2h" in late.message
    assert unrotated.subject == t.team_id and phone.device_id in unrotated.message and unrotated.events == (0, 2)
    assert used.subject == phone.device_id and used.events == (0, 1) and "doc.read" in used.message


def test_lost_device_team_rotated_late(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    t = circle_of(world, (alice, "writer"))
    reported = world.time + 60
    world.time = reported + 10 * MINUTE
    world.revoke_device(alice, phone)
    revoke = alice.chain[-1]
    world.time += 3 * HOUR
    rotation = world.rotate(t, world.founder, [world.founder, alice])
    events = [event(reported, "attest.lost", alice.id, alice.device.device_id,
                    res={"member": alice.id, "device": phone.device_id}),
              link_event(revoke), link_event(rotation, team=t.team_id)]
    f = only(result(audit(world, [t], events, now=world.time + DAY), "lost-device"), "violation")
    assert f.subject == t.team_id and f.events == (0, 1, 2) and "rotated 3h" in f.message


def test_lost_device_inside_the_window_is_a_warning(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    reported = world.time
    events = [event(reported, "attest.lost", alice.id, alice.device.device_id,
                    res={"member": alice.id, "device": phone.device_id})]
    res = result(audit(world, [], events, now=reported + 20 * MINUTE), "lost-device")
    f = only(res, "warning")
    assert res.status == "warning" and f.subject == phone.device_id and f.events == (0,)
    assert result(audit(world, [], events, now=reported + 2 * HOUR), "lost-device").status == "violated"


def test_lost_device_handled_in_time(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    t = circle_of(world, (alice, "writer"))
    other = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    reported = world.time + 60
    world.time = reported + 20 * MINUTE
    world.revoke_device(alice, phone)
    world.time += 20 * MINUTE
    world.rotate(t, world.founder, [world.founder, alice])
    events = [event(reported - 60, "auth.login", alice.id, phone.device_id),  # before the report: fine
              event(reported, "attest.lost", alice.id, alice.device.device_id,
                    res={"member": alice.id, "device": phone.device_id}),
              link_event(alice.chain[-1])]
    ok(result(audit(world, [t, other], events, now=world.time + DAY), "lost-device"))
