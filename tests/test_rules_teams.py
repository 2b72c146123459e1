"""Security-protocol rules (``security.rules``): key verification, need-to-know, admin count, two-person.

Chains are real replays (``MWorld``); events are ``Event`` objects as the server records them
(``tests/helpers/rules.py``).
"""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import DAY, MWorld, Person
from tests.helpers.rules import (
    HOUR,
    approve_event,
    audit,
    circle_of,
    event,
    fingerprint_at,
    link_event,
    ncc,
    ok,
    only,
    refused_org_link,
    result,
    verify_event,
)
from vault.chains import ProtocolsChange, clone
from vault.errors import ChainError, PolicyDenied
from vault.links import Link


@pytest.fixture
def world() -> MWorld:
    return MWorld()


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


def test_key_verification_counts_signed_links_not_server_records(world: MWorld) -> None:
    """Before issue 18 a verification was an ``attest.verify`` event the server recorded (and could make up);
    now only a signed ``org.verify`` link in the replayed organization chain counts."""
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    made_up = event(world.time + DAY, "attest.verify", alice.id, alice.device.device_id,
                    res={"member": world.founder.id},
                    detail={"fingerprint": fingerprint_at(world, world.founder.id, world.time + DAY)})
    res = result(audit(world, [t], [made_up], now=world.time + 31 * DAY), "key-verification")
    assert only(res, "violation").subject == alice.id
    signed = verify_event(world, world.time + DAY, alice, world.founder.id)
    ok(result(audit(world, [t], [made_up, signed], now=world.time + 31 * DAY), "key-verification"))


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
    # Approvals that cannot count are not even in the chain: by the signer, by the subject, by a non-NCC member.
    approve = {"link": grant.hash}
    assert "neither the link's signer nor its subject" in refused_org_link(world, world.founder, "org.approve", approve)
    assert "may not approve organization changes" in refused_org_link(world, alice, "org.approve", approve)
    assert "may not approve organization changes" in refused_org_link(world, bob, "org.approve", approve)
    events = [link_event(grant, member=alice.id)]
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
    events = [approve_event(world, grant, nina, grant.time + 80 * HOUR)]
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
    world.time += HOUR
    events = [approve_event(world, g1, carol, g1.time + 2 * HOUR)]
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
    joined = [link_event(lk) for lk in world.org_links if lk.seq > lone.seq]  # the log holds every append
    events = [designation, *joined]
    lone_of = [f for f in result(audit(world, [], events, now=arrived + HOUR), "two-person").findings
               if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["warning"]
    lone_of = [f for f in result(audit(world, [], events, now=arrived + 73 * HOUR), "two-person").findings
               if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["violation"] and lone_of[0].subject == world.founder.id
    # Approvals by the signer itself or by a non-NCC member are refused by the chain; nina's counts.
    bob = world.admit("bob")
    assert "neither" in refused_org_link(world, world.founder, "org.approve", {"link": lone.hash})
    assert "may not approve" in refused_org_link(world, bob, "org.approve", {"link": lone.hash})
    good = approve_event(world, lone, nina, arrived + 2 * HOUR)
    settled = result(audit(world, [], [*events, good], now=arrived + 100 * HOUR), "two-person").findings
    assert not any(h[:16] in f.message for f in settled)
    world.org_links.pop()  # the same history with nina approving late instead
    late = approve_event(world, lone, nina, arrived + 80 * HOUR)
    lone_of = [f for f in result(audit(world, [], [*events, late], now=arrived + 100 * HOUR),
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


def _move(world: MWorld, signer: Person, url: str) -> Link:
    return world.org_link(signer, "org.server", {"url": url, "pin_kind": "spki", "pin": b"\x07" * 32})


def test_two_person_lone_server_move(world: MWorld) -> None:
    """A lone NCC member moves the server with one signature (the chain allows it): reported like a lone designation,
    a warning while nobody can approve it, a violation once a second NCC member has let ``hours`` pass."""
    lone = _move(world, world.founder, "https://vault.example.org")
    h = lone.hash.hex()
    moved = link_event(lone)
    assert audit(world, [], [moved]).org.server is not None  # in force on one signature
    f = only(result(audit(world, [], [moved], now=lone.time + DAY), "two-person"), "warning")
    assert f.subject == world.founder.id and f.events == (0,) and h[:16] in f.message
    assert "https://vault.example.org" in f.message and "alone" in f.message
    ncc(world, "nina")
    arrived = world.time
    lone_of = [f for f in result(audit(world, [], [moved], now=arrived + 73 * HOUR), "two-person").findings
               if h[:16] in f.message]
    assert [f.level for f in lone_of] == ["violation"] and lone_of[0].subject == world.founder.id


def test_two_person_server_move_by_two_ncc_members_is_not_reported(world: MWorld) -> None:
    nina = ncc(world, "nina")
    first = _move(world, world.founder, "https://vault.example.org")  # a proposal
    second = _move(world, nina, "https://vault.example.org")  # in force, two signatures
    inp = audit(world, [], [link_event(first), link_event(second)], now=world.time + 30 * DAY)
    assert inp.org.server is not None and inp.org.cosigned == {first.seq: None, second.seq: world.founder.id}
    assert not any("move of the server" in f.message for f in result(inp, "two-person").findings)


# -- two-person: team admins ------------------------------------------------------------------------------


def test_two_person_team_admin_grants_need_a_second_signed_approval(world: MWorld) -> None:
    alice, bob, carol = world.admit("alice"), world.admit("bob"), world.admit("carol")
    t = circle_of(world, (alice, "admin"), (bob, "writer"), (carol, "writer"))  # alice made admin at creation
    promote = world.team_role(t, world.founder, bob, "admin")
    program = world.create_team(world.founder, [(world.founder, "admin"), (carol, "admin")], kind="program")
    res = result(audit(world, [t, program], now=world.time + 73 * HOUR), "two-person")
    assert sorted((f.subject, f.level) for f in res.findings) == sorted([(alice.id, "violation"),
                                                                       (bob.id, "violation")])
    warn = [f for f in result(audit(world, [t, program], now=promote.time + HOUR), "two-person").findings
            if f.subject == bob.id]
    assert warn[0].level == "warning" and warn[0].next_command == f"mvault team approve {t.team_id} " \
        f"{promote.hash.hex()[:16]}"
    # The signer and the subject cannot approve (the chain refuses them); another admin's approval settles it.
    state = world.replay_team(t.links)
    for who in (world.founder, bob):
        link = world.team_link(t, who, "team.approve", {"link": promote.hash}, append=False)
        with pytest.raises(ChainError, match="neither the link's signer nor its subject"):
            clone(state).apply(link, world.org(), world.members(), POLICY)
    world.team_link(t, alice, "team.approve", {"link": promote.hash})
    world.team_link(t, bob, "team.approve", {"link": t.links[0].hash})  # bob approves alice's grant at creation
    ok(result(audit(world, [t, program], now=world.time + HOUR), "two-person"))
    # A writer cannot approve.
    writer = world.team_link(t, carol, "team.approve", {"link": promote.hash}, append=False)
    with pytest.raises(PolicyDenied, match="may not approve team changes"):
        clone(world.replay_team(t.links)).apply(writer, world.org(), world.members(), POLICY)
