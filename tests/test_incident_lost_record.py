"""``mvault incident lost-device`` opens the private incident record, and ``incident clear`` of it lifts the pause
(the real server, the real CLI; the organization of tests/test_incidents.py: carol is the Security Team)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Org
from tests.helpers.worlds import World, Worlds, security_member, security_world


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def test_lost_device_opens_a_record_and_clearing_it_lifts_the_pause(org: Org, make_member: Any) -> None:
    alice, bob, carol = org.alice, org.bob, security_member(org, make_member)
    alice.ok("team", "create", "cell", "--kind", "circle")
    alice.ok("team", "add", "cell", "bob", "--role", "writer")
    laptop = next(d["name"] for d in bob.json("device", "ls") if d["this"])
    report = carol.json("incident", "lost-device", "bob", laptop, "--reason", "phone taken at the border")
    assert report["incident_kind"] == "lost-device" and report["paused_teams"] == ["cell"]
    incident_id = report["id"]
    assert isinstance(incident_id, str)
    [row] = [r for r in carol.json("incident", "ls") if r["id"] == incident_id]
    assert (row["kind"], row["member_name"], row["status"]) == ("lost-device", "bob", "open")
    # The Security Team's weekly report lists the incident and its weekly reviews due.
    rep = json.loads(carol.run("audit", "report", "--json").out)
    [listed] = [i for i in rep["incidents"]["open"] if i["id"] == incident_id]
    assert (listed["kind"], listed["reviews_planned"], listed["reviews_done"]) == ("lost-device", 4, 0)
    assert listed["next_review"] > listed["opened"] and listed["overdue"] is False
    shown = carol.json("incident", "show", incident_id)
    assert "phone taken at the border" in str(shown)
    # The reason is only in the record: the organization chain every member reads does not carry it.
    assert "phone taken" not in carol.run("members", "--json").out
    carol.fails("incident", "clear", "deadbeef00", contains="deadbeef00")  # an unknown incident changes nothing
    cleared = carol.json("incident", "clear", incident_id, "--note", "device recovered wiped")
    effect = cleared["closed"]["effect"]
    assert isinstance(effect["clear_seq"], int)
    carol.fails("incident", "clear", incident_id, contains="already closed")
    # The pause is lifted: a second clear of the same member by the chain would be refused, and the circle takes
    # content from bob again once his own chain revoked the laptop (tests/test_incident_lost.py drives that part).
    assert not [r for r in carol.json("incident", "ls") if r["id"] == incident_id]
