"""Rule ``no-master-lists`` (security/rules/rosters.py) over ``roster.export`` events as the server logs them: the
exporter's device-signed record naming every reader (vault/roster.py)."""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import MWorld, Person
from tests.helpers.rules import audit, ok, only, result, roster_event, with_params
from vault.roster import record_bytes


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def security_member(world: MWorld, name: str) -> Person:
    person = world.admit(name)
    world.role(world.founder, person, "security")
    return person


def test_a_roster_to_three_named_members_and_the_security_team_is_not_reported(world: MWorld) -> None:
    named = [world.admit(n) for n in ("ana", "ben", "cai")]
    team = [security_member(world, n) for n in ("sec1", "sec2")]
    t = world.tick()
    ok(result(audit(world, [], [roster_event(world, world.founder, [*named, *team], t)]), "no-master-lists"))


def test_a_fourth_named_reader_is_reported_and_a_lower_limit_is_the_protocols(world: MWorld) -> None:
    named = [world.admit(n) for n in ("ana", "ben", "cai", "dia")]
    sec = security_member(world, "sec1")
    t = world.tick()
    inp = audit(world, [], [roster_event(world, world.founder, [*named, sec], t)])
    f = only(result(inp, "no-master-lists"), "violation")
    assert "to 4 members outside the Security Team" in f.message and f.events == (0,)
    assert sec.id not in f.message and all(p.id in f.message for p in named)
    three = audit(world, [], [roster_event(world, world.founder, named[:3], t)])
    ok(result(three, "no-master-lists"))
    only(result(three, "no-master-lists", with_params("[rules.no-master-lists]\nmax_readers = 2\n")), "violation")
    disabled = result(inp, "no-master-lists", with_params("[rules.no-master-lists]\nenabled = false\n"))
    assert disabled.status == "disabled"


def test_an_export_without_a_valid_record_is_reported(world: MWorld) -> None:
    """A server-made event (no record, another signer's record, one dated by nobody's device, a record by a member
    not entitled to export the roster) is a roster export without its record."""
    ana = world.admit("ana")
    plain = world.admit("plain")
    t = world.tick()
    bare = roster_event(world, world.founder, [ana], t)
    no_record = type(bare)(bare.time, bare.actor, bare.device, bare.action, "ok", {}, (), {"readers": 1})
    by_other = roster_event(world, world.founder, [ana], t, signer=ana)  # ana signed, the founder "exported"
    not_entitled = roster_event(world, plain, [ana], t)  # a plain member may not export the roster
    forged = roster_event(world, world.founder, [ana], t)
    forged = type(forged)(forged.time, forged.actor, forged.device, forged.action, "ok", {},
                          (), {**forged.detail, "sig": "00" * 64})
    stranger = roster_event(world, world.founder, [ana], t, record=record_bytes(
        world.org_id, world.founder.id, world.founder.device.device_id, t, [ana.id, "f" * 32], bytes(32)))
    for ev, why in ((no_record, "no signed record"), (by_other, "not by the exporter"),
                    (not_entitled, "may not export the roster"), (forged, "signature"),
                    (stranger, "not admitted members")):
        f = only(result(audit(world, [], [ev]), "no-master-lists"), "violation")
        assert "without a valid signed record" in f.message and why in f.message, (why, f.message)
