"""Issue 18: a suspected-infiltrator incident (``mvault incident suspect``, the ``suspect`` kind) in `incident ls`,
the text and JSON report and the HTML report, with its weekly reviews falling due, on the real server with the real
CLI (the organization of tests/test_incidents.py: carol is the Security Team)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Org
from tests.helpers.worlds import World, Worlds, security_member, security_world

DAY = 86400


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def test_a_suspect_incident_is_listed_and_reported_until_cleared(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = security_member(org, make_member)
    org.alice.ok("team", "create", "cell", "--kind", "circle")
    org.alice.ok("team", "add", "cell", "bob", "--role", "writer")
    opened = carol.json("incident", "suspect", "bob", "--reason", "<b>met the police</b>")
    iid = opened["id"]
    [row] = carol.json("incident", "ls")
    assert row["id"] == iid and row["kind"] == "suspect" and row["member_name"] == "bob"
    assert row["reviews_done"] == 0 and not row["overdue"]
    assert "suspect" in carol.ok("incident", "ls").out
    org.server.advance(8 * DAY)
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(8 * DAY)
    page = tmp_path / "report.html"
    report = carol.run("audit", "report", "--html", str(page), "--json").json()
    [listed] = report["incidents"]["open"]
    assert listed["id"] == iid and listed["kind"] == "suspect" and listed["overdue"]
    table = page.read_text().split('<section id="incidents">')[1].split("</section>")[0]
    assert iid in table and ">suspect<" in table and "bob" in table and ">overdue<" in table
    assert "met the police" not in page.read_text()  # the reason stays in the private record
    assert "OVERDUE" in carol.run("audit", "report").out
    carol.ok("incident", "review", iid, "--note", "nothing unusual")
    carol.ok("incident", "clear", iid, "--note", "cleared")
    assert carol.json("incident", "ls") == []
    report = carol.run("audit", "report", "--json").json()
    assert report["incidents"]["open"] == []
