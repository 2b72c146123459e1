"""Issues 18 and 20: an export of a sensitive team under a request two Security Team members approved, end to end on
the real server with the real CLI (tests/conftest.py), read with Debian's age alone; what the server and every
client refuse; the ``exports`` and ``two-person`` rules on the audit log that results."""

from __future__ import annotations

import json

import pytest

from server.context import DIRECTORY
from tests.helpers.agetools import AGE, AGE_KEYGEN, age_decrypt_untar, age_identity
from tests.helpers.export_cell import Cell, cell
from tests.helpers.worlds import World, Worlds, security_world

__all__ = ["cell"]  # the fixture

needs_age = pytest.mark.skipif(not (AGE and AGE_KEYGEN), reason="Debian's age (.ci/run installs it)")


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """carol in the Security Team (admin of team "sec")."""
    return security_world(worlds)


@needs_age
def test_two_approvals_then_one_export_to_the_requests_recipient(cell: Cell) -> None:
    bob, carol, dave, alice = cell.bob, cell.carol, cell.dave, cell.org.alice
    out = cell.tmp / "cell.age"
    bob.fails("export", "cell", "--age-recipient", cell.recipient, "--out", str(out),
              contains="Security Team's approval under two-person")
    rid = cell.request()
    short = rid[:16]
    bob.fails("export", "cell", "--request", short, "--out", str(out), contains="0 of the 2")
    # who may not approve: the requester, NCC without the Security Team role, a plain member
    bob.fails("export", "approve", short, contains="your own export request")
    alice.fails("export", "approve", short, contains="may not approve an export")
    approved = carol.json("export", "approve", short, "--json")
    assert [a["name"] for a in approved["approvals"]] == ["carol"] and approved["status"] == "pending"
    carol.fails("export", "approve", short, contains="already")
    bob.fails("export", "cell", "--request", short, "--out", str(out), contains="1 of the 2")
    assert dave.json("export", "approve", short, "--json")["status"] == "approved"
    (listed,) = carol.json("export", "requests", "--json")
    assert listed["id"] == rid and listed["docs"] is None and listed["recipients"] == [cell.recipient]
    assert [a["name"] for a in listed["approvals"]] == ["carol", "dave"] and listed["team_name"] == "cell"
    # another member may not use bob's request; bob only to its recipients
    alice.fails("export", "cell", "--request", short, "--out", str(out), contains="not yours")
    _, other = age_identity(cell.tmp, "stranger")
    bob.fails("export", "cell", "--request", short, "--age-recipient", other, "--out", str(out),
              contains="request's recipients only")
    assert not out.exists() and cell.exports() == []
    bob.ok("export", "cell", "--request", short, "--out", str(out))
    age_decrypt_untar(out, cell.key, cell.tmp / "read")
    manifest = json.loads((cell.tmp / "read" / "manifest.json").read_text())
    assert manifest["request"] == rid and sorted(f["name"] for f in manifest["files"]) == ["notes.md", "plan.md"]
    assert (cell.tmp / "read" / "files" / "plan.md").read_text() == "the plan\n"
    assert bob.ok("export", "verify", str(out), "--identity", str(cell.key)).code == 0
    # once: a second export under the same request is refused by the server, nothing written
    again = cell.tmp / "again.age"
    bob.fails("export", "cell", "--request", short, "--out", str(again), contains="used already")
    assert not again.exists()
    (done,) = cell.exports()
    assert done["res"]["request"] == rid and done["detail"]["count"] == 2
    assert cell.rule("exports")["status"] == "ok"
    assert not [f for f in cell.rule("two-person")["findings"] if "export" in f["message"]]


@needs_age
def test_a_member_paused_after_the_approvals_may_not_export_under_them(cell: Cell) -> None:
    """A pause (here a suspicion, no device cut) stops exports of the sensitive team even under a request approved
    before it: the server refuses the attestation, nothing is written (the lead's decision at the merge)."""
    rid = cell.request()[:16]
    cell.carol.ok("export", "approve", rid)
    cell.dave.ok("export", "approve", rid)
    cell.carol.ok("incident", "suspect", "bob", "--reason", "test")
    out = cell.tmp / "paused.age"
    cell.bob.fails("export", "cell", "--request", rid, "--out", str(out), contains="paused by an incident")
    assert not out.exists() and cell.exports() == []


@needs_age
def test_a_request_for_some_documents_exports_only_those(cell: Cell) -> None:
    rid = cell.request("plan.md")[:16]
    cell.carol.ok("export", "approve", rid)
    cell.dave.ok("export", "approve", rid)
    out = cell.tmp / "plan.age"
    cell.bob.fails("export", "cell", "notes.md", "--request", rid, "--out", str(out), contains="not one of the")
    cell.bob.ok("export", "cell", "--request", rid, "--out", str(out))
    age_decrypt_untar(out, cell.key, cell.tmp / "read")
    assert [f["name"] for f in json.loads((cell.tmp / "read" / "manifest.json").read_text())["files"]] == ["plan.md"]


def test_bad_input_is_refused_clearly(cell: Cell) -> None:
    bob = cell.bob
    assert bob.run("export", "request", "cell").code != 0  # no recipient
    bob.fails("export", "request", "cell", "--age-recipient", "age1nope", contains="age recipient")
    bob.fails("export", "request", "cell", "--age-recipient", cell.recipient, "--expires", "31d", contains="30 days")
    bob.fails("export", "request", "cell", "nosuch.md", "--age-recipient", cell.recipient, contains="no document")
    cell.carol.fails("export", "approve", "0123456789abcdef", contains="no export request")
    cell.carol.fails("export", "approve", "xyz", contains="not an export request id")
    assert bob.run("export", "approve", "a", "b").code == 2 and bob.run("export", "requests", "--out", "x").code == 2
    assert bob.json("export", "requests", "cell", "--json") == []
    d = cell.org.server.app[DIRECTORY]
    team = d.team_by_name("cell")
    assert team is not None and team.exports == {}
