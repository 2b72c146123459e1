"""A circle with two documents and two Security Team members besides its writer (tests/test_export_approvals*.py):
export requests and their approvals through the real CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, Org, join_member
from tests.helpers.agetools import age_identity
from tests.helpers.members import unlock_at_first_run
from tests.helpers.worlds import security_member


@dataclass
class Cell:
    org: Org
    carol: Member
    dave: Member
    key: Path
    recipient: str
    tmp: Path

    @property
    def bob(self) -> Member:
        return self.org.bob

    def request(self, *names: str, who: Member | None = None, recipient: str | None = None) -> str:
        r = (who or self.bob).json("export", "request", "cell", *names, "--age-recipient",
                                   recipient or self.recipient, "--json")
        assert r["status"] == "pending" and r["requester_name"] == (who or self.bob).name
        return str(r["id"])

    def exports(self) -> list[dict[str, Any]]:
        return [e for e in self.carol.json("audit", "log", "--action", "doc.export") if e["result"] == "ok"]

    def rule(self, name: str) -> dict[str, Any]:
        report = self.carol.run("audit", "report", "--json").json()  # exit 1: other rules a young org breaks
        found: dict[str, Any] = next(x for x in report["rules"] if x["rule"] == name)
        return found


@pytest.fixture
def cell(org: Org, make_member: Any, tmp_path: Path) -> Cell:
    """A circle "cell" (alice admin, bob writer) with two documents; dave is a second Security Team member. Each
    member's commands go through an unlock agent from its first (``unlock_at_first_run``: no Argon2id each)."""
    carol = security_member(org, make_member)
    dave = join_member(org, make_member, "dave")
    unlock_at_first_run(org.alice, org.bob, carol, dave)
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    org.alice.ok("team", "create", "cell", "--kind", "circle")
    org.alice.ok("team", "add", "cell", "bob", "--role", "writer")
    for m, name, text in ((org.alice, "plan.md", "the plan\n"), (org.bob, "notes.md", "bob's notes\n")):
        src = tmp_path / f"src-{name}"
        src.write_text(text)
        m.ok("put", "cell", str(src), "--as", name)
    key, recipient = age_identity(tmp_path, "successor")
    return Cell(org, carol, dave, key, recipient, tmp_path)


