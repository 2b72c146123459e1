"""Security-protocol rules (``security.rules``) evaluated over real chains and hand-made audit events.

Chains are built with the chain tests' builders (``MWorld``): every organization, member and
team state here is a real replay. Events are ``Event`` objects as the server records them;
their audit log index is their position in the list given to ``audit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from security.authority import POLICY
from security.events import Event
from security.policy import TEAM_KINDS
from security.protocols import Protocols, defaults, parse
from security.rules import CHECKS, AuditInput, Finding, RuleResult, evaluate, status_of
from tests.helpers.chain_world import DAY, MWorld, Person, Team, expect
from vault.chains import ProtocolsChange, replay_team
from vault.errors import ChainError
from vault.keys import key_fingerprint
from vault.links import Link

HOUR = 3600
MINUTE = 60
DEFAULTS = defaults()
STRONG = {"time_cost": 3, "memory_kib": 65536, "parallelism": 1}


# -- helpers ------------------------------------------------------------------------------------------


def event(t: int, action: str, actor: str = "", device: str = "", result: str = "ok",
          res: Mapping[str, str] | None = None, detail: Mapping[str, int | str] | None = None) -> Event:
    return Event(t, actor, device, action, result, res or {}, (), detail or {})


def fingerprint_at(world: MWorld, member_id: str, t: int) -> str:
    """The key fingerprint ``mvault verify`` showed for ``member_id`` at time ``t``."""
    ms = world.members()[member_id]
    devices = [(d.device_id, d.sign_public) for d in ms.devices.values() if d.active_at(t)]
    puk = max(g for g, k in ms.puks.items() if k.since <= t)
    return key_fingerprint(member_id, devices, ms.puks[puk].sign_public).hex()


def verify_event(world: MWorld, t: int, who: Any, subject: str, fingerprint: str | None = None) -> Event:
    fp = fingerprint if fingerprint is not None else fingerprint_at(world, subject, t)
    return event(t, "attest.verify", who.id, who.device.device_id, res={"member": subject}, detail={"fingerprint": fp})


def link_event(link: Link, **extra: str) -> Event:
    """The event the server records when it appends ``link`` to a chain."""
    res = {"chain": link.chain or "", "seq": str(link.seq), "link": link.hash.hex(), **extra}
    return event(link.time, link.type, link.signer, link.device, res=res)


def audit(world: MWorld, teams: list[Team], events: list[Event] | None = None, *, now: int | None = None,
          **kw: Any) -> AuditInput:
    members = world.members()
    org = world.org()
    states = {t.team_id: replay_team(t.links, org, members, POLICY, TEAM_KINDS) for t in teams}
    kw.setdefault("last_witness", now if now is not None else world.time)
    return AuditInput(now=world.time if now is None else now, org=org, members=members, teams=states,
                      org_links=list(world.org_links), team_links={t.team_id: list(t.links) for t in teams},
                      member_links={pid: list(p.chain) for pid, p in world.people.items()},
                      events=list(enumerate(events or [])), **kw)


def result(inp: AuditInput, rule_id: str, protocols: Protocols = DEFAULTS) -> RuleResult:
    found = [r for r in evaluate(inp, protocols) if r.rule == rule_id]
    assert len(found) == 1
    return found[0]


def only(res: RuleResult, level: str | None = None) -> Finding:
    assert len(res.findings) == 1, res.findings
    f = res.findings[0]
    assert f.rule == res.rule
    if level is not None:
        assert f.level == level
    return f


def ok(res: RuleResult) -> None:
    assert res.enabled and res.status == "ok" and res.findings == (), res.findings


def with_params(text: str) -> Protocols:
    return parse("version = 2\n" + text)


def circle_of(world: MWorld, *people: tuple[Person, str], **kw: Any) -> Team:
    return world.create_team(world.founder, [(world.founder, "admin"), *people], **kw)


def ncc(world: MWorld, name: str) -> Person:
    """An NCC member outside every team (holds no team key)."""
    person = world.admit(name)
    world.role(world.founder, person, "ncc")
    return person


@pytest.fixture
def world() -> MWorld:
    return MWorld()


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


# -- key-verification ---------------------------------------------------------------------------------


def test_key_verification_missing(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    joined = world.time
    res = result(audit(world, [t], now=joined + 31 * DAY), "key-verification")
    f = only(res, "violation")  # the founder, the only admin, has nobody to verify
    assert res.status == "violated" and f.subject == alice.id and t.team_id in f.message
    assert world.founder.id in f.message and f.events == ()
    ok(result(audit(world, [t], now=joined + 29 * DAY), "key-verification"))


def test_key_verification_after_a_key_change(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    verify = verify_event(world, world.time + HOUR, alice, world.founder.id)
    world.time += 2 * DAY
    world.add_device(world.founder, "phone")  # the founder's keys change after alice verified them
    change = world.founder.chain[-1]
    events = [verify, link_event(change)]
    res = result(audit(world, [t], events, now=change.time + 8 * DAY), "key-verification")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == alice.id and f.events == (0, 1)
    assert "re-verified" in f.message and world.founder.id in f.message
    res = result(audit(world, [t], events, now=change.time + DAY), "key-verification")
    assert res.status == "warning" and only(res).subject == alice.id
    # A new verification after the change settles it.
    again = verify_event(world, change.time + DAY, alice, world.founder.id)
    ok(result(audit(world, [t], [*events, again], now=change.time + 60 * DAY), "key-verification"))


def test_key_verification_done_or_not_sensitive(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    program = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")], kind="program")
    events = [verify_event(world, world.time + DAY, alice, world.founder.id)]
    ok(result(audit(world, [t, program], events, now=world.time + 90 * DAY), "key-verification"))


def test_key_verification_of_other_keys_counts_for_nothing(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    wrong = verify_event(world, world.time + DAY, alice, world.founder.id, fingerprint="00" * 32)
    res = result(audit(world, [t], [wrong], now=world.time + 31 * DAY), "key-verification")
    assert res.status == "violated" and only(res, "violation").subject == alice.id


# -- need-to-know -------------------------------------------------------------------------------------


def test_need_to_know_compa_and_probation(world: MWorld) -> None:
    alice = world.admit("alice")
    compa = world.admit("carol", role="compa")
    t = circle_of(world, (alice, "writer"))
    world.add(t, world.founder, compa, "reader")
    events = [link_event(t.links[0]), link_event(t.links[1], team=t.team_id, member=compa.id)]
    res = result(audit(world, [t], events, now=world.time + 10 * DAY), "need-to-know")
    assert res.status == "violated"
    by_subject = {f.subject: f for f in res.findings}
    assert set(by_subject) == {alice.id, compa.id}  # the founder has no probation
    assert "probation" in by_subject[alice.id].message and by_subject[alice.id].events == (0,)
    assert "compa" in by_subject[compa.id].message and by_subject[compa.id].events == (1,)
    # After the probation only the compa remains.
    res = result(audit(world, [t], events, now=world.time + 61 * DAY), "need-to-know")
    assert only(res, "violation").subject == compa.id


def test_need_to_know_followed(world: MWorld) -> None:
    alice = world.admit("alice")
    compa = world.admit("carol", role="compa")
    t = circle_of(world, (alice, "writer"))
    program = world.create_team(world.founder, [(world.founder, "admin"), (compa, "reader")], kind="program")
    ok(result(audit(world, [t, program], now=world.time + 61 * DAY), "need-to-know"))


# -- admin-count ----------------------------------------------------------------------------------------


def test_admin_count(world: MWorld) -> None:
    alice = world.admit("alice")
    single = circle_of(world, (alice, "writer"))
    pair = circle_of(world, (alice, "admin"))
    res = result(audit(world, [single, pair]), "admin-count")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == single.team_id and "1 active admin" in f.message
    ok(result(audit(world, [pair]), "admin-count"))


def test_admin_count_expired_admin_terms_do_not_count(world: MWorld) -> None:
    alice = world.admit("alice")
    t = circle_of(world, (alice, "admin"), until={alice.id: world.time + DAY})
    ok(result(audit(world, [t]), "admin-count"))
    assert only(result(audit(world, [t], now=world.time + 2 * DAY), "admin-count")).subject == t.team_id


# -- two-person -----------------------------------------------------------------------------------------


def test_two_person_missing_approval(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    grant = world.role(world.founder, alice, "security")
    world.role(world.founder, bob, "staff")  # not a two-person role
    events = [link_event(grant, member=alice.id),
              # approvals that do not count: by the signer, by the subject, by a non-NCC member
              event(grant.time + 60, "attest.approve", world.founder.id, res={"link": grant.hash.hex(), "chain": ""}),
              event(grant.time + 60, "attest.approve", alice.id, res={"link": grant.hash.hex(), "chain": ""}),
              event(grant.time + 60, "attest.approve", bob.id, res={"link": grant.hash.hex(), "chain": ""})]
    res = result(audit(world, [], events, now=grant.time + 73 * HOUR), "two-person")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == alice.id and f.events == (0,)
    assert "'security'" in f.message and world.founder.id in f.message
    res = result(audit(world, [], events, now=grant.time + HOUR), "two-person")
    assert res.status == "warning" and only(res).subject == alice.id


def test_two_person_late_approval(world: MWorld) -> None:
    carol = world.admit("carol")
    grant = world.role(world.founder, carol, "security")  # the only NCC member: one signature
    nina = ncc(world, "nina")
    events = [event(grant.time + 80 * HOUR, "attest.approve", nina.id, res={"link": grant.hash.hex(), "chain": ""})]
    res = result(audit(world, [], events, now=grant.time + 100 * HOUR), "two-person")
    late = next(f for f in res.findings if f.subject == carol.id)
    assert late.level == "violation" and late.events == (0,) and "late" in late.message and nina.id in late.message
    assert any(f.subject == nina.id for f in res.findings)  # nina's own NCC grant was never approved


def test_two_person_bootstrapped_and_approved(world: MWorld) -> None:
    nina, carol, alice = world.admit("nina"), world.admit("carol"), world.admit("alice")
    g1 = world.role(world.founder, nina, "ncc")  # one NCC member: one signature, approved afterwards
    world.role(world.founder, carol, "ncc")  # two: the chain itself takes a proposal and a second signature
    world.role(nina, carol, "ncc")
    world.role(world.founder, alice, "security")
    world.role(carol, alice, "security")
    world.role(world.founder, alice, "security", grant=False)  # a proposal still waiting: nothing to report
    assert len(world.org().cosigned) == 5

    def approve(link: Link, by: Person, after: int) -> Event:
        return event(link.time + after, "attest.approve", by.id, res={"link": link.hash.hex(), "chain": ""})

    world.time += HOUR
    events = [approve(g1, carol, 2 * HOUR)]
    inp = audit(world, [], events, now=world.time + 30 * DAY)
    ok(result(inp, "two-person"))
    # A protocols change that (impossibly) has its proposer as its approver is reported.
    inp.org.protocols_log.append(ProtocolsChange(b"\x00" * 32, "version = 2\n", 2, nina.id, world.time, nina.id,
                                                 world.time))
    f = only(result(inp, "two-person"), "violation")
    assert f.subject == nina.id and "version 2" in f.message


def test_two_person_lone_designation_of_the_audit_team(world: MWorld) -> None:
    """A lone NCC member designates the audit log's team with one signature (the chain allows it): reported,
    a warning while nobody can approve it, then within ``hours`` of there being a second NCC member."""
    lone = world.org_link(world.founder, "org.audit_team", {"team": "team-a"})
    h = lone.hash.hex()
    designation = link_event(lone)
    res = result(audit(world, [], [designation], now=lone.time + 30 * DAY), "two-person")
    f = only(res, "warning")
    assert f.subject == world.founder.id and f.events == (0,)
    assert world.founder.id in f.message and h[:16] in f.message and "team-a" in f.message and "alone" in f.message
    # A second NCC member arrives; the clock for their approval starts then.
    nina = ncc(world, "nina")
    arrived = world.time
    grant_links = [lk for lk in world.org_links if lk.type == "org.role"]
    approve_grant = event(arrived + 60, "attest.approve", world.founder.id,
                          res={"link": grant_links[-1].hash.hex(), "chain": ""})  # (not counted: the signer)
    events = [designation, approve_grant]
    lone_of = [f for f in result(audit(world, [], events, now=arrived + HOUR), "two-person").findings
               if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["warning"]
    lone_of = [f for f in result(audit(world, [], events, now=arrived + 73 * HOUR), "two-person").findings
               if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["violation"] and lone_of[0].subject == world.founder.id
    # Approvals by the signer itself or by a non-NCC member count for nothing; nina's does.
    bob = world.admit("bob")
    bad = [event(arrived + 60, "attest.approve", who.id, res={"link": h, "chain": ""}) for who in (world.founder, bob)]
    still = result(audit(world, [], [designation, *bad], now=arrived + HOUR), "two-person").findings
    assert any(h[:16] in f.message for f in still)
    good = event(arrived + 2 * HOUR, "attest.approve", nina.id, res={"link": h, "chain": ""})
    settled = result(audit(world, [], [designation, good], now=arrived + 100 * HOUR), "two-person").findings
    assert not any(h[:16] in f.message for f in settled)
    late = event(arrived + 80 * HOUR, "attest.approve", nina.id, res={"link": h, "chain": ""})
    lone_of = [f for f in result(audit(world, [], [designation, late], now=arrived + 100 * HOUR),
                                 "two-person").findings if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["violation"]
    assert "late" in lone_of[0].message and nina.id in lone_of[0].message


def test_two_person_designation_by_two_ncc_members_is_not_reported(world: MWorld) -> None:
    nina = ncc(world, "nina")
    first = world.org_link(world.founder, "org.audit_team", {"team": "team-a"})  # a proposal
    second = world.org_link(nina, "org.audit_team", {"team": "team-a"})  # in force, two signatures
    inp = audit(world, [], [link_event(first), link_event(second)], now=world.time + 30 * DAY)
    assert inp.org.audit_team == "team-a" and inp.org.cosigned == {first.seq: None, second.seq: world.founder.id}
    assert second.signer == nina.id
    assert not any("audit log's security team" in f.message for f in result(inp, "two-person").findings)


# -- bulk-access ----------------------------------------------------------------------------------------


def test_bulk_access_reads(world: MWorld) -> None:
    alice = world.admit("alice")
    now = world.time + DAY
    burst = [event(now - HOUR + i * 30, "doc.read", alice.id, res={"team": "t1", "doc": f"d{i}", "vid": "v"})
             for i in range(21)]  # 21 reads within 10.5 minutes
    res = result(audit(world, [], burst, now=now), "bulk-access")
    f = only(res, "alert")
    assert res.status == "alert" and f.subject == alice.id and f.events == tuple(range(21)) and "t1" in f.message
    ok(result(audit(world, [], burst[:20], now=now), "bulk-access"))
    spread = [event(now - DAY + i * 60, "doc.read", alice.id) for i in range(40)]  # 15 per 15 minutes
    ok(result(audit(world, [], spread, now=now), "bulk-access"))
    refused = [event(now - HOUR + i * 30, "doc.read", alice.id, result="denied") for i in range(21)]
    f = only(result(audit(world, [], refused, now=now), "bulk-access"), "alert")  # refusals are not reads
    assert "refused access 21 times" in f.message


def test_bulk_access_refusals(world: MWorld) -> None:
    bob = world.admit("bob")
    now = world.time + 30 * DAY
    old = [event(now - 8 * DAY, "request.denied", bob.id, result="denied") for _ in range(5)]
    recent = [event(now - DAY, "request.denied", bob.id, result="denied", res={"team": "x"}) for _ in range(6)]
    ok(result(audit(world, [], [*old, *recent], now=now), "bulk-access"))  # 6 in the last 7 days
    more = [event(now - 2 * DAY, "doc.read", bob.id, result="denied") for _ in range(5)]
    res = result(audit(world, [], [*old, *recent, *more], now=now), "bulk-access")
    f = only(res, "alert")
    assert f.subject == bob.id and f.events == tuple(range(5, 16)) and "11 times" in f.message
    # The parameters are read: a higher threshold silences it.
    ok(result(audit(world, [], [*old, *recent, *more], now=now), "bulk-access",
              with_params("[rules.bulk-access]\nmax_denied = 11\n")))


def test_bulk_access_counts_the_refusals_folded_into_a_members_summary(world: MWorld) -> None:
    """Beyond a few a minute, a member's refusals are counted in one request.refusals event (server/guard.py):
    the rule counts what it says was denied, not one per event."""
    bob = world.admit("bob")
    now = world.time + DAY
    single = [event(now - HOUR, "request.denied", bob.id, bob.device.device_id, result="denied") for _ in range(3)]
    folded = event(now - HOUR + 60, "request.refusals", bob.id, result="denied",
                   detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 500, "denied": 495, "failed": 5,
                           "r:request.denied /api/v1/audit/leaves forbidden": 495})
    f = only(result(audit(world, [], [*single, folded], now=now), "bulk-access"), "alert")
    assert f.subject == bob.id and "refused access 498 times" in f.message and f.events == (0, 1, 2, 3)
    conflicts = event(now - HOUR + 60, "request.refusals", bob.id, result="failed",
                      detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 40, "denied": 0, "failed": 40})
    ok(result(audit(world, [], [*single, conflicts], now=now), "bulk-access"))  # conflicts are not refusals of access
    few = event(now - HOUR + 60, "request.refusals", bob.id, result="denied", detail={"count": 7, "denied": 7})
    assert "refused access 10 times" not in str(result(audit(world, [], [*single, few], now=now), "bulk-access"))
    ok(result(audit(world, [], [*single, few], now=now), "bulk-access"))


def test_failed_logins_counts_a_members_folded_refused_logins(world: MWorld) -> None:
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    fails = [event(now - HOUR - 10 + i, "auth.fail", alice.id, dev, result="denied") for i in range(2)]
    folded = event(now - HOUR + 60, "request.refusals", alice.id, result="denied",
                   detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 30, "denied": 30, "failed": 0,
                           f"d:{dev}": 30, "r:auth.fail /api/v1/auth/login unauthorized": 30})
    f = only(result(audit(world, [], [*fails, folded], now=now), "failed-logins"), "alert")
    assert f.subject == dev and "named in 32 failed logins" in f.message and f.events == (0, 1, 2)


# -- log-integrity --------------------------------------------------------------------------------------


def test_log_integrity(world: MWorld) -> None:
    now = world.time + DAY
    f = only(result(audit(world, [], now=now, log_ok=False, log_problem="root differs at size 12",
                          last_witness=now - HOUR), "log-integrity"), "violation")
    assert "root differs at size 12" in f.message and f.subject == ""
    cosign = [event(now - 30 * HOUR, "audit.cosign", world.founder.id, detail={"size": 3})]
    res = result(audit(world, [], cosign, now=now, last_witness=now - 30 * HOUR), "log-integrity")
    f = only(res, "violation")
    assert res.status == "violated" and "1d 6h ago" in f.message and f.events == (0,)
    assert "never" in only(result(audit(world, [], now=now, last_witness=None), "log-integrity")).message
    ok(result(audit(world, [], cosign, now=now, last_witness=now - 23 * HOUR), "log-integrity"))


# -- failed-logins --------------------------------------------------------------------------------------


def test_failed_logins(world: MWorld) -> None:
    """A device named in more than max_failures failed logins within the window is an alert (the server
    throttles the sources; it owes no device lockout); lockouts in older logs are still reported."""
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    fails = [event(now - HOUR + i * 60, "auth.fail", alice.id, dev, result="denied") for i in range(6)]
    res = result(audit(world, [], fails, now=now), "failed-logins")
    f = only(res, "alert")
    assert res.status == "alert" and f.subject == dev and f.events == tuple(range(6))
    assert "named in 6 failed logins" in f.message and alice.id in f.message
    # Summaries of unauthenticated refusals count per device, with the failures of the key holder.
    summary = event(now - HOUR, "request.summary", result="denied",
                    detail={"from": now - HOUR - 30, "until": now - HOUR + 30, "count": 9, "sources": 2,
                            "throttled": 0, "blocked_sources": 1, f"d:{dev}": 4, "d:other": 50,
                            "r:/api/v1/auth/login unauthorized": 9})
    res = result(audit(world, [], [summary, *fails[:2]], now=now), "failed-logins")
    assert res.status == "alert"
    assert {f.message.split(" ")[0] for f in res.findings} == {"1", "device"}  # the throttled source; the device
    named = next(f for f in res.findings if f.subject == dev)
    assert "named in 6 failed logins" in named.message and named.events == (0, 1, 2)
    # With a lockout (an older server): the lockout itself is reported as before.
    lockout = event(fails[-1].time, "auth.lockout", alice.id, dev, detail={"until": fails[-1].time + 15 * MINUTE})
    res = result(audit(world, [], [*fails, lockout], now=now), "failed-logins")
    (v,) = [f for f in res.findings if f.level == "violation"]
    assert res.status == "violated" and v.subject == dev and v.events == (6,) and "locked out" in v.message


def test_failed_logins_below_the_limit(world: MWorld) -> None:
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    few = [event(now - HOUR + i * 60, "auth.fail", alice.id, dev, result="denied") for i in range(5)]
    ok(result(audit(world, [], few, now=now), "failed-logins"))
    spread = [event(now - 5 * HOUR + i * 20 * MINUTE, "auth.fail", alice.id, dev, result="denied")
              for i in range(12)]  # at most 1 per 15 minutes
    ok(result(audit(world, [], spread, now=now), "failed-logins"))
    others = [event(now - HOUR, "auth.fail", alice.id, f"device-{i}", result="denied") for i in range(10)]
    ok(result(audit(world, [], others, now=now), "failed-logins"))  # per device
    summary = event(now - HOUR, "request.summary", result="denied",
                    detail={"from": now - HOUR, "count": 5000, "sources": 40, f"d:{dev}": 5, "d:other": 4995})
    ok(result(audit(world, [], [summary], now=now), "failed-logins"))  # "other" names no device


# -- pending-shares -------------------------------------------------------------------------------------


def test_pending_shares(world: MWorld) -> None:
    alice, nina, carol = world.admit("alice"), ncc(world, "nina"), world.admit("carol")
    t = circle_of(world, (alice, "writer"))
    add = world.add(t, nina, carol, "reader", keyless=True)  # nina holds no key: carol waits for a share
    events = [link_event(add, team=t.team_id, member=carol.id)]
    res = result(audit(world, [t], events, now=add.time + 25 * HOUR), "pending-shares")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == carol.id and f.events == (0,) and t.team_id in f.message
    res = result(audit(world, [t], events, now=add.time + HOUR), "pending-shares")
    assert res.status == "warning" and only(res).subject == carol.id
    world.share(t, alice, carol)  # any key holder shares
    ok(result(audit(world, [t], events, now=add.time + 25 * HOUR), "pending-shares"))


# -- keystore-kdf ---------------------------------------------------------------------------------------


def test_keystore_kdf(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.add_device(alice, "paper", kind="paper")
    t = world.time
    events = [event(t, "attest.keystore", world.founder.id, world.founder.device.device_id, detail=STRONG),
              event(t, "attest.keystore", alice.id, alice.device.device_id,
                    detail={**STRONG, "memory_kib": 1024}),
              event(t - 100, "attest.keystore", alice.id, phone.device_id, detail={**STRONG, "time_cost": 1}),
              event(t, "attest.keystore", alice.id, phone.device_id, detail=STRONG)]  # the newest one counts
    res = result(audit(world, [], events, now=t + DAY), "keystore-kdf")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == alice.device.device_id and f.events == (1,)
    assert "memory_kib 1024 < 65536" in f.message
    # No attestation at all is a warning.
    res = result(audit(world, [], [events[0], events[3]], now=t + DAY), "keystore-kdf")
    f = only(res, "warning")
    assert res.status == "warning" and f.subject == alice.device.device_id


def test_keystore_kdf_all_strong(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    events = [event(world.time, "attest.keystore", p.id, d, detail={**STRONG, "memory_kib": 262144})
              for p, d in ((world.founder, world.founder.device.device_id), (alice, alice.device.device_id),
                           (alice, phone.device_id))]
    ok(result(audit(world, [], events, now=world.time + DAY), "keystore-kdf"))


# -- retention and small-threads ---------------------------------------------------------------------


def thread_created(team: Team, t: int, thread: str, expire: int, actor: str = "") -> Event:
    return event(t, "thread.create", actor, res={"team": team.team_id, "thread": thread}, detail={"expire": expire})


def test_retention_forever_and_too_long(world: MWorld) -> None:
    circle = circle_of(world)
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    t = world.time
    events = [thread_created(circle, t, "a" * 32, 0, actor="m" * 32), thread_created(circle, t, "b" * 32, 8 * DAY),
              thread_created(program, t, "c" * 32, 0), thread_created(program, t, "d" * 32, 29 * DAY)]
    res = result(audit(world, [circle, program], events), "retention")
    assert res.status == "violated"
    assert sorted(f.subject for f in res.findings) == ["a" * 32, "b" * 32, "c" * 32, "d" * 32]
    forever = next(f for f in res.findings if f.subject == "a" * 32)
    assert "forever" in forever.message and forever.events == (0,)
    assert f"created by member {'m' * 32}" in forever.message  # who chose the expiry (issue 13)


def test_retention_within_the_limits(world: MWorld) -> None:
    circle = circle_of(world)
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    t = world.time
    events = [thread_created(circle, t, "a" * 32, 7 * DAY), thread_created(circle, t, "b" * 32, DAY),
              thread_created(program, t, "c" * 32, 28 * DAY),
              event(t, "thread.create", result="failed", res={"team": circle.team_id, "thread": "e" * 32},
                    detail={"expire": 0})]  # refused by the server: no thread
    ok(result(audit(world, [circle, program], events), "retention"))
    # A parameter change moves the verdict: circles may now keep messages one day at most.
    strict = with_params('[rules.retention]\nsensitive_max_days = 1\n')
    assert only(result(audit(world, [circle, program], events), "retention", strict)).subject == "a" * 32


def test_small_threads_too_many_readers_and_idle(world: MWorld) -> None:
    people = [(world.admit(f"p{i}"), "reader") for i in range(12)]
    big = circle_of(world, *people)  # founder + 12: 13 readers
    program = world.create_team(world.founder, [(world.founder, "admin"), *people], kind="program")
    t = world.time
    events = [thread_created(big, t, "a" * 32, DAY), thread_created(program, t, "b" * 32, DAY),
              event(t + 40 * DAY, "msg.post", world.founder.id, res={"team": program.team_id, "thread": "b" * 32})]
    res = result(audit(world, [big, program], events, now=t + 41 * DAY), "small-threads")
    levels = sorted((f.level, f.subject) for f in res.findings)
    # the circle thread: too many readers and idle; the program thread (not sensitive) was active yesterday
    assert levels == [("violation", "a" * 32), ("warning", "a" * 32)], levels
    assert "13 members" in next(f.message for f in res.findings if f.level == "violation")


def test_small_threads_small_and_active(world: MWorld) -> None:
    alice = world.admit("alice")
    circle = circle_of(world, (alice, "writer"))
    t = world.time
    events = [thread_created(circle, t, "a" * 32, DAY),
              event(t + 20 * DAY, "msg.post", alice.id, res={"team": circle.team_id, "thread": "a" * 32})]
    ok(result(audit(world, [circle], events, now=t + 21 * DAY), "small-threads"))


# -- circle-shape -------------------------------------------------------------------------------------


def test_circle_shape_too_small_too_large_and_double_membership(world: MWorld) -> None:
    people = [world.admit(f"c{i}") for i in range(9)]
    small = circle_of(world, (people[0], "writer"))  # founder + 1
    large = circle_of(world, *[(x, "reader") for x in people[:8]])  # founder + 8 = 9
    program = world.create_team(world.founder, [(world.founder, "admin"), *[(x, "reader") for x in people]],
                                kind="program")  # not a circle: any size
    res = result(audit(world, [small, large, program]), "circle-shape")
    subjects = sorted(f.subject for f in res.findings)
    # both circles are the wrong size; founder and c0 are in two circles each
    assert subjects == sorted([small.team_id, large.team_id, world.founder.id, people[0].id]), res.findings
    assert res.status == "violated"


def test_circle_shape_well_formed(world: MWorld) -> None:
    people = [world.admit(f"d{i}") for i in range(8)]
    a = circle_of(world, *[(x, "reader") for x in people[:4]])  # founder + 4 = 5
    ok(result(audit(world, [a]), "circle-shape"))
    b = circle_of(world, *[(x, "reader") for x in people[4:8]])  # the founder is in both circles
    assert only(result(audit(world, [a, b]), "circle-shape")).subject == world.founder.id
    liaison = with_params("[rules.circle-shape]\nmax_circles = 2\n")  # e.g. a designated liaison
    ok(result(audit(world, [a, b]), "circle-shape", liaison))
