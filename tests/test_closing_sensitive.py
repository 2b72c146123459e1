"""A closing whose hand-over plan names a sensitive team (issue 20, docs/lifecycle.md section 3 "Running it"), on the
real server with the real CLI: ``org close --run`` signs an export request for the sensitive entry and stops before
writing anything; two Security Team members approve it; the run then exports it under the request (read with
Debian's age alone, the manifest naming the request) and closes. A request of another member, or one the server
made up, never stands in for the runner's own.

The organization: alice (founder, the only NCC member), bob (writer in drafting and in the circle "cell"), carol and
dave (Security Team): tests/helpers/export_cell.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.context import DIRECTORY
from tests.helpers.agetools import AGE, AGE_KEYGEN, age_decrypt_untar
from tests.helpers.export_cell import Cell, cell
from tests.helpers.worlds import World, Worlds, security_world
from tests.test_export import files_match, ssh_verify, write

__all__ = ["cell"]  # the fixture

needs_age = pytest.mark.skipif(not (AGE and AGE_KEYGEN), reason="Debian's age (.ci/run installs it)")


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def propose(c: Cell) -> dict[str, Any]:
    write(c.org.alice, "open.md", "handed over without approval\n")
    plan = c.tmp / "plan.toml"
    plan.write_text(f'[[hand-over]]\nteam = "drafting"\ndocuments = ["open.md"]\nto = ["{c.recipient}"]\n'
                    f'[[hand-over]]\nteam = "cell"\nto = ["{c.recipient}"]\n')
    proposed: dict[str, Any] = c.org.alice.json("org", "close", "--hand-over", str(plan))
    assert [e["team_name"] for e in proposed["plan"]] == ["drafting", "cell"]
    assert c.carol.json("org", "approve-close")["met"] is True
    return proposed


def run(c: Cell, out: Path) -> tuple[int, dict[str, Any]]:
    r = c.org.alice.run("org", "close", "--run", "--out", str(out), "--json")
    return r.code, r.json()


@needs_age
def test_a_sensitive_entry_waits_for_two_security_approvals_then_closes(cell: Cell) -> None:
    alice, carol, dave = cell.org.alice, cell.carol, cell.dave
    propose(cell)
    code, first = run(cell, cell.tmp / "early")
    assert code == 1 and first["closed"] is False
    [waiting] = first["awaiting"]
    assert (waiting["entry"], waiting["team_name"], waiting["approvals"], waiting["made"]) == (1, "cell", 0, True)
    rid = waiting["request"]
    assert not (cell.tmp / "early").exists(), "nothing is written while a sensitive entry waits"
    d = cell.org.server.app[DIRECTORY]
    assert d.require_org().closing.closed is None and d.org_links[-1].type == "org.close.approve"
    [listed] = carol.json("export", "requests", "cell", "--json")  # what the Security Team is asked to approve
    assert listed["id"] == rid and listed["requester_name"] == "alice" and listed["docs"] is None
    assert listed["recipients"] == [cell.recipient]
    # a second run finds the request it made (no second one), still waiting
    code, again = run(cell, cell.tmp / "again")
    assert code == 1 and [(a["request"], a["made"]) for a in again["awaiting"]] == [(rid, False)]
    assert len(carol.json("export", "requests", "cell", "--json")) == 1
    alice.fails("export", "approve", rid[:16], contains="your own export request")
    carol.ok("export", "approve", rid[:16])
    code, one = run(cell, cell.tmp / "one")
    assert code == 1 and one["awaiting"][0]["approvals"] == 1 and not (cell.tmp / "one").exists()
    dave.ok("export", "approve", rid[:16])
    out = cell.tmp / "handover"
    code, done = run(cell, out)
    assert code == 0 and done["closed"] is True, done
    files = [Path(f) for f in done["files"]]
    assert [f.name for f in files] == ["1-drafting.age", "2-cell.age"]
    plain = cell.tmp / "cell-plain"
    age_decrypt_untar(files[1], cell.key, plain)
    manifest = json.loads((plain / "manifest.json").read_bytes())
    assert manifest["request"] == rid and sorted(f["name"] for f in manifest["files"]) == ["notes.md", "plan.md"]
    files_match(plain, manifest)
    assert ssh_verify(plain).returncode == 0
    assert d.org_links[-1].type == "org.closed"


@needs_age
def test_another_members_approved_request_does_not_stand_in(cell: Cell) -> None:
    """bob's request for exactly the entry, approved by both: the run is alice's, so it asks for her own."""
    propose(cell)
    rid = cell.request()
    cell.carol.ok("export", "approve", rid[:16])
    cell.dave.ok("export", "approve", rid[:16])
    code, first = run(cell, cell.tmp / "out")
    assert code == 1 and first["awaiting"][0]["request"] != rid and first["awaiting"][0]["made"] is True
    assert not (cell.tmp / "out").exists()
