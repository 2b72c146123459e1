"""Issue 16's known gaps, closed (real server, real CLI, temporary folders).

- `ls` pins the heads it verified: a device that only listed a document catches the server rolling it back
  (a newer version or a deletion dropped), as one that fetched it does (review round 7's open exploit:
  tests/test_review7_exploits.py `test_acceptance_reopens_a_document_deleted_before_the_backup`).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Member, Org
from tests.helpers.db import rows_deleted
from tests.test_sync import write


def vids(m: Member, name: str) -> list[str]:
    return [v["vid"] for v in m.json("history", "drafting", name)]


def test_a_device_that_only_listed_catches_a_rollback_of_a_version_or_a_deletion(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    plan, names = write(tmp_path / "plan.md", "plan 1\n"), write(tmp_path / "names.md", "names\n")
    alice.ok("put", "drafting", str(plan))
    alice.ok("put", "drafting", str(names))
    plan.write_text("plan 2\n")
    alice.ok("put", "drafting", str(plan))
    alice.ok("rm", "drafting", "names.md")
    newer, deletion = vids(alice, "plan.md")[1], vids(alice, "names.md")[1]
    bob.ok("ls", "drafting")  # bob never fetched either document
    got = tmp_path / "got.md"
    with rows_deleted(org, newer, deletion):  # the server drops version 2 of both (a rollback, or an old backup)
        r = bob.run("get", "drafting", "plan.md", "-o", str(got))
        assert r.code == 3 and "rolled back" in r.err and not got.exists(), (r.code, r.err)
        r = bob.run("get", "drafting", "names.md", "-o", str(got))
        assert r.code == 3 and "rolled back" in r.err and not got.exists(), (r.code, r.err)
        r = bob.run("ls", "drafting")
        assert r.code == 3 and "rolled back" in r.err, (r.code, r.err)
    # once the server serves what it stored again, everything goes on: the pins were the listed heads
    bob.ok("get", "drafting", "plan.md", "-o", str(got))
    assert got.read_text() == "plan 2\n"
    assert bob.run("get", "drafting", "names.md", "-o", str(tmp_path / "n.md")).code == 1  # deleted, as signed
