"""``bulk-access`` as written (issue 18): reads outside one's own teams, and bulk access while a departure is pending
(security/rules/bulk.py). Each part: a scenario that breaks it is reported (an alert), one that follows it is not.
Chains are real replays (``MWorld``); events are ``Event`` objects as the server records them."""

from __future__ import annotations

import pytest

from security.events import Event
from tests.helpers.chain_world import DAY, MWorld, Person, Team
from tests.helpers.rules import HOUR, audit, circle_of, event, ncc, ok, only, result, with_params
from vault.links import Link


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def reads(who: Person, team: Team, start: int, n: int, step: int = 30) -> list[Event]:
    return [event(start + i * step, "doc.read", who.id, res={"team": team.team_id, "vid": f"v{i}"}) for i in range(n)]


def test_reads_outside_ones_own_teams(world: MWorld) -> None:
    """alice (no role in the circle) reads 11 of its documents over three days: an alert naming the team; 10 do not,
    nor do older reads, nor bob's 40 reads in his own circle spread over days."""
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (bob, "writer"))
    now = world.time + 10 * DAY
    spread = reads(alice, t, now - 3 * DAY, 11, step=HOUR * 5)
    res = result(audit(world, [t], spread, now=now), "bulk-access")
    f = only(res, "alert")
    assert f.subject == alice.id and t.team_id in f.message and "11 documents outside" in f.message
    assert f.events == tuple(range(11))
    ok(result(audit(world, [t], spread[:10], now=now), "bulk-access"))
    ok(result(audit(world, [t], reads(alice, t, now - 9 * DAY, 11, step=HOUR), now=now), "bulk-access"))  # > 7 days
    ok(result(audit(world, [t], reads(bob, t, now - 3 * DAY, 40, step=HOUR), now=now), "bulk-access"))
    higher = with_params("[rules.bulk-access]\nmax_outside = 11\n")
    ok(result(audit(world, [t], spread, now=now), "bulk-access", higher))


def test_reads_while_a_team_role_is_about_to_end(world: MWorld) -> None:
    """alice's role in the circle ends in 10 days: 6 reads within 15 minutes are bulk access (5 are not); bob, with
    no end, reads 6 without an alert; 20 days before the end they are not."""
    alice, bob = world.admit("alice"), world.admit("bob")
    t = circle_of(world, (bob, "writer"))
    world.add(t, world.founder, alice, "writer", until=world.time + 10 * DAY)
    now = world.time + HOUR
    f = only(result(audit(world, [t], reads(alice, t, now - 600, 6), now=now), "bulk-access"), "alert")
    assert f.subject == alice.id and "while a departure was pending" in f.message and "ended 9d" in f.message
    ok(result(audit(world, [t], reads(alice, t, now - 600, 5), now=now), "bulk-access"))
    ok(result(audit(world, [t], reads(bob, t, now - 600, 6), now=now), "bulk-access"))


def test_reads_while_the_members_removal_is_proposed(world: MWorld) -> None:
    """The founder proposes removing alice (Security Team: two NCC signatures); before nina cosigns, alice reads 6
    documents of her circle in 5 minutes: an alert. The same reads before the proposal, or after 14 days, are not."""
    alice = world.admit("alice")
    t = circle_of(world, (alice, "writer"))
    world.role(world.founder, alice, "security")
    ncc(world, "nina")
    world.time += DAY
    before = world.time - HOUR
    proposal: Link = world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": "security"})
    assert world.org().members[alice.id].removed_at is None  # only proposed
    now = world.time + 2 * HOUR
    f = only(result(audit(world, [t], reads(alice, t, now - 600, 6), now=now), "bulk-access"), "alert")
    assert "their removal was proposed" in f.message
    ok(result(audit(world, [t], reads(alice, t, before - 600, 6), now=now), "bulk-access"))
    later = proposal.time + 15 * DAY
    ok(result(audit(world, [t], reads(alice, t, later - 600, 6), now=later), "bulk-access"))
