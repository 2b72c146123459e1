"""Issue 18: ``mvault export requests`` shows whether each request was used, from the verified audit log (the
``doc.export`` event naming it): the Security Team sees it for every request, the requester for their own, anyone
else is told it cannot know. Real server, real CLI (tests/helpers/export_cell.py)."""

from __future__ import annotations

import pytest

from tests.helpers.agetools import AGE, AGE_KEYGEN
from tests.helpers.export_cell import Cell, cell
from tests.helpers.worlds import World, Worlds, security_world

__all__ = ["cell"]  # the fixture


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


@pytest.mark.skipif(not (AGE and AGE_KEYGEN), reason="Debian's age (.ci/run installs it)")
def test_requests_show_whether_they_were_used(cell: Cell) -> None:
    rid = cell.request()
    cell.carol.ok("export", "approve", rid[:16])
    cell.dave.ok("export", "approve", rid[:16])
    (before,) = cell.carol.json("export", "requests")
    assert before["status"] == "approved" and before["used"] is None and before["used_known"]
    cell.bob.ok("export", "cell", "--request", rid[:16], "--out", str(cell.tmp / "cell.age"))
    (after,) = cell.carol.json("export", "requests")
    assert after["status"] == "used" and isinstance(after["used"], int) and after["used_known"]
    (own,) = cell.bob.json("export", "requests")
    assert own["status"] == "used" and own["used"] == after["used"]
    (other,) = cell.org.alice.json("export", "requests")  # NCC, admin of the circle: not the requester's events
    assert other["used"] is None and not other["used_known"] and other["status"] == "approved"
    table = cell.carol.ok("export", "requests").out
    assert "used" in table.splitlines()[0]
