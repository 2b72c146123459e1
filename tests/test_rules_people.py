"""Security-protocol rules (``security.rules.people``): probation, vouching, membership-review, dormant-members.

For each rule a history that breaks it is reported and one that follows it is not. Chains are real replays
(``MWorld``), vouches and reviews signed links in them; logins are events as the server records them.
"""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import DAY, MWorld, Person, Team
from tests.helpers.rules import audit, circle_of, event, link_event, ok, only, result


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def vouch(world: MWorld, by: Person, member: Person) -> None:
    world.org_link(by, "org.vouch", {"member": member.id})


def review(world: MWorld, team: Team, by: Person) -> None:
    world.team_link(team, by, "team.review", {"roster": world.replay_team(team.links).roster(world.org())})


# -- probation ------------------------------------------------------------------------------------------


def test_probation_judges_each_entry_at_its_time(world: MWorld) -> None:
    alice = world.admit("alice")
    early = circle_of(world, (alice, "writer"))  # entered on the day she was admitted
    res = result(audit(world, [early], [link_event(early.links[0])], now=world.time + 200 * DAY), "probation")
    f = only(res, "violation")  # still reported long after the probation ended: history, not the current state
    assert f.subject == alice.id and early.team_id in f.message and f.events == (0,)


def test_probation_followed(world: MWorld) -> None:
    alice = world.admit("alice")
    world.time += 61 * DAY
    later = circle_of(world, (alice, "writer"))
    program = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")], kind="program")
    ok(result(audit(world, [later, program]), "probation"))  # and the founder, who created both, has none


# -- vouching -------------------------------------------------------------------------------------------


def test_vouching_needs_two_independent_vouches_before_the_entry(world: MWorld) -> None:
    alice, bob, carol, dan = (world.admit(n) for n in ("alice", "bob", "carol", "dan"))
    vouch(world, bob, alice)
    vouch(world, world.founder, alice)  # the founder adds her below: not independent of the grant
    t = circle_of(world, (alice, "writer"))
    vouch(world, carol, alice)  # after the entry: too late
    f = only(result(audit(world, [t], [link_event(t.links[0])]), "vouching"), "violation")
    assert f.subject == alice.id and f"only {bob.id}" in f.message and f.events == (0,)
    # dan enters with two vouches recorded before, by neither him nor the adder: fine.
    vouch(world, bob, dan)
    vouch(world, carol, dan)
    world.add(t, world.founder, dan, "reader")
    assert [x.subject for x in result(audit(world, [t]), "vouching").findings] == [alice.id]


def test_vouching_only_for_the_kinds_it_names(world: MWorld) -> None:
    alice = world.admit("alice")
    program = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")], kind="program")
    ok(result(audit(world, [program]), "vouching"))


# -- membership-review ----------------------------------------------------------------------------------


def test_membership_review_due_and_done(world: MWorld) -> None:
    alice = world.admit("alice")
    circle = circle_of(world, (alice, "admin"))
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    start = world.time
    ok(result(audit(world, [circle, program], now=start + 20 * DAY), "membership-review"))
    res = result(audit(world, [circle, program], now=start + 25 * DAY), "membership-review")
    assert only(res, "warning").subject == circle.team_id  # due within a week
    res = result(audit(world, [circle, program], now=start + 31 * DAY), "membership-review")
    f = only(res, "violation")
    assert f.subject == circle.team_id and f.next_command == f"mvault team review {circle.team_id}"
    world.time = start + 31 * DAY
    review(world, circle, alice)  # an admin confirms the list: a signed team.review
    ok(result(audit(world, [circle, program], now=start + 40 * DAY), "membership-review"))
    res = result(audit(world, [circle, program], now=start + 91 * DAY), "membership-review")
    assert {f.subject for f in res.findings if f.level == "violation"} == {circle.team_id, program.team_id}


# -- dormant-members ------------------------------------------------------------------------------------


def test_dormant_members_leave_sensitive_teams(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (alice, "writer"), (bob, "writer"))
    program = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")], kind="program")
    now = world.time + 100 * DAY
    logins = [event(now - DAY, "auth.login", p.id, p.device.device_id) for p in (world.founder, bob)]
    logins.append(event(now - 95 * DAY, "auth.login", alice.id, alice.device.device_id))
    f = only(result(audit(world, [t, program], logins, now=now), "dormant-members"), "violation")
    assert f.subject == alice.id and t.team_id in f.message and f.events == (2,)
    assert f.next_command == f"mvault team remove {t.team_id} {alice.id}"
    logins.append(event(now - 2 * DAY, "auth.login", alice.id, alice.device.device_id))
    ok(result(audit(world, [t, program], logins, now=now), "dormant-members"))
